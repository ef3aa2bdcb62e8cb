//! Typed reads of the collection's trees: records, ids by path and hash, and each stored vector
//! or grid by id, decoded. Nothing outside this module and `write` touches a sled tree.

use std::path::Path;

use super::{Collection, corrupt, store_err};
use crate::codec::{PatchCodec, decode_region};
use crate::error::Result;
use crate::records::{ImageId, ImageRecord};
use crate::region_grid::RegionFrame;
use crate::schema;
use crate::vectors::{DedupViews, PatchGrid, UnitVector};

fn decode_record(bytes: &[u8]) -> Result<ImageRecord> {
    serde_json::from_slice(bytes).map_err(|e| corrupt("image record", e))
}

impl Collection {
    /// The value stored under `id` in `tree`, decoded.
    fn get_decoded<T>(
        &self,
        tree: &sled::Tree,
        id: ImageId,
        decode: impl FnOnce(&[u8]) -> Result<T>,
    ) -> Result<Option<T>> {
        tree.get(schema::id_key(id.0)).map_err(store_err(&self.dir))?.map(|bytes| decode(&bytes)).transpose()
    }

    /// Whether `tree` holds a value for `id`.
    fn contains(&self, tree: &sled::Tree, id: ImageId) -> Result<bool> {
        tree.contains_key(schema::id_key(id.0)).map_err(store_err(&self.dir))
    }

    /// Id-keyed `entries` with their ids and values decoded; a key that is not an id is
    /// corrupt `key_what`.
    fn decoded<'a, T>(
        &'a self,
        entries: impl Iterator<Item = sled::Result<(sled::IVec, sled::IVec)>> + 'a,
        key_what: &'static str,
        decode: impl Fn(&[u8]) -> Result<T> + 'a,
    ) -> impl Iterator<Item = Result<(ImageId, T)>> + 'a {
        entries.map(move |kv| {
            let (k, v) = kv.map_err(store_err(&self.dir))?;
            let id = schema::id_from_key(&k).ok_or_else(|| corrupt(key_what, "bad length"))?;
            Ok((ImageId(id), decode(&v)?))
        })
    }

    /// The record of an image.
    pub fn get(&self, id: ImageId) -> Result<Option<ImageRecord>> {
        if let Some(records) = self.record_cache.read().as_ref() {
            return Ok(records.get(&id.0).cloned());
        }
        self.get_decoded(&self.images, id, decode_record)
    }

    /// Keeps every record in RAM from now on (about 200 bytes each), so that searches read
    /// results without sled or JSON: for long-lived processes (the server).
    pub fn cache_records(&self) -> Result<()> {
        let mut cache = self.record_cache.write();
        if cache.is_none() {
            // Writers wait on the lock held here, so no commit lands between the walk and the cache.
            let mut records = std::collections::HashMap::new();
            for entry in self.decoded(self.images.iter(), "image key", decode_record) {
                let (id, record) = entry?;
                records.insert(id.0, record);
            }
            *cache = Some(records);
        }
        Ok(())
    }

    /// Every record, in id order.
    pub fn records(&self) -> impl Iterator<Item = Result<(ImageId, ImageRecord)>> + '_ {
        self.decoded(self.images.iter(), "image key", decode_record)
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
        self.get_decoded(&self.global, id, |b| UnitVector::from_bytes(b, self.config.dim))
    }

    /// Calls `f` with every stored global vector, in id order.
    pub(crate) fn for_each_vector(&self, mut f: impl FnMut(u64, &[f32])) -> Result<()> {
        for entry in self.decoded(self.global.iter(), "global key", |b| UnitVector::from_bytes(b, self.config.dim)) {
            let (id, v) = entry?;
            f(id.0, v.as_slice());
        }
        Ok(())
    }

    /// The stored (reduced) patch grid.
    pub fn patch_grid(&self, id: ImageId) -> Result<Option<PatchGrid>> {
        self.get_decoded(&self.patches, id, PatchCodec::decode)
    }

    /// The stored mirrored and grayscale global vectors (absent for images indexed without them).
    pub fn view_vectors(&self, id: ImageId) -> Result<Option<(UnitVector, UnitVector)>> {
        self.get_decoded(&self.views, id, |b| DedupViews::decode_vectors(b, self.config.dim))
    }

    /// Whether the image's global vector is stored (without reading it).
    pub fn has_global_vector(&self, id: ImageId) -> Result<bool> {
        self.contains(&self.global, id)
    }

    /// Whether the image's mirrored and grayscale views are stored.
    pub fn has_view_vectors(&self, id: ImageId) -> Result<bool> {
        self.contains(&self.views, id)
    }

    /// The stored (reduced) patch grid of the mirrored view.
    pub fn flipped_patch_grid(&self, id: ImageId) -> Result<Option<PatchGrid>> {
        self.get_decoded(&self.flipped_patches, id, PatchCodec::decode)
    }

    /// The image's stored region grid (reduced tokens) and its frame.
    pub fn region_grid(&self, id: ImageId) -> Result<Option<(RegionFrame, PatchGrid)>> {
        self.get_decoded(&self.regions, id, decode_region)
    }

    /// Whether the image's region grid is stored.
    pub fn has_region_grid(&self, id: ImageId) -> Result<bool> {
        self.contains(&self.regions, id)
    }

    /// Every `step`-th stored region grid (1: all of them) of the images from id `from` on, in id
    /// order, with its frame.
    pub(crate) fn region_grids(
        &self,
        from: ImageId,
        step: usize,
    ) -> impl Iterator<Item = Result<(ImageId, (RegionFrame, PatchGrid))>> + '_ {
        // Stepping over the raw entries decodes only the grids asked for.
        let entries = self.regions.range(schema::id_key(from.0)..).step_by(step.max(1));
        self.decoded(entries, "region key", decode_region)
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
            patch_codec: PatchCodec { pool: 1 },
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
}
