//! The write path: [`Collection::commit`] (one atomic, durable store commit per batch, then
//! the derived HNSW graph), record updates, and pinning the region and patch reductions.

use std::sync::Arc;

use super::Collection;
use crate::codec::{PATCH_DIM, PATCH_SUBSPACES, encode_region};
use crate::error::{Error, Result};
use crate::records::{Embedding, ImageId, ImageRecord, NewImage};
use crate::region_grid::{REGION_DIM, REGION_SUBSPACES, RegionGrid};
use crate::store::{StoredImage, StoredValues, ValueKind};
use crate::token_reduction::TokenReduction;
use crate::vectors::{PatchGrid, UnitVector};

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
            .filter_map(|&id| self.store.record(id).transpose().map(|r| r.map(|r| (id, r))))
            .collect::<Result<_>>()?;
        let ids = self.store.allocate_ids(upserts.len())?;
        let reductions =
            Reductions { region: self.reduction_for(&upserts)?, patch: self.patch_reduction_for(&upserts)? };
        let stored: Vec<StoredImage> = upserts
            .into_iter()
            .zip(&ids)
            .map(|(u, &id)| {
                let values = self.encode_values(&u, &reductions)?;
                Ok(StoredImage { id, record: u.record, values })
            })
            .collect::<Result<_>>()?;
        let removed = {
            let mut cache = self.record_cache.write();
            let removed = self.store.commit(&old_records, &stored)?;
            if let Some(records) = cache.as_mut() {
                removed.iter().for_each(|id| _ = records.remove(id));
                records.extend(stored.iter().map(|s| (s.id, s.record.clone())));
            }
            removed
        };
        self.update_graph(&removed, &stored);
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
    fn reduction_for(&self, upserts: &[NewImage]) -> Result<Option<Arc<TokenReduction>>> {
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

    /// The reduction the upserts' patch grids are stored through, for a collection whose patch
    /// grids are quantised (fitted on them if it has none yet); `None` otherwise, or when none of
    /// them brings a patch grid.
    fn patch_reduction_for(&self, upserts: &[NewImage]) -> Result<Option<Arc<TokenReduction>>> {
        if !self.config.patch_codec.quantised {
            return Ok(None);
        }
        let grids: Vec<&PatchGrid> = upserts
            .iter()
            .flat_map(|u| match &u.embedding {
                Embedding::Computed { patches, views, .. } => {
                    vec![patches.as_ref(), views.as_ref().and_then(|v| v.flipped_patches.as_ref())]
                }
                _ => Vec::new(),
            })
            .flatten()
            .collect();
        if grids.is_empty() {
            return Ok(None);
        }
        Ok(Some(self.ensure_patch_reduction(&grids)?))
    }

    /// The values stored for one upsert: encoded from its vectors, or copied as stored from the
    /// image it is a copy of.
    fn encode_values(&self, u: &NewImage, reductions: &Reductions) -> Result<StoredValues> {
        let codec = &self.config.patch_codec;
        let patch_reduction = reductions.patch.as_deref();
        let mut values = StoredValues::default();
        match &u.embedding {
            Embedding::Computed { global, patches, views, region } => {
                let region = match (region, reductions.region.as_deref()) {
                    (Some(r), Some(reduction)) => {
                        Some(encode_region(&r.frame, &reduction.reduce(&r.tokens)?, reduction.quantizer()))
                    }
                    _ => None,
                };
                values.set(ValueKind::Global, Some(global.to_bytes()));
                values.set(ValueKind::Patches, patches.as_ref().map(|p| codec.encode(p, patch_reduction)).transpose()?);
                values.set(ValueKind::Views, views.as_ref().map(|v| v.encode_vectors()));
                let flipped = views.as_ref().and_then(|v| v.flipped_patches.as_ref());
                values.set(ValueKind::FlippedPatches, flipped.map(|p| codec.encode(p, patch_reduction)).transpose()?);
                values.set(ValueKind::Region, region);
            }
            Embedding::CopyOf(src) => {
                for kind in ValueKind::ALL {
                    values.set(kind, self.store.value(kind, src.0)?);
                }
                if values.get(ValueKind::Global).is_none() {
                    return Err(Error::NotFound(src.0));
                }
            }
            Embedding::None => {}
        }
        Ok(values)
    }

    /// The derived index after a committed batch: removed ids become tombstones, the new
    /// global vectors are inserted.
    fn update_graph(&self, removed: &[u64], stored: &[StoredImage]) {
        let mut index = self.index.write();
        for id in removed {
            index.remove(*id);
        }
        let fresh: Vec<(u64, Vec<f32>)> = stored
            .iter()
            .filter_map(|s| {
                let bytes = s.values.get(ValueKind::Global)?;
                Some((s.id, UnitVector::from_bytes(bytes, self.config.dim).ok()?.as_slice().to_vec()))
            })
            .collect();
        index.insert(&fresh);
    }

    /// Rewrites an image's record in place (same path; e.g. a new mtime for unchanged bytes).
    pub fn update_record(&self, id: ImageId, record: &ImageRecord) -> Result<()> {
        let mut cache = self.record_cache.write();
        if !self.store.update_record(id.0, record)? {
            return Err(Error::NotFound(id.0));
        }
        if let Some(records) = cache.as_mut() {
            records.insert(id.0, record.clone());
        }
        Ok(())
    }

    /// The pinned region reduction; if the collection has none yet, it is fitted on `grids`
    /// and stored. An index job calls this first with a sample spread over its images
    /// (fitting on whatever batch happens to come first would fit one folder's statistics);
    /// otherwise the first committed region grids fit it.
    pub fn ensure_region_reduction(&self, grids: &[&PatchGrid]) -> Result<Arc<TokenReduction>> {
        self.region_reduction.ensure(self.store.as_ref(), grids, REGION_DIM, REGION_SUBSPACES)
    }

    /// The pinned patch reduction, fitted on `grids` (full-resolution patch grids, pooled here as
    /// the codec pools) if the collection has none yet; as [`Self::ensure_region_reduction`].
    pub fn ensure_patch_reduction(&self, grids: &[&PatchGrid]) -> Result<Arc<TokenReduction>> {
        let pool = self.config.patch_codec.pool;
        let pooled: Vec<PatchGrid> = if pool > 1 { grids.iter().map(|g| g.pooled(pool)).collect() } else { Vec::new() };
        let grids: Vec<&PatchGrid> = if pool > 1 { pooled.iter().collect() } else { grids.to_vec() };
        self.patch_reduction.ensure(self.store.as_ref(), &grids, PATCH_DIM, PATCH_SUBSPACES)
    }
}

/// The reductions one commit stores its grids through.
struct Reductions {
    region: Option<Arc<TokenReduction>>,
    patch: Option<Arc<TokenReduction>>,
}
