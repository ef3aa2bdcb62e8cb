//! `Collection`: one folder holding a sled database (the truth) and an HNSW cache of its global
//! vectors.

use parking_lot::{Mutex, RwLock};
use serde::{Deserialize, Serialize};
use sled::Transactional;
use sled::transaction::{ConflictableTransactionError, TransactionError};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::codec::{DedupViews, PatchCodec, PatchGrid, UnitVector};
use crate::error::{Error, Result};
use crate::index::exact::TopK;
use crate::index::hnsw::HnswIndex;
use crate::index::patch_ivf::PatchIvf;
use crate::region::{REGION_DIM, RegionFrame, RegionGrid, RegionReduction, decode_region, encode_region};
use crate::schema;

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

    fn describe(&self) -> String {
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

/// An image's values as stored.
struct EncodedImage {
    record: Vec<u8>,
    global: Option<Vec<u8>>,
    patches: Option<Vec<u8>>,
    views: Option<Vec<u8>>,
    flipped_patches: Option<Vec<u8>>,
    region: Option<Vec<u8>>,
}

/// HNSW beam width of [`Collection::search`].
pub const SEARCH_EF: usize = 256;

/// Below this many vectors, searches scan exactly instead of using the graph.
pub const EXACT_SCAN_BELOW: usize = 4096;

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
    /// Stage 1 of region search, built on the first region query.
    pub(crate) region_index: Mutex<Option<PatchIvf>>,
}

fn store_err(dir: &Path) -> impl Fn(sled::Error) -> Error + '_ {
    move |source| match &source {
        sled::Error::Io(e) if e.to_string().contains("lock") => Error::Locked { path: dir.to_path_buf() },
        _ => Error::Store { path: dir.to_path_buf(), source },
    }
}

fn corrupt(what: &str, reason: impl ToString) -> Error {
    Error::Corrupt { what: what.to_string(), reason: reason.to_string() }
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
            region_index: Mutex::new(None),
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

    /// The record of an image.
    pub fn get(&self, id: ImageId) -> Result<Option<ImageRecord>> {
        match self.images.get(schema::id_key(id.0)).map_err(store_err(&self.dir))? {
            Some(b) => Ok(Some(serde_json::from_slice(&b).map_err(|e| corrupt("image record", e))?)),
            None => Ok(None),
        }
    }

    /// The id stored for a path.
    pub fn id_by_path(&self, path: &Path) -> Result<Option<ImageId>> {
        Ok(self
            .by_path
            .get(schema::path_key(path))
            .map_err(store_err(&self.dir))?
            .and_then(|v| schema::id_from_key(&v))
            .map(ImageId))
    }

    /// Ids of images with this content hash.
    pub fn ids_by_hash(&self, hash: &[u8; 32]) -> Result<Vec<ImageId>> {
        self.by_hash
            .scan_prefix(hash)
            .keys()
            .map(|k| {
                let k = k.map_err(store_err(&self.dir))?;
                schema::id_from_key(&k[32..]).map(ImageId).ok_or_else(|| corrupt("hash key", "bad length"))
            })
            .collect()
    }

    /// The stored global vector.
    pub fn global_vector(&self, id: ImageId) -> Result<Option<UnitVector>> {
        match self.global.get(schema::id_key(id.0)).map_err(store_err(&self.dir))? {
            Some(b) => Ok(Some(UnitVector::from_bytes(&b, self.config.dim)?)),
            None => Ok(None),
        }
    }

    /// The stored (reduced) patch grid.
    pub fn patch_grid(&self, id: ImageId) -> Result<Option<PatchGrid>> {
        match self.patches.get(schema::id_key(id.0)).map_err(store_err(&self.dir))? {
            Some(b) => Ok(Some(PatchCodec::decode(&b)?)),
            None => Ok(None),
        }
    }

    /// The stored mirrored and grayscale global vectors (absent for images indexed without them).
    pub fn view_vectors(&self, id: ImageId) -> Result<Option<(UnitVector, UnitVector)>> {
        match self.views.get(schema::id_key(id.0)).map_err(store_err(&self.dir))? {
            Some(b) => Ok(Some(DedupViews::decode_vectors(&b, self.config.dim)?)),
            None => Ok(None),
        }
    }

    /// Whether the image's mirrored and grayscale views are stored.
    pub fn has_view_vectors(&self, id: ImageId) -> Result<bool> {
        self.views.contains_key(schema::id_key(id.0)).map_err(store_err(&self.dir))
    }

    /// The stored (reduced) patch grid of the mirrored view.
    pub fn flipped_patch_grid(&self, id: ImageId) -> Result<Option<PatchGrid>> {
        match self.flipped_patches.get(schema::id_key(id.0)).map_err(store_err(&self.dir))? {
            Some(b) => Ok(Some(PatchCodec::decode(&b)?)),
            None => Ok(None),
        }
    }

    /// The image's stored region grid (reduced tokens) and its frame.
    pub fn region_grid(&self, id: ImageId) -> Result<Option<(RegionFrame, PatchGrid)>> {
        match self.regions.get(schema::id_key(id.0)).map_err(store_err(&self.dir))? {
            Some(bytes) => Ok(Some(decode_region(&bytes)?)),
            None => Ok(None),
        }
    }

    /// Whether the image's region grid is stored.
    pub fn has_region_grid(&self, id: ImageId) -> Result<bool> {
        self.regions.contains_key(schema::id_key(id.0)).map_err(store_err(&self.dir))
    }

    /// Bytes of the stored region grids, and how many there are.
    pub fn region_storage(&self) -> (u64, usize) {
        let mut bytes = 0u64;
        let mut n = 0;
        for (_, v) in self.regions.iter().flatten() {
            bytes += v.len() as u64;
            n += 1;
        }
        (bytes, n)
    }

    /// The reduction region tokens go through, once the collection stores region grids.
    pub fn region_reduction(&self) -> Option<Arc<RegionReduction>> {
        self.region_reduction.read().clone()
    }

    pub(crate) fn store_error(&self, e: sled::Error) -> Error {
        store_err(&self.dir)(e)
    }

    pub(crate) fn regions_tree(&self) -> &sled::Tree {
        &self.regions
    }

    /// The pinned region reduction; if the collection has none yet, it is fitted on `grids`
    /// and stored. An index job calls this first with a sample spread over its images
    /// (fitting on whatever batch happens to come first would fit one folder's statistics);
    /// otherwise the first committed region grids fit it.
    pub fn ensure_region_reduction(&self, grids: &[&PatchGrid]) -> Result<Arc<RegionReduction>> {
        let _fitting = self.region_fit.lock();
        if let Some(r) = self.region_reduction() {
            return Ok(r);
        }
        let r = Arc::new(RegionReduction::fit(grids, REGION_DIM)?);
        // Stored before the grids that use it; one stored without grids (a crash in between)
        // is simply the reduction later grids use.
        self.meta.insert(schema::META_REGION_REDUCTION, r.to_bytes()).map_err(store_err(&self.dir))?;
        *self.region_reduction.write() = Some(r.clone());
        Ok(r)
    }

    /// Every record, in id order.
    pub fn records(&self) -> impl Iterator<Item = Result<(ImageId, ImageRecord)>> + '_ {
        self.images.iter().map(move |kv| {
            let (k, v) = kv.map_err(store_err(&self.dir))?;
            let id = schema::id_from_key(&k).ok_or_else(|| corrupt("image key", "bad length"))?;
            let rec = serde_json::from_slice(&v).map_err(|e| corrupt("image record", e))?;
            Ok((ImageId(id), rec))
        })
    }

    /// Adds `upserts` (replacing any image at the same path) and deletes `removals`, atomically:
    /// after a crash either all of it is there or none. Returns the new ids.
    pub fn commit(&self, upserts: Vec<NewImage>, removals: &[ImageId]) -> Result<Vec<ImageId>> {
        let err = store_err(&self.dir);
        for u in &upserts {
            if let Embedding::Computed { global: g, .. } = &u.embedding
                && g.dim() != self.config.dim
            {
                return Err(Error::InvalidVector(format!(
                    "dimension {} in a {}-d collection",
                    g.dim(),
                    self.config.dim
                )));
            }
        }
        let mut removed: Vec<u64> = removals.iter().map(|i| i.0).collect();
        for u in &upserts {
            if let Some(old) = self.id_by_path(&u.record.path)? {
                removed.push(old.0);
            }
        }
        removed.sort_unstable();
        removed.dedup();
        let old_records: Vec<(u64, ImageRecord)> = removed
            .iter()
            .filter_map(|&id| self.get(ImageId(id)).transpose().map(|r| r.map(|r| (id, r))))
            .collect::<Result<_>>()?;
        let ids: Vec<u64> = upserts.iter().map(|_| self.db.generate_id()).collect::<sled::Result<_>>().map_err(&err)?;
        let region_grids: Vec<&RegionGrid> = upserts
            .iter()
            .filter_map(|u| match &u.embedding {
                Embedding::Computed { region, .. } => region.as_ref(),
                _ => None,
            })
            .collect();
        let reduction = match region_grids.is_empty() {
            true => None,
            false => Some(self.ensure_region_reduction(&region_grids.iter().map(|g| &g.tokens).collect::<Vec<_>>())?),
        };
        let encoded: Vec<EncodedImage> = upserts
            .iter()
            .map(|u| {
                let record = serde_json::to_vec(&u.record).expect("record serialises");
                let codec = &self.config.patch_codec;
                Ok(match &u.embedding {
                    Embedding::Computed { global, patches, views, region } => EncodedImage {
                        region: match (region, &reduction) {
                            (Some(r), Some(reduction)) => Some(encode_region(&r.frame, &reduction.reduce(&r.tokens)?)),
                            _ => None,
                        },
                        record,
                        global: Some(global.to_bytes()),
                        patches: patches.as_ref().map(|p| codec.encode(p)),
                        views: views.as_ref().map(|v| v.encode_vectors()),
                        flipped_patches: views
                            .as_ref()
                            .and_then(|v| v.flipped_patches.as_ref())
                            .map(|p| codec.encode(p)),
                    },
                    Embedding::CopyOf(src) => {
                        let key = schema::id_key(src.0);
                        let get = |tree: &sled::Tree| tree.get(key).map(|v| v.map(|v| v.to_vec())).map_err(&err);
                        EncodedImage {
                            record,
                            global: Some(get(&self.global)?.ok_or(Error::NotFound(src.0))?),
                            patches: get(&self.patches)?,
                            views: get(&self.views)?,
                            flipped_patches: get(&self.flipped_patches)?,
                            region: get(&self.regions)?,
                        }
                    }
                    Embedding::None => EncodedImage {
                        record,
                        global: None,
                        patches: None,
                        views: None,
                        flipped_patches: None,
                        region: None,
                    },
                })
            })
            .collect::<Result<_>>()?;
        let generation = self.generation()? + 1;
        let trees = (
            &self.images,
            &self.by_path,
            &self.by_hash,
            &self.global,
            &self.patches,
            &self.views,
            &self.flipped_patches,
            &self.regions,
            &self.meta,
        );
        trees
            .transaction(|(images, by_path, by_hash, global, patches, views, flipped_patches, regions, meta)| {
                for (id, rec) in &old_records {
                    let key = schema::id_key(*id);
                    images.remove(&key)?;
                    let pk = schema::path_key(&rec.path);
                    if by_path.get(&pk)?.is_some_and(|v| v.as_ref() == key) {
                        by_path.remove(pk)?;
                    }
                    by_hash.remove(&schema::hash_key(&rec.blake3, *id)[..])?;
                    global.remove(&key)?;
                    patches.remove(&key)?;
                    views.remove(&key)?;
                    flipped_patches.remove(&key)?;
                    regions.remove(&key)?;
                }
                for (u, (id, e)) in upserts.iter().zip(ids.iter().zip(&encoded)) {
                    let key = schema::id_key(*id);
                    images.insert(&key, e.record.as_slice())?;
                    by_path.insert(schema::path_key(&u.record.path), &key)?;
                    by_hash.insert(&schema::hash_key(&u.record.blake3, *id)[..], &[])?;
                    for (tree, value) in [
                        (global, &e.global),
                        (patches, &e.patches),
                        (views, &e.views),
                        (flipped_patches, &e.flipped_patches),
                        (regions, &e.region),
                    ] {
                        if let Some(v) = value {
                            tree.insert(&key, v.as_slice())?;
                        }
                    }
                }
                meta.insert(schema::META_GENERATION, &generation.to_be_bytes())?;
                Ok::<(), ConflictableTransactionError<()>>(())
            })
            .map_err(|e| match e {
                TransactionError::Storage(s) => err(s),
                TransactionError::Abort(()) => corrupt("transaction", "aborted"),
            })?;
        // Durable before acknowledging: a kill -9 after this returns loses nothing of it.
        self.db.flush().map_err(&err)?;
        let mut index = self.index.write();
        for id in &removed {
            index.remove(*id);
        }
        let fresh: Vec<(u64, Vec<f32>)> = encoded
            .iter()
            .zip(&ids)
            .filter_map(|(e, id)| {
                Some((*id, UnitVector::from_bytes(e.global.as_ref()?, self.config.dim).ok()?.as_slice().to_vec()))
            })
            .collect();
        index.insert(&fresh);
        Ok(ids.into_iter().map(ImageId).collect())
    }

    /// Rewrites an image's record in place (same path; e.g. a new mtime for unchanged bytes).
    pub fn update_record(&self, id: ImageId, record: &ImageRecord) -> Result<()> {
        let key = schema::id_key(id.0);
        if !self.images.contains_key(key).map_err(store_err(&self.dir))? {
            return Err(Error::NotFound(id.0));
        }
        self.images
            .insert(key, serde_json::to_vec(record).expect("record serialises"))
            .map_err(store_err(&self.dir))?;
        Ok(())
    }

    /// Makes everything committed durable (sled flush) and saves the HNSW graph.
    pub fn flush(&self) -> Result<()> {
        self.db.flush().map_err(store_err(&self.dir))?;
        let generation = self.generation()?;
        self.index.read().save(&self.dir, generation)
    }

    /// Rebuilds the graph from the stored vectors, dropping tombstones.
    pub fn compact(&self) -> Result<()> {
        let fresh = self.build_index()?;
        *self.index.write() = fresh;
        self.flush()
    }

    /// The `k` most similar images: exact below [`EXACT_SCAN_BELOW`] vectors, HNSW above.
    pub fn search(&self, query: &UnitVector, k: usize) -> Result<Vec<Hit>> {
        self.check_query(query)?;
        if self.vector_count() < EXACT_SCAN_BELOW {
            return self.search_exact(query, k);
        }
        // ef 256: recall@10 1.0 on clustered 384-d vectors at 100k and ≥ 0.98 on uniform 64-d
        // ones at 20k (benches/hnsw_recall.rs); uniform 384-d noise is the worst case (0.31).
        self.search_hnsw(query, k, k.saturating_mul(4).max(SEARCH_EF))
    }

    /// The `k` most similar images by scanning every stored vector.
    pub fn search_exact(&self, query: &UnitVector, k: usize) -> Result<Vec<Hit>> {
        self.check_query(query)?;
        let mut top = TopK::new(k);
        self.for_each_vector(|id, v| top.push(id, query.dot(v)))?;
        Ok(top.into_sorted().into_iter().map(|(id, score)| Hit { id: ImageId(id), score }).collect())
    }

    /// Calls `f` with every stored global vector, in id order.
    pub(crate) fn for_each_vector(&self, mut f: impl FnMut(u64, &[f32])) -> Result<()> {
        for kv in self.global.iter() {
            let (key, v) = kv.map_err(store_err(&self.dir))?;
            let id = schema::id_from_key(&key).ok_or_else(|| corrupt("global key", "bad length"))?;
            f(id, UnitVector::from_bytes(&v, self.config.dim)?.as_slice());
        }
        Ok(())
    }

    /// Ids of the images whose path (or key) starts with `prefix` (a plain string prefix).
    pub fn ids_with_path_prefix(&self, prefix: &str) -> Result<Vec<ImageId>> {
        self.by_path
            .scan_prefix(prefix.as_bytes())
            .values()
            .map(|v| {
                let v = v.map_err(store_err(&self.dir))?;
                schema::id_from_key(&v).map(ImageId).ok_or_else(|| corrupt("path value", "bad length"))
            })
            .collect()
    }

    /// Deleted vectors still in the HNSW graph (filtered at query time until [`Collection::compact`]).
    pub fn hnsw_tombstones(&self) -> usize {
        self.index.read().tombstone_count()
    }

    /// HNSW search regardless of size (for measuring recall against [`Collection::search_exact`]).
    pub fn search_hnsw(&self, query: &UnitVector, k: usize, ef: usize) -> Result<Vec<Hit>> {
        self.search_hnsw_where(query, k, ef, None)
    }

    /// HNSW search keeping only ids for which `keep` is true.
    pub(crate) fn search_hnsw_where(
        &self,
        query: &UnitVector,
        k: usize,
        ef: usize,
        keep: Option<&(dyn Fn(u64) -> bool + Sync)>,
    ) -> Result<Vec<Hit>> {
        self.check_query(query)?;
        let index = self.index.read();
        let k = k.min(index.live_len());
        Ok(index
            .search_where(query.as_slice(), k, ef, keep)
            .into_iter()
            .map(|(id, score)| Hit { id: ImageId(id), score })
            .collect())
    }

    pub(crate) fn check_query(&self, q: &UnitVector) -> Result<()> {
        if q.dim() != self.config.dim {
            return Err(Error::InvalidVector(format!(
                "query has dimension {}, the collection {}",
                q.dim(),
                self.config.dim
            )));
        }
        Ok(())
    }

    fn stored_vectors(&self) -> Result<Vec<(u64, Vec<f32>)>> {
        self.global
            .iter()
            .map(|kv| {
                let (k, v) = kv.map_err(store_err(&self.dir))?;
                let id = schema::id_from_key(&k).ok_or_else(|| corrupt("global key", "bad length"))?;
                Ok((id, UnitVector::from_bytes(&v, self.config.dim)?.as_slice().to_vec()))
            })
            .collect()
    }

    fn build_index(&self) -> Result<HnswIndex> {
        let vectors = self.stored_vectors()?;
        let mut index = HnswIndex::new(self.config.dim, vectors.len());
        index.insert(&vectors);
        Ok(index)
    }

    /// Loads the persisted graph if it matches, catches it up with sled, or rebuilds it.
    fn load_index(&self) -> Result<()> {
        let generation = self.generation()?;
        let loaded = HnswIndex::load(&self.dir).filter(|(ix, _)| ix.dim() == self.config.dim);
        let index = match loaded {
            Some((ix, g)) if g == generation => ix,
            Some((mut ix, g)) => {
                // Ids are never reused and vectors never change under an id, so the difference
                // of id sets is exactly what happened since generation `g`.
                let mut missing = Vec::new();
                let mut live = std::collections::HashSet::new();
                for kv in self.global.iter() {
                    let (k, v) = kv.map_err(store_err(&self.dir))?;
                    let id = schema::id_from_key(&k).ok_or_else(|| corrupt("global key", "bad length"))?;
                    live.insert(id);
                    if !ix.contains(id) {
                        missing.push((id, UnitVector::from_bytes(&v, self.config.dim)?.as_slice().to_vec()));
                    }
                }
                let gone: Vec<u64> = ix.member_ids().filter(|id| !live.contains(id)).collect();
                tracing::info!(
                    from = g,
                    to = generation,
                    added = missing.len(),
                    removed = gone.len(),
                    "HNSW caught up"
                );
                gone.into_iter().for_each(|id| ix.remove(id));
                ix.insert(&missing);
                ix
            }
            None => self.build_index()?,
        };
        let rebuild = index.tombstone_ratio() > 0.2;
        *self.index.write() = if rebuild { self.build_index()? } else { index };
        Ok(())
    }
}

fn dir_size(dir: &Path) -> u64 {
    std::fs::read_dir(dir).map(|rd| rd.flatten().filter_map(|e| e.metadata().ok()).map(|m| m.len()).sum()).unwrap_or(0)
}
