//! End-to-end tests: the real server on an ephemeral loopback port, the tiny fixture model, a
//! real sled collection, and the generated gRPC clients.

mod access;
mod common;
mod dedup;
mod errors;
mod hostile;
mod jobs;
mod load;
mod loading;
mod metrics;
mod protocol;
mod region;
mod search;
