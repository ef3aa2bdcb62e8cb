//! The pixdex collection. This crate owns everything about a folder of images' embeddings once
//! they are computed: the records and what a collection is pinned to (model fingerprint,
//! embedding definition, dimension), the store (the truth: sled by default, one tree per kind of
//! value, or another [`Store`]; every index derived from it and rebuildable), the byte encodings of vectors and grids, the
//! HNSW lifecycle over the global vectors, the region candidate index, and the queries (similar
//! images, regions, duplicates). It knows nothing of gRPC, the CLI, or how images are found,
//! decoded or embedded: callers bring vectors and grids, and a closure where a region query
//! needs the crop embedded at a size.
//!
//! Modules:
//! * `records`: [`ImageId`], [`ImageRecord`], [`CollectionConfig`], [`NewImage`], [`Hit`].
//! * `vectors`: [`UnitVector`], [`PatchGrid`], [`DedupViews`].
//! * `region_grid`: [`RegionGrid`], [`RegionFrame`], [`PixelBox`] (region data and box
//!   arithmetic); `token_reduction`: [`TokenReduction`] (centred PCA, then product
//!   quantisation in `product_quantizer`, of the region and patch tokens a collection stores).
//! * `codec`: [`PatchCodec`] and the stored region grid format; `schema`: tree names and keys.
//! * `store`: the [`Store`] boundary (where the truth lives) and [`SledStore`], the default.
//! * `collection`: [`Collection`] (opening, pinning, typed reads) and its write path.
//! * `index`: the HNSW graph and its lifecycle, exact top-k, the region inverted file.
//! * `query`: [`Collection::search_similar`], [`Collection::search_region`],
//!   [`Collection::find_duplicates`] and [`Collection::duplicates_of`].
#![deny(missing_docs)]

mod codec;
mod collection;
mod error;
mod index;
mod linalg;
mod product_quantizer;
mod query;
mod records;
mod region_grid;
mod schema;
mod store;
mod token_reduction;
pub use schema::SCHEMA_VERSION;
mod vectors;

#[cfg(test)]
mod fuzz_tests;

pub use codec::{PATCH_DIM, PATCH_SUBSPACES, PatchCodec, encoded_region_len};
pub use collection::Collection;
pub use error::{Error, Result};
pub use index::{EXACT_SCAN_BELOW, SEARCH_EF};
pub use product_quantizer::ProductQuantizer;
pub use query::{
    BACKGROUND_WEIGHT, DEFAULT_KEEPER_RULE, DEFAULT_MIN_GEOMETRY, DEFAULT_NEAR_THRESHOLD, DEFAULT_REGION_CANDIDATES,
    DEFAULT_VERIFY_FROM, DedupOptions, DedupPhase, DedupProgress, DuplicateGroup, DuplicateKind, DuplicateMember,
    DuplicatesOf, KeeperCriterion, MAX_EF, MAX_K, MAX_REGION_CANDIDATES, PairComparison, RegionHit, RegionQuery,
    RegionRanking, SimilarHit, SimilarQuery, TemplateMatch, cells_per_px, match_template, query_grid_sizes,
};
pub use records::{CollectionConfig, Embedding, Hit, ImageId, ImageRecord, ImageStatus, NewImage};
pub use region_grid::{PixelBox, REGION_DIM, REGION_SUBSPACES, RegionFrame, RegionGrid, region_grid_shape};
pub use store::{
    Entries, NearestFilter, QueueProgress, SledStore, Store, StoredImage, StoredValues, ValueKind, WorkItem, WorkQueue,
};
pub use token_reduction::TokenReduction;
pub use vectors::{DedupViews, PatchGrid, UnitVector};
