//! Readers of files written by other tools: embedding matrices from numpy (`.npy`, `.npz`),
//! safetensors and PyTorch's `torch.save`. Each turns a file into a [`MatrixFile`] that hands out its rows as f64 in
//! bounded chunks; nothing here knows about spectra or models.
//!
//! Every reader treats its input as hostile: headers are read with a byte bound, shapes are
//! checked against the file's length before anything is allocated, element types come from an
//! allow-list (float16, bfloat16, float32, float64), and nothing is ever executed. The fuzz
//! harness (`tests/fuzz_parsers.rs`, target `embeddings`) checks these properties.
//! Crates: `npyz` parses .npy headers, `zip` reads .npz archives, `safetensors` parses its
//! header (`docs/formats.md` gives the reasons).

pub mod matrix;
pub mod npy;
pub use npy::write_npy;
pub mod pickle;
pub mod safetensors_file;
pub mod torch_zip;

use std::path::Path;

pub use matrix::{ByteOrder, ElementType, Layout, MatrixFile, MatrixOrder, MAX_DIM};

use crate::{Error, Result};

/// The formats of embedding files, by extension.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MatrixFormat {
    /// numpy `.npy`.
    Npy,
    /// numpy `.npz` (stored or deflated members).
    Npz,
    /// `.safetensors`.
    Safetensors,
    /// PyTorch's `torch.save` (zip format): `.pt`, `.pth`, `.pth.tar`, `.bin`.
    Torch,
}

impl MatrixFormat {
    /// The format of `path` by its extension, or an error listing the ones read.
    pub fn of(path: &Path) -> Result<Self> {
        match path.extension().and_then(|e| e.to_str()) {
            Some("npy") => Ok(Self::Npy),
            Some("npz") => Ok(Self::Npz),
            Some("safetensors") => Ok(Self::Safetensors),
            Some("pt" | "pth" | "bin" | "tar") => Ok(Self::Torch),
            _ => Err(Error::format(
                path,
                "unknown extension: embeddings are read from .npy, .npz, .safetensors and \
                 torch.save (.pt, .pth, .pth.tar, .bin) files",
            )),
        }
    }
}

/// Opens the matrix of an embeddings file; `key` names the array of a `.npz` or the tensor of
/// a `.safetensors` file (by default the only one; a `.npy` has no key).
pub fn open_matrix(path: &Path, key: Option<&str>) -> Result<MatrixFile> {
    match MatrixFormat::of(path)? {
        MatrixFormat::Npy => {
            if let Some(key) = key {
                return Err(Error::format(
                    path,
                    format!("a .npy file holds one array; `--key {key}` applies to .npz and .safetensors"),
                ));
            }
            npy::open_npy(path)
        }
        MatrixFormat::Npz => npy::open_npz(path, key),
        MatrixFormat::Safetensors => safetensors_file::open_safetensors(path, key),
        MatrixFormat::Torch => torch_zip::open_torch(path, key),
    }
}

/// [`open_matrix`] with a lower cap on the dimension d than [`MAX_DIM`]: the covariance of the
/// matrix takes 8·d² bytes, so `max_dim` bounds what reading it will allocate.
pub fn open_matrix_limited(path: &Path, key: Option<&str>, max_dim: u64) -> Result<MatrixFile> {
    let matrix = open_matrix(path, key)?;
    let d = matrix.layout().cols;
    if d > max_dim {
        return Err(Error::format(
            path,
            format!("dimension d = {d} is above the limit of {max_dim} set for this read"),
        ));
    }
    Ok(matrix)
}

/// Opens `path` for reading and returns it with its length in bytes.
pub(crate) fn open_file(path: &Path) -> Result<(std::fs::File, u64)> {
    let file = std::fs::File::open(path).map_err(|e| Error::io("cannot open", path, e))?;
    let len = file_len(path, &file)?;
    Ok((file, len))
}

/// The length in bytes of the open file `file` at `path`.
pub(crate) fn file_len(path: &Path, file: &std::fs::File) -> Result<u64> {
    Ok(file
        .metadata()
        .map_err(|e| Error::io("cannot read", path, e))?
        .len())
}

/// Chooses the member named `key`, or the only one; errors list the members.
pub(crate) fn pick_member(
    path: &Path,
    members: &[String],
    key: Option<&str>,
    what: &str,
) -> Result<String> {
    let list = || {
        if members.is_empty() {
            "none".to_string()
        } else {
            members
                .iter()
                .map(|m| format!("`{m}`"))
                .collect::<Vec<_>>()
                .join(", ")
        }
    };
    match key {
        Some(k) if members.iter().any(|m| m == k) => Ok(k.to_string()),
        Some(k) => Err(Error::format(
            path,
            format!("no {what} `{k}`; the file holds: {}", list()),
        )),
        None if members.len() == 1 => Ok(members[0].clone()),
        None => Err(Error::format(
            path,
            format!(
                "holds {} {what}s, choose one with --key: {}",
                members.len(),
                list()
            ),
        )),
    }
}
