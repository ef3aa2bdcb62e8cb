//! The write path: [`Collection::commit`] (one atomic, durable store commit per batch, then
//! the derived HNSW graph), record updates, and pinning the region reduction.

use std::sync::Arc;

use super::Collection;
use crate::codec::encode_region;
use crate::error::{Error, Result};
use crate::records::{Embedding, ImageId, ImageRecord, NewImage};
use crate::region_grid::{REGION_DIM, RegionGrid};
use crate::region_reduction::RegionReduction;
use crate::schema;
use crate::store::{StoredImage, StoredValues, ValueKind};
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
        let reduction = self.reduction_for(&upserts)?;
        let stored: Vec<StoredImage> = upserts
            .into_iter()
            .zip(&ids)
            .map(|(u, &id)| {
                let values = self.encode_values(&u, reduction.as_deref())?;
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

    /// The values stored for one upsert: encoded from its vectors, or copied as stored from the
    /// image it is a copy of.
    fn encode_values(&self, u: &NewImage, reduction: Option<&RegionReduction>) -> Result<StoredValues> {
        let codec = &self.config.patch_codec;
        let mut values = StoredValues::default();
        match &u.embedding {
            Embedding::Computed { global, patches, views, region } => {
                let region = match (region, reduction) {
                    (Some(r), Some(reduction)) => Some(encode_region(&r.frame, &reduction.reduce(&r.tokens)?)),
                    _ => None,
                };
                values.set(ValueKind::Global, Some(global.to_bytes()));
                values.set(ValueKind::Patches, patches.as_ref().map(|p| codec.encode(p)));
                values.set(ValueKind::Views, views.as_ref().map(|v| v.encode_vectors()));
                let flipped = views.as_ref().and_then(|v| v.flipped_patches.as_ref()).map(|p| codec.encode(p));
                values.set(ValueKind::FlippedPatches, flipped);
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
    pub fn ensure_region_reduction(&self, grids: &[&PatchGrid]) -> Result<Arc<RegionReduction>> {
        let _fitting = self.region_fit.lock();
        if let Some(r) = self.region_reduction() {
            return Ok(r);
        }
        let fitted = RegionReduction::fit(grids, REGION_DIM)?;
        // Stored before the grids that use it; one stored without grids (a crash in between)
        // is simply the reduction later grids use. Another process may have pinned one
        // meanwhile: then that one is the collection's.
        let stored = self.store.meta_insert_if_absent(schema::META_REGION_REDUCTION, &fitted.to_bytes())?;
        let r = Arc::new(RegionReduction::from_bytes(&stored)?);
        *self.region_reduction.write() = Some(r.clone());
        Ok(r)
    }
}
