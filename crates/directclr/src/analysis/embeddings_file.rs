//! The moments of an embeddings matrix stored in a file (`.npy`, `.npz`, `.safetensors`),
//! streamed: the file is read in chunks of rows ([`crate::formats::MatrixFile`]) into the same
//! f64 accumulator as in-memory embeddings, so memory is O(d² + chunk) whatever N, and the
//! numbers are those [`super::embedding_moments`] gives for the same matrix.

use std::ops::Range;
use std::path::Path;

use tch::Tensor;

use super::{CovarianceAccumulator, Moments, RowNormalisation};
use crate::formats::{open_matrix, MatrixFile};
use crate::{Error, Result};

/// Reads the whole matrix of `file` into the moments of its rows, keeping the columns
/// `columns` (all if None; a range checked by the caller) and normalising each row as `rows`
/// asks (after the selection, as for in-memory features). `progress` is called after each
/// chunk with the rows read so far.
/// # Shapes
/// the file's matrix: [N, d] → moments of |columns| dimensions over N rows
pub fn file_moments(
    file: &mut MatrixFile,
    rows: RowNormalisation,
    columns: Option<Range<i64>>,
    progress: &mut dyn FnMut(u64),
) -> Result<Moments> {
    let d = file.layout().cols as i64;
    let path = file.path().to_path_buf();
    let kept = columns.as_ref().map_or(d, |c| c.end - c.start);
    if file.layout().rows < 2 {
        return Err(Error::format(
            &path,
            "holds a single row: a covariance needs at least 2 embeddings",
        ));
    }
    if kept < 2 {
        return Err(Error::format(
            &path,
            "a single column (d = 1) has no spectrum to speak of: at least 2 dimensions are needed",
        ));
    }
    let mut acc = CovarianceAccumulator::new(rows);
    let mut done = 0u64;
    // Errors name the file: a non-finite value is a property of the file's contents.
    let name = |e: Error| match e {
        Error::Numerical { reason, .. } => Error::format(&path, reason),
        e @ (Error::Format { .. } | Error::Io { .. }) => e,
        other => Error::Context {
            context: format!("reading the embeddings of `{}`", path.display()),
            source: Box::new(other),
        },
    };
    let result = file.for_each_chunk(|values, n| {
        if let Some(i) = values.iter().position(|v| !v.is_finite()) {
            return Err(Error::format(
                &path,
                format!(
                    "row {} (counting from 0) holds a non-finite value ({}) in column {}",
                    done + (i as u64) / d as u64,
                    values[i],
                    i as i64 % d
                ),
            ));
        }
        let mut chunk = Tensor::f_from_slice(values)?.f_reshape([n as i64, d])?;
        if let Some(c) = &columns {
            chunk = chunk.f_narrow(1, c.start, c.end - c.start)?;
        }
        acc.update(&chunk)?;
        done += n as u64;
        progress(done);
        Ok(())
    });
    result.and_then(|()| acc.finish()).map_err(name)
}

/// Opens `path` (choosing the array `key` of a `.npz` or `.safetensors`) and reads its moments.
pub fn embeddings_file_moments(
    path: &Path,
    key: Option<&str>,
    rows: RowNormalisation,
) -> Result<Moments> {
    file_moments(&mut open_matrix(path, key)?, rows, None, &mut |_| {})
}
