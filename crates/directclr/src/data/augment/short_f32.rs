//! Serialises f32 settings by their shortest decimal: `0.485`, not `0.48500001430511475`, in a
//! run's resolved `config.toml`. The value is written as the f64 nearest that decimal, which
//! reads back (f64 → f32) as the same f32; `crates/directclr/tests/train_augment.rs` checks the
//! round trip over many values.

use serde::Serializer;

/// The f64 nearest the shortest decimal that reads back as `v`.
pub fn widen(v: f32) -> f64 {
    // f32's `Display` is the shortest round-tripping decimal ("NaN" and "inf" parse too).
    v.to_string().parse().unwrap_or(f64::from(v))
}

/// `#[serde(serialize_with = "short_f32::serialize")]` for an `f32` field.
pub fn serialize<S: Serializer>(v: &f32, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_f64(widen(*v))
}

/// `#[serde(serialize_with = "short_f32::serialize_array")]` for an `[f32; N]` field.
pub fn serialize_array<S: Serializer, const N: usize>(
    v: &[f32; N],
    s: S,
) -> Result<S::Ok, S::Error> {
    use serde::ser::SerializeTuple;
    let mut t = s.serialize_tuple(N)?;
    for x in v {
        t.serialize_element(&widen(*x))?;
    }
    t.end()
}
