//! Indexing image libraries for pixdex, and the one way from an image to its vectors.
//!
//! This crate owns everything between files on disk and vectors handed to
//! [`pixdex_core::Collection`]: finding image files ([`crawl`]), decoding them upright and within
//! memory limits ([`decode`], the one path from bytes to pixels that indexing and queries
//! share), the [`encoder::Encoder`] boundary with its Pixio implementation, turning a decoded
//! image into model inputs ([`inputs::ModelInputs::of`]), running forward passes grouped by input
//! size and unpacking their outputs ([`batch`]), reusing stored vectors for identical bytes
//! ([`reuse`]), cutting and embedding region queries ([`region_crop`]), and the index job that
//! strings these together with change detection ([`pipeline`]). The pipeline, the server's
//! query batcher and the CLI's `embed`, `search` and `region` all embed through these pieces.
//! It reports progress events and `tracing` spans and never prints; it knows nothing of gRPC or
//! terminals. [`testing::FakeEncoder`] stands in for a model in tests.
#![deny(missing_docs)]

pub mod batch;
pub mod crawl;
pub mod decode;
pub mod encoder;
mod error;
pub mod inputs;
pub mod pipeline;
pub mod region_crop;
pub mod reuse;
pub mod testing;

pub use error::{Error, Result};
