//! The error type of `pixdex-indexer`.

/// What can stop an indexing job (per-file failures are recorded, not raised).
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Invalid options (a bad glob).
    #[error("invalid options: {0}")]
    Options(String),
    /// The collection failed.
    #[error(transparent)]
    Collection(#[from] pixdex_core::Error),
    /// The encoder failed on a whole batch.
    #[error("encoder: {0}")]
    Encoder(#[from] pixio::Error),
}

/// `Result` with [`Error`].
pub type Result<T> = std::result::Result<T, Error>;
