//! The pixdex collection: a folder holding a sled database (the truth: image records, global
//! vectors, reduced patch grids, metadata pinning the model) and an HNSW graph over the global
//! vectors (derived, persisted beside it, caught up or rebuilt on open).
#![deny(missing_docs)]

mod codec;
mod collection;
mod error;
mod index;
mod query;
mod schema;

pub use codec::{DedupViews, PatchCodec, PatchGrid, UnitVector};
pub use collection::{
    Collection, CollectionConfig, EXACT_SCAN_BELOW, Embedding, Hit, ImageId, ImageRecord, ImageStatus, NewImage,
    SEARCH_EF,
};
pub use error::{Error, Result};
pub use query::{
    DEFAULT_KEEPER_RULE, DEFAULT_MIN_GEOMETRY, DEFAULT_NEAR_THRESHOLD, DEFAULT_VERIFY_FROM, DedupOptions, DedupPhase,
    DedupProgress, DuplicateGroup, DuplicateKind, DuplicateMember, DuplicatesOf, KeeperCriterion, MAX_K, SimilarHit,
    SimilarQuery,
};
