//! Nearest-neighbour search over the global vectors: an HNSW graph (derived, persisted beside
//! sled) and an exact scan (small collections, and the recall reference); and the inverted file
//! over region tokens that gives region search its candidates.
//!
//! `lifecycle` keeps the graph in step with sled: loaded if current, caught up by id-set
//! difference, rebuilt when missing, corrupt or too full of tombstones, saved on flush.

mod dot;
mod dump_files;
pub(crate) mod exact;
mod flat_graph;
pub(crate) mod hnsw;
mod lifecycle;
pub(crate) mod patch_ivf;
mod vector_table;

/// HNSW beam width of similarity search until the graph has measured its own: from
/// [`EXACT_SCAN_BELOW`] vectors on, each graph measures recall@10 of its own vectors queried as
/// if they were not stored, takes the narrowest width reaching 0.995, and re-measures as it grows
/// or shrinks by a quarter ([`crate::Collection::search_ef`]; `benches/hnsw_recall.rs`).
pub const SEARCH_EF: usize = 64;

/// Below this many vectors, searches scan exactly instead of using the graph.
pub const EXACT_SCAN_BELOW: usize = 4096;
