//! The one error type of `pixdex-core`.

use std::path::PathBuf;

/// Everything that can go wrong with a collection.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The sled database failed (I/O, corruption) or is locked by another process.
    #[error("collection store at {path}: {source}")]
    Store {
        /// The collection folder.
        path: PathBuf,
        /// The cause.
        source: sled::Error,
    },
    /// A store other than sled failed (a database unreachable, a query refused).
    #[error("collection store at {location}: {reason}")]
    Backend {
        /// Where the store is (a URL without its password).
        location: String,
        /// What failed.
        reason: String,
    },
    /// Another process (a running `pixdex serve`?) holds the collection.
    #[error("the collection at {path} is in use by another pixdex process")]
    Locked {
        /// The collection folder.
        path: PathBuf,
    },
    /// The collection was built with another model or embedding definition.
    #[error("collection was built with {expected}, not {found}: use the same model, or another --db")]
    ModelMismatch {
        /// What the collection pins.
        expected: String,
        /// What the caller brought.
        found: String,
    },
    /// The collection's layout is newer than this build reads.
    #[error(
        "the collection at {path} was written by a newer pixdex (layout version {found}; this one reads up to \
         {supported}): upgrade pixdex"
    )]
    NewerSchema {
        /// The collection folder.
        path: PathBuf,
        /// The version it records.
        found: u32,
        /// The newest this build reads.
        supported: u32,
    },
    /// A stored value does not decode (a bug or on-disk corruption).
    #[error("corrupt collection value `{what}`: {reason}")]
    Corrupt {
        /// Which value.
        what: String,
        /// Why.
        reason: String,
    },
    /// A vector has the wrong dimension or is not finite / not unit length.
    #[error("invalid vector: {0}")]
    InvalidVector(String),
    /// A query's parameters are out of range.
    #[error("invalid query: {0}")]
    InvalidQuery(String),
    /// Region search on a collection that stores no region grids.
    #[error("this collection stores no region grids: index it without --no-region-grids first")]
    NoRegionGrids,
    /// No image with this id.
    #[error("no image with id {0}")]
    NotFound(u64),
    /// The HNSW files could not be written or read.
    #[error("HNSW index at {path}: {reason}")]
    Index {
        /// The index folder.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// Any other I/O.
    #[error("{path}: {source}")]
    Io {
        /// The file or folder.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
}

/// A stored value that does not decode.
pub(crate) fn corrupt(what: &str, reason: impl ToString) -> Error {
    Error::Corrupt { what: what.to_string(), reason: reason.to_string() }
}

/// `Result` with [`Error`].
pub type Result<T> = std::result::Result<T, Error>;
