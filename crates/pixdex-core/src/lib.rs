//! The pixdex collection: a folder holding a sled database (the truth: image records, global
//! vectors, reduced patch grids, metadata pinning the model) and an HNSW graph over the global
//! vectors (derived, persisted beside it, caught up or rebuilt on open).
#![deny(missing_docs)]

mod codec;
mod collection;
mod error;
mod index;
mod linalg;
mod query;
mod region;
mod schema;

pub use codec::{DedupViews, PatchCodec, PatchGrid, UnitVector};
pub use collection::{
    Collection, CollectionConfig, EXACT_SCAN_BELOW, Embedding, Hit, ImageId, ImageRecord, ImageStatus, NewImage,
    SEARCH_EF,
};
pub use error::{Error, Result};
pub use query::{
    BACKGROUND_WEIGHT, DEFAULT_KEEPER_RULE, DEFAULT_MIN_GEOMETRY, DEFAULT_NEAR_THRESHOLD, DEFAULT_REGION_CANDIDATES,
    DEFAULT_VERIFY_FROM, DedupOptions, DedupPhase, DedupProgress, DuplicateGroup, DuplicateKind, DuplicateMember,
    DuplicatesOf, KeeperCriterion, MAX_K, MAX_REGION_CANDIDATES, RegionHit, RegionQuery, RegionRanking, SimilarHit,
    SimilarQuery, TemplateMatch, cells_per_px, match_template, query_grid_sizes,
};
pub use region::{
    PixelBox, REGION_DIM, RegionFrame, RegionGrid, RegionReduction, encoded_region_len, region_grid_shape,
};
