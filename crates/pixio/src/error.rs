//! The one error type of the `pixio` crate.

use std::path::PathBuf;

/// Everything that can go wrong while loading or running a Pixio model.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A file of the checkpoint could not be read.
    #[error("cannot read {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// A JSON file (config, preprocessor config, shard index) is malformed.
    #[error("cannot parse {path}: {source}")]
    Json {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: serde_json::Error,
    },
    /// The model configuration is inconsistent or asks for something unsupported.
    #[error("invalid model config: {0}")]
    Config(String),
    /// The preprocessor configuration asks for something unsupported.
    #[error("invalid preprocessor config: {0}")]
    Preprocessor(String),
    /// The checkpoint files are inconsistent (duplicate names, a shard outside the folder).
    #[error("invalid checkpoint: {0}")]
    Checkpoint(String),
    /// The checkpoint does not look like a Pixio model in any known key layout.
    #[error(
        "checkpoint is not in a known Pixio key layout: it lacks `{missing}` and has foreign tensors such as `{foreign}`"
    )]
    UnknownLayout {
        /// The first canonical tensor that could not be found.
        missing: String,
        /// One stored name that maps to no Pixio tensor.
        foreign: String,
    },
    /// The checkpoint lacks a tensor the model needs.
    #[error("checkpoint is missing tensor `{key}`")]
    MissingTensor {
        /// Canonical (Hub layout) name of the tensor.
        key: String,
    },
    /// A checkpoint tensor has the wrong shape for the config.
    #[error("checkpoint tensor `{key}` has shape {found:?}, the config implies {expected:?}")]
    ShapeMismatch {
        /// Name of the tensor as stored in the checkpoint.
        key: String,
        /// Shape implied by `config.json`.
        expected: Vec<usize>,
        /// Shape found in the file.
        found: Vec<usize>,
    },
    /// The checkpoint holds tensors that no Pixio module uses (a wrong or foreign checkpoint).
    #[error("checkpoint has {} tensor(s) Pixio does not use, e.g. `{}`", keys.len(), keys.first().map(String::as_str).unwrap_or(""))]
    UnexpectedTensors {
        /// The unused names, as stored.
        keys: Vec<String>,
    },
    /// A tensor is stored in a dtype Pixio cannot load.
    #[error("checkpoint tensor `{key}` has unsupported dtype {dtype:?}")]
    UnsupportedDType {
        /// Name of the tensor as stored.
        key: String,
        /// Its dtype.
        dtype: candle_core::DType,
    },
    /// A model folder or Hub repo lacks a required file.
    #[error("{location}: no {what}")]
    MissingFile {
        /// Folder or repo id.
        location: String,
        /// What was looked for.
        what: String,
    },
    /// Downloading from (or finding in the cache of) the Hugging Face Hub failed.
    #[error("cannot fetch `{file}` of `{repo}` from the Hugging Face Hub: {reason}")]
    Hub {
        /// Repo id.
        repo: String,
        /// File name within the repo.
        file: String,
        /// Why.
        reason: String,
    },
    /// The input tensor or image does not fit the model.
    #[error("invalid input: {0}")]
    Input(String),
    /// The requested device is not available in this build or on this machine.
    #[error("device: {0}")]
    Device(String),
    /// An error from the tensor library.
    #[error(transparent)]
    Candle(#[from] candle_core::Error),
}

/// `Result` with [`Error`].
pub type Result<T> = std::result::Result<T, Error>;
