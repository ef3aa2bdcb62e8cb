//! Nearest-neighbour search over the global vectors: an HNSW graph (derived, persisted beside
//! sled) and an exact scan (small collections, and the recall reference).

pub(crate) mod exact;
pub(crate) mod hnsw;
