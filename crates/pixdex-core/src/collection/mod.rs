//! [`Collection`]: one folder holding a sled database (the truth) and an HNSW cache of its global
//! vectors. This module opens it (creating it pinned to a model, waiting out sled's lock of a
//! collection dropped a moment ago) and holds its state; `read` has the per-tree accessors,
//! `write` the write path. The HNSW lifecycle is in [`crate::index`], the queries in
//! [`crate::query`].

mod read;
mod write;

use parking_lot::{Mutex, RwLock};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::error::{Error, Result};
use crate::index::hnsw::HnswIndex;
use crate::index::patch_ivf::PatchIvf;
use crate::records::{CollectionConfig, ImageRecord};
use crate::region_reduction::RegionReduction;
use crate::schema;
use std::collections::HashMap;

/// A folder of images' embeddings.
pub struct Collection {
    dir: PathBuf,
    db: sled::Db,
    images: sled::Tree,
    by_path: sled::Tree,
    by_hash: sled::Tree,
    global: sled::Tree,
    patches: sled::Tree,
    views: sled::Tree,
    flipped_patches: sled::Tree,
    regions: sled::Tree,
    meta: sled::Tree,
    config: CollectionConfig,
    pub(crate) index: RwLock<HnswIndex>,
    /// The region reduction, once the first region grid was stored.
    region_reduction: RwLock<Option<Arc<RegionReduction>>>,
    /// Serialises fitting the region reduction.
    region_fit: Mutex<()>,
    /// Held by a commit from its first read to its graph insert, and by a flush while it saves
    /// the graph ([`Collection::commit`]).
    pub(crate) commit_lock: Mutex<()>,
    /// Stage 1 of region search, built on the first region query.
    pub(crate) region_index: Mutex<Option<PatchIvf>>,
    /// Every record in RAM, once [`Collection::cache_records`] was called (a server does): a
    /// search then reads no sled and decodes no JSON per result. Writers keep it in step under
    /// its write lock.
    record_cache: RwLock<Option<HashMap<u64, ImageRecord>>>,
}

fn store_err(dir: &Path) -> impl Fn(sled::Error) -> Error + '_ {
    move |source| match &source {
        sled::Error::Io(e) if e.to_string().contains("lock") => Error::Locked { path: dir.to_path_buf() },
        _ => Error::Store { path: dir.to_path_buf(), source },
    }
}

pub(crate) fn corrupt(what: &str, reason: impl ToString) -> Error {
    Error::Corrupt { what: what.to_string(), reason: reason.to_string() }
}

/// Refuses a layout newer than this build's; records the current one on an older (or new)
/// collection. Version 1 is the layout collections had before the version was recorded, so
/// there is nothing to migrate yet.
fn check_schema_version(dir: &Path, meta: &sled::Tree) -> Result<()> {
    let err = store_err(dir);
    let found = match meta.get(schema::META_SCHEMA_VERSION).map_err(&err)? {
        Some(v) => u32::from_be_bytes(v.as_ref().try_into().map_err(|_| corrupt("schema_version", "not a u32"))?),
        None => 0,
    };
    if found > schema::SCHEMA_VERSION {
        return Err(Error::NewerSchema { path: dir.to_path_buf(), found, supported: schema::SCHEMA_VERSION });
    }
    if found < schema::SCHEMA_VERSION {
        meta.insert(schema::META_SCHEMA_VERSION, &schema::SCHEMA_VERSION.to_be_bytes()).map_err(&err)?;
    }
    Ok(())
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
        let err = store_err(dir);
        if wanted.is_none() && !dir.join("db").exists() {
            return Err(Error::Io {
                path: dir.to_path_buf(),
                source: std::io::Error::new(std::io::ErrorKind::NotFound, "no pixdex collection here"),
            });
        }
        std::fs::create_dir_all(dir).map_err(|source| Error::Io { path: dir.to_path_buf(), source })?;
        // sled releases its file lock only when its background flusher drops the last handle,
        // a little after the previous `Collection` in this process was dropped: retry briefly
        // before reporting the collection as locked.
        let mut attempts = 0;
        let db = loop {
            match sled::Config::new().path(dir.join("db")).cache_capacity(256 << 20).open().map_err(&err) {
                Err(Error::Locked { .. }) if attempts < 20 => {
                    attempts += 1;
                    std::thread::sleep(std::time::Duration::from_millis(50));
                }
                other => break other?,
            }
        };
        let tree = |name: &str| db.open_tree(name).map_err(&err);
        let (images, by_path, by_hash, global, patches, views, flipped_patches, regions, meta) = (
            tree(schema::IMAGES)?,
            tree(schema::BY_PATH)?,
            tree(schema::BY_HASH)?,
            tree(schema::GLOBAL)?,
            tree(schema::PATCHES)?,
            tree(schema::VIEWS)?,
            tree(schema::FLIPPED_PATCHES)?,
            tree(schema::REGIONS)?,
            tree(schema::META)?,
        );
        check_schema_version(dir, &meta)?;
        remove_stale_temporaries(dir);
        let stored: Option<CollectionConfig> = match meta.get(schema::META_CONFIG).map_err(&err)? {
            Some(bytes) => Some(serde_json::from_slice(&bytes).map_err(|e| corrupt("config", e))?),
            None => None,
        };
        let config = match (stored, wanted) {
            (Some(s), Some(w)) if !s.is_compatible(w) => {
                return Err(Error::ModelMismatch { expected: s.describe(), found: w.describe() });
            }
            (Some(s), _) => s,
            (None, Some(w)) => {
                meta.insert(schema::META_CONFIG, serde_json::to_vec(w).expect("config serialises")).map_err(&err)?;
                db.flush().map_err(&err)?;
                w.clone()
            }
            (None, None) => return Err(corrupt("config", "collection has no config")),
        };
        let index = RwLock::new(HnswIndex::new(config.dim, 0));
        let region_reduction = match meta.get(schema::META_REGION_REDUCTION).map_err(&err)? {
            Some(bytes) => Some(Arc::new(RegionReduction::from_bytes(&bytes)?)),
            None => None,
        };
        let c = Self {
            dir: dir.to_path_buf(),
            db,
            images,
            by_path,
            by_hash,
            global,
            patches,
            views,
            flipped_patches,
            regions,
            meta,
            config,
            index,
            region_reduction: RwLock::new(region_reduction),
            region_fit: Mutex::new(()),
            commit_lock: Mutex::new(()),
            region_index: Mutex::new(None),
            record_cache: RwLock::new(None),
        };
        c.load_index()?;
        Ok(c)
    }

    /// The folder.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// What the collection is pinned to.
    pub fn config(&self) -> &CollectionConfig {
        &self.config
    }

    /// Counter of committed write batches.
    pub fn generation(&self) -> Result<u64> {
        Ok(self
            .meta
            .get(schema::META_GENERATION)
            .map_err(store_err(&self.dir))?
            .and_then(|v| Some(u64::from_be_bytes(v.as_ref().try_into().ok()?)))
            .unwrap_or(0))
    }

    /// Number of image records (embedded and failed).
    pub fn len(&self) -> usize {
        self.images.len()
    }

    /// Whether there are no records.
    pub fn is_empty(&self) -> bool {
        self.images.is_empty()
    }

    /// Number of stored global vectors.
    pub fn vector_count(&self) -> usize {
        // sled's `Tree::len` walks the whole tree (3 ms at 10k vectors); the graph mirrors the
        // `global` tree and counts in O(1).
        self.index.read().live_len()
    }

    /// Bytes on disk of the sled database and the HNSW files.
    pub fn disk_bytes(&self) -> u64 {
        self.db.size_on_disk().unwrap_or(0) + dir_size(&self.dir.join("hnsw"))
    }

    /// The reduction region tokens go through, once the collection stores region grids.
    pub fn region_reduction(&self) -> Option<Arc<RegionReduction>> {
        self.region_reduction.read().clone()
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

    /// Makes everything committed to sled durable.
    pub(crate) fn flush_store(&self) -> Result<()> {
        self.db.flush().map_err(store_err(&self.dir))?;
        Ok(())
    }
}

fn dir_size(dir: &Path) -> u64 {
    std::fs::read_dir(dir).map(|rd| rd.flatten().filter_map(|e| e.metadata().ok()).map(|m| m.len()).sum()).unwrap_or(0)
}
