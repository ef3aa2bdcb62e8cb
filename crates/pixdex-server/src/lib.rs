//! The pixdex gRPC service (tonic): similarity search, image upserts and deletes, index jobs with
//! streamed progress, stats, standard health checking and server reflection.
//!
//! The protobuf API is `proto/pixdex/v1/*.proto` (package `pixdex.v1`), compiled by `build.rs`
//! with protox, so no system `protoc` is needed. [`serve`] owns one collection; [`PixdexClient`]
//! talks to it (the CLI's `--server` mode and the tests use it).
//!
//! The service is a thin layer: each rpc validates its request, calls `pixdex-core` (the
//! collection and its queries) or `pixdex-indexer` (decoding, the encoder, index jobs), and
//! maps the answer; errors become statuses in one place (`status.rs`). Query images that need
//! the encoder share forward passes through a batcher (`batcher.rs`).
#![deny(missing_docs)]

mod batcher;
mod client;
mod config;
mod convert;
mod jobs;
pub mod pb;
mod serve;
mod service;
mod state;
mod status;

pub use client::{ClientError, PixdexClient};
pub use config::{BatchingConfig, DEFAULT_MAX_MESSAGE_BYTES, ServerConfig};
pub use serve::{ModelLoader, ServeError, Server, serve};
