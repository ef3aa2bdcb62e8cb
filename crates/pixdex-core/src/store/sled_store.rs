//! [`SledStore`]: the default store, a sled database in the collection's folder (layout in
//! [`crate::schema`]). One process holds it (sled's file lock).

use sled::Transactional;
use sled::transaction::{ConflictableTransactionError, TransactionError};
use std::path::{Path, PathBuf};

use super::{Entries, Store, StoredImage, ValueKind};
use crate::error::{Error, Result, corrupt};
use crate::records::ImageRecord;
use crate::schema;

/// A sled database: one tree per kind of value, plus the path and hash lookups and `meta`.
pub struct SledStore {
    dir: PathBuf,
    db: sled::Db,
    images: sled::Tree,
    by_path: sled::Tree,
    by_hash: sled::Tree,
    values: [sled::Tree; 5],
    meta: sled::Tree,
}

fn store_err(dir: &Path) -> impl Fn(sled::Error) -> Error + '_ {
    move |source| match &source {
        sled::Error::Io(e) if e.to_string().contains("lock") => Error::Locked { path: dir.to_path_buf() },
        _ => Error::Store { path: dir.to_path_buf(), source },
    }
}

fn decode_record(bytes: &[u8]) -> Result<ImageRecord> {
    serde_json::from_slice(bytes).map_err(|e| corrupt("image record", e))
}

fn id_of(key: &[u8], what: &str) -> Result<u64> {
    schema::id_from_key(key).ok_or_else(|| corrupt(what, "bad length"))
}

/// sled's log segment size for new databases. A page larger than a quarter of a segment is
/// written to its own blob file of exactly its size; smaller ones share segments, where a
/// rewritten page leaves its old copy until the segment is cleaned. With grids stored as codes
/// (12–24 KB per value, leaves of up to 16 values) 256 KiB keeps most leaves in blobs: the dev
/// collection takes 48 KB per image instead of 62 KB with sled's 512 KiB.
const SEGMENT_SIZE: usize = 256 << 10;

/// The segment size of the sled database at `db`: the one it was created with (sled refuses
/// another), or [`SEGMENT_SIZE`] for a new one.
fn segment_size(db: &Path) -> usize {
    let Ok(conf) = std::fs::read(db.join("conf")) else { return SEGMENT_SIZE };
    // `segment_size: N` on the first lines (the file ends in a checksum).
    String::from_utf8_lossy(&conf)
        .lines()
        .find_map(|l| l.strip_prefix("segment_size: ")?.trim().parse().ok())
        .unwrap_or(512 << 10)
}

impl SledStore {
    /// Opens (or, with `create`, creates) the database in `dir`, waiting out the lock of a
    /// collection this process dropped a moment ago. Refuses a layout newer than this build's.
    pub fn open(dir: &Path, create: bool) -> Result<Self> {
        let err = store_err(dir);
        if !create && !dir.join("db").exists() {
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
            let config = sled::Config::new().path(dir.join("db")).cache_capacity(256 << 20);
            match config.segment_size(segment_size(&dir.join("db"))).open().map_err(&err) {
                Err(Error::Locked { .. }) if attempts < 20 => {
                    attempts += 1;
                    std::thread::sleep(std::time::Duration::from_millis(50));
                }
                other => break other?,
            }
        };
        let tree = |name: &str| db.open_tree(name).map_err(&err);
        let store = Self {
            images: tree(schema::IMAGES)?,
            by_path: tree(schema::BY_PATH)?,
            by_hash: tree(schema::BY_HASH)?,
            values: [
                tree(ValueKind::Global.name())?,
                tree(ValueKind::Patches.name())?,
                tree(ValueKind::Views.name())?,
                tree(ValueKind::FlippedPatches.name())?,
                tree(ValueKind::Region.name())?,
            ],
            meta: tree(schema::META)?,
            dir: dir.to_path_buf(),
            db,
        };
        store.check_schema_version()?;
        Ok(store)
    }

    fn err(&self) -> impl Fn(sled::Error) -> Error + '_ {
        store_err(&self.dir)
    }

    fn tree(&self, kind: ValueKind) -> &sled::Tree {
        &self.values[kind as usize]
    }

    /// Refuses a layout newer than this build's; records the current one on an older (or new)
    /// collection. Version 1 is the layout collections had before the version was recorded, so
    /// there is nothing to migrate yet.
    fn check_schema_version(&self) -> Result<()> {
        let found = match self.meta.get(schema::META_SCHEMA_VERSION).map_err(self.err())? {
            Some(v) => u32::from_be_bytes(v.as_ref().try_into().map_err(|_| corrupt("schema_version", "not a u32"))?),
            None => 0,
        };
        if found > schema::SCHEMA_VERSION {
            return Err(Error::NewerSchema { path: self.dir.clone(), found, supported: schema::SCHEMA_VERSION });
        }
        if found < schema::SCHEMA_VERSION {
            self.meta.insert(schema::META_SCHEMA_VERSION, &schema::SCHEMA_VERSION.to_be_bytes()).map_err(self.err())?;
        }
        Ok(())
    }

    /// Id-keyed entries with their ids and values decoded.
    fn entries<'a, T: 'a>(
        &'a self,
        entries: impl Iterator<Item = sled::Result<(sled::IVec, sled::IVec)>> + Send + 'a,
        what: &'static str,
        decode: impl Fn(&[u8]) -> Result<T> + Send + 'a,
    ) -> Entries<'a, T> {
        Box::new(entries.map(move |kv| {
            let (k, v) = kv.map_err(self.err())?;
            Ok((id_of(&k, what)?, decode(&v)?))
        }))
    }
}

impl Store for SledStore {
    fn location(&self) -> String {
        self.dir.display().to_string()
    }

    fn meta(&self, key: &str) -> Result<Option<Vec<u8>>> {
        Ok(self.meta.get(key.as_bytes()).map_err(self.err())?.map(|v| v.to_vec()))
    }

    fn meta_insert_if_absent(&self, key: &str, value: &[u8]) -> Result<Vec<u8>> {
        let stored = match self.meta.compare_and_swap(key.as_bytes(), None::<&[u8]>, Some(value)).map_err(self.err())? {
            Ok(()) => value.to_vec(),
            Err(e) => e.current.map(|v| v.to_vec()).unwrap_or_else(|| value.to_vec()),
        };
        self.db.flush().map_err(self.err())?;
        Ok(stored)
    }

    fn generation(&self) -> Result<u64> {
        Ok(self
            .meta
            .get(schema::META_GENERATION)
            .map_err(self.err())?
            .and_then(|v| Some(u64::from_be_bytes(v.as_ref().try_into().ok()?)))
            .unwrap_or(0))
    }

    fn record_count(&self) -> Result<usize> {
        Ok(self.images.len())
    }

    fn record(&self, id: u64) -> Result<Option<ImageRecord>> {
        self.images.get(schema::id_key(id)).map_err(self.err())?.map(|b| decode_record(&b)).transpose()
    }

    fn records(&self) -> Entries<'_, ImageRecord> {
        self.entries(self.images.iter(), "image key", decode_record)
    }

    fn id_by_path(&self, path: &Path) -> Result<Option<u64>> {
        Ok(self.by_path.get(schema::path_key(path)).map_err(self.err())?.and_then(|v| schema::id_from_key(&v)))
    }

    fn ids_with_path_prefix(&self, prefix: &str) -> Result<Vec<u64>> {
        self.by_path
            .scan_prefix(prefix.as_bytes())
            .values()
            .map(|v| id_of(&v.map_err(self.err())?, "path value"))
            .collect()
    }

    fn ids_by_hash(&self, hash: &[u8; 32]) -> Result<Vec<u64>> {
        self.by_hash.scan_prefix(hash).keys().map(|k| id_of(&k.map_err(self.err())?[32..], "hash key")).collect()
    }

    fn value(&self, kind: ValueKind, id: u64) -> Result<Option<Vec<u8>>> {
        Ok(self.tree(kind).get(schema::id_key(id)).map_err(self.err())?.map(|v| v.to_vec()))
    }

    fn has_value(&self, kind: ValueKind, id: u64) -> Result<bool> {
        self.tree(kind).contains_key(schema::id_key(id)).map_err(self.err())
    }

    fn values(&self, kind: ValueKind, from: u64, step: usize) -> Entries<'_, Vec<u8>> {
        // Stepping over the raw entries copies only the values asked for.
        let entries = self.tree(kind).range(schema::id_key(from)..).step_by(step.max(1));
        self.entries(entries, kind.name(), |v| Ok(v.to_vec()))
    }

    fn ids_with_value(&self, kind: ValueKind) -> Result<Vec<u64>> {
        self.tree(kind).iter().keys().map(|k| id_of(&k.map_err(self.err())?, kind.name())).collect()
    }

    fn value_bytes(&self, kind: ValueKind) -> Result<(u64, usize)> {
        let (mut bytes, mut n) = (0u64, 0usize);
        for entry in self.tree(kind).iter() {
            let (_, v) = entry.map_err(self.err())?;
            bytes += v.len() as u64;
            n += 1;
        }
        Ok((bytes, n))
    }

    fn allocate_ids(&self, n: usize) -> Result<Vec<u64>> {
        (0..n).map(|_| self.db.generate_id().map_err(self.err())).collect()
    }

    fn commit(&self, removed: &[(u64, ImageRecord)], inserted: &[StoredImage]) -> Result<Vec<u64>> {
        let [global, patches, views, flipped, regions] = &self.values;
        let trees = (&self.images, &self.by_path, &self.by_hash, global, patches, views, flipped, regions, &self.meta);
        trees
            .transaction(|(images, by_path, by_hash, global, patches, views, flipped, regions, meta)| {
                let values = [global, patches, views, flipped, regions];
                for (id, rec) in removed {
                    let key = schema::id_key(*id);
                    images.remove(&key)?;
                    let pk = schema::path_key(&rec.path);
                    if by_path.get(&pk)?.is_some_and(|v| v.as_ref() == key) {
                        by_path.remove(pk)?;
                    }
                    by_hash.remove(&schema::hash_key(&rec.blake3, *id)[..])?;
                    for tree in values {
                        tree.remove(&key)?;
                    }
                }
                for image in inserted {
                    let key = schema::id_key(image.id);
                    images.insert(&key, serde_json::to_vec(&image.record).expect("record serialises"))?;
                    by_path.insert(schema::path_key(&image.record.path), &key)?;
                    by_hash.insert(&schema::hash_key(&image.record.blake3, image.id)[..], &[])?;
                    for (kind, value) in image.values.iter() {
                        values[kind as usize].insert(&key, value)?;
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
                TransactionError::Storage(s) => self.err()(s),
                TransactionError::Abort(()) => corrupt("transaction", "aborted"),
            })?;
        // Durable before acknowledging: a kill -9 after this returns loses nothing of it.
        self.db.flush().map_err(self.err())?;
        Ok(removed.iter().map(|(id, _)| *id).collect())
    }

    fn update_record(&self, id: u64, record: &ImageRecord) -> Result<bool> {
        let key = schema::id_key(id);
        if !self.images.contains_key(key).map_err(self.err())? {
            return Ok(false);
        }
        self.images.insert(key, serde_json::to_vec(record).expect("record serialises")).map_err(self.err())?;
        Ok(true)
    }

    fn flush(&self) -> Result<()> {
        self.db.flush().map_err(self.err())?;
        Ok(())
    }

    fn disk_bytes(&self) -> u64 {
        self.db.size_on_disk().unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn recorded_segment_size(dir: &Path) -> usize {
        segment_size(&dir.join("db"))
    }

    #[test]
    fn new_databases_get_small_segments_and_old_ones_keep_theirs() {
        let fresh = tempfile::tempdir().unwrap();
        drop(SledStore::open(fresh.path(), true).unwrap());
        assert_eq!(recorded_segment_size(fresh.path()), SEGMENT_SIZE);

        // A database made with sled's default (every collection before this setting) opens.
        let old = tempfile::tempdir().unwrap();
        drop(sled::Config::new().path(old.path().join("db")).segment_size(512 << 10).open().unwrap());
        drop(SledStore::open(old.path(), false).unwrap());
        assert_eq!(recorded_segment_size(old.path()), 512 << 10);
    }
}
