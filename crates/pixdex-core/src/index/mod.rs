//! Nearest-neighbour search over the global vectors: an HNSW graph (derived, persisted beside
//! sled) and an exact scan (small collections, and the recall reference); and the inverted file
//! over region tokens that gives region search its candidates.

pub(crate) mod exact;
pub(crate) mod hnsw;
pub(crate) mod patch_ivf;
