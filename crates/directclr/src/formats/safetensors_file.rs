//! A matrix in a `.safetensors` file: the header is parsed by the `safetensors` crate's own
//! `Metadata` type (serde), read with a byte bound, and the chosen tensor's offsets are checked
//! against the file's length here, so the data can be streamed in chunks instead of the crate's
//! whole-buffer API.

use std::os::unix::fs::FileExt;
use std::path::Path;

use safetensors::tensor::Metadata;
use safetensors::Dtype;

use super::matrix::{ByteOrder, Bytes, ElementType, Layout, MatrixFile, MatrixOrder};
use super::{open_file, pick_member};
use crate::{Error, Result};

/// The largest header read: the safetensors format's own limit (100 MB), and never more than
/// the file holds.
pub const MAX_HEADER: u64 = 100_000_000;

/// Opens the tensor `key` of a `.safetensors` file (by default its only tensor).
pub fn open_safetensors(path: &Path, key: Option<&str>) -> Result<MatrixFile> {
    let bad = |reason: String| Error::format(path, reason);
    let (file, file_len) = open_file(path)?;
    let mut len = [0u8; 8];
    file.read_exact_at(&mut len, 0)
        .map_err(|_| bad("too short for a safetensors header".into()))?;
    let n = u64::from_le_bytes(len);
    if n > MAX_HEADER || n > file_len.saturating_sub(8) {
        return Err(bad(format!(
            "the safetensors header claims {n} bytes; the file holds {file_len} (and at most \
             {MAX_HEADER} are read)"
        )));
    }
    let mut text = vec![0u8; n as usize];
    file.read_exact_at(&mut text, 8)
        .map_err(|e| Error::io("cannot read", path, e))?;
    let metadata: Metadata = serde_json::from_slice(&text)
        .map_err(|e| bad(format!("malformed safetensors header: {e}")))?;
    let tensors = metadata.tensors();
    let mut names: Vec<String> = tensors.keys().cloned().collect();
    names.sort();
    let name = pick_member(path, &names, key, "tensor")?;
    let info = tensors[&name];
    let element = match info.dtype {
        Dtype::F16 => ElementType::F16,
        Dtype::BF16 => ElementType::BF16,
        Dtype::F32 => ElementType::F32,
        Dtype::F64 => ElementType::F64,
        other => {
            return Err(bad(format!(
                "tensor `{name}` has dtype {other:?}; embeddings must be F16, BF16, F32 or F64"
            )))
        }
    };
    let shape: Vec<u64> = info.shape.iter().map(|&s| s as u64).collect();
    let layout = Layout::new(
        path,
        &shape,
        element,
        ByteOrder::Little,
        MatrixOrder::RowMajor,
    )?;
    let (start, end) = (info.data_offsets.0 as u64, info.data_offsets.1 as u64);
    let data_len = file_len - 8 - n;
    if start > end || end > data_len || Some(end - start) != layout.byte_len() {
        return Err(bad(format!(
            "tensor `{name}` of shape {shape:?} ({}) has data offsets [{start}, {end}), which do \
             not hold its {} bytes within the file's {data_len} bytes of data",
            element.name(),
            layout.byte_len().unwrap_or(u64::MAX)
        )));
    }
    Ok(MatrixFile {
        path: path.to_path_buf(),
        name: Some(name),
        layout,
        bytes: Bytes::File {
            file,
            offset: 8 + n + start,
        },
    })
}
