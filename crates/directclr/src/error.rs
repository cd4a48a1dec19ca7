//! The library's one error type.

use std::path::PathBuf;

/// Every failure the library reports. Each variant names what was wrong and where (the field,
/// the file), so that the command line can print it as one clear line.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A configuration value or flag is impossible.
    #[error("invalid `{field}`: {reason}")]
    InvalidConfig {
        /// The field or flag, e.g. `noise_std`.
        field: String,
        /// Why the value is refused.
        reason: String,
    },
    /// Reading or writing a file failed.
    #[error("{action} `{}`: {source}", path.display())]
    Io {
        /// What was being done, e.g. "cannot write".
        action: &'static str,
        /// The file or folder.
        path: PathBuf,
        /// The operating system's error.
        #[source]
        source: std::io::Error,
    },
    /// A file written by another tool (an embeddings matrix, a checkpoint) is malformed,
    /// truncated, or holds what is not read (another dtype, shape or key).
    #[error("cannot read `{}`: {reason}", path.display())]
    Format {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// A figure could not be drawn or saved.
    #[error("cannot draw figure `{}`: {reason}", path.display())]
    Plot {
        /// The figure's file.
        path: PathBuf,
        /// What the plotting backend reported.
        reason: String,
    },
    /// A requested device is not usable on this machine.
    #[error("device `{device}` is not available: {reason}")]
    DeviceUnavailable {
        /// The device as asked for, e.g. `cuda:1`.
        device: String,
        /// Why it cannot be used.
        reason: String,
    },
    /// A computation produced a non-finite or otherwise impossible value.
    #[error("numerical failure in {context}: {reason}")]
    Numerical {
        /// Where it happened, e.g. "toy model step 812".
        context: String,
        /// What was observed.
        reason: String,
    },
    /// An error reported by libtorch.
    #[error("libtorch: {0}")]
    Torch(#[from] tch::TchError),
    /// An error of the data pipeline (readers, augmentations, loader).
    #[error(transparent)]
    Data(#[from] crate::data::DataError),
    /// A distributed run failed: a launch variable is missing or inconsistent, the rendezvous
    /// did not complete, or a collective failed (a rank died, or made no progress within the
    /// timeout).
    #[error("distributed run, {context}: {reason}")]
    Distributed {
        /// Where, e.g. "rank 1 of 2, all-reduce of gradients" or the variable `WORLD_SIZE`.
        context: String,
        /// What was observed.
        reason: String,
    },
    /// Saved tensors (a weights file, an optimiser state) do not match what is being restored:
    /// missing, unexpected or misshapen tensors, or a file that is not safetensors.
    #[error("cannot restore {what}: {reason}")]
    StateMismatch {
        /// What was being restored, e.g. "weights from `run/backbone.safetensors`".
        what: String,
        /// What did not match.
        reason: String,
    },
    /// An error inside one part of a larger job (e.g. one run of a reproduction).
    #[error("{context}")]
    Context {
        /// The part, e.g. "run `directclr` in `out/quick/runs/directclr`".
        context: String,
        /// The error itself.
        #[source]
        source: Box<Error>,
    },
}

/// The library's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// An [`Error::InvalidConfig`] for `field`.
    pub fn config(field: impl Into<String>, reason: impl Into<String>) -> Self {
        Error::InvalidConfig {
            field: field.into(),
            reason: reason.into(),
        }
    }

    /// The error of a check made inside the table `table`: an [`Error::InvalidConfig`]'s
    /// field is prefixed with it (`lr` in `schedule` becomes `schedule.lr`); any other error
    /// is returned unchanged.
    pub fn within(self, table: &str) -> Self {
        self.map_field(|field| format!("{table}.{field}"))
    }

    /// An [`Error::InvalidConfig`] with its field rewritten by `rename` (e.g. to name the run
    /// of a larger job it belongs to); any other error is returned unchanged.
    pub fn map_field(self, rename: impl FnOnce(String) -> String) -> Self {
        match self {
            Error::InvalidConfig { field, reason } => Error::InvalidConfig {
                field: rename(field),
                reason,
            },
            other => other,
        }
    }

    /// An [`Error::Format`] for the file `path`.
    pub fn format(path: impl Into<PathBuf>, reason: impl Into<String>) -> Self {
        Self::Format {
            path: path.into(),
            reason: reason.into(),
        }
    }

    /// An [`Error::Io`] for `path`.
    pub fn io(action: &'static str, path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            action,
            path: path.into(),
            source,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn within_prefixes_the_field_of_a_config_error_only() {
        let e = Error::config("lr", "-1 is not a positive number").within("schedule");
        match &e {
            Error::InvalidConfig { field, reason } => {
                assert_eq!(field, "schedule.lr");
                assert_eq!(reason, "-1 is not a positive number");
            }
            other => panic!("not a config error: {other:?}"),
        }
        assert_eq!(
            e.to_string(),
            "invalid `schedule.lr`: -1 is not a positive number"
        );
        // Nested tables read outermost first.
        let e = Error::config("k", "x").within("b").within("a");
        assert_eq!(e.to_string(), "invalid `a.b.k`: x");
        // Other errors pass through unchanged.
        let e = Error::format("f.bin", "truncated").within("schedule");
        assert!(matches!(&e, Error::Format { reason, .. } if reason == "truncated"));
        assert_eq!(e.to_string(), "cannot read `f.bin`: truncated");
        let e = Error::config("lr", "x").map_field(|f| format!("runs[0] (a): {f}"));
        assert_eq!(e.to_string(), "invalid `runs[0] (a): lr`: x");
    }
}
