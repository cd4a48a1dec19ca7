//! Named state of a module (parameters and buffers under PyTorch's `state_dict` names) and its
//! safetensors files.
//!
//! Every module of [`crate::model`] records, while it is built, the tensors it creates under the
//! names PyTorch would give them relative to the module (`conv1.weight`,
//! `layer1.0.bn1.running_mean`, …), in PyTorch's `state_dict` order. These are shallow handles on
//! the tensors of the [`tch::nn::VarStore`], so copying into them restores the model in place,
//! whatever path of the store the module was built under.

use std::collections::{HashMap, HashSet};
use std::path::Path;

use safetensors::{Dtype, SafeTensors};
use tch::nn::{self, Init};
use tch::{Device, Kind, Tensor};

use crate::{Error, Result};

/// Records the tensors a module creates under `root` with names relative to `root`.
#[derive(Debug)]
pub(crate) struct StateRecorder {
    prefix: String,
    entries: Vec<(String, Tensor)>,
}

impl StateRecorder {
    /// A recorder for a module built under `root`.
    pub(crate) fn new(root: &nn::Path) -> Self {
        StateRecorder {
            prefix: root.components().collect::<Vec<_>>().join("."),
            entries: Vec::new(),
        }
    }

    fn local_name(&self, p: &nn::Path, name: &str) -> String {
        let full = p.path(name);
        if self.prefix.is_empty() {
            full
        } else {
            full.strip_prefix(&self.prefix)
                .and_then(|s| s.strip_prefix('.'))
                .unwrap_or(&full)
                .to_string()
        }
    }

    fn check_free(&self, p: &nn::Path, name: &str) -> Result<()> {
        if p.get(name).is_some() {
            return Err(Error::config(
                "model path",
                format!(
                    "the variable store already holds `{}`; build each module under its own path",
                    p.path(name)
                ),
            ));
        }
        Ok(())
    }

    /// A trainable parameter `name` under `p`, of shape `dims`, initialised by `init`.
    pub(crate) fn param(
        &mut self,
        p: &nn::Path,
        name: &str,
        dims: &[i64],
        init: Init,
    ) -> Result<Tensor> {
        self.check_free(p, name)?;
        let t = p.f_var(name, dims, init)?;
        self.entries
            .push((self.local_name(p, name), t.shallow_clone()));
        Ok(t)
    }

    /// A non-trainable buffer `name` under `p` holding `value` (moved to the store's device).
    pub(crate) fn buffer(&mut self, p: &nn::Path, name: &str, value: Tensor) -> Result<Tensor> {
        self.check_free(p, name)?;
        let value = value.f_to_device(p.device())?;
        let t = p.add(name, value, false);
        self.entries
            .push((self.local_name(p, name), t.shallow_clone()));
        Ok(t)
    }

    /// The recorded tensors, in creation order.
    pub(crate) fn finish(self) -> Vec<(String, Tensor)> {
        self.entries
    }
}

fn to_dtype(kind: Kind) -> Result<Dtype> {
    Ok(match kind {
        Kind::Float => Dtype::F32,
        Kind::Double => Dtype::F64,
        Kind::Half => Dtype::F16,
        Kind::BFloat16 => Dtype::BF16,
        Kind::Int64 => Dtype::I64,
        Kind::Int => Dtype::I32,
        Kind::Uint8 => Dtype::U8,
        Kind::Bool => Dtype::BOOL,
        other => {
            return Err(Error::config(
                "tensor kind",
                format!("{other:?} cannot be saved as safetensors"),
            ))
        }
    })
}

fn to_kind(dtype: Dtype) -> Option<Kind> {
    Some(match dtype {
        Dtype::F32 => Kind::Float,
        Dtype::F64 => Kind::Double,
        Dtype::F16 => Kind::Half,
        Dtype::BF16 => Kind::BFloat16,
        Dtype::I64 => Kind::Int64,
        Dtype::I32 => Kind::Int,
        Dtype::U8 => Kind::Uint8,
        Dtype::BOOL => Kind::Bool,
        _ => return None,
    })
}

/// Writes `tensors` to the safetensors file `file` under their names (PyTorch's
/// `safetensors.torch.load_file` reads it back as a `state_dict`).
pub fn save_safetensors(file: impl AsRef<Path>, tensors: &[(String, Tensor)]) -> Result<()> {
    let file = file.as_ref();
    let bytes = serialize_safetensors(tensors, None)
        .map_err(|e| with_what(e, &format!("weights for `{}`", file.display())))?;
    std::fs::write(file, bytes).map_err(|e| Error::io("cannot write", file, e))
}

fn with_what(e: Error, what: &str) -> Error {
    match e {
        Error::StateMismatch { reason, .. } => Error::StateMismatch {
            what: what.to_string(),
            reason,
        },
        other => other,
    }
}

/// The bytes of a safetensors file holding `tensors` under their names (copied to the CPU) and
/// the string `metadata` of its header (`__metadata__`), for callers that write the file
/// themselves (e.g. atomically).
pub fn serialize_safetensors(
    tensors: &[(String, Tensor)],
    metadata: Option<HashMap<String, String>>,
) -> Result<Vec<u8>> {
    let mut blobs = Vec::with_capacity(tensors.len());
    for (name, t) in tensors {
        let t = t.f_detach()?.f_to_device(Device::Cpu)?.f_contiguous()?;
        let dtype = to_dtype(t.kind())?;
        let numel = t.numel();
        let mut bytes = vec![0u8; numel * t.kind().elt_size_in_bytes()];
        t.f_copy_data_u8(&mut bytes, numel)?;
        let shape: Vec<usize> = t.size().iter().map(|&d| d as usize).collect();
        blobs.push((name.clone(), dtype, shape, bytes));
    }
    let views = blobs
        .iter()
        .map(|(name, dtype, shape, bytes)| {
            safetensors::tensor::TensorView::new(*dtype, shape.clone(), bytes)
                .map(|v| (name.clone(), v))
                .map_err(|e| Error::StateMismatch {
                    what: format!("tensor `{name}`"),
                    reason: e.to_string(),
                })
        })
        .collect::<Result<Vec<_>>>()?;
    safetensors::serialize(views, &metadata).map_err(|e| Error::StateMismatch {
        what: "safetensors file".into(),
        reason: e.to_string(),
    })
}

/// Reads every tensor of the safetensors file `file` onto the CPU, sorted by name.
pub fn read_safetensors(file: impl AsRef<Path>) -> Result<Vec<(String, Tensor)>> {
    let file = file.as_ref();
    let bytes = std::fs::read(file).map_err(|e| Error::io("cannot read", file, e))?;
    let what = || format!("weights from `{}`", file.display());
    let st = SafeTensors::deserialize(&bytes).map_err(|e| Error::StateMismatch {
        what: what(),
        reason: format!("not a safetensors file: {e}"),
    })?;
    let mut out = Vec::new();
    for (name, view) in st.tensors() {
        let kind = to_kind(view.dtype()).ok_or_else(|| Error::StateMismatch {
            what: what(),
            reason: format!("tensor `{name}` has unsupported dtype {:?}", view.dtype()),
        })?;
        let shape: Vec<i64> = view.shape().iter().map(|&d| d as i64).collect();
        out.push((name, Tensor::f_from_data_size(view.data(), &shape, kind)?));
    }
    out.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(out)
}

/// What [`load_state`] did besides copying the tensors the model expects.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LoadReport {
    /// Tensors of the source that were skipped because their name starts with an ignored
    /// prefix (e.g. torchvision's classifier `fc.`).
    pub ignored: Vec<String>,
    /// Tensors the model holds that the source lacked and that are allowed to be absent
    /// (`num_batches_tracked`, which PyTorch itself fills with 0 when loading without it).
    pub defaulted: Vec<String>,
}

/// Copies `source` into `target` (both under the same local names) in place, without recording
/// gradients, converting dtypes and devices as needed.
///
/// Strict like PyTorch's `load_state_dict(strict=True)`: every tensor of `target` must be in
/// `source` with the same shape, except names ending in `num_batches_tracked` (left unchanged and
/// reported), and every tensor of `source` must be in `target` unless its name starts with one
/// of `ignore_prefixes`. `what` names the source in errors; one error lists every difference
/// (missing, unexpected and reshaped tensors, with their shapes).
pub fn load_state(
    target: &[(String, Tensor)],
    source: &[(String, Tensor)],
    ignore_prefixes: &[&str],
    what: &str,
) -> Result<LoadReport> {
    let src: HashMap<&str, &Tensor> = source.iter().map(|(n, t)| (n.as_str(), t)).collect();
    let wanted: HashSet<&str> = target.iter().map(|(n, _)| n.as_str()).collect();
    let mismatch = |reason: String| Error::StateMismatch {
        what: what.to_string(),
        reason,
    };
    let mut report = LoadReport::default();
    let mut unexpected = Vec::new();
    for (name, t) in source {
        if wanted.contains(name.as_str()) {
            continue;
        }
        if ignore_prefixes.iter().any(|p| name.starts_with(p)) {
            report.ignored.push(name.clone());
        } else {
            unexpected.push(format!("{name} {:?}", t.size()));
        }
    }
    let mut missing = Vec::new();
    let mut reshaped = Vec::new();
    for (name, t) in target {
        match src.get(name.as_str()) {
            Some(s) if s.size() != t.size() => reshaped.push(format!(
                "{name}: {:?} in the source, {:?} in the model",
                s.size(),
                t.size()
            )),
            Some(_) => {}
            None if name.ends_with("num_batches_tracked") => report.defaulted.push(name.clone()),
            None => missing.push(format!("{name} {:?}", t.size())),
        }
    }
    if !(unexpected.is_empty() && missing.is_empty() && reshaped.is_empty()) {
        let mut parts = Vec::new();
        for (label, list) in [
            ("missing from the source", &missing),
            ("not in the model", &unexpected),
            ("of another shape", &reshaped),
        ] {
            if !list.is_empty() {
                parts.push(format!(
                    "{} tensors {label}: {}",
                    list.len(),
                    abridged(list, 8)
                ));
            }
        }
        return Err(mismatch(parts.join("; ")));
    }
    tch::no_grad(|| -> Result<()> {
        for (name, t) in target {
            if let Some(s) = src.get(name.as_str()) {
                let mut dst = t.shallow_clone();
                dst.f_copy_(s)?;
            }
        }
        Ok(())
    })?;
    Ok(report)
}

/// The first `keep` entries of `list`, then how many more there are.
fn abridged(list: &[String], keep: usize) -> String {
    let shown = list[..list.len().min(keep)].join(", ");
    match list.len().saturating_sub(keep) {
        0 => shown,
        more => format!("{shown} and {more} more"),
    }
}
