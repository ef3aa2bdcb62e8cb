//! The write path: [`Collection::commit`] (one sled transaction per batch, flushed, then the
//! derived HNSW graph), record updates, and pinning the region reduction.

use sled::Transactional;
use sled::transaction::{ConflictableTransactionError, TransactionError};
use std::sync::Arc;

use super::{Collection, corrupt, store_err};
use crate::codec::encode_region;
use crate::error::{Error, Result};
use crate::records::{Embedding, ImageId, ImageRecord, NewImage};
use crate::region_grid::{REGION_DIM, RegionGrid};
use crate::region_reduction::RegionReduction;
use crate::schema;
use crate::vectors::{PatchGrid, UnitVector};

/// An image's values as stored.
struct EncodedImage {
    record: Vec<u8>,
    global: Option<Vec<u8>>,
    patches: Option<Vec<u8>>,
    views: Option<Vec<u8>>,
    flipped_patches: Option<Vec<u8>>,
    region: Option<Vec<u8>>,
}

impl Collection {
    /// Adds `upserts` (replacing any image at the same path) and deletes `removals`, atomically:
    /// after a crash either all of it is there or none. Returns the new ids.
    ///
    /// Commits are serialised from the first read to the graph insert, and a flush waits for the
    /// one in progress: what replaces what, the generation and the graph always agree, so a
    /// saved graph never claims a generation whose vectors it lacks.
    pub fn commit(&self, upserts: Vec<NewImage>, removals: &[ImageId]) -> Result<Vec<ImageId>> {
        self.check_dimensions(&upserts)?;
        let _commit = self.commit_lock.lock();
        let removed = self.replaced_ids(&upserts, removals)?;
        let old_records: Vec<(u64, ImageRecord)> = removed
            .iter()
            .filter_map(|&id| self.get(ImageId(id)).transpose().map(|r| r.map(|r| (id, r))))
            .collect::<Result<_>>()?;
        let ids: Vec<u64> =
            upserts.iter().map(|_| self.db.generate_id()).collect::<sled::Result<_>>().map_err(store_err(&self.dir))?;
        let reduction = self.reduction_for(&upserts)?;
        let encoded: Vec<EncodedImage> =
            upserts.iter().map(|u| self.encode_values(u, reduction.as_deref())).collect::<Result<_>>()?;
        {
            let mut cache = self.record_cache.write();
            self.write_transaction(&old_records, &upserts, &ids, &encoded)?;
            if let Some(records) = cache.as_mut() {
                removed.iter().for_each(|id| _ = records.remove(id));
                records.extend(ids.iter().zip(&upserts).map(|(id, u)| (*id, u.record.clone())));
            }
        }
        // Durable before acknowledging: a kill -9 after this returns loses nothing of it.
        self.flush_store()?;
        self.update_graph(&removed, &ids, &encoded);
        Ok(ids.into_iter().map(ImageId).collect())
    }

    /// Refuses computed global vectors of another dimension than the collection's.
    fn check_dimensions(&self, upserts: &[NewImage]) -> Result<()> {
        for u in upserts {
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
        Ok(())
    }

    /// The ids a commit deletes: `removals` and the images now at the upserts' paths; sorted,
    /// each once.
    fn replaced_ids(&self, upserts: &[NewImage], removals: &[ImageId]) -> Result<Vec<u64>> {
        let mut removed: Vec<u64> = removals.iter().map(|i| i.0).collect();
        for u in upserts {
            if let Some(old) = self.id_by_path(&u.record.path)? {
                removed.push(old.0);
            }
        }
        removed.sort_unstable();
        removed.dedup();
        Ok(removed)
    }

    /// The reduction the upserts' region grids are stored through (fitted on them if the
    /// collection has none yet); `None` when none of them brings a region grid.
    fn reduction_for(&self, upserts: &[NewImage]) -> Result<Option<Arc<RegionReduction>>> {
        let region_grids: Vec<&RegionGrid> = upserts
            .iter()
            .filter_map(|u| match &u.embedding {
                Embedding::Computed { region, .. } => region.as_ref(),
                _ => None,
            })
            .collect();
        if region_grids.is_empty() {
            return Ok(None);
        }
        Ok(Some(self.ensure_region_reduction(&region_grids.iter().map(|g| &g.tokens).collect::<Vec<_>>())?))
    }

    /// The bytes each tree stores for one upsert: encoded from its vectors, or copied as stored
    /// from the image it is a copy of.
    fn encode_values(&self, u: &NewImage, reduction: Option<&RegionReduction>) -> Result<EncodedImage> {
        let record = serde_json::to_vec(&u.record).expect("record serialises");
        let codec = &self.config.patch_codec;
        Ok(match &u.embedding {
            Embedding::Computed { global, patches, views, region } => EncodedImage {
                region: match (region, reduction) {
                    (Some(r), Some(reduction)) => Some(encode_region(&r.frame, &reduction.reduce(&r.tokens)?)),
                    _ => None,
                },
                record,
                global: Some(global.to_bytes()),
                patches: patches.as_ref().map(|p| codec.encode(p)),
                views: views.as_ref().map(|v| v.encode_vectors()),
                flipped_patches: views.as_ref().and_then(|v| v.flipped_patches.as_ref()).map(|p| codec.encode(p)),
            },
            Embedding::CopyOf(src) => {
                let key = schema::id_key(src.0);
                let get =
                    |tree: &sled::Tree| tree.get(key).map(|v| v.map(|v| v.to_vec())).map_err(store_err(&self.dir));
                EncodedImage {
                    record,
                    global: Some(get(&self.global)?.ok_or(Error::NotFound(src.0))?),
                    patches: get(&self.patches)?,
                    views: get(&self.views)?,
                    flipped_patches: get(&self.flipped_patches)?,
                    region: get(&self.regions)?,
                }
            }
            Embedding::None => {
                EncodedImage { record, global: None, patches: None, views: None, flipped_patches: None, region: None }
            }
        })
    }

    /// One sled transaction over every tree: the old images out (with their path and hash
    /// entries), the new ones in, the generation bumped.
    fn write_transaction(
        &self,
        old_records: &[(u64, ImageRecord)],
        upserts: &[NewImage],
        ids: &[u64],
        encoded: &[EncodedImage],
    ) -> Result<()> {
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
                for (id, rec) in old_records {
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
                for (u, (id, e)) in upserts.iter().zip(ids.iter().zip(encoded)) {
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
                let generation = meta
                    .get(schema::META_GENERATION)?
                    .and_then(|v| Some(u64::from_be_bytes(v.as_ref().try_into().ok()?)))
                    .unwrap_or(0);
                meta.insert(schema::META_GENERATION, &(generation + 1).to_be_bytes())?;
                Ok::<(), ConflictableTransactionError<()>>(())
            })
            .map_err(|e| match e {
                TransactionError::Storage(s) => store_err(&self.dir)(s),
                TransactionError::Abort(()) => corrupt("transaction", "aborted"),
            })
    }

    /// The derived index after a committed batch: removed ids become tombstones, the new
    /// global vectors are inserted.
    fn update_graph(&self, removed: &[u64], ids: &[u64], encoded: &[EncodedImage]) {
        let mut index = self.index.write();
        for id in removed {
            index.remove(*id);
        }
        let fresh: Vec<(u64, Vec<f32>)> = encoded
            .iter()
            .zip(ids)
            .filter_map(|(e, id)| {
                Some((*id, UnitVector::from_bytes(e.global.as_ref()?, self.config.dim).ok()?.as_slice().to_vec()))
            })
            .collect();
        index.insert(&fresh);
    }

    /// Rewrites an image's record in place (same path; e.g. a new mtime for unchanged bytes).
    pub fn update_record(&self, id: ImageId, record: &ImageRecord) -> Result<()> {
        let key = schema::id_key(id.0);
        let mut cache = self.record_cache.write();
        if !self.images.contains_key(key).map_err(store_err(&self.dir))? {
            return Err(Error::NotFound(id.0));
        }
        self.images
            .insert(key, serde_json::to_vec(record).expect("record serialises"))
            .map_err(store_err(&self.dir))?;
        if let Some(records) = cache.as_mut() {
            records.insert(id.0, record.clone());
        }
        Ok(())
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
}
