//! Queries over one collection: similarity search with filters (region search and duplicate
//! grouping come next to it).

pub(crate) mod similar;

pub use similar::{MAX_K, SimilarHit, SimilarQuery};
