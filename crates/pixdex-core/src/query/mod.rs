//! Queries over one collection: similarity search with filters (region search and duplicate
//! grouping come next to it).

pub(crate) mod dedup;
pub(crate) mod similar;
pub(crate) mod verify;

pub use dedup::{
    DEFAULT_KEEPER_RULE, DEFAULT_MIN_GEOMETRY, DEFAULT_NEAR_THRESHOLD, DEFAULT_VERIFY_FROM, DedupOptions, DedupPhase,
    DedupProgress, DuplicateGroup, DuplicateKind, DuplicateMember, DuplicatesOf, KeeperCriterion,
};
pub use similar::{MAX_K, SimilarHit, SimilarQuery};
