//! Encoder weights written by other tools: a `torch.save` checkpoint (`.pt`, `.pth`,
//! `.pth.tar`, `.bin`, read by the allow-list reader of [`crate::formats::torch_zip`], nothing
//! executed) or a safetensors file, loaded into a [`ResNet`].
//!
//! The state dict is found wherever the checkpoint keeps it: a bare state dict,
//! `{"state_dict": …}`, `{"model": …}`, `{"backbone": …, "projector": …}`, with keys prefixed
//! `module.` (DistributedDataParallel), `backbone.` (solo-learn), `encoder.`, `model.` or a
//! combination. Nested dicts are flattened to dotted names (`state_dict.module.conv1.weight`),
//! so every layout is a key prefix, and the prefix is found by matching the names the ResNet
//! expects: the one prefix under which every expected tensor is present is taken. An explicit
//! prefix (`module.`, `backbone.`; `""` for none) narrows the choice. torchvision's classifier
//! `fc.*` is ignored. On a mismatch the error lists the first missing and unexpected tensors
//! and shape differences under the closest prefix, names that prefix, and says which
//! architecture the file's tensors look like.

use std::collections::{HashMap, HashSet};
use std::path::Path;

use tch::{Kind, Tensor};

use super::resnet::ResNet;
use super::state::{load_state, read_safetensors, LoadReport};
use crate::formats::matrix::ByteOrder;
use crate::formats::torch_zip;
use crate::{Error, Result};

/// What [`load_encoder_file`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImportReport {
    /// The key prefix the encoder's tensors were found under (`""`, `"module."`,
    /// `"state_dict.backbone."`, …; nested dicts count as prefixes).
    pub prefix: String,
    /// Tensors of the file outside that prefix (a projector, an optimizer's state), not read.
    pub outside: usize,
    /// What loading the tensors under the prefix skipped or defaulted.
    pub load: LoadReport,
}

fn kind_of(class: &str) -> Option<Kind> {
    Some(match class {
        "FloatStorage" => Kind::Float,
        "DoubleStorage" => Kind::Double,
        "HalfStorage" => Kind::Half,
        "BFloat16Storage" => Kind::BFloat16,
        "LongStorage" => Kind::Int64,
        "IntStorage" => Kind::Int,
        "ShortStorage" => Kind::Int16,
        "CharStorage" => Kind::Int8,
        "ByteStorage" => Kind::Uint8,
        "BoolStorage" => Kind::Bool,
        _ => return None,
    })
}

/// Every tensor of a `torch.save` file, by dotted name (nested dicts flattened), on the CPU
/// and contiguous, in the file's order.
///
/// Each tensor's view (offset, shape, strides) is checked against its storage before anything
/// is read, and each storage against its archive entry; storages shared by several tensors are
/// read once. Allocation is bounded by the file's size.
pub fn read_torch_tensors(path: &Path) -> Result<Vec<(String, Tensor)>> {
    let bad = |reason: String| Error::format(path, reason);
    let (prefix, refs, order) = torch_zip::tensors(path)?;
    let mut storages: HashMap<String, Tensor> = HashMap::new();
    let mut out = Vec::with_capacity(refs.len());
    for (name, t) in refs {
        let shown = if name.is_empty() {
            "(the saved tensor)"
        } else {
            &name
        };
        let s = &t.storage;
        let (Some(kind), Some(elem)) = (kind_of(&s.class), torch_zip::element_size(&s.class))
        else {
            return Err(bad(format!(
                "tensor `{shown}` has the unsupported storage {}",
                s.class
            )));
        };
        // The last element the view reaches must lie inside the storage.
        let empty = t.size.contains(&0);
        if !empty {
            let mut last = t.offset;
            for (&n, &st) in t.size.iter().zip(&t.stride) {
                last = (n - 1)
                    .checked_mul(st)
                    .and_then(|x| last.checked_add(x))
                    .ok_or_else(|| {
                        bad(format!(
                            "tensor `{shown}`: shape {:?} with strides {:?} overflows",
                            t.size, t.stride
                        ))
                    })?;
            }
            if last >= s.numel {
                return Err(bad(format!(
                    "tensor `{shown}` of shape {:?}, strides {:?} at offset {} reaches element \
                     {last} of a storage of {} elements",
                    t.size, t.stride, t.offset, s.numel
                )));
            }
        }
        let to_i64 = |v: &[u64]| -> Result<Vec<i64>> {
            v.iter()
                .map(|&x| {
                    i64::try_from(x)
                        .map_err(|_| bad(format!("tensor `{shown}`: {x} is out of range")))
                })
                .collect()
        };
        let size = to_i64(&t.size)?;
        let stride = to_i64(&t.stride)?;
        let offset = i64::try_from(t.offset)
            .map_err(|_| bad(format!("tensor `{shown}`: offset out of range")))?;
        if empty {
            out.push((name, Tensor::f_zeros(&size, (kind, tch::Device::Cpu))?));
            continue;
        }
        if !storages.contains_key(&s.key) {
            let mut bytes = torch_zip::read_storage(path, &prefix, &s.key, s.numel, elem)?;
            if order == ByteOrder::Big && elem > 1 {
                for chunk in bytes.chunks_exact_mut(elem as usize) {
                    chunk.reverse();
                }
            }
            let numel = i64::try_from(s.numel)
                .map_err(|_| bad(format!("storage `{}` is too large", s.key)))?;
            let storage = Tensor::f_from_data_size(&bytes, &[numel], kind)?;
            storages.insert(s.key.clone(), storage);
        }
        let storage = &storages[&s.key];
        let tensor = storage
            .f_as_strided(size.as_slice(), stride.as_slice(), Some(offset))?
            .f_contiguous()?;
        out.push((name, tensor));
    }
    Ok(out)
}

/// The tensors of a weights file: safetensors by its extension, otherwise `torch.save`.
pub fn read_weights_file(path: &Path) -> Result<Vec<(String, Tensor)>> {
    match path.extension().and_then(|e| e.to_str()) {
        Some("safetensors") => read_safetensors(path),
        Some("pt" | "pth" | "tar" | "bin" | "ckpt") => read_torch_tensors(path),
        _ => Err(Error::format(
            path,
            "unknown extension: encoder weights are read from .safetensors and torch.save \
             (.pt, .pth, .pth.tar, .bin, .ckpt) files",
        )),
    }
}

/// `p` ends a prefix at a `.` boundary of `full` (`"module."` of `"state_dict.module."`).
fn prefix_matches(full: &str, wanted: &str) -> bool {
    if wanted.is_empty() {
        return full.is_empty();
    }
    full.ends_with(wanted)
        && (full.len() == wanted.len() || full[..full.len() - wanted.len()].ends_with('.'))
}

/// `wanted` with a trailing `.` (an empty prefix stays empty).
fn normalise_prefix(wanted: &str) -> String {
    if wanted.is_empty() || wanted.ends_with('.') {
        wanted.to_string()
    } else {
        format!("{wanted}.")
    }
}

/// For every prefix of the names in `source`, how many of `required` it holds.
fn prefix_counts(source: &[(String, Tensor)], required: &HashSet<&str>) -> Vec<(String, usize)> {
    let mut counts: HashMap<&str, usize> = HashMap::new();
    for (name, _) in source {
        let mut cut = Some(0);
        while let Some(i) = cut {
            if required.contains(&name[i..]) {
                *counts.entry(&name[..i]).or_default() += 1;
            }
            cut = name[i..].find('.').map(|j| i + j + 1);
        }
    }
    let mut counts: Vec<(String, usize)> = counts
        .into_iter()
        .map(|(p, n)| (p.to_string(), n))
        .collect();
    // Most matches first, then the shorter prefix, then by name (a stable order).
    counts.sort_by(|a, b| {
        b.1.cmp(&a.1)
            .then(a.0.len().cmp(&b.0.len()))
            .then(a.0.cmp(&b.0))
    });
    counts
}

/// Which torchvision ResNet the tensors under `prefix` look like, as command-line flags
/// (`--arch resnet18 --stem cifar --width 0.0625`), from `conv1.weight` and the blocks present.
pub fn guess_architecture(source: &[(String, Tensor)], prefix: &str) -> Option<String> {
    let has = |n: &str| {
        source
            .iter()
            .any(|(k, _)| k.strip_prefix(prefix) == Some(n))
    };
    let conv1 = source
        .iter()
        .find(|(k, _)| k.strip_prefix(prefix) == Some("conv1.weight"))?;
    let size = conv1.1.size();
    let [c, 3, k, _] = size.as_slice() else {
        return None;
    };
    let stem = match k {
        3 => "cifar",
        7 => "imagenet",
        _ => return None,
    };
    let arch = if has("layer1.0.conv3.weight") {
        "resnet50"
    } else if has("layer3.2.conv1.weight") {
        "resnet34"
    } else {
        "resnet18"
    };
    Some(format!(
        "--arch {arch} --stem {stem} --width {}",
        *c as f64 / 64.0
    ))
}

/// Loads the encoder weights of `source` (tensors by name, e.g. from [`read_weights_file`])
/// into `encoder` in place. `prefix`: the key prefix to read (`None`: found automatically; see
/// the module's documentation). `what` names the source in errors.
pub fn load_encoder_state(
    encoder: &ResNet,
    source: &[(String, Tensor)],
    prefix: Option<&str>,
    what: &str,
) -> Result<ImportReport> {
    let mismatch = |reason: String| Error::StateMismatch {
        what: what.to_string(),
        reason,
    };
    let target = encoder.named_tensors();
    let required: HashSet<&str> = target
        .iter()
        .map(|(n, _)| n.as_str())
        .filter(|n| !n.ends_with("num_batches_tracked"))
        .collect();
    let mut counts = prefix_counts(source, &required);
    let wanted = prefix.map(normalise_prefix);
    if let Some(w) = &wanted {
        counts.retain(|(p, _)| prefix_matches(p, w));
    }
    let full: Vec<&str> = counts
        .iter()
        .filter(|(_, n)| *n == required.len())
        .map(|(p, _)| p.as_str())
        .collect();
    let shown = |p: &str| {
        if p.is_empty() {
            "(none)".to_string()
        } else {
            format!("`{p}`")
        }
    };
    let chosen =
        match full.as_slice() {
            [one] => one.to_string(),
            [_, _, ..] => {
                return Err(mismatch(format!(
                    "the encoder's tensors are found under several prefixes: {}; choose one with \
                 --prefix",
                    full.iter().map(|p| shown(p)).collect::<Vec<_>>().join(", ")
                )))
            }
            [] => match (&wanted, counts.first()) {
                (_, Some((p, _))) => p.clone(),
                (Some(w), None) => w.clone(),
                (None, None) => {
                    let first: Vec<&str> = source.iter().take(6).map(|(n, _)| n.as_str()).collect();
                    return Err(mismatch(format!(
                    "none of its {} tensors has a name of a torchvision ResNet (`conv1.weight`, \
                     `layer1.0.bn1.weight`, …); it holds {}{}",
                    source.len(),
                    first.iter().map(|n| format!("`{n}`")).collect::<Vec<_>>().join(", "),
                    if source.len() > first.len() { ", …" } else { "" }
                )));
                }
            },
        };
    let inside: Vec<(String, Tensor)> = source
        .iter()
        .filter_map(|(n, t)| {
            n.strip_prefix(chosen.as_str())
                .map(|k| (k.to_string(), t.shallow_clone()))
        })
        .collect();
    let outside = source.len() - inside.len();
    let label = if chosen.is_empty() {
        what.to_string()
    } else {
        format!("{what} under the prefix `{chosen}`")
    };
    match load_state(target, &inside, &["fc."], &label) {
        Ok(load) => Ok(ImportReport {
            prefix: chosen,
            outside,
            load,
        }),
        Err(Error::StateMismatch { what, reason }) => {
            let found = counts
                .iter()
                .find(|(p, _)| *p == chosen)
                .map_or(0, |(_, n)| *n);
            let mut hint = format!(
                "; the closest prefix is {} ({found} of the {} tensors the model expects are \
                 found under it{})",
                shown(&chosen),
                required.len(),
                if prefix.is_none() && !chosen.is_empty() {
                    format!(", --prefix {chosen}")
                } else {
                    String::new()
                }
            );
            if let Some(arch) = guess_architecture(source, &chosen) {
                hint.push_str(&format!("; the file's tensors look like {arch}"));
            }
            Err(Error::StateMismatch {
                what,
                reason: reason + &hint,
            })
        }
        Err(e) => Err(e),
    }
}

/// [`load_encoder_state`] of the weights file `file` (`.safetensors` or `torch.save`).
pub fn load_encoder_file(
    encoder: &ResNet,
    file: &Path,
    prefix: Option<&str>,
) -> Result<ImportReport> {
    let source = read_weights_file(file)?;
    load_encoder_state(
        encoder,
        &source,
        prefix,
        &format!("encoder weights `{}`", file.display()),
    )
}
