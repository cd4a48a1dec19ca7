//! A two-dimensional float matrix stored in a file written by another tool: where its bytes
//! are, how its elements are encoded, and a reader that hands out consecutive rows as f64,
//! one bounded chunk at a time, so a matrix larger than memory is one pass over the file.

use std::fs::File;
use std::io::Read;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use crate::{Error, Result};

/// The element types accepted from outside files: the float formats of embeddings. Anything
/// else (integers, complex, strings, objects, records) is refused by the readers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ElementType {
    /// IEEE half precision (numpy `f2`, safetensors `F16`).
    F16,
    /// bfloat16 (safetensors `BF16`).
    BF16,
    /// IEEE single precision (`f4`, `F32`).
    F32,
    /// IEEE double precision (`f8`, `F64`).
    F64,
}

impl ElementType {
    /// Bytes per element.
    pub fn size(self) -> usize {
        match self {
            Self::F16 | Self::BF16 => 2,
            Self::F32 => 4,
            Self::F64 => 8,
        }
    }

    /// The name used in messages.
    pub fn name(self) -> &'static str {
        match self {
            Self::F16 => "f16",
            Self::BF16 => "bf16",
            Self::F32 => "f32",
            Self::F64 => "f64",
        }
    }
}

/// Byte order of the stored elements.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ByteOrder {
    /// Least significant byte first (numpy `<`, safetensors).
    Little,
    /// Most significant byte first (numpy `>`).
    Big,
}

/// Memory order of the stored matrix.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MatrixOrder {
    /// Rows contiguous (C order).
    RowMajor,
    /// Columns contiguous (Fortran order).
    ColumnMajor,
}

/// The shape and encoding of a stored matrix.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Layout {
    /// N, the number of rows (embeddings).
    pub rows: u64,
    /// d, the number of columns (the embedding dimension).
    pub cols: u64,
    /// Element encoding.
    pub element: ElementType,
    /// Byte order of each element.
    pub byte_order: ByteOrder,
    /// Memory order.
    pub order: MatrixOrder,
}

/// The largest embedding dimension read: the f64 covariance of d = 16,384 takes 2 GiB, and
/// its eigen-decomposition minutes. Larger d is refused before anything is allocated.
pub const MAX_DIM: u64 = 16_384;

/// f64 values per chunk handed out (32 MiB), whatever the dimension.
const CHUNK_ELEMENTS: u64 = 1 << 22;

impl Layout {
    /// Checks a shape read from a file and builds the layout: exactly two dimensions, at least
    /// one row, 1 ≤ d ≤ [`MAX_DIM`], and a byte size that fits in u64.
    pub fn new(
        file: &Path,
        shape: &[u64],
        element: ElementType,
        byte_order: ByteOrder,
        order: MatrixOrder,
    ) -> Result<Self> {
        let [rows, cols] = shape else {
            return Err(Error::format(
                file,
                format!("embeddings must be a 2-D array [N, d]; this one has shape {shape:?}"),
            ));
        };
        let (rows, cols) = (*rows, *cols);
        if rows == 0 || cols == 0 {
            return Err(Error::format(
                file,
                format!("the array of shape [{rows}, {cols}] is empty"),
            ));
        }
        if cols > MAX_DIM {
            return Err(Error::format(
                file,
                format!(
                    "dimension d = {cols} is above the {MAX_DIM} this tool reads (its f64 \
                     covariance alone would take {:.1} GiB)",
                    (cols as f64).powi(2) * 8.0 / (1u64 << 30) as f64
                ),
            ));
        }
        let layout = Self {
            rows,
            cols,
            element,
            byte_order,
            order,
        };
        layout.byte_len().ok_or_else(|| {
            Error::format(
                file,
                format!("shape [{rows}, {cols}] overflows a byte count"),
            )
        })?;
        Ok(layout)
    }

    /// The bytes of the whole matrix, or None on overflow.
    pub fn byte_len(&self) -> Option<u64> {
        self.rows
            .checked_mul(self.cols)?
            .checked_mul(self.element.size() as u64)
    }

    fn chunk_rows(&self) -> u64 {
        (CHUNK_ELEMENTS / self.cols).clamp(1, self.rows)
    }
}

/// Where the matrix's bytes are.
#[derive(Debug)]
pub(crate) enum Bytes {
    /// Uncompressed, at `offset` in an open file (a .npy, a stored .npz entry, a safetensors
    /// file, or a spill file).
    File { file: File, offset: u64 },
    /// A deflate-compressed .npz entry: `index` in the archive at the matrix's path, its data
    /// after `header` bytes of .npy header.
    Deflated { index: usize, header: u64 },
}

/// A matrix in a file, ready to be read in chunks of rows. Built by the format readers
/// ([`super::open_matrix`]).
#[derive(Debug)]
pub struct MatrixFile {
    pub(crate) path: PathBuf,
    pub(crate) name: Option<String>,
    pub(crate) layout: Layout,
    pub(crate) bytes: Bytes,
}

impl MatrixFile {
    /// The file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The array's name inside the file (the .npz member or safetensors key), if it has one.
    pub fn name(&self) -> Option<&str> {
        self.name.as_deref()
    }

    /// Shape and encoding.
    pub fn layout(&self) -> Layout {
        self.layout
    }

    /// Calls `visit` with consecutive chunks of rows converted to f64, row-major, together
    /// with the number of rows in the chunk, until all N rows have been seen. A chunk holds at
    /// most 2²² values (one row if a row is longer): memory stays O(chunk) whatever N.
    /// # Shapes
    /// each chunk: [n, d] row-major, n ≥ 1, Σ n = N
    pub fn for_each_chunk(
        &mut self,
        mut visit: impl FnMut(&[f64], usize) -> Result<()>,
    ) -> Result<()> {
        let layout = self.layout;
        match &self.bytes {
            Bytes::File { file, offset } => {
                read_positioned(&self.path, file, *offset, layout, &mut visit)
            }
            Bytes::Deflated { index, header } => {
                let (index, header) = (*index, *header);
                match layout.order {
                    MatrixOrder::RowMajor => {
                        read_deflated_rows(&self.path, index, header, layout, &mut visit)
                    }
                    MatrixOrder::ColumnMajor => {
                        // Columns are contiguous in a stream that cannot be sought: inflate it
                        // once into an anonymous temporary file (deleted when closed), then
                        // read it as an uncompressed matrix.
                        let spill = spill_deflated(&self.path, index, header, layout)?;
                        self.bytes = Bytes::File {
                            file: spill,
                            offset: 0,
                        };
                        self.for_each_chunk(visit)
                    }
                }
            }
        }
    }
}

/// Reads chunks of rows from an uncompressed matrix at `offset` in `file` by positional reads.
fn read_positioned(
    path: &Path,
    file: &File,
    offset: u64,
    layout: Layout,
    visit: &mut dyn FnMut(&[f64], usize) -> Result<()>,
) -> Result<()> {
    let size = layout.element.size() as u64;
    let (n, d) = (layout.rows, layout.cols);
    let chunk = layout.chunk_rows();
    let mut raw = vec![0u8; (chunk * d * size) as usize];
    let mut values = vec![0f64; (chunk * d) as usize];
    let mut column = Vec::new();
    let mut start = 0;
    while start < n {
        let rows = chunk.min(n - start);
        let count = (rows * d) as usize;
        match layout.order {
            MatrixOrder::RowMajor => {
                let bytes = &mut raw[..count * size as usize];
                read_at(path, file, offset + start * d * size, bytes)?;
                decode(layout, bytes, &mut values[..count]);
            }
            MatrixOrder::ColumnMajor => {
                // Column j's rows start..start+rows are contiguous; scatter into row-major.
                column.resize(rows as usize, 0.0);
                let bytes = &mut raw[..(rows * size) as usize];
                for j in 0..d {
                    read_at(path, file, offset + (j * n + start) * size, bytes)?;
                    decode(layout, bytes, &mut column);
                    for (i, v) in column.iter().enumerate() {
                        values[i * d as usize + j as usize] = *v;
                    }
                }
            }
        }
        visit(&values[..count], rows as usize)?;
        start += rows;
    }
    Ok(())
}

fn read_at(path: &Path, file: &File, offset: u64, buf: &mut [u8]) -> Result<()> {
    file.read_exact_at(buf, offset).map_err(|e| {
        if e.kind() == std::io::ErrorKind::UnexpectedEof {
            Error::format(
                path,
                format!(
                    "truncated: {} bytes at offset {offset} are past the end of the file",
                    buf.len()
                ),
            )
        } else {
            Error::io("cannot read", path, e)
        }
    })
}

/// Opens the archive's entry `index` and skips its .npy header.
fn open_entry<'a>(
    path: &Path,
    archive: &'a mut zip::ZipArchive<File>,
    index: usize,
    header: u64,
) -> Result<zip::read::ZipFile<'a, File>> {
    let mut entry = archive
        .by_index(index)
        .map_err(|e| Error::format(path, format!("archive entry {index}: {e}")))?;
    std::io::copy(&mut (&mut entry).take(header), &mut std::io::sink())
        .map_err(|e| Error::format(path, format!("archive entry {index}: {e}")))?;
    Ok(entry)
}

fn open_archive(path: &Path) -> Result<zip::ZipArchive<File>> {
    let file = File::open(path).map_err(|e| Error::io("cannot open", path, e))?;
    zip::ZipArchive::new(file).map_err(|e| Error::format(path, format!("not a zip archive: {e}")))
}

fn read_entry(path: &Path, entry: &mut impl Read, buf: &mut [u8]) -> Result<()> {
    entry
        .read_exact(buf)
        .map_err(|e| Error::format(path, format!("compressed array cut short or corrupt: {e}")))
}

/// Reads chunks of rows from a deflated row-major .npz entry, inflating it as it goes.
fn read_deflated_rows(
    path: &Path,
    index: usize,
    header: u64,
    layout: Layout,
    visit: &mut dyn FnMut(&[f64], usize) -> Result<()>,
) -> Result<()> {
    let mut archive = open_archive(path)?;
    let mut entry = open_entry(path, &mut archive, index, header)?;
    let size = layout.element.size() as u64;
    let (n, d) = (layout.rows, layout.cols);
    let chunk = layout.chunk_rows();
    let mut raw = vec![0u8; (chunk * d * size) as usize];
    let mut values = vec![0f64; (chunk * d) as usize];
    let mut start = 0;
    while start < n {
        let rows = chunk.min(n - start);
        let count = (rows * d) as usize;
        let bytes = &mut raw[..count * size as usize];
        read_entry(path, &mut entry, bytes)?;
        decode(layout, bytes, &mut values[..count]);
        visit(&values[..count], rows as usize)?;
        start += rows;
    }
    Ok(())
}

/// Inflates a deflated entry's matrix bytes into an anonymous temporary file.
fn spill_deflated(path: &Path, index: usize, header: u64, layout: Layout) -> Result<File> {
    let mut archive = open_archive(path)?;
    let entry = open_entry(path, &mut archive, index, header)?;
    let mut spill = tempfile::tempfile()
        .map_err(|e| Error::io("cannot create a temporary file for", path, e))?;
    let expected = layout.byte_len().unwrap_or(u64::MAX);
    // At most the matrix's own bytes are inflated, whatever the stream claims.
    let copied = std::io::copy(&mut entry.take(expected), &mut spill)
        .map_err(|e| Error::format(path, format!("compressed array corrupt: {e}")))?;
    if copied != expected {
        return Err(Error::format(
            path,
            format!("compressed array holds {copied} bytes, its header declares {expected}"),
        ));
    }
    Ok(spill)
}

/// Converts stored elements to f64.
fn decode(layout: Layout, bytes: &[u8], out: &mut [f64]) {
    let big = layout.byte_order == ByteOrder::Big;
    match layout.element {
        ElementType::F64 => {
            for (o, b) in out.iter_mut().zip(bytes.chunks_exact(8)) {
                let b: [u8; 8] = b.try_into().expect("8 bytes");
                *o = if big {
                    f64::from_be_bytes(b)
                } else {
                    f64::from_le_bytes(b)
                };
            }
        }
        ElementType::F32 => {
            for (o, b) in out.iter_mut().zip(bytes.chunks_exact(4)) {
                let b: [u8; 4] = b.try_into().expect("4 bytes");
                *o = f64::from(if big {
                    f32::from_be_bytes(b)
                } else {
                    f32::from_le_bytes(b)
                });
            }
        }
        ElementType::F16 => {
            for (o, b) in out.iter_mut().zip(bytes.chunks_exact(2)) {
                let b: [u8; 2] = b.try_into().expect("2 bytes");
                let h = if big {
                    half::f16::from_be_bytes(b)
                } else {
                    half::f16::from_le_bytes(b)
                };
                *o = h.to_f64();
            }
        }
        ElementType::BF16 => {
            for (o, b) in out.iter_mut().zip(bytes.chunks_exact(2)) {
                let b: [u8; 2] = b.try_into().expect("2 bytes");
                let h = if big {
                    half::bf16::from_be_bytes(b)
                } else {
                    half::bf16::from_le_bytes(b)
                };
                *o = h.to_f64();
            }
        }
    }
}
