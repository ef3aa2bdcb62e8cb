//! The gRPC services: each rpc validates, calls the collection or the jobs, and maps the reply.

pub(crate) mod collection;
pub(crate) mod dedup;
pub(crate) mod images;
pub(crate) mod index;
pub(crate) mod region;
pub(crate) mod search;
