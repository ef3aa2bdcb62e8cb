//! Queries over one collection: similarity search with filters (the one entry point offline and
//! served), region search, duplicate grouping, and the patch-level verification dedup uses.

pub(crate) mod dedup;
pub(crate) mod region;
pub(crate) mod similar;
pub(crate) mod verify;

pub use dedup::{
    DEFAULT_KEEPER_RULE, DEFAULT_MIN_GEOMETRY, DEFAULT_NEAR_THRESHOLD, DEFAULT_VERIFY_FROM, DedupOptions, DedupPhase,
    DedupProgress, DuplicateGroup, DuplicateKind, DuplicateMember, DuplicatesOf, KeeperCriterion, PairComparison,
};
pub use region::{
    BACKGROUND_WEIGHT, DEFAULT_REGION_CANDIDATES, MAX_REGION_CANDIDATES, RegionHit, RegionQuery, RegionRanking,
    TemplateMatch, cells_per_px, match_template, query_grid_sizes,
};
pub use similar::{MAX_EF, MAX_K, SimilarHit, SimilarQuery};
