//! Data pipeline: dataset readers, the authors' augmentations, and a seeded parallel loader.

/// Errors of the data pipeline.
#[derive(Debug, thiserror::Error)]
pub enum DataError {
    /// A dataset file is malformed.
    #[error("malformed dataset file `{}`: {reason}", path.display())]
    Malformed {
        /// The file.
        path: std::path::PathBuf,
        /// What is wrong with it.
        reason: String,
    },
}
