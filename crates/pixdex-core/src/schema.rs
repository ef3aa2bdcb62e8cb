//! The sled layout ([`crate::SledStore`]): tree names and key encodings, in one place. The meta
//! keys are every store's.
//!
//! * `images`: id → [`crate::ImageRecord`] (JSON)
//! * `by_path`: path bytes → id
//! * `by_hash`: blake3 (32 bytes) ‖ id → ()
//! * `global`: id → unit vector (LE f32)
//! * `patches`: id → reduced patch grid ([`crate::PatchCodec`])
//! * `views`: id → the mirrored and grayscale global vectors ([`crate::DedupViews`]), if computed
//! * `flipped_patches`: id → reduced patch grid of the mirrored view, if computed
//! * `regions`: id → the aspect-preserving region grid, reduced ([`crate::TokenReduction`]:
//!   product-quantisation codes, or int8 in collections from before them) with its frame
//!   (upright size, EXIF orientation), if computed
//! * `meta`: [`META_CONFIG`] → collection config (JSON), [`META_GENERATION`] → u64,
//!   [`META_REGION_REDUCTION`] and [`META_PATCH_REDUCTION`] → the reductions (mean token, PCA
//!   basis, quantiser), [`META_SCHEMA_VERSION`] → u32 ([`SCHEMA_VERSION`])
//!
//! Ids are big-endian u64 so that iteration order is id order.

pub(crate) const IMAGES: &str = "images";
pub(crate) const BY_PATH: &str = "by_path";
pub(crate) const BY_HASH: &str = "by_hash";
pub(crate) const GLOBAL: &str = "global";
pub(crate) const PATCHES: &str = "patches";
pub(crate) const VIEWS: &str = "views";
pub(crate) const FLIPPED_PATCHES: &str = "flipped_patches";
pub(crate) const REGIONS: &str = "regions";
pub(crate) const META: &str = "meta";

pub(crate) const META_CONFIG: &str = "config";
/// Incremented by every committed write batch; the HNSW files record the generation they reflect.
pub(crate) const META_GENERATION: &str = "generation";
/// The region reduction, fitted on the first region grids stored and fixed from then on.
pub(crate) const META_REGION_REDUCTION: &str = "region_reduction";
/// The patch reduction of a collection with quantised patch grids, pinned like the region one.
pub(crate) const META_PATCH_REDUCTION: &str = "patch_reduction";

/// The version of this layout (trees, keys, record and vector encodings). A collection written
/// by a newer pixdex is refused rather than misread; an older one is migrated at open.
/// Version 2 added product-quantised grids (format 2) and the patch reduction; version 1
/// collections need no change (their grids stay int8, which version 2 reads).
pub const SCHEMA_VERSION: u32 = 2;
/// Where the version is kept (absent in collections from before it was: version 1's layout).
pub(crate) const META_SCHEMA_VERSION: &str = "schema_version";

pub(crate) fn id_key(id: u64) -> [u8; 8] {
    id.to_be_bytes()
}

pub(crate) fn id_from_key(key: &[u8]) -> Option<u64> {
    Some(u64::from_be_bytes(key.try_into().ok()?))
}

pub(crate) fn hash_key(hash: &[u8; 32], id: u64) -> [u8; 40] {
    let mut k = [0u8; 40];
    k[..32].copy_from_slice(hash);
    k[32..].copy_from_slice(&id.to_be_bytes());
    k
}

pub(crate) fn path_key(path: &std::path::Path) -> Vec<u8> {
    path.as_os_str().as_encoded_bytes().to_vec()
}
