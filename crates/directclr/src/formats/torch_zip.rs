//! PyTorch's `torch.save` files (the zip format of PyTorch ≥ 1.6: `<name>/data.pkl`, one
//! entry per storage under `<name>/data/`, `<name>/byteorder`), read without executing
//! anything: the pickle goes through the allow-list reader of [`super::pickle`], and a tensor's
//! bytes are read in place from its (uncompressed) storage entry, after its offset, shape and
//! strides are checked against the entry's size.
//!
//! A file holds one tensor or nested dicts/lists of them (a state dict, `{"state_dict": …}`,
//! `{"backbone": …, "projector": …}`); tensors are named by their dotted path
//! (`backbone.fc.weight`, `embeddings`). The legacy format (before PyTorch 1.6, not a zip) is
//! refused with a message saying how to re-save it.

use std::fs::File;
use std::io::Read;
use std::path::Path;

use super::matrix::{ByteOrder, Bytes, Layout, MatrixFile, MatrixOrder};
use super::pickle::{self, TensorRef, Value};
use super::{file_len, open_file, pick_member};
use crate::{Error, Result};

/// The largest `data.pkl` read (a ResNet-50 state dict's is about 100 kB).
pub const MAX_PICKLE: u64 = 64 << 20;

/// Tensor references by dotted name, in the file's order.
pub type NamedTensorRefs = Vec<(String, TensorRef)>;

/// The tensors of a `torch.save` file: the archive's top folder, the tensors by dotted name in
/// the file's order, and the byte order of their storages.
pub fn tensors(path: &Path) -> Result<(String, NamedTensorRefs, ByteOrder)> {
    let bad = |reason: String| Error::format(path, reason);
    let (file, file_len) = open_file(path)?;
    let mut archive = match zip::ZipArchive::new(file) {
        Ok(a) => a,
        Err(_) => {
            return Err(bad(
                "not a zip-format torch.save file (the legacy format of PyTorch < 1.6 is not \
                 read: load it in PyTorch and save it again with torch.save)"
                    .into(),
            ))
        }
    };
    let pickles: Vec<String> = archive
        .file_names()
        .filter(|n| n.ends_with("/data.pkl") && n.matches('/').count() == 1)
        .map(str::to_string)
        .collect();
    let [pkl] = pickles.as_slice() else {
        return Err(bad(format!(
            "a torch.save archive has one `<name>/data.pkl`; this one has {}",
            pickles.len()
        )));
    };
    let prefix = pkl.trim_end_matches("data.pkl").to_string();
    let bytes = {
        let entry = archive
            .by_name(pkl)
            .map_err(|e| bad(format!("`{pkl}`: {e}")))?;
        if entry.size() > MAX_PICKLE.min(file_len) {
            return Err(bad(format!(
                "`{pkl}` claims {} bytes; at most {} are read",
                entry.size(),
                MAX_PICKLE.min(file_len)
            )));
        }
        if entry.compression() != zip::CompressionMethod::Stored {
            return Err(bad(format!(
                "`{pkl}` is compressed; torch.save stores its entries uncompressed"
            )));
        }
        let mut bytes = Vec::with_capacity(entry.size() as usize);
        entry
            .take(MAX_PICKLE)
            .read_to_end(&mut bytes)
            .map_err(|e| bad(format!("`{pkl}`: {e}")))?;
        bytes
    };
    let byte_order = match archive.by_name(&format!("{prefix}byteorder")) {
        Ok(mut e) => {
            let mut s = String::new();
            (&mut e)
                .take(16)
                .read_to_string(&mut s)
                .map_err(|e| bad(format!("byteorder: {e}")))?;
            match s.trim() {
                "little" => ByteOrder::Little,
                "big" => ByteOrder::Big,
                other => return Err(bad(format!("byteorder `{other}`"))),
            }
        }
        Err(_) => ByteOrder::Little,
    };
    let value = pickle::read(&bytes).map_err(|e| bad(format!("`{pkl}`: {e}")))?;
    let mut out = Vec::new();
    flatten(&value, String::new(), &mut out, 0);
    Ok((prefix, out, byte_order))
}

fn flatten(v: &Value, name: String, out: &mut Vec<(String, TensorRef)>, depth: usize) {
    if depth > 32 {
        return;
    }
    let join = |k: &str| {
        if name.is_empty() {
            k.to_string()
        } else {
            format!("{name}.{k}")
        }
    };
    match v {
        Value::Tensor(t) => out.push((name, (**t).clone())),
        Value::Dict(d) => {
            for (k, v) in d.iter() {
                let k = match k {
                    Value::Str(s) => s.clone(),
                    Value::Int(i) => i.to_string(),
                    _ => continue,
                };
                flatten(v, join(&k), out, depth + 1);
            }
        }
        Value::List(l) | Value::Tuple(l) => {
            for (i, v) in l.iter().enumerate() {
                flatten(v, join(&i.to_string()), out, depth + 1);
            }
        }
        _ => {}
    }
}

/// Opens the tensor `key` of a `torch.save` file (by default its only tensor) as a matrix.
pub fn open_torch(path: &Path, key: Option<&str>) -> Result<MatrixFile> {
    let bad = |reason: String| Error::format(path, reason);
    let (prefix, tensors, byte_order) = tensors(path)?;
    let mut names: Vec<String> = tensors.iter().map(|(n, _)| n.clone()).collect();
    if names.len() == 1 && names[0].is_empty() {
        names[0] = "(the saved tensor)".into();
    }
    let name = match (key, tensors.len()) {
        (None, 1) => names[0].clone(),
        _ => pick_member(path, &names, key, "tensor")?,
    };
    let index = names
        .iter()
        .position(|n| *n == name)
        .expect("picked from the names");
    let t = &tensors[index].1;
    let element = t.storage.element.ok_or_else(|| {
        bad(format!(
            "tensor `{name}` is stored as {}; embeddings must be float16, bfloat16, float32 or \
             float64",
            t.storage.class
        ))
    })?;
    let order = match (t.size.as_slice(), t.stride.as_slice()) {
        ([_, d], [sd, 1]) if sd == d => MatrixOrder::RowMajor,
        ([n, _], [1, sn]) if sn == n => MatrixOrder::ColumnMajor,
        ([1, _], [_, 1]) => MatrixOrder::RowMajor,
        ([_, 1], [1, _]) => MatrixOrder::ColumnMajor,
        _ => {
            return Err(bad(format!(
                "tensor `{name}` of shape {:?} has strides {:?}: a 2-D contiguous tensor is \
                 read (save `t.contiguous()`)",
                t.size, t.stride
            )))
        }
    };
    let layout = Layout::new(path, &t.size, element, byte_order, order)?;
    let size = element.size() as u64;
    let elements = t.storage.numel;
    let needed = t
        .offset
        .checked_add(layout.rows * layout.cols)
        .ok_or_else(|| bad(format!("tensor `{name}`: offset overflows")))?;
    if needed > elements {
        return Err(bad(format!(
            "tensor `{name}` reaches element {needed} of a storage of {elements}"
        )));
    }
    let entry_name = format!("{prefix}data/{}", t.storage.key);
    let file = File::open(path).map_err(|e| Error::io("cannot open", path, e))?;
    let mut archive =
        zip::ZipArchive::new(file).map_err(|e| bad(format!("not a zip archive: {e}")))?;
    let (stored, start, entry_size) = {
        let entry = archive.by_name(&entry_name).map_err(|_| {
            bad(format!(
                "tensor `{name}`: its storage `{entry_name}` is missing"
            ))
        })?;
        (
            entry.compression() == zip::CompressionMethod::Stored,
            entry.data_start(),
            entry.size(),
        )
    };
    if !stored {
        return Err(bad(format!(
            "storage `{entry_name}` is compressed; torch.save stores storages uncompressed"
        )));
    }
    if elements.checked_mul(size).is_none_or(|b| b > entry_size) {
        return Err(bad(format!(
            "storage `{entry_name}` holds {entry_size} bytes, fewer than its {elements} elements of {}",
            element.name()
        )));
    }
    let file = archive.into_inner();
    let file_len = file_len(path, &file)?;
    if start + entry_size > file_len {
        return Err(bad(format!(
            "storage `{entry_name}` runs past the end of the file"
        )));
    }
    Ok(MatrixFile {
        path: path.to_path_buf(),
        name: Some(name),
        layout,
        bytes: Bytes::File {
            file,
            offset: start + t.offset * size,
        },
    })
}

/// Bytes per element of a storage class (`FloatStorage`, `LongStorage`, …), or None for a
/// class this reader does not know.
pub fn element_size(class: &str) -> Option<u64> {
    Some(match class {
        "DoubleStorage" | "LongStorage" => 8,
        "FloatStorage" | "IntStorage" => 4,
        "HalfStorage" | "BFloat16Storage" | "ShortStorage" => 2,
        "CharStorage" | "ByteStorage" | "BoolStorage" => 1,
        _ => return None,
    })
}

/// The `numel` elements of the storage `key` of a `torch.save` archive whose entries lie
/// under `prefix` (as [`tensors`] returns it), `elem` bytes each, as raw bytes in the file's
/// byte order.
///
/// Bounded: the entry must be stored uncompressed, lie within the file and hold at least
/// `numel · elem` bytes; at most that many bytes are allocated, never more than the file's
/// size.
pub fn read_storage(
    path: &Path,
    prefix: &str,
    key: &str,
    numel: u64,
    elem: u64,
) -> Result<Vec<u8>> {
    let bad = |reason: String| Error::format(path, reason);
    let (file, file_len) = open_file(path)?;
    let mut archive =
        zip::ZipArchive::new(file).map_err(|e| bad(format!("not a zip archive: {e}")))?;
    let entry_name = format!("{prefix}data/{key}");
    let entry = archive.by_name(&entry_name).map_err(|_| {
        bad(format!(
            "the storage `{entry_name}` is missing from the archive"
        ))
    })?;
    if entry.compression() != zip::CompressionMethod::Stored {
        return Err(bad(format!(
            "storage `{entry_name}` is compressed; torch.save stores storages uncompressed"
        )));
    }
    let needed = numel
        .checked_mul(elem)
        .ok_or_else(|| bad(format!("storage `{entry_name}`: {numel} elements overflow")))?;
    if needed > entry.size() {
        return Err(bad(format!(
            "storage `{entry_name}` holds {} bytes, fewer than its {numel} elements of {elem} \
             bytes",
            entry.size()
        )));
    }
    if entry
        .data_start()
        .checked_add(entry.size())
        .is_none_or(|end| end > file_len)
    {
        return Err(bad(format!(
            "storage `{entry_name}` runs past the end of the file"
        )));
    }
    let mut bytes = Vec::with_capacity(needed as usize);
    entry
        .take(needed)
        .read_to_end(&mut bytes)
        .map_err(|e| bad(format!("storage `{entry_name}`: {e}")))?;
    if bytes.len() as u64 != needed {
        return Err(bad(format!("storage `{entry_name}` is truncated")));
    }
    Ok(bytes)
}
