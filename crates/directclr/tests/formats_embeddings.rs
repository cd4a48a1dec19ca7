//! Embedding matrices written by numpy (`.npy` v1–3, C and Fortran order, both byte orders,
//! f16/f32/f64; `.npz` stored and deflated) and by safetensors (F16/BF16/F32/F64; BF16 byte
//! for byte from the format's specification), against spectra numpy computed in f64
//! (`tests/fixtures/embeddings/`, `make_embeddings_fixtures.py`); streaming over chunks against
//! the in-memory accumulator; and the errors of bad files.
mod tolerance;

use std::io::Write;
use std::path::{Path, PathBuf};

use directclr::analysis::{embedding_moments, file_moments, RowNormalisation};
use directclr::formats::{open_matrix, ElementType, MatrixOrder};
use directclr::Error;
use tch::{Kind, Tensor};
use tolerance::{covariance_eigenvalue_bound, EPS32};

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/embeddings")
        .join(name)
}

struct Reference {
    eigenvalues: Vec<f64>,
    second_moment_trace: f64,
}

fn reference(values: &str, rows: RowNormalisation) -> Reference {
    let text = std::fs::read_to_string(fixture("reference.json")).unwrap();
    let json: serde_json::Value = serde_json::from_str(&text).unwrap();
    let rows = match rows {
        RowNormalisation::None => "none",
        RowNormalisation::L2 => "l2",
    };
    let entry = &json[format!("{values}/{rows}")];
    Reference {
        eigenvalues: entry["eigenvalues"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_f64().unwrap())
            .collect(),
        second_moment_trace: entry["second_moment_trace"].as_f64().unwrap(),
    }
}

const N: usize = 300;
const D: usize = 12;

fn spectrum(path: &Path, key: Option<&str>, rows: RowNormalisation) -> Vec<f64> {
    let mut file = open_matrix(path, key).unwrap();
    file_moments(&mut file, rows, None, &mut |_| {})
        .unwrap()
        .covariance_eigenvalues()
        .unwrap()
}

/// Our spectrum and numpy's of the same values: two f64 computations, each within the
/// tolerance module's bound (its Gram rounding scales with the uncentred second moment).
fn assert_matches(path: &str, key: Option<&str>, values: &str) {
    for rows in [RowNormalisation::None, RowNormalisation::L2] {
        let ours = spectrum(&fixture(path), key, rows);
        let r = reference(values, rows);
        let bound =
            2.0 * covariance_eigenvalue_bound(N, D, r.second_moment_trace, r.eigenvalues[0]);
        assert_eq!(ours.len(), D);
        for (k, (o, e)) in ours.iter().zip(&r.eigenvalues).enumerate() {
            assert!(
                (o - e).abs() <= bound,
                "{path} {rows:?} λ_{k}: {o:e} vs numpy {e:e} (bound {bound:e})"
            );
        }
    }
}

#[test]
fn npy_files_of_every_dtype_order_byte_order_and_version_match_numpy() {
    assert_matches("f64_c.npy", None, "f64");
    assert_matches("f64_fortran.npy", None, "f64");
    assert_matches("f64_big_fortran.npy", None, "f64");
    assert_matches("f32_c.npy", None, "f32");
    assert_matches("f32_big.npy", None, "f32");
    assert_matches("f32_v2.npy", None, "f32");
    assert_matches("f32_v3.npy", None, "f32");
    assert_matches("f16_c.npy", None, "f16");
    let layout = open_matrix(&fixture("f64_big_fortran.npy"), None)
        .unwrap()
        .layout();
    assert_eq!((layout.rows, layout.cols), (N as u64, D as u64));
    assert_eq!(layout.element, ElementType::F64);
    assert_eq!(layout.order, MatrixOrder::ColumnMajor);
}

#[test]
fn npz_members_stored_and_deflated_match_numpy() {
    assert_matches("stored.npz", Some("emb"), "f32");
    assert_matches("compressed.npz", None, "f32");
    assert_matches("compressed_fortran.npz", None, "f64");
    assert_matches("two_floats.npz", Some("b"), "f64");
}

#[test]
fn safetensors_of_every_float_dtype_match_numpy() {
    assert_matches("two.safetensors", Some("emb"), "f32");
    assert_matches("f16.safetensors", None, "f16");
    assert_matches("f64.safetensors", None, "f64");
    assert_matches("bf16.safetensors", None, "bf16");
}

#[test]
fn lower_precision_moves_the_spectrum_only_by_its_own_rounding() {
    // Storing Z in a format of unit roundoff u perturbs each entry by ≤ u·|z|, so C by at most
    // 2u·tr(ZᵀZ)/N + u²·… in 2-norm (Weyl): |λ_k(f) − λ_k(f64)| ≤ 2.1·u·tr(M₂), plus the two
    // f64 computations' bound.
    let exact = reference("f64", RowNormalisation::None);
    let numeric =
        2.0 * covariance_eigenvalue_bound(N, D, exact.second_moment_trace, exact.eigenvalues[0]);
    for (file, u) in [
        ("f32_c.npy", EPS32 / 2.0),
        ("f16_c.npy", 2f64.powi(-11)),
        ("bf16.safetensors", 2f64.powi(-8)),
    ] {
        let ours = spectrum(&fixture(file), None, RowNormalisation::None);
        let bound = 2.1 * u * exact.second_moment_trace + numeric;
        for (o, e) in ours.iter().zip(&exact.eigenvalues) {
            assert!(
                (o - e).abs() <= bound,
                "{file}: {o:e} vs {e:e}, bound {bound:e}"
            );
        }
    }
    // And the f64 files of every order are the same spectrum to the last bit of the input:
    // the same values in the same row order go through the same accumulator.
    let c = spectrum(&fixture("f64_c.npy"), None, RowNormalisation::L2);
    for other in ["f64_fortran.npy", "f64_big_fortran.npy", "f64.safetensors"] {
        assert_eq!(
            spectrum(&fixture(other), None, RowNormalisation::L2),
            c,
            "{other}"
        );
    }
}

/// Writes a .npy (v1.0) of f32 values by hand, from the format's specification.
fn write_npy_f32(path: &Path, values: &[f32], rows: usize, cols: usize, fortran: bool) {
    let dict = format!(
        "{{'descr': '<f4', 'fortran_order': {}, 'shape': ({rows}, {cols}), }}",
        if fortran { "True" } else { "False" }
    );
    let mut header = dict.into_bytes();
    // Magic (6) + version (2) + length (2) + header, padded with spaces to a multiple of 64
    // and ended by a newline.
    let total = (10 + header.len() + 1).div_ceil(64) * 64;
    header.resize(total - 10 - 1, b' ');
    header.push(b'\n');
    let mut f = std::fs::File::create(path).unwrap();
    f.write_all(b"\x93NUMPY\x01\x00").unwrap();
    f.write_all(&(header.len() as u16).to_le_bytes()).unwrap();
    f.write_all(&header).unwrap();
    let mut bytes = Vec::with_capacity(values.len() * 4);
    if fortran {
        for j in 0..cols {
            for i in 0..rows {
                bytes.extend_from_slice(&values[i * cols + j].to_le_bytes());
            }
        }
    } else {
        for v in values {
            bytes.extend_from_slice(&v.to_le_bytes());
        }
    }
    f.write_all(&bytes).unwrap();
}

#[test]
fn large_files_stream_in_chunks_and_equal_the_in_memory_moments() {
    // 400,000 × 16 f32 (25.6 MB): two chunks of 2²² values, the second partial. Streamed in
    // C and Fortran order, and deflated in an .npz; each against the one-shot accumulator of
    // the same matrix in memory.
    let (rows, cols) = (400_000usize, 16usize);
    tch::manual_seed(5);
    let z = Tensor::randn([rows as i64, cols as i64], (Kind::Float, tch::Device::Cpu)) + 0.3;
    let values = Vec::<f32>::try_from(z.reshape([-1])).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (c, f) = (dir.path().join("c.npy"), dir.path().join("f.npy"));
    write_npy_f32(&c, &values, rows, cols, false);
    write_npy_f32(&f, &values, rows, cols, true);
    let npz = dir.path().join("z.npz");
    {
        let mut zip = zip::ZipWriter::new(std::fs::File::create(&npz).unwrap());
        let options = zip::write::SimpleFileOptions::default()
            .compression_method(zip::CompressionMethod::Deflated);
        for (name, file) in [("c.npy", &c), ("f.npy", &f)] {
            zip.start_file(name, options).unwrap();
            zip.write_all(&std::fs::read(file).unwrap()).unwrap();
        }
        zip.finish().unwrap();
    }
    let memory = embedding_moments(&z, RowNormalisation::L2)
        .unwrap()
        .covariance_eigenvalues()
        .unwrap();
    // Chunked sums in another order than the one-shot: two computations within the bound,
    // rows of norm 1 after L2.
    let bound = 2.0 * covariance_eigenvalue_bound(rows, cols, 1.0, memory[0]);
    for (path, key) in [(&c, None), (&f, None), (&npz, Some("c")), (&npz, Some("f"))] {
        let mut file = open_matrix(path, key).unwrap();
        let mut calls = Vec::new();
        let moments = file_moments(&mut file, RowNormalisation::L2, None, &mut |done| {
            calls.push(done)
        })
        .unwrap();
        assert_eq!(calls, vec![262_144, 400_000], "{path:?} {key:?}");
        assert_eq!(moments.count(), rows as i64);
        let streamed = moments.covariance_eigenvalues().unwrap();
        for (s, m) in streamed.iter().zip(&memory) {
            assert!((s - m).abs() <= bound, "{path:?} {key:?}: {s:e} vs {m:e}");
        }
    }
}

fn format_error(path: &Path, key: Option<&str>) -> String {
    match open_matrix(path, key) {
        Err(e @ Error::Format { .. }) => e.to_string(),
        Err(e) => panic!("{path:?}: not a format error: {e}"),
        Ok(_) => panic!("{path:?}: opened"),
    }
}

#[test]
fn wrong_dtypes_shapes_keys_and_extensions_are_named() {
    let e = format_error(&fixture("int_c.npy"), None);
    assert!(
        e.contains("int_c.npy") && e.contains("<i8") && e.contains("float"),
        "{e}"
    );
    let e = format_error(&fixture("vector.npy"), None);
    assert!(e.contains("2-D") && e.contains("[300]"), "{e}");
    let e = format_error(&fixture("two_floats.npz"), None);
    assert!(
        e.contains("2 arrays") && e.contains("`a`") && e.contains("`b`"),
        "{e}"
    );
    let e = format_error(&fixture("stored.npz"), Some("labels"));
    assert!(e.contains("<i8"), "{e}");
    let e = format_error(&fixture("stored.npz"), Some("missing"));
    assert!(
        e.contains("no array `missing`") && e.contains("`emb`, `labels`"),
        "{e}"
    );
    let e = format_error(&fixture("two.safetensors"), None);
    assert!(
        e.contains("2 tensors") && e.contains("`emb`, `other`"),
        "{e}"
    );
    let e = format_error(&fixture("f32_c.npy"), Some("emb"));
    assert!(e.contains("one array"), "{e}");
    let e = format_error(&fixture("reference.json"), None);
    assert!(e.contains(".npy, .npz, .safetensors"), "{e}");
    assert!(matches!(
        open_matrix(&fixture("absent.npy"), None),
        Err(Error::Io { .. })
    ));
}

#[test]
fn truncated_and_lying_files_are_refused_before_allocating() {
    let dir = tempfile::tempdir().unwrap();
    let cut = |name: &str, keep: usize| {
        let bytes = std::fs::read(fixture(name)).unwrap();
        let path = dir.path().join(format!("cut-{keep}-{name}"));
        std::fs::write(&path, &bytes[..keep.min(bytes.len())]).unwrap();
        path
    };
    // Cut in the magic, in the header, in the data.
    for keep in [3, 40, 1000] {
        let e = format_error(&cut("f32_c.npy", keep), None);
        assert!(
            e.contains("cut-") && (e.contains("short") || e.contains("truncated")),
            "{e}"
        );
    }
    for keep in [4, 100, 5000] {
        let e = format_error(&cut("f64.safetensors", keep), None);
        assert!(e.contains("cut-"), "{e}");
    }
    let e = format_error(&cut("compressed.npz", 2000), None);
    assert!(e.contains("zip"), "{e}");
    // A header that claims 4 GiB of header text, and a shape of 2⁶⁰ rows in 80 bytes.
    let huge = dir.path().join("huge-header.npy");
    std::fs::write(&huge, b"\x93NUMPY\x02\x00\xff\xff\xff\xff{").unwrap();
    let e = format_error(&huge, None);
    assert!(e.contains("claims 4294967295 bytes"), "{e}");
    let lying = dir.path().join("lying-shape.npy");
    let mut header =
        b"{'descr': '<f4', 'fortran_order': False, 'shape': (1152921504606846976, 4), }".to_vec();
    header.resize(117, b' ');
    header.push(b'\n');
    let mut bytes = b"\x93NUMPY\x01\x00".to_vec();
    bytes.extend_from_slice(&(header.len() as u16).to_le_bytes());
    bytes.extend_from_slice(&header);
    bytes.extend_from_slice(&[0u8; 64]);
    std::fs::write(&lying, bytes).unwrap();
    let e = format_error(&lying, None);
    assert!(e.contains("truncated") || e.contains("overflow"), "{e}");
    // A header nested a thousand deep is refused before the literal parser sees it.
    let nested = dir.path().join("nested.npy");
    let mut text = "[".repeat(1000).into_bytes();
    text.push(b'\n');
    let mut bytes = b"\x93NUMPY\x01\x00".to_vec();
    bytes.extend_from_slice(&(text.len() as u16).to_le_bytes());
    bytes.extend_from_slice(&text);
    std::fs::write(&nested, bytes).unwrap();
    let e = format_error(&nested, None);
    assert!(e.contains("nests deeper"), "{e}");
    // A safetensors tensor whose offsets do not hold its shape.
    let bad = dir.path().join("offsets.safetensors");
    let header = br#"{"emb":{"dtype":"F32","shape":[10,4],"data_offsets":[0,100]}}"#;
    let mut bytes = (header.len() as u64).to_le_bytes().to_vec();
    bytes.extend_from_slice(header);
    bytes.extend_from_slice(&[0u8; 160]);
    std::fs::write(&bad, bytes).unwrap();
    let e = format_error(&bad, None);
    assert!(e.contains("data offsets [0, 100)"), "{e}");
}

#[test]
fn a_dimension_too_large_for_a_covariance_is_refused_by_name() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("wide.npy");
    let header = "{'descr': '<f4', 'fortran_order': False, 'shape': (1, 100000), }\n";
    let mut bytes = b"\x93NUMPY\x01\x00".to_vec();
    bytes.extend_from_slice(&(header.len() as u16).to_le_bytes());
    bytes.extend_from_slice(header.as_bytes());
    bytes.resize(bytes.len() + 400_000, 0);
    std::fs::write(&path, bytes).unwrap();
    let e = format_error(&path, None);
    assert!(e.contains("d = 100000") && e.contains("16384"), "{e}");
}

fn moments_error(name: &str) -> String {
    let mut file = match open_matrix(&fixture(name), None) {
        Ok(f) => f,
        Err(e) => return e.to_string(),
    };
    match file_moments(&mut file, RowNormalisation::L2, None, &mut |_| {}) {
        Err(e @ Error::Format { .. }) => e.to_string(),
        Err(e) => panic!("{name}: not a format error: {e}"),
        Ok(_) => panic!("{name}: read"),
    }
}

#[test]
fn other_dtypes_non_finite_rows_and_degenerate_shapes_are_named() {
    // Complex, strings and pickled objects: refused by dtype, before any data is read.
    for (name, descr) in [
        ("complex.npy", "<c8"),
        ("strings.npy", "<U1"),
        ("object.npy", "|O"),
    ] {
        let e = format_error(&fixture(name), None);
        assert!(e.contains(name) && e.contains(descr), "{e}");
    }
    // A NaN in row 3 and an infinity in row 4: the error names the row and column.
    let e = moments_error("nan_row3.npy");
    assert!(
        e.contains("row 3") && e.contains("column 1") && e.contains("NaN"),
        "{e}"
    );
    let e = moments_error("inf_row4.npy");
    assert!(
        e.contains("row 4") && e.contains("column 0") && e.contains("inf"),
        "{e}"
    );
    // One row has no covariance; one column no spectrum.
    let e = moments_error("one_row.npy");
    assert!(e.contains("single row") && e.contains("one_row.npy"), "{e}");
    let e = moments_error("one_column.npy");
    assert!(
        e.contains("single column") && e.contains("one_column.npy"),
        "{e}"
    );
    // A slice down to one column is refused the same way.
    let mut file = open_matrix(&fixture("f32_c.npy"), None).unwrap();
    let e = file_moments(&mut file, RowNormalisation::L2, Some(3..4), &mut |_| {})
        .unwrap_err()
        .to_string();
    assert!(e.contains("single column"), "{e}");
}
