//! Nearest-neighbour search over the global vectors: an HNSW graph (derived, persisted beside
//! sled) and an exact scan (small collections, and the recall reference); and the inverted file
//! over region tokens that gives region search its candidates.
//!
//! `lifecycle` keeps the graph in step with sled: loaded if current, caught up by id-set
//! difference, rebuilt when missing, corrupt or too full of tombstones, saved on flush.

pub(crate) mod exact;
pub(crate) mod hnsw;
mod lifecycle;
pub(crate) mod patch_ivf;

/// HNSW beam width of similarity search (at least 4 × k). ef 256: recall@10 1.0 on clustered
/// 384-d vectors at 100k and ≥ 0.98 on uniform 64-d ones at 20k (`benches/hnsw_recall.rs`);
/// uniform 384-d noise is the worst case (0.31).
pub const SEARCH_EF: usize = 256;

/// Below this many vectors, searches scan exactly instead of using the graph.
pub const EXACT_SCAN_BELOW: usize = 4096;
