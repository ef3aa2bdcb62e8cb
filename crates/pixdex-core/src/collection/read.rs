//! Typed reads: records, ids by path and hash, and each stored vector or grid by id, decoded
//! from what the [`crate::Store`] keeps.

use std::path::Path;

use super::Collection;
use crate::codec::{PatchCodec, decode_region};
use crate::error::Result;
use crate::records::{ImageId, ImageRecord};
use crate::region_grid::RegionFrame;
use crate::store::ValueKind;
use crate::vectors::{DedupViews, PatchGrid, UnitVector};

impl Collection {
    /// The value of `kind` stored for `id`, decoded.
    fn get_decoded<T>(
        &self,
        kind: ValueKind,
        id: ImageId,
        decode: impl FnOnce(&[u8]) -> Result<T>,
    ) -> Result<Option<T>> {
        self.store.value(kind, id.0)?.map(|bytes| decode(&bytes)).transpose()
    }

    /// The record of an image.
    pub fn get(&self, id: ImageId) -> Result<Option<ImageRecord>> {
        if let Some(records) = self.record_cache.read().as_ref() {
            return Ok(records.get(&id.0).cloned());
        }
        self.store.record(id.0)
    }

    /// The records of several images, in the order asked.
    pub fn get_many(&self, ids: &[ImageId]) -> Result<Vec<Option<ImageRecord>>> {
        if let Some(records) = self.record_cache.read().as_ref() {
            return Ok(ids.iter().map(|id| records.get(&id.0).cloned()).collect());
        }
        self.store.records_of(&ids.iter().map(|id| id.0).collect::<Vec<_>>())
    }

    /// Keeps every record in RAM from now on (about 200 bytes each), so that searches read
    /// results without the store or JSON: for long-lived processes (the server). A store other
    /// processes write to is always read.
    pub fn cache_records(&self) -> Result<()> {
        if self.store.is_shared() {
            return Ok(());
        }
        let mut cache = self.record_cache.write();
        if cache.is_none() {
            // Writers wait on the lock held here, so no commit lands between the walk and the cache.
            let mut records = std::collections::HashMap::new();
            for entry in self.store.records() {
                let (id, record) = entry?;
                records.insert(id, record);
            }
            *cache = Some(records);
        }
        Ok(())
    }

    /// Every record, in id order.
    pub fn records(&self) -> impl Iterator<Item = Result<(ImageId, ImageRecord)>> + '_ {
        self.store.records().map(|e| e.map(|(id, r)| (ImageId(id), r)))
    }

    /// The id stored for a path.
    pub fn id_by_path(&self, path: &Path) -> Result<Option<ImageId>> {
        Ok(self.store.id_by_path(path)?.map(ImageId))
    }

    /// Ids of the images whose path (or key) starts with `prefix` (a plain string prefix).
    pub fn ids_with_path_prefix(&self, prefix: &str) -> Result<Vec<ImageId>> {
        Ok(self.store.ids_with_path_prefix(prefix)?.into_iter().map(ImageId).collect())
    }

    /// Ids of images with this content hash.
    pub fn ids_by_hash(&self, hash: &[u8; 32]) -> Result<Vec<ImageId>> {
        Ok(self.store.ids_by_hash(hash)?.into_iter().map(ImageId).collect())
    }

    /// The stored global vector.
    pub fn global_vector(&self, id: ImageId) -> Result<Option<UnitVector>> {
        self.get_decoded(ValueKind::Global, id, |b| UnitVector::from_bytes(b, self.config.dim))
    }

    /// Calls `f` with every stored global vector of the images from id `from` on, in id order.
    pub(crate) fn for_each_vector_from(&self, from: u64, mut f: impl FnMut(u64, &[f32])) -> Result<()> {
        for entry in self.store.values(ValueKind::Global, from, 1) {
            let (id, bytes) = entry?;
            f(id, UnitVector::from_bytes(&bytes, self.config.dim)?.as_slice());
        }
        Ok(())
    }

    /// Calls `f` with every stored global vector, in id order.
    pub(crate) fn for_each_vector(&self, f: impl FnMut(u64, &[f32])) -> Result<()> {
        self.for_each_vector_from(0, f)
    }

    /// The stored (reduced) patch grid.
    pub fn patch_grid(&self, id: ImageId) -> Result<Option<PatchGrid>> {
        let reduction = self.patch_reduction();
        self.get_decoded(ValueKind::Patches, id, |b| PatchCodec::decode(b, reduction.as_deref()))
    }

    /// The stored mirrored and grayscale global vectors (absent for images indexed without them).
    pub fn view_vectors(&self, id: ImageId) -> Result<Option<(UnitVector, UnitVector)>> {
        self.get_decoded(ValueKind::Views, id, |b| DedupViews::decode_vectors(b, self.config.dim))
    }

    /// Whether the image's global vector is stored (without reading it).
    pub fn has_global_vector(&self, id: ImageId) -> Result<bool> {
        self.store.has_value(ValueKind::Global, id.0)
    }

    /// Whether the image's mirrored and grayscale views are stored.
    pub fn has_view_vectors(&self, id: ImageId) -> Result<bool> {
        self.store.has_value(ValueKind::Views, id.0)
    }

    /// The stored (reduced) patch grid of the mirrored view.
    pub fn flipped_patch_grid(&self, id: ImageId) -> Result<Option<PatchGrid>> {
        let reduction = self.patch_reduction();
        self.get_decoded(ValueKind::FlippedPatches, id, |b| PatchCodec::decode(b, reduction.as_deref()))
    }

    /// The image's stored region grid (reduced tokens) and its frame.
    pub fn region_grid(&self, id: ImageId) -> Result<Option<(RegionFrame, PatchGrid)>> {
        let reduction = self.region_reduction();
        self.get_decoded(ValueKind::Region, id, |b| decode_region(b, reduction.as_deref()))
    }

    /// Whether the image's region grid is stored.
    pub fn has_region_grid(&self, id: ImageId) -> Result<bool> {
        self.store.has_value(ValueKind::Region, id.0)
    }

    /// Every `step`-th stored region grid (1: all of them) of the images from id `from` on, in id
    /// order, with its frame.
    pub(crate) fn region_grids(
        &self,
        from: ImageId,
        step: usize,
    ) -> impl Iterator<Item = Result<(ImageId, (RegionFrame, PatchGrid))>> + '_ {
        let reduction = self.region_reduction();
        self.store.values(ValueKind::Region, from.0, step).map(move |e| {
            let (id, bytes) = e?;
            Ok((ImageId(id), decode_region(&bytes, reduction.as_deref())?))
        })
    }

    /// Bytes of the stored region grids, and how many there are.
    pub fn region_storage(&self) -> Result<(u64, usize)> {
        self.stored_bytes(ValueKind::Region)
    }

    /// Bytes of the stored values of one kind (as encoded, before the store's own overhead), and
    /// how many there are. Reads every one of them.
    pub fn stored_bytes(&self, kind: ValueKind) -> Result<(u64, usize)> {
        self.store.value_bytes(kind)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::PatchCodec;
    use crate::records::{CollectionConfig, Embedding, ImageStatus, NewImage};
    use crate::region_grid::RegionGrid;

    fn config() -> CollectionConfig {
        CollectionConfig {
            model: "test".into(),
            model_fingerprint: "fp".into(),
            embedding: "test/v1".into(),
            dim: 4,
            patch_codec: PatchCodec { pool: 1, quantised: false },
        }
    }

    /// An image whose `rows × 2` region grid is made of varied 4-d tokens.
    fn with_region(n: u8, rows: usize) -> NewImage {
        let values = (0..rows * 2 * 4).map(|i| ((i * 7 + n as usize) % 11) as f32 - 5.0).collect();
        NewImage {
            record: ImageRecord {
                path: format!("/r/{n}.jpg").into(),
                size: 1,
                mtime_ns: 0,
                blake3: [n; 32],
                width: 20,
                height: 10 * rows as u32,
                status: ImageStatus::Embedded,
            },
            embedding: Embedding::Computed {
                global: UnitVector::new(vec![1.0, n as f32, 0.5, -1.0]).unwrap(),
                patches: None,
                views: None,
                region: Some(RegionGrid {
                    frame: RegionFrame { width: 20, height: 10 * rows as u32, orientation: 1 },
                    tokens: PatchGrid::new(rows, 2, 4, values).unwrap(),
                }),
            },
        }
    }

    #[test]
    fn region_grids_iterate_from_an_id_in_steps() {
        let dir = tempfile::tempdir().unwrap();
        let c = Collection::open_or_create(dir.path(), &config()).unwrap();
        let ids = c.commit((1..=3).map(|n| with_region(n, n as usize)).collect(), &[]).unwrap();
        let listed = |from: ImageId, step: usize| -> Vec<(ImageId, usize)> {
            c.region_grids(from, step).map(|e| e.map(|(id, (_, g))| (id, g.rows())).unwrap()).collect()
        };
        assert_eq!(listed(ImageId(0), 1), vec![(ids[0], 1), (ids[1], 2), (ids[2], 3)]);
        assert_eq!(listed(ids[1], 1), vec![(ids[1], 2), (ids[2], 3)]);
        assert_eq!(listed(ImageId(0), 2), vec![(ids[0], 1), (ids[2], 3)]);
        let (frame, grid) = c.region_grid(ids[2]).unwrap().unwrap();
        assert_eq!((frame.height, grid.rows(), grid.cols()), (30, 3, 2));
        c.commit(vec![], &[ids[1]]).unwrap();
        assert_eq!(listed(ImageId(0), 1), vec![(ids[0], 1), (ids[2], 3)]);
        assert!(!c.has_region_grid(ids[1]).unwrap());
    }

    /// A collection from before the codes (a region reduction without a quantiser, patch grids
    /// not quantised) keeps storing int8 grids, which compare with its old ones.
    #[test]
    fn a_collection_from_before_the_codes_keeps_int8_grids() {
        let dir = tempfile::tempdir().unwrap();
        let c = Collection::open_or_create(dir.path(), &config()).unwrap();
        let old = crate::TokenReduction::fit(
            &[&PatchGrid::new(3, 2, 4, (0..24).map(|i| i as f32).collect()).unwrap()],
            4,
            None,
        )
        .unwrap();
        c.store.meta_insert_if_absent(crate::schema::META_REGION_REDUCTION, &old.to_bytes()).unwrap();
        drop(c);
        let c = Collection::open(dir.path()).unwrap();
        let mut image = with_region(1, 2);
        if let Embedding::Computed { patches, .. } = &mut image.embedding {
            *patches = Some(PatchGrid::new(2, 2, 4, (0..16).map(|i| i as f32 - 8.0).collect()).unwrap());
        }
        let id = c.commit(vec![image], &[]).unwrap()[0];
        assert_eq!(c.region_reduction().as_deref(), Some(&old));
        assert!(c.patch_reduction().is_none());
        for kind in [ValueKind::Region, ValueKind::Patches] {
            assert_eq!(c.store.value(kind, id.0).unwrap().unwrap()[0], 1, "{kind:?} is stored as int8 (format 1)");
        }
        assert_eq!(c.region_grid(id).unwrap().unwrap().1.rows(), 2);
        assert_eq!(c.patch_grid(id).unwrap().unwrap().dim(), 4);
    }
}
