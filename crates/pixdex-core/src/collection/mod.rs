//! [`Collection`]: a collection's truth in a [`Store`] (sled in a folder by default, or
//! PostgreSQL + pgvector) and the indexes derived from it in a local folder (the HNSW graph of
//! its global vectors, the region index). This module opens it (pinning it to a model) and holds
//! its state; `read` has the typed reads, `write` the write path. The HNSW lifecycle is in
//! [`crate::index`], the queries in [`crate::query`].

mod read;
mod reductions;
mod write;

use parking_lot::{Mutex, RwLock};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::AtomicU64;

use crate::error::{Error, Result};
use crate::index::hnsw::HnswIndex;
use crate::index::patch_ivf::PatchIvf;
use crate::records::{CollectionConfig, ImageRecord};
use crate::schema;
use crate::store::{SledStore, Store};
use crate::token_reduction::TokenReduction;
use reductions::PinnedReduction;
use std::collections::HashMap;

pub(crate) use crate::error::corrupt;

/// A collection of images' embeddings.
pub struct Collection {
    /// Where the derived indexes are saved (the collection folder for sled).
    dir: PathBuf,
    pub(crate) store: Box<dyn Store>,
    config: CollectionConfig,
    pub(crate) index: RwLock<HnswIndex>,
    /// The store generation the graph was last caught up to, for stores other processes write
    /// to ([`Store::is_shared`]); `u64::MAX` when unknown.
    pub(crate) graph_generation: AtomicU64,
    /// The region reduction, once the first region grid was stored.
    region_reduction: PinnedReduction,
    /// The patch reduction of a collection whose patch grids are quantised, once the first
    /// patch grid was stored.
    patch_reduction: PinnedReduction,
    /// Held by a commit from its first read to its graph insert, and by a flush while it saves
    /// the graph ([`Collection::commit`]).
    pub(crate) commit_lock: Mutex<()>,
    /// Stage 1 of region search, built on the first region query.
    pub(crate) region_index: Mutex<Option<PatchIvf>>,
    /// Every record in RAM, once [`Collection::cache_records`] was called (a server does): a
    /// search then reads no store and decodes no JSON per result. Writers keep it in step under
    /// its write lock. Never used for shared stores (other processes write to them).
    record_cache: RwLock<Option<HashMap<u64, ImageRecord>>>,
}

/// Temporary files and folders a crashed process left mid-save (`hnsw.tmp-PID`,
/// `hnsw.old-PID`, `region_index.tmp-PID`): never read, only in the way. Ours (this process's
/// PID) may belong to a save in progress and stay.
fn remove_stale_temporaries(dir: &Path) {
    let Ok(entries) = std::fs::read_dir(dir) else { return };
    let ours = format!("-{}", std::process::id());
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let stale = ["hnsw.tmp-", "hnsw.old-", "region_index.tmp-"].iter().any(|p| name.starts_with(p))
            && !name.ends_with(&ours);
        if stale {
            let path = entry.path();
            let removed = if path.is_dir() { std::fs::remove_dir_all(&path) } else { std::fs::remove_file(&path) };
            match removed {
                Ok(()) => tracing::info!(path = %path.display(), "removed a temporary left by an interrupted save"),
                Err(e) => tracing::warn!(path = %path.display(), error = %e, "cannot remove a stale temporary"),
            }
        }
    }
}

impl Collection {
    /// Opens the collection in `dir`, creating it pinned to `config` if it does not exist. An
    /// existing collection built with another model or embedding is a [`Error::ModelMismatch`].
    pub fn open_or_create(dir: &Path, config: &CollectionConfig) -> Result<Self> {
        Self::open_with(dir, Some(config))
    }

    /// Opens an existing collection with whatever model it pins.
    pub fn open(dir: &Path) -> Result<Self> {
        Self::open_with(dir, None)
    }

    fn open_with(dir: &Path, wanted: Option<&CollectionConfig>) -> Result<Self> {
        let store = SledStore::open(dir, wanted.is_some())?;
        Self::open_store(Box::new(store), dir, wanted)
    }

    /// Opens the collection in `store`, pinning it to `wanted` if it pins nothing yet (with
    /// `None`, whatever it pins). Derived indexes are kept in `index_dir` (created if needed).
    pub fn open_store(store: Box<dyn Store>, index_dir: &Path, wanted: Option<&CollectionConfig>) -> Result<Self> {
        std::fs::create_dir_all(index_dir).map_err(|source| Error::Io { path: index_dir.to_path_buf(), source })?;
        remove_stale_temporaries(index_dir);
        let parse = |bytes: &[u8]| -> Result<CollectionConfig> {
            serde_json::from_slice(bytes).map_err(|e| corrupt("config", e))
        };
        let stored = store.meta(schema::META_CONFIG)?.map(|b| parse(&b)).transpose()?;
        let stored = match (stored, wanted) {
            (None, Some(w)) => {
                // Another writer may pin it at the same moment: whichever got there first wins.
                let json = serde_json::to_vec(w).expect("config serialises");
                Some(parse(&store.meta_insert_if_absent(schema::META_CONFIG, &json)?)?)
            }
            (stored, _) => stored,
        };
        let config = match (stored, wanted) {
            (Some(s), Some(w)) if !s.is_compatible(w) => {
                return Err(Error::ModelMismatch { expected: s.describe(), found: w.describe() });
            }
            (Some(s), _) => s,
            (None, _) => return Err(corrupt("config", "collection has no config")),
        };
        store.pin_dimension(config.dim)?;
        let region_reduction = PinnedReduction::load(store.as_ref(), schema::META_REGION_REDUCTION)?;
        let patch_reduction = PinnedReduction::load(store.as_ref(), schema::META_PATCH_REDUCTION)?;
        let c = Self {
            dir: index_dir.to_path_buf(),
            store,
            index: RwLock::new(HnswIndex::new(config.dim, 0)),
            graph_generation: AtomicU64::new(u64::MAX),
            config,
            region_reduction,
            patch_reduction,
            commit_lock: Mutex::new(()),
            region_index: Mutex::new(None),
            record_cache: RwLock::new(None),
        };
        c.load_index()?;
        Ok(c)
    }

    /// The work queue index workers share, where the store has one (PostgreSQL).
    pub fn work_queue(&self) -> Option<&dyn crate::store::WorkQueue> {
        self.store.work_queue()
    }

    /// Whether `store` holds a collection (pinned to a model) already.
    pub fn is_pinned(store: &dyn Store) -> Result<bool> {
        Ok(store.meta(schema::META_CONFIG)?.is_some())
    }

    /// The folder of the derived indexes (for sled, the collection's folder).
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// What the collection is pinned to.
    pub fn config(&self) -> &CollectionConfig {
        &self.config
    }

    /// Counter of committed write batches.
    pub fn generation(&self) -> Result<u64> {
        self.store.generation()
    }

    /// Where the truth is kept (a folder, or a database URL without its password).
    pub fn location(&self) -> String {
        self.store.location()
    }

    /// Number of image records (embedded and failed).
    pub fn len(&self) -> Result<usize> {
        self.store.record_count()
    }

    /// Whether there are no records.
    pub fn is_empty(&self) -> Result<bool> {
        Ok(self.len()? == 0)
    }

    /// Number of stored global vectors.
    pub fn vector_count(&self) -> usize {
        // sled's `Tree::len` walks the whole tree (3 ms at 10k vectors); the graph mirrors the
        // stored global vectors and counts in O(1).
        if let Err(e) = self.refresh_graph() {
            tracing::warn!(error = %e, "cannot catch the graph up with the store");
        }
        self.index.read().live_len()
    }

    /// Bytes on disk of the store (where it can tell) and the HNSW files.
    pub fn disk_bytes(&self) -> u64 {
        self.store.disk_bytes() + dir_size(&self.dir.join("hnsw"))
    }

    /// The reduction region tokens go through, once the collection stores region grids.
    pub fn region_reduction(&self) -> Option<Arc<TokenReduction>> {
        self.region_reduction.get(self.store.as_ref())
    }

    /// The reduction patch tokens go through, once a collection with quantised patch grids
    /// stores one.
    pub fn patch_reduction(&self) -> Option<Arc<TokenReduction>> {
        // An int8 collection never pins one: no store lookup per grid read (on a shared store,
        // a missing reduction is looked up again at every call).
        if !self.config.patch_codec.quantised {
            return None;
        }
        self.patch_reduction.get(self.store.as_ref())
    }

    /// Refuses a query vector of another dimension than the collection's.
    pub(crate) fn check_query(&self, q: &crate::vectors::UnitVector) -> Result<()> {
        if q.dim() != self.config.dim {
            return Err(Error::InvalidVector(format!(
                "query has dimension {}, the collection {}",
                q.dim(),
                self.config.dim
            )));
        }
        Ok(())
    }

    /// Makes everything committed to the store durable.
    pub(crate) fn flush_store(&self) -> Result<()> {
        self.store.flush()
    }
}

fn dir_size(dir: &Path) -> u64 {
    std::fs::read_dir(dir).map(|rd| rd.flatten().filter_map(|e| e.metadata().ok()).map(|m| m.len()).sum()).unwrap_or(0)
}
