//! What the collection records: image ids, records and their status, the configuration a
//! collection is pinned to, what a commit adds ([`NewImage`], [`Embedding`]) and what a search
//! returns ([`Hit`]).

use serde::{Deserialize, Serialize};
use std::path::PathBuf;

use crate::codec::PatchCodec;
use crate::error::{Error, Result};
use crate::region_grid::RegionGrid;
use crate::vectors::{DedupViews, PatchGrid, UnitVector};

/// A stable image id (sled-generated, never reused).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct ImageId(pub u64);

/// Whether an image's embedding is stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum ImageStatus {
    /// Global vector (and patches) stored.
    Embedded,
    /// Decoding or embedding failed; recorded so that an unchanged file is not retried forever.
    Failed {
        /// The reason, for the user.
        error: String,
    },
}

/// What the collection knows about one file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageRecord {
    /// Absolute path when indexed.
    pub path: PathBuf,
    /// File size in bytes.
    pub size: u64,
    /// Modification time, nanoseconds since the Unix epoch.
    pub mtime_ns: i64,
    /// blake3 of the file's bytes.
    pub blake3: [u8; 32],
    /// Upright width in pixels (after EXIF orientation); 0 if undecodable.
    pub width: u32,
    /// Upright height in pixels; 0 if undecodable.
    pub height: u32,
    /// Embedded or failed.
    pub status: ImageStatus,
}

/// What pins a collection to one model and one embedding definition.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CollectionConfig {
    /// Where the model came from (repo id or folder), for display.
    pub model: String,
    /// Hash of the model's config and weights: another model is a different fingerprint.
    pub model_fingerprint: String,
    /// Name and version of the embedding definition, e.g. `pixio-pooler-l2/v1`.
    pub embedding: String,
    /// Global vector dimension.
    pub dim: usize,
    /// How patch grids are reduced before storage.
    pub patch_codec: PatchCodec,
}

impl CollectionConfig {
    /// Whether vectors made under `other` can be mixed with these (same model weights,
    /// embedding definition and dimension).
    pub fn is_compatible(&self, other: &CollectionConfig) -> bool {
        self.model_fingerprint == other.model_fingerprint && self.embedding == other.embedding && self.dim == other.dim
    }

    /// [`Error::ModelMismatch`] unless `other` [is compatible](Self::is_compatible).
    pub fn ensure_compatible(&self, other: &CollectionConfig) -> Result<()> {
        if self.is_compatible(other) {
            Ok(())
        } else {
            Err(Error::ModelMismatch { expected: self.describe(), found: other.describe() })
        }
    }

    pub(crate) fn describe(&self) -> String {
        format!("{} ({}, {}-d, fingerprint {})", self.model, self.embedding, self.dim, self.model_fingerprint)
    }
}

/// Where a new image's vectors come from.
// One value per image, built once and moved into a commit: boxing the large variant buys nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone)]
pub enum Embedding {
    /// Freshly computed: the global vector and the full patch grid (reduced on storage).
    Computed {
        /// The global embedding.
        global: UnitVector,
        /// The full-resolution patch grid, if kept.
        patches: Option<PatchGrid>,
        /// The mirrored and grayscale views for duplicate detection, if computed.
        views: Option<DedupViews>,
        /// The aspect-preserving grid for region search, if computed (reduced on storage).
        region: Option<RegionGrid>,
    },
    /// The same bytes as a stored image (a moved or copied file): vectors are copied as stored.
    CopyOf(ImageId),
    /// No vectors (the image failed).
    None,
}

/// One image to add (or replace, if its path is already present).
#[derive(Debug, Clone)]
pub struct NewImage {
    /// Its record.
    pub record: ImageRecord,
    /// Its vectors.
    pub embedding: Embedding,
}

/// A search result.
#[derive(Debug, Clone, PartialEq)]
pub struct Hit {
    /// The image.
    pub id: ImageId,
    /// Cosine similarity to the query.
    pub score: f32,
}
