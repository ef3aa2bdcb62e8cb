//! The pixdex gRPC service (tonic): similarity and region search, image upserts and deletes,
//! index jobs with streamed progress, duplicate detection, stats, standard health checking and
//! server reflection, with a `tracing` span on every call and Prometheus metrics.
//!
//! **What it owns.** The services of `proto/pixdex/v1/*.proto` (package `pixdex.v1`, compiled by
//! `build.rs` with protox, so no system `protoc` is needed); the conversions between protobuf and
//! the domain, in one module ([`convert`]: `TryFrom` a request into a validated query, `From` an
//! answer back), which the CLI's `--server` mode uses too; the one mapping from errors to gRPC
//! statuses (`status.rs`, exhaustive: bad input is never `INTERNAL`); the query-embedding batcher
//! that shares forward passes between concurrent queries (`batcher.rs`); index jobs, one at a
//! time (`jobs.rs`); who may call what ([`access`]: bearer tokens with a read or write role,
//! checked by a layer in front of every service; TLS with rustls); the RPC layer that spans and counts every call (`rpc.rs`) and the `/metrics`
//! endpoint (`metrics.rs`); and [`serve`], which owns one collection from start to a graceful
//! shutdown. [`PixdexClient`] talks to it. It does not know how the collection stores things
//! (that is `pixdex-core`) nor how images become vectors beyond calling the encoder
//! (`pixdex-indexer`): each handler converts its request, calls them, and converts the answer.
#![deny(missing_docs)]

pub mod access;
mod batcher;
mod client;
mod config;
mod connections;
pub mod convert;
mod jobs;
mod metrics;
pub mod pb;
mod rpc;
mod serve;
mod service;
mod state;
mod status;
#[cfg(feature = "test-pki")]
pub mod test_pki;

pub use access::{AccessTokens, Role, TokenFileError};
pub use client::{BearerToken, ClientChannel, ClientError, ClientOptions, PixdexClient};
pub use config::{BatchingConfig, DEFAULT_MAX_MESSAGE_BYTES, ServerConfig, TlsIdentity};
pub use serve::{ModelLoader, ServeError, Server, serve};
