//! `CollectionService`: what a collection holds, read the same way offline and served.

use pixdex_core::{Collection, EXACT_SCAN_BELOW, ImageStatus};

use crate::pb;

/// What a collection holds; `pixdex stats` offline and `GetStats` both read it here, so that each
/// count means the same thing in both.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CollectionStats {
    /// Image records, embedded and failed.
    pub images: u64,
    /// Images with a stored global vector.
    pub vectors: u64,
    /// Records whose status is failed (the file could not be decoded or embedded).
    pub failed: u64,
    /// The pinned model (repo id or folder).
    pub model: String,
    /// Its fingerprint.
    pub model_fingerprint: String,
    /// The embedding definition.
    pub embedding: String,
    /// The global vector dimension.
    pub dim: usize,
    /// The patch grids' pooling window side (1 = full resolution).
    pub patch_pool: usize,
    /// Whether patch tokens are stored as product-quantisation codes (else int8).
    pub patch_quantised: bool,
    /// Deleted vectors still in the HNSW graph.
    pub hnsw_tombstones: u64,
    /// The generation (bumped by every commit).
    pub generation: u64,
    /// Bytes on disk.
    pub disk_bytes: u64,
}

impl CollectionStats {
    /// Reads the counts. Blocking: it walks the records (to count the failed ones) and the
    /// collection folder (for the disk use).
    pub fn read(c: &Collection) -> pixdex_core::Result<Self> {
        let mut failed = 0;
        for record in c.records() {
            if matches!(record?.1.status, ImageStatus::Failed { .. }) {
                failed += 1;
            }
        }
        let config = c.config();
        Ok(Self {
            images: c.len()? as u64,
            vectors: c.vector_count() as u64,
            failed,
            model: config.model.clone(),
            model_fingerprint: config.model_fingerprint.clone(),
            embedding: config.embedding.clone(),
            dim: config.dim,
            patch_pool: config.patch_codec.pool,
            patch_quantised: config.patch_codec.quantised,
            hnsw_tombstones: c.hnsw_tombstones() as u64,
            generation: c.generation()?,
            disk_bytes: c.disk_bytes(),
        })
    }

    /// How patch grids are stored, in words.
    pub fn patch_codec(&self) -> String {
        let tokens = if self.patch_quantised {
            format!(
                "PCA-{} product-quantised ({} bytes per patch)",
                pixdex_core::PATCH_DIM,
                pixdex_core::PATCH_SUBSPACES
            )
        } else {
            "int8 per-patch scale".into()
        };
        match self.patch_pool {
            1 => format!("{tokens}, full resolution"),
            pool => format!("{tokens}, {pool}x{pool} average pooling"),
        }
    }

    /// `exact` (a scan, below [`EXACT_SCAN_BELOW`] vectors) or `hnsw`.
    pub fn search_index(&self) -> &'static str {
        if (self.vectors as usize) < EXACT_SCAN_BELOW { "exact" } else { "hnsw" }
    }
}

/// The collection's part of the stats; what only a running server knows (the model, the batcher,
/// jobs) is left at its default for the server to fill in.
impl From<CollectionStats> for pb::Stats {
    fn from(s: CollectionStats) -> Self {
        Self {
            patch_codec: s.patch_codec(),
            search_index: s.search_index().into(),
            exact_scan_below: EXACT_SCAN_BELOW as u64,
            images: s.images,
            vectors: s.vectors,
            failed: s.failed,
            model: s.model,
            model_fingerprint: s.model_fingerprint,
            embedding: s.embedding,
            dim: s.dim as u32,
            hnsw_tombstones: s.hnsw_tombstones,
            generation: s.generation,
            disk_bytes: s.disk_bytes,
            model_loaded: false,
            query_embeddings: 0,
            query_forward_passes: 0,
            running_job_id: String::new(),
        }
    }
}
