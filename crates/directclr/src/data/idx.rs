//! IDX files (MNIST, Fashion-MNIST), gzip-compressed or not.
//!
//! Format: a 4-byte magic `0 0 dtype ndims` (dtype `0x08` = unsigned byte), `ndims` big-endian
//! u32 sizes, then the values in row-major order. Images are `idx3` `[n, rows, cols]`, labels
//! `idx1` `[n]`.

use std::io::Read;
use std::path::{Path, PathBuf};

use super::dataset::{ImageArray, Split};
use super::{DataError, Dataset};

/// Largest expansion ratio of DEFLATE: a gzip file cannot hold more than this many bytes per
/// compressed byte, which bounds what a header may ask for.
const MAX_DEFLATE_RATIO: u64 = 1032;

/// An IDX array of unsigned bytes.
///
/// # Shapes
/// `data` holds the product of `dims` bytes, row-major.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdxArray {
    /// The sizes of each dimension.
    pub dims: Vec<usize>,
    /// The values.
    pub data: Vec<u8>,
}

/// Reads an unsigned-byte IDX file, gzip-compressed (detected by its magic bytes) or not.
///
/// No header value can make it allocate more than the file can hold: the declared size is
/// checked against the file's length (or its largest possible gzip expansion) first, and
/// compressed data is read incrementally.
pub fn read_idx(path: &Path) -> Result<IdxArray, DataError> {
    let raw = super::dataset::read_file(path)?;
    let gz = raw.starts_with(&[0x1f, 0x8b]);
    let limit = if gz {
        (raw.len() as u64).saturating_mul(MAX_DEFLATE_RATIO)
    } else {
        raw.len() as u64
    };
    let mut reader: Box<dyn Read> = if gz {
        Box::new(flate2::read::GzDecoder::new(raw.as_slice()))
    } else {
        Box::new(raw.as_slice())
    };
    let mut magic = [0u8; 4];
    read_exact(&mut reader, &mut magic, path, "magic number")?;
    if magic[0] != 0 || magic[1] != 0 {
        return Err(DataError::malformed(
            path,
            format!("bad magic number {magic:02x?} (an IDX file starts with two zero bytes)"),
        ));
    }
    if magic[2] != 0x08 {
        return Err(DataError::malformed(
            path,
            format!(
                "value type 0x{:02x} is not supported (only 0x08, unsigned byte)",
                magic[2]
            ),
        ));
    }
    let ndims = magic[3] as usize;
    if ndims == 0 {
        return Err(DataError::malformed(path, "zero dimensions"));
    }
    let mut dims = Vec::with_capacity(ndims);
    for d in 0..ndims {
        let mut b = [0u8; 4];
        read_exact(&mut reader, &mut b, path, "dimension sizes")?;
        let size = u32::from_be_bytes(b) as usize;
        if size == 0 && d > 0 {
            return Err(DataError::malformed(
                path,
                format!("dimension {d} has size 0"),
            ));
        }
        dims.push(size);
    }
    let header = 4 + 4 * ndims as u64;
    let count = dims
        .iter()
        .try_fold(1u64, |acc, &d| acc.checked_mul(d as u64));
    let count = match count {
        Some(c) if c <= limit.saturating_sub(if gz { 0 } else { header }) => c,
        _ => {
            return Err(DataError::malformed(
                path,
                format!(
                    "header declares {dims:?} values, more than the file's {} bytes can hold",
                    raw.len()
                ),
            ))
        }
    };
    // Grows with the data actually present, never with the header's claim alone.
    let mut data = Vec::new();
    reader
        .by_ref()
        .take(count + 1)
        .read_to_end(&mut data)
        .map_err(|e| DataError::malformed(path, format!("cannot decompress: {e}")))?;
    if (data.len() as u64) < count {
        return Err(DataError::malformed(
            path,
            format!(
                "truncated: header declares {dims:?} = {count} values but only {} follow",
                data.len()
            ),
        ));
    }
    if data.len() as u64 > count {
        return Err(DataError::malformed(
            path,
            format!("trailing bytes after the {count} declared values"),
        ));
    }
    Ok(IdxArray { dims, data })
}

fn read_exact(r: &mut dyn Read, buf: &mut [u8], path: &Path, what: &str) -> Result<(), DataError> {
    r.read_exact(buf)
        .map_err(|e| DataError::malformed(path, format!("cannot read the {what}: {e}")))
}

/// Reads an `idx3` image file as 1-channel images.
///
/// # Shapes
/// Returns `[n, 1, rows, cols]`.
pub fn read_images(path: &Path) -> Result<ImageArray, DataError> {
    let a = read_idx(path)?;
    if a.dims.len() != 3 {
        return Err(DataError::malformed(
            path,
            format!(
                "{} dimensions, an image file has 3 (n, rows, cols)",
                a.dims.len()
            ),
        ));
    }
    ImageArray::new(a.data, a.dims[0], 1, a.dims[1], a.dims[2], path)
}

/// Reads an `idx1` label file.
///
/// # Shapes
/// Returns `[n]`.
pub fn read_labels(path: &Path) -> Result<Vec<i64>, DataError> {
    let a = read_idx(path)?;
    if a.dims.len() != 1 {
        return Err(DataError::malformed(
            path,
            format!("{} dimensions, a label file has 1", a.dims.len()),
        ));
    }
    Ok(a.data.into_iter().map(i64::from).collect())
}

/// Reads an image file and its label file into a dataset, checking counts and label range.
pub fn read_pair(
    images: &Path,
    labels: &Path,
    class_names: Vec<String>,
) -> Result<Dataset, DataError> {
    let x = read_images(images)?;
    let y = read_labels(labels)?;
    if x.shape()[0] != y.len() {
        return Err(DataError::LabelCountMismatch {
            images_path: images.into(),
            labels_path: labels.into(),
            images: x.shape()[0],
            labels: y.len(),
        });
    }
    if let Some(&bad) = y.iter().find(|&&l| l as usize >= class_names.len()) {
        return Err(DataError::malformed(
            labels,
            format!("label {bad} outside the {} classes", class_names.len()),
        ));
    }
    Dataset::from_array(x, y, class_names, images)
}

/// Which IDX dataset a folder holds (they differ only in class names).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum IdxDataset {
    /// MNIST digits, classes "0" … "9".
    Mnist,
    /// Fashion-MNIST, classes "T-shirt/top" … "Ankle boot".
    FashionMnist,
}

impl IdxDataset {
    /// The class names, indexed by label.
    pub fn class_names(self) -> Vec<String> {
        match self {
            IdxDataset::Mnist => (0..10).map(|d| d.to_string()).collect(),
            IdxDataset::FashionMnist => [
                "T-shirt/top",
                "Trouser",
                "Pullover",
                "Dress",
                "Coat",
                "Sandal",
                "Shirt",
                "Sneaker",
                "Bag",
                "Ankle boot",
            ]
            .iter()
            .map(|s| s.to_string())
            .collect(),
        }
    }
}

/// Reads a split of MNIST or Fashion-MNIST from `dir`, which holds the usual files
/// (`train-images-idx3-ubyte`, `t10k-labels-idx1-ubyte`, …, each optionally `.gz`).
///
/// # Shapes
/// Images `[n, 1, 28, 28]` u8 (n = 60,000 train, 10,000 test), labels `[n]`.
pub fn read_split(dir: &Path, which: IdxDataset, split: Split) -> Result<Dataset, DataError> {
    let prefix = match split {
        Split::Train => "train",
        Split::Test => "t10k",
    };
    let images = find(dir, &format!("{prefix}-images-idx3-ubyte"))?;
    let labels = find(dir, &format!("{prefix}-labels-idx1-ubyte"))?;
    read_pair(&images, &labels, which.class_names())
}

fn find(dir: &Path, name: &str) -> Result<PathBuf, DataError> {
    let plain = dir.join(name);
    let gz = dir.join(format!("{name}.gz"));
    if plain.is_file() {
        Ok(plain)
    } else if gz.is_file() {
        Ok(gz)
    } else {
        Err(DataError::io(
            plain,
            std::io::Error::new(
                std::io::ErrorKind::NotFound,
                "neither this file nor its .gz exists",
            ),
        ))
    }
}
