//! CIFAR-10 and CIFAR-100 in their binary versions.
//!
//! CIFAR-10 (`cifar-10-batches-bin/`): `data_batch_1.bin` … `data_batch_5.bin`, `test_batch.bin`,
//! each record 1 label byte then 3,072 pixel bytes (`[3, 32, 32]`, channels first);
//! class names in `batches.meta.txt`.
//! CIFAR-100 (`cifar-100-binary/`): `train.bin`, `test.bin`, each record a coarse label byte, a
//! fine label byte, then 3,072 pixel bytes; class names in `fine_label_names.txt` and
//! `coarse_label_names.txt`.

use std::path::{Path, PathBuf};

use super::dataset::{read_class_names, read_file, ImageArray, Split};
use super::{DataError, Dataset};

const SIDE: usize = 32;
const PIXELS: usize = 3 * SIDE * SIDE;

/// Which labels of CIFAR-100 to use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Cifar100Labels {
    /// The 100 fine classes.
    Fine,
    /// The 20 superclasses.
    Coarse,
}

/// Reads records of `label_bytes` label bytes followed by a `[3, 32, 32]` image from `files`;
/// returns the pixels, and the labels at `label_at` within each record's label bytes.
fn read_records(
    files: &[PathBuf],
    label_bytes: usize,
    label_at: usize,
) -> Result<(Vec<u8>, Vec<i64>), DataError> {
    let record = label_bytes + PIXELS;
    let mut pixels = Vec::new();
    let mut labels = Vec::new();
    for path in files {
        let raw = read_file(path)?;
        if raw.is_empty() || raw.len() % record != 0 {
            return Err(DataError::malformed(
                path,
                format!(
                    "{} bytes is not a whole number of {record}-byte records",
                    raw.len()
                ),
            ));
        }
        pixels.reserve(raw.len() / record * PIXELS);
        for rec in raw.chunks_exact(record) {
            labels.push(i64::from(rec[label_at]));
            pixels.extend_from_slice(&rec[label_bytes..]);
        }
    }
    Ok((pixels, labels))
}

fn build(
    files: &[PathBuf],
    label_bytes: usize,
    label_at: usize,
    class_names: Vec<String>,
    origin: &Path,
) -> Result<Dataset, DataError> {
    let (pixels, labels) = read_records(files, label_bytes, label_at)?;
    // Name the file that holds a label outside the class list.
    let per_file: Vec<usize> = files
        .iter()
        .map(|f| {
            std::fs::metadata(f)
                .map(|m| m.len() as usize / (label_bytes + PIXELS))
                .unwrap_or(0)
        })
        .collect();
    if let Some(i) = labels.iter().position(|&l| l as usize >= class_names.len()) {
        let mut file = &files[0];
        let mut acc = 0;
        for (f, &n) in files.iter().zip(&per_file) {
            acc += n;
            if i < acc {
                file = f;
                break;
            }
        }
        return Err(DataError::malformed(
            file,
            format!(
                "label {} outside the {} classes",
                labels[i],
                class_names.len()
            ),
        ));
    }
    let n = labels.len();
    let images = ImageArray::new(pixels, n, 3, SIDE, SIDE, origin)?;
    Dataset::from_array(images, labels, class_names, origin)
}

/// Reads CIFAR-10 from `dir` (the `cifar-10-batches-bin` folder).
///
/// # Shapes
/// Images `[n, 3, 32, 32]` u8 (n = 50,000 train, 10,000 test), labels `[n]` in 0..10.
pub fn read_cifar10(dir: &Path, split: Split) -> Result<Dataset, DataError> {
    let files: Vec<PathBuf> = match split {
        Split::Train => (1..=5)
            .map(|i| dir.join(format!("data_batch_{i}.bin")))
            .collect(),
        Split::Test => vec![dir.join("test_batch.bin")],
    };
    let names = read_class_names(&dir.join("batches.meta.txt"))?;
    build(&files, 1, 0, names, dir)
}

/// Reads CIFAR-100 from `dir` (the `cifar-100-binary` folder) with fine or coarse labels.
///
/// # Shapes
/// Images `[n, 3, 32, 32]` u8 (n = 50,000 train, 10,000 test), labels `[n]` in 0..100 (fine) or
/// 0..20 (coarse).
pub fn read_cifar100(
    dir: &Path,
    split: Split,
    labels: Cifar100Labels,
) -> Result<Dataset, DataError> {
    let file = dir.join(match split {
        Split::Train => "train.bin",
        Split::Test => "test.bin",
    });
    let (names, at) = match labels {
        Cifar100Labels::Fine => (read_class_names(&dir.join("fine_label_names.txt"))?, 1),
        Cifar100Labels::Coarse => (read_class_names(&dir.join("coarse_label_names.txt"))?, 0),
    };
    build(&[file], 2, at, names, dir)
}
