//! STL-10 in its binary version (`stl10_binary/`).
//!
//! `train_X.bin`, `test_X.bin`, `unlabeled_X.bin`: images of `[3, 96, 96]` bytes, each channel
//! stored column by column (as torchvision reads it: reshape to `[-1, 3, 96, 96]` then swap the
//! last two axes); `train_y.bin`, `test_y.bin`: one byte per image, labels 1..=10;
//! `class_names.txt`: one name a line.

use std::io::Read;
use std::path::Path;

use super::dataset::{read_class_names, read_file, ImageArray, UNLABELED};
use super::{DataError, Dataset};

const SIDE: usize = 96;
const IMAGE: usize = 3 * SIDE * SIDE;

/// A split of STL-10.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Stl10Split {
    /// 5,000 labelled training images.
    Train,
    /// 8,000 labelled test images.
    Test,
    /// 100,000 unlabeled images (labels [`UNLABELED`]).
    Unlabeled,
    /// Train then unlabeled (torchvision's `train+unlabeled`).
    TrainUnlabeled,
}

/// Reads the images of an `_X.bin` file into planar `[n, 3, 96, 96]`, streaming record by
/// record (the unlabeled split is 2.7 GB; it is never held twice).
fn read_images(path: &Path, out: &mut Vec<u8>) -> Result<usize, DataError> {
    let file = std::fs::File::open(path).map_err(|e| DataError::io(path, e))?;
    let len = file.metadata().map_err(|e| DataError::io(path, e))?.len() as usize;
    let n = len / IMAGE;
    if n == 0 || n * IMAGE != len {
        return Err(DataError::malformed(
            path,
            format!("{len} bytes is not a whole number of {IMAGE}-byte images"),
        ));
    }
    out.reserve(len);
    let mut reader = std::io::BufReader::with_capacity(1 << 20, file);
    let mut rec = vec![0u8; IMAGE];
    for _ in 0..n {
        reader
            .read_exact(&mut rec)
            .map_err(|e| DataError::malformed(path, format!("truncated while reading: {e}")))?;
        for c in 0..3 {
            let plane = &rec[c * SIDE * SIDE..(c + 1) * SIDE * SIDE];
            for y in 0..SIDE {
                out.extend((0..SIDE).map(|x| plane[x * SIDE + y]));
            }
        }
    }
    Ok(n)
}

fn read_labels(path: &Path) -> Result<Vec<i64>, DataError> {
    let raw = read_file(path)?;
    if let Some(bad) = raw.iter().find(|&&b| !(1..=10).contains(&b)) {
        return Err(DataError::malformed(
            path,
            format!("label byte {bad} outside 1..=10"),
        ));
    }
    Ok(raw.into_iter().map(|b| i64::from(b) - 1).collect())
}

/// Reads a split of STL-10 from `dir` (the `stl10_binary` folder).
///
/// # Shapes
/// Images `[n, 3, 96, 96]` u8, labels `[n]` in 0..10 or [`UNLABELED`].
pub fn read_stl10(dir: &Path, split: Stl10Split) -> Result<Dataset, DataError> {
    let names = read_class_names(&dir.join("class_names.txt"))?;
    let mut pixels = Vec::new();
    let mut labels = Vec::new();
    let labelled = |stem: &str, pixels: &mut Vec<u8>, labels: &mut Vec<i64>| {
        let xp = dir.join(format!("{stem}_X.bin"));
        let yp = dir.join(format!("{stem}_y.bin"));
        let n = read_images(&xp, pixels)?;
        let y = read_labels(&yp)?;
        if y.len() != n {
            return Err(DataError::LabelCountMismatch {
                images_path: xp,
                labels_path: yp,
                images: n,
                labels: y.len(),
            });
        }
        labels.extend(y);
        Ok::<(), DataError>(())
    };
    match split {
        Stl10Split::Train => labelled("train", &mut pixels, &mut labels)?,
        Stl10Split::Test => labelled("test", &mut pixels, &mut labels)?,
        Stl10Split::Unlabeled | Stl10Split::TrainUnlabeled => {
            if split == Stl10Split::TrainUnlabeled {
                labelled("train", &mut pixels, &mut labels)?;
            }
            let n = read_images(&dir.join("unlabeled_X.bin"), &mut pixels)?;
            labels.extend(std::iter::repeat_n(UNLABELED, n));
        }
    }
    let n = labels.len();
    let images = ImageArray::new(pixels, n, 3, SIDE, SIDE, dir)?;
    Dataset::from_array(images, labels, names, dir)
}
