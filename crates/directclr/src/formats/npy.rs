//! numpy's `.npy` (format versions 1.0–3.0) and `.npz` (a zip of `.npy` members, stored or
//! deflate-compressed, as `np.savez` and `np.savez_compressed` write them).
//!
//! The header dictionary is parsed by the `npyz` crate (its Python-literal parser and dtype
//! strings); this module bounds what it is given (a header of at most [`MAX_HEADER`] bytes,
//! nested at most [`MAX_NESTING`] deep), accepts only the float dtypes `f2`/`f4`/`f8` in either
//! byte order, checks the shape against the file's length, and never reads the data itself
//! through `npyz`: the matrix is streamed in chunks by [`super::MatrixFile`].

use std::fs::File;
use std::io::Read;
use std::os::unix::fs::FileExt;
use std::path::Path;

use super::matrix::{ByteOrder, Bytes, ElementType, Layout, MatrixFile, MatrixOrder};
use super::{file_len, open_file, pick_member};
use crate::{Error, Result};

/// The largest .npy header read (numpy writes headers of 128 bytes or a few kB for large
/// structured dtypes); a header claiming more is refused before anything is allocated.
pub const MAX_HEADER: usize = 64 * 1024;
/// The deepest bracket nesting accepted in a header (a float matrix's header nests 2 deep).
pub const MAX_NESTING: usize = 16;

const MAGIC: &[u8; 6] = b"\x93NUMPY";

/// A parsed .npy header: the matrix layout and the bytes before the data.
struct Header {
    layout: Layout,
    len: u64,
}

/// Reads and checks a .npy header from `r`, which is at the start of the .npy bytes.
fn read_header(path: &Path, r: &mut impl Read) -> Result<Header> {
    let bad = |reason: String| Error::format(path, reason);
    let mut pre = [0u8; 8];
    r.read_exact(&mut pre)
        .map_err(|_| bad("too short for a .npy header".into()))?;
    if &pre[..6] != MAGIC {
        return Err(bad(
            "not a .npy array: the magic string \\x93NUMPY is missing".into(),
        ));
    }
    let (major, minor) = (pre[6], pre[7]);
    let length_bytes = match (major, minor) {
        (1, 0) => 2,
        (2, 0) | (3, 0) => 4,
        _ => {
            return Err(bad(format!(
                "unsupported .npy format version {major}.{minor} (1.0–3.0 are read)"
            )))
        }
    };
    let mut len = [0u8; 4];
    r.read_exact(&mut len[..length_bytes])
        .map_err(|_| bad("truncated in the .npy header length".into()))?;
    let text_len = u32::from_le_bytes(len) as usize;
    if text_len > MAX_HEADER {
        return Err(bad(format!(
            "the .npy header claims {text_len} bytes; at most {MAX_HEADER} are read"
        )));
    }
    let mut bytes = Vec::with_capacity(8 + length_bytes + text_len);
    bytes.extend_from_slice(&pre);
    bytes.extend_from_slice(&len[..length_bytes]);
    let start = bytes.len();
    bytes.resize(start + text_len, 0);
    r.read_exact(&mut bytes[start..])
        .map_err(|_| bad("truncated inside the .npy header".into()))?;
    let mut depth = 0usize;
    for &b in &bytes[start..] {
        match b {
            b'(' | b'[' | b'{' => {
                depth += 1;
                if depth > MAX_NESTING {
                    return Err(bad(format!(
                        "the .npy header nests deeper than {MAX_NESTING} levels"
                    )));
                }
            }
            b')' | b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    let header = npyz::NpyHeader::from_reader(&bytes[..]).map_err(|e| {
        // npyz has no type for some dtypes (objects `|O`): name the dtype if it is legible.
        match quoted_descr(&bytes[start..]) {
            Some(descr) => bad(format!(
                "dtype `{descr}` is not read: embeddings must be float16, float32 or float64 \
                 (`<f2`, `<f4`, `<f8`, or big-endian `>`)"
            )),
            None => bad(format!("malformed .npy header: {e}")),
        }
    })?;
    let (element, byte_order) = float_dtype(path, &header.dtype())?;
    let order = match header.order() {
        npyz::Order::C => MatrixOrder::RowMajor,
        npyz::Order::Fortran => MatrixOrder::ColumnMajor,
    };
    let layout = Layout::new(path, header.shape(), element, byte_order, order)?;
    Ok(Header {
        layout,
        len: bytes.len() as u64,
    })
}

/// The simple `'descr': '…'` string of a header, if there is one.
fn quoted_descr(text: &[u8]) -> Option<String> {
    let text = std::str::from_utf8(text).ok()?;
    let rest = &text[text.find("'descr'")? + "'descr'".len()..];
    let rest = rest
        .trim_start()
        .strip_prefix(':')?
        .trim_start()
        .strip_prefix('\'')?;
    let descr = &rest[..rest.find('\'')?];
    (descr.len() <= 16).then(|| descr.to_string())
}

/// The allow-list of element types: f2, f4, f8, little- or big-endian.
fn float_dtype(path: &Path, dtype: &npyz::DType) -> Result<(ElementType, ByteOrder)> {
    let refuse = || {
        Error::format(
            path,
            format!(
                "dtype `{}` is not read: embeddings must be float16, float32 or float64 \
                 (`<f2`, `<f4`, `<f8`, or big-endian `>`)",
                dtype.descr()
            ),
        )
    };
    let npyz::DType::Plain(t) = dtype else {
        return Err(refuse());
    };
    if t.type_char() != npyz::TypeChar::Float {
        return Err(refuse());
    }
    let element = match t.size_field() {
        2 => ElementType::F16,
        4 => ElementType::F32,
        8 => ElementType::F64,
        _ => return Err(refuse()),
    };
    let order = match t.endianness() {
        npyz::Endianness::Little => ByteOrder::Little,
        npyz::Endianness::Big => ByteOrder::Big,
        npyz::Endianness::Irrelevant => return Err(refuse()),
    };
    Ok((element, order))
}

/// Checks that `available` bytes after the header hold the matrix.
fn check_length(path: &Path, header: &Header, available: u64) -> Result<()> {
    let needed = header.layout.byte_len().unwrap_or(u64::MAX);
    if available < needed {
        return Err(Error::format(
            path,
            format!(
                "truncated: shape [{}, {}] of {} needs {needed} bytes of data, the file holds {available}",
                header.layout.rows,
                header.layout.cols,
                header.layout.element.name()
            ),
        ));
    }
    Ok(())
}

/// Opens a `.npy` file.
pub fn open_npy(path: &Path) -> Result<MatrixFile> {
    let (file, file_len) = open_file(path)?;
    let header = read_header(path, &mut std::io::BufReader::new(&file))?;
    check_length(path, &header, file_len.saturating_sub(header.len))?;
    Ok(MatrixFile {
        path: path.to_path_buf(),
        name: None,
        layout: header.layout,
        bytes: Bytes::File {
            file,
            offset: header.len,
        },
    })
}

/// Opens the member `key` of a `.npz` archive (by default its only member).
pub fn open_npz(path: &Path, key: Option<&str>) -> Result<MatrixFile> {
    let file = File::open(path).map_err(|e| Error::io("cannot open", path, e))?;
    let mut archive = zip::ZipArchive::new(file)
        .map_err(|e| Error::format(path, format!("not a .npz (zip) archive: {e}")))?;
    let members: Vec<String> = archive
        .file_names()
        .filter_map(|n| n.strip_suffix(".npy"))
        .map(str::to_string)
        .collect();
    let name = pick_member(path, &members, key, "array")?;
    let index = archive
        .index_for_name(&format!("{name}.npy"))
        .ok_or_else(|| Error::format(path, format!("no member `{name}.npy`")))?;
    let (stored, data_start, size) = {
        let entry = archive
            .by_index_raw(index)
            .map_err(|e| Error::format(path, format!("member `{name}.npy`: {e}")))?;
        (
            entry.compression() == zip::CompressionMethod::Stored,
            entry.data_start(),
            entry.size(),
        )
    };
    let member_path = path.to_path_buf();
    if stored {
        let file = archive.into_inner();
        let header = read_header(path, &mut PositionalReader::new(&file, data_start))?;
        check_length(path, &header, size.saturating_sub(header.len))?;
        let file_len = file_len(path, &file)?;
        check_length(
            path,
            &header,
            file_len.saturating_sub(data_start + header.len),
        )?;
        return Ok(MatrixFile {
            path: member_path,
            name: Some(name),
            layout: header.layout,
            bytes: Bytes::File {
                file,
                offset: data_start + header.len,
            },
        });
    }
    let mut entry = archive
        .by_index(index)
        .map_err(|e| Error::format(path, format!("member `{name}.npy`: {e}")))?;
    if !matches!(entry.compression(), zip::CompressionMethod::Deflated) {
        return Err(Error::format(
            path,
            format!(
                "member `{name}.npy` is compressed with {:?}; stored and deflate members are read",
                entry.compression()
            ),
        ));
    }
    let header = read_header(path, &mut entry)?;
    check_length(path, &header, size.saturating_sub(header.len))?;
    Ok(MatrixFile {
        path: member_path,
        name: Some(name),
        layout: header.layout,
        bytes: Bytes::Deflated {
            index,
            header: header.len,
        },
    })
}

/// `Read` over a file from a position, by positional reads (no shared cursor).
struct PositionalReader<'a> {
    file: &'a File,
    at: u64,
}

impl<'a> PositionalReader<'a> {
    fn new(file: &'a File, at: u64) -> Self {
        Self { file, at }
    }
}

impl Read for PositionalReader<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.file.read_at(buf, self.at)?;
        self.at += n as u64;
        Ok(n)
    }
}

/// Writes the f32 matrix `x` `[N, d]` as a little-endian `.npy` (format 1.0, C order), the
/// file numpy's `np.save` writes for a float32 array; `npyz` writes the header.
///
/// # Errors
/// `x` not a 2-d f32 CPU tensor, or the file cannot be written (the path is named).
pub fn write_npy(path: &Path, x: &tch::Tensor) -> Result<()> {
    use npyz::WriterBuilder;
    let size = x.size();
    if size.len() != 2 || x.kind() != tch::Kind::Float {
        return Err(Error::format(
            path,
            format!("writes a 2-d f32 matrix, not {:?} of {size:?}", x.kind()),
        ));
    }
    let x = x.f_to_device(tch::Device::Cpu)?.f_contiguous()?;
    let values = Vec::<f32>::try_from(x.f_flatten(0, -1)?)?;
    let io = |e: std::io::Error| Error::io("cannot write", path, e);
    let file = File::create(path).map_err(io)?;
    let mut writer = npyz::WriteOptions::new()
        .default_dtype()
        .shape(&[size[0] as u64, size[1] as u64])
        .writer(std::io::BufWriter::new(file))
        .begin_nd()
        .map_err(io)?;
    writer.extend(values).map_err(io)?;
    writer.finish().map_err(io)
}
