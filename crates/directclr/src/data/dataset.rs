//! The dataset type shared by every reader: u8 images held in memory (`[n, c, h, w]`) or image
//! files decoded on demand, with labels and class names.

use std::path::{Path, PathBuf};

use super::DataError;

/// Label of a sample without one (STL-10's unlabeled split).
pub const UNLABELED: i64 = -1;

/// Memory layout of one u8 image.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layout {
    /// Channels first: `[c, h, w]` (CIFAR, STL-10, IDX).
    Planar,
    /// Channels last: `[h, w, c]` (decoded JPEG/PNG).
    Interleaved,
}

/// A borrowed u8 image of 1 or 3 channels.
///
/// # Shapes
/// `data` holds `channels * height * width` bytes in [`Layout`] order.
#[derive(Debug, Clone, Copy)]
pub struct ImageRef<'a> {
    /// The pixels.
    pub data: &'a [u8],
    /// 1 (grayscale) or 3 (RGB).
    pub channels: usize,
    /// Rows.
    pub height: usize,
    /// Columns.
    pub width: usize,
    /// Order of the bytes.
    pub layout: Layout,
}

impl ImageRef<'_> {
    /// Strides `(channel, row, column)` in bytes.
    pub fn strides(&self) -> (usize, usize, usize) {
        match self.layout {
            Layout::Planar => (self.height * self.width, self.width, 1),
            Layout::Interleaved => (1, self.width * self.channels, self.channels),
        }
    }

    /// The pixel value of channel `c` at row `y`, column `x` (no bounds check beyond the slice's).
    #[inline]
    pub fn at(&self, c: usize, y: usize, x: usize) -> u8 {
        let (sc, sy, sx) = self.strides();
        self.data[c * sc + y * sy + x * sx]
    }
}

/// An owned u8 image (a decoded file).
///
/// # Shapes
/// `data` holds `channels * height * width` bytes in [`Layout`] order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OwnedImage {
    /// The pixels.
    pub data: Vec<u8>,
    /// 1 (grayscale) or 3 (RGB).
    pub channels: usize,
    /// Rows.
    pub height: usize,
    /// Columns.
    pub width: usize,
    /// Order of the bytes.
    pub layout: Layout,
}

impl OwnedImage {
    /// A borrowed view.
    pub fn view(&self) -> ImageRef<'_> {
        ImageRef {
            data: &self.data,
            channels: self.channels,
            height: self.height,
            width: self.width,
            layout: self.layout,
        }
    }
}

/// Images of one size held in memory.
///
/// # Shapes
/// `data`: `[n, channels, height, width]` u8, channels first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageArray {
    data: Vec<u8>,
    n: usize,
    channels: usize,
    height: usize,
    width: usize,
}

impl ImageArray {
    /// Wraps `data` of shape `[n, channels, height, width]`; `origin` names the file in errors.
    pub fn new(
        data: Vec<u8>,
        n: usize,
        channels: usize,
        height: usize,
        width: usize,
        origin: &Path,
    ) -> Result<Self, DataError> {
        let expected = n
            .checked_mul(channels)
            .and_then(|v| v.checked_mul(height))
            .and_then(|v| v.checked_mul(width));
        if expected != Some(data.len()) {
            return Err(DataError::malformed(
                origin,
                format!(
                    "{} bytes of pixels for {n} images of {channels}×{height}×{width}",
                    data.len()
                ),
            ));
        }
        if channels != 1 && channels != 3 {
            return Err(DataError::malformed(
                origin,
                format!("{channels} channels (1 or 3 expected)"),
            ));
        }
        Ok(Self {
            data,
            n,
            channels,
            height,
            width,
        })
    }

    /// The pixels, `[n, c, h, w]`.
    pub fn data(&self) -> &[u8] {
        &self.data
    }

    /// The shape `[n, c, h, w]`.
    pub fn shape(&self) -> [usize; 4] {
        [self.n, self.channels, self.height, self.width]
    }

    /// Image `i` (planar `[c, h, w]`), or `None` beyond the end.
    pub fn get(&self, i: usize) -> Option<ImageRef<'_>> {
        if i >= self.n {
            return None;
        }
        let size = self.channels * self.height * self.width;
        Some(ImageRef {
            data: &self.data[i * size..(i + 1) * size],
            channels: self.channels,
            height: self.height,
            width: self.width,
            layout: Layout::Planar,
        })
    }
}

/// Where the pixels of a dataset are.
#[derive(Debug, Clone)]
pub enum Images {
    /// Decoded, in memory.
    Array(ImageArray),
    /// JPEG or PNG files decoded on demand.
    Files(Vec<PathBuf>),
}

/// A labelled image dataset.
///
/// # Shapes
/// Images `[n, c, h, w]` u8 (c = 1 or 3; grayscale is expanded to 3 channels by the
/// transforms), labels `[n]` (class index, or [`UNLABELED`]).
#[derive(Debug, Clone)]
pub struct Dataset {
    images: Images,
    labels: Vec<i64>,
    class_names: Vec<String>,
    origin: PathBuf,
}

/// One sample's pixels: borrowed from memory or decoded from a file.
#[derive(Debug)]
pub enum SampleImage<'a> {
    /// An image of an in-memory dataset.
    Borrowed(ImageRef<'a>),
    /// A decoded file.
    Owned(OwnedImage),
}

impl SampleImage<'_> {
    /// A borrowed view of the pixels.
    pub fn view(&self) -> ImageRef<'_> {
        match self {
            SampleImage::Borrowed(r) => *r,
            SampleImage::Owned(o) => o.view(),
        }
    }
}

impl Dataset {
    /// A dataset of in-memory images. `origin` (the file or folder read) names it in errors.
    pub fn from_array(
        images: ImageArray,
        labels: Vec<i64>,
        class_names: Vec<String>,
        origin: impl Into<PathBuf>,
    ) -> Result<Self, DataError> {
        let origin = origin.into();
        Self::check(images.n, &labels, &class_names, &origin)?;
        Ok(Self {
            images: Images::Array(images),
            labels,
            class_names,
            origin,
        })
    }

    /// A dataset of image files, decoded on demand.
    pub fn from_files(
        files: Vec<PathBuf>,
        labels: Vec<i64>,
        class_names: Vec<String>,
        origin: impl Into<PathBuf>,
    ) -> Result<Self, DataError> {
        let origin = origin.into();
        Self::check(files.len(), &labels, &class_names, &origin)?;
        Ok(Self {
            images: Images::Files(files),
            labels,
            class_names,
            origin,
        })
    }

    fn check(
        n: usize,
        labels: &[i64],
        class_names: &[String],
        origin: &Path,
    ) -> Result<(), DataError> {
        if n == 0 {
            return Err(DataError::Empty {
                path: origin.into(),
                reason: "no image".into(),
            });
        }
        if labels.len() != n {
            return Err(DataError::LabelCountMismatch {
                images_path: origin.into(),
                labels_path: origin.into(),
                images: n,
                labels: labels.len(),
            });
        }
        if let Some(&bad) = labels
            .iter()
            .find(|&&l| l != UNLABELED && (l < 0 || l as usize >= class_names.len()))
        {
            return Err(DataError::malformed(
                origin,
                format!("label {bad} outside the {} classes", class_names.len()),
            ));
        }
        Ok(())
    }

    /// Number of samples.
    pub fn len(&self) -> usize {
        self.labels.len()
    }

    /// Whether the dataset is empty (never true for a dataset built by a reader).
    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }

    /// The labels, `[n]`.
    pub fn labels(&self) -> &[i64] {
        &self.labels
    }

    /// Class names, indexed by label.
    pub fn class_names(&self) -> &[String] {
        &self.class_names
    }

    /// The pixels.
    pub fn images(&self) -> &Images {
        &self.images
    }

    /// The file or folder the dataset was read from.
    pub fn origin(&self) -> &Path {
        &self.origin
    }

    /// The first `n` samples (all of them when `n` ≥ the length), e.g. for quick runs.
    pub fn first(&self, n: usize) -> Result<Dataset, DataError> {
        let n = n.min(self.len());
        let labels = self.labels[..n].to_vec();
        let names = self.class_names.clone();
        match &self.images {
            Images::Array(a) => {
                let [_, c, h, w] = a.shape();
                let data = a.data()[..n * c * h * w].to_vec();
                let array = ImageArray::new(data, n, c, h, w, &self.origin)?;
                Dataset::from_array(array, labels, names, &self.origin)
            }
            Images::Files(files) => {
                Dataset::from_files(files[..n].to_vec(), labels, names, &self.origin)
            }
        }
    }

    /// The samples at `indices` (each below the length), in that order.
    ///
    /// # Errors
    /// An index out of range, or no index at all.
    pub fn subset(&self, indices: &[usize]) -> Result<Dataset, DataError> {
        let len = self.len();
        if let Some(&index) = indices.iter().find(|&&i| i >= len) {
            return Err(DataError::IndexOutOfRange { index, len });
        }
        let labels = indices.iter().map(|&i| self.labels[i]).collect();
        let names = self.class_names.clone();
        match &self.images {
            Images::Array(a) => {
                let [_, c, h, w] = a.shape();
                let size = c * h * w;
                let mut data = Vec::with_capacity(indices.len() * size);
                for &i in indices {
                    data.extend_from_slice(&a.data()[i * size..(i + 1) * size]);
                }
                let array = ImageArray::new(data, indices.len(), c, h, w, &self.origin)?;
                Dataset::from_array(array, labels, names, &self.origin)
            }
            Images::Files(files) => {
                let files = indices.iter().map(|&i| files[i].clone()).collect();
                Dataset::from_files(files, labels, names, &self.origin)
            }
        }
    }

    /// A seeded random subset of `n` samples (all of them when `n` ≥ the length), kept in
    /// dataset order: the same `(n, seed)` always picks the same samples.
    pub fn sample(&self, n: usize, seed: u64) -> Result<Dataset, DataError> {
        use rand::SeedableRng;
        let len = self.len();
        if n >= len {
            return Ok(self.clone());
        }
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
        let mut picked = rand::seq::index::sample(&mut rng, len, n).into_vec();
        picked.sort_unstable();
        self.subset(&picked)
    }

    /// The file of sample `i` (`None` for an in-memory dataset or an index out of range).
    pub fn file(&self, i: usize) -> Option<&Path> {
        match &self.images {
            Images::Files(files) => files.get(i).map(PathBuf::as_path),
            Images::Array(_) => None,
        }
    }

    /// The pixels of sample `i`, decoding its file if need be.
    pub fn image(&self, i: usize) -> Result<SampleImage<'_>, DataError> {
        let len = self.len();
        match &self.images {
            Images::Array(a) => a
                .get(i)
                .map(SampleImage::Borrowed)
                .ok_or(DataError::IndexOutOfRange { index: i, len }),
            Images::Files(files) => {
                let path = files
                    .get(i)
                    .ok_or(DataError::IndexOutOfRange { index: i, len })?;
                decode_file(path).map(SampleImage::Owned)
            }
        }
    }

    /// The whole in-memory dataset as tensors (`None` for a dataset of files).
    ///
    /// # Shapes
    /// Images `[n, c, h, w]` u8, labels `[n]` i64.
    pub fn to_tensors(&self) -> Option<(tch::Tensor, tch::Tensor)> {
        match &self.images {
            Images::Array(a) => {
                let shape: Vec<i64> = a.shape().iter().map(|&s| s as i64).collect();
                let x = tch::Tensor::from_slice(a.data()).view(shape.as_slice());
                Some((x, tch::Tensor::from_slice(&self.labels)))
            }
            Images::Files(_) => None,
        }
    }
}

/// Decodes a JPEG or PNG file: grayscale stays 1 channel, everything else becomes RGB.
pub fn decode_file(path: &Path) -> Result<OwnedImage, DataError> {
    let bytes = std::fs::read(path).map_err(|e| DataError::io(path, e))?;
    decode_bytes(&bytes, path)
}

/// Decodes JPEG or PNG bytes (format guessed from the content); `path` names them in errors.
///
/// # Shapes
/// Returns an interleaved `[h, w, c]` image, c = 1 (grayscale) or 3.
pub fn decode_bytes(bytes: &[u8], path: &Path) -> Result<OwnedImage, DataError> {
    if bytes.starts_with(&[0xff, 0xd8, 0xff]) {
        return decode_jpeg(bytes, path);
    }
    let err = |e: image::ImageError| DataError::Decode {
        path: path.into(),
        reason: e.to_string(),
    };
    let reader = || {
        image::ImageReader::new(std::io::Cursor::new(bytes))
            .with_guessed_format()
            .map_err(|e| DataError::Decode {
                path: path.into(),
                reason: e.to_string(),
            })
    };
    let (w, h) = reader()?.into_dimensions().map_err(err)?;
    check_decoded_size(w as usize, h as usize, bytes.len(), path)?;
    let img = reader()?.decode().map_err(err)?;
    let (width, height) = (img.width() as usize, img.height() as usize);
    if width == 0 || height == 0 {
        return Err(DataError::Decode {
            path: path.into(),
            reason: "image of zero size".into(),
        });
    }
    let (data, channels) = match img {
        image::DynamicImage::ImageLuma8(g) => (g.into_raw(), 1),
        image::DynamicImage::ImageRgb8(c) => (c.into_raw(), 3),
        other if !other.color().has_color() => (other.to_luma8().into_raw(), 1),
        other => (other.to_rgb8().into_raw(), 3),
    };
    Ok(OwnedImage {
        data,
        channels,
        height,
        width,
        layout: Layout::Interleaved,
    })
}

/// The standard train/test split of a dataset.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Split {
    /// The training set.
    Train,
    /// The test set.
    Test,
}

/// Reads a whole file, naming it in the error.
pub(crate) fn read_file(path: &Path) -> Result<Vec<u8>, DataError> {
    std::fs::read(path).map_err(|e| DataError::io(path, e))
}

/// Reads a text file of one class name a line (trailing empty lines dropped).
pub(crate) fn read_class_names(path: &Path) -> Result<Vec<String>, DataError> {
    let text = std::fs::read_to_string(path).map_err(|e| DataError::io(path, e))?;
    let mut names: Vec<String> = text.lines().map(|l| l.trim().to_string()).collect();
    while names.last().is_some_and(|l| l.is_empty()) {
        names.pop();
    }
    if names.is_empty() || names.iter().any(|n| n.is_empty()) {
        return Err(DataError::malformed(
            path,
            "empty class name list or an empty line inside it",
        ));
    }
    // Two labels with one name would make every per-class report ambiguous.
    let mut seen = std::collections::HashMap::new();
    for (i, n) in names.iter().enumerate() {
        if let Some(first) = seen.insert(n.as_str(), i) {
            return Err(DataError::malformed(
                path,
                format!(
                    "class name `{n}` appears twice (lines {} and {})",
                    first + 1,
                    i + 1
                ),
            ));
        }
    }
    Ok(names)
}

/// Decodes a JPEG with zune-jpeg directly (the decoder the `image` crate uses, without its
/// extra copies and header passes), tolerant of minor stream errors as `image` is.
fn decode_jpeg(bytes: &[u8], path: &Path) -> Result<OwnedImage, DataError> {
    use zune_core::colorspace::ColorSpace;
    let err = |reason: String| DataError::Decode {
        path: path.into(),
        reason,
    };
    let options = zune_core::options::DecoderOptions::default().set_strict_mode(false);
    let mut dec = zune_jpeg::JpegDecoder::new_with_options(
        zune_core::bytestream::ZCursor::new(bytes),
        options,
    );
    dec.decode_headers().map_err(|e| err(e.to_string()))?;
    let gray = matches!(
        dec.input_colorspace(),
        Some(ColorSpace::Luma | ColorSpace::LumaA)
    );
    let (out, channels) = if gray {
        (ColorSpace::Luma, 1)
    } else {
        (ColorSpace::RGB, 3)
    };
    dec.set_options(dec.options().jpeg_set_out_colorspace(out));
    let (width, height) = dec
        .dimensions()
        .ok_or_else(|| err("no image size in the headers".into()))?;
    if width == 0 || height == 0 {
        return Err(err("image of zero size".into()));
    }
    check_decoded_size(width, height, bytes.len(), path)?;
    let data = dec.decode().map_err(|e| err(e.to_string()))?;
    if data.len() != width * height * channels {
        return Err(err(format!(
            "decoded {} bytes for {width}×{height}×{channels}",
            data.len()
        )));
    }
    Ok(OwnedImage {
        data,
        channels,
        height,
        width,
        layout: Layout::Interleaved,
    })
}

/// Largest ratio of decoded RGB bytes to file bytes believed: real JPEG and PNG files stay far
/// below it (a flat 1000×1000 JPEG is about 200:1), while it stops a small file whose header
/// claims a huge image from making the decoder allocate gigabytes.
pub const MAX_DECODE_RATIO: usize = 1024;

fn check_decoded_size(
    width: usize,
    height: usize,
    file_len: usize,
    path: &Path,
) -> Result<(), DataError> {
    let decoded = width.saturating_mul(height).saturating_mul(3);
    if decoded > file_len.saturating_mul(MAX_DECODE_RATIO).max(1 << 20) {
        return Err(DataError::Decode {
            path: path.into(),
            reason: format!(
                "header claims {width}×{height} pixels, more than a {file_len}-byte file can hold"
            ),
        });
    }
    Ok(())
}
