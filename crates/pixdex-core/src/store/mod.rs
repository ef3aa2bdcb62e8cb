//! The [`Store`] boundary: where a collection's truth lives. A store keeps, per image id, the
//! record and its encoded values (global vector, patch grids, dedup views, region grid), the
//! path and content-hash lookups, and a few named meta values (the model pin, the generation,
//! the region reduction). It commits a batch atomically and durably and bumps the generation
//! inside the same commit.
//!
//! Two implementations: [`SledStore`] (the default: one folder, one process) here, and
//! PostgreSQL + pgvector in the `pixdex-store-postgres` crate (many processes and machines).
//! Everything above the boundary — the byte encodings, the derived HNSW graph and region index,
//! the queries — is the same for both; a store that keeps its own vector index (pgvector) may
//! also answer k-NN queries itself ([`Store::nearest`]).

mod sled_store;

pub use sled_store::SledStore;

use std::path::Path;

use crate::error::Result;
use crate::records::ImageRecord;

/// The kinds of per-image values a store keeps beside the record.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ValueKind {
    /// The global vector: `dim` little-endian f32 of unit length ([`crate::UnitVector::to_bytes`]).
    Global,
    /// The reduced patch grid ([`crate::PatchCodec`]).
    Patches,
    /// The mirrored and grayscale global vectors ([`crate::DedupViews`]).
    Views,
    /// The reduced patch grid of the mirrored view.
    FlippedPatches,
    /// The reduced region grid with its frame (`codec::encode_region`).
    Region,
}

impl ValueKind {
    /// Every kind, in a fixed order.
    pub const ALL: [ValueKind; 5] =
        [ValueKind::Global, ValueKind::Patches, ValueKind::Views, ValueKind::FlippedPatches, ValueKind::Region];

    /// A short name (sled's tree name; PostgreSQL's table names derive from it).
    pub fn name(self) -> &'static str {
        match self {
            ValueKind::Global => crate::schema::GLOBAL,
            ValueKind::Patches => crate::schema::PATCHES,
            ValueKind::Views => crate::schema::VIEWS,
            ValueKind::FlippedPatches => crate::schema::FLIPPED_PATCHES,
            ValueKind::Region => crate::schema::REGIONS,
        }
    }
}

/// An image's encoded values, one optional byte string per [`ValueKind`].
#[derive(Debug, Clone, Default, PartialEq)]
pub struct StoredValues {
    values: [Option<Vec<u8>>; 5],
}

impl StoredValues {
    /// The value of one kind.
    pub fn get(&self, kind: ValueKind) -> Option<&[u8]> {
        self.values[kind as usize].as_deref()
    }

    /// Sets (or clears) the value of one kind.
    pub fn set(&mut self, kind: ValueKind, value: Option<Vec<u8>>) {
        self.values[kind as usize] = value;
    }

    /// The kinds present, with their values.
    pub fn iter(&self) -> impl Iterator<Item = (ValueKind, &[u8])> {
        ValueKind::ALL.into_iter().filter_map(|k| Some((k, self.get(k)?)))
    }
}

/// An image as a commit writes it.
#[derive(Debug, Clone)]
pub struct StoredImage {
    /// Its new id (from [`Store::allocate_ids`]).
    pub id: u64,
    /// Its record.
    pub record: ImageRecord,
    /// Its encoded values.
    pub values: StoredValues,
}

/// What may narrow a store-side k-NN query.
#[derive(Debug, Clone, Default)]
pub struct NearestFilter<'a> {
    /// Only images whose path starts with this (plain string prefix).
    pub path_prefix: Option<&'a str>,
    /// Never these ids.
    pub exclude: &'a [u64],
}

/// A file an index job has to embed (or re-check), as a shared work queue holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkItem {
    /// Absolute path.
    pub path: std::path::PathBuf,
    /// Size in bytes when it was found.
    pub size: u64,
    /// Modification time when it was found, nanoseconds since the Unix epoch.
    pub mtime_ns: i64,
}

/// The state of a shared work queue under some folders.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct QueueProgress {
    /// Files waiting for a worker.
    pub waiting: u64,
    /// Files a worker has claimed and not finished (its lease not yet expired).
    pub claimed: u64,
}

/// Work shared by index workers in several processes or machines: a crawl queues what it
/// found to do; each worker claims a few files at a time under a lease, so that no file is
/// embedded twice and a killed worker's files go to another once its lease expires. A file
/// leaves the queue in the same commit that stores its image (any image stored at its path).
pub trait WorkQueue: Send + Sync {
    /// Queues files (a file queued already keeps its place and claim); returns how many were new.
    fn enqueue(&self, items: &[WorkItem]) -> Result<usize>;

    /// Claims up to `n` files under one of `roots` that nobody holds (or whose lease expired)
    /// for `worker`, until `lease` from now; also extends the worker's other claims.
    fn claim(
        &self,
        worker: &str,
        roots: &[std::path::PathBuf],
        n: usize,
        lease: std::time::Duration,
    ) -> Result<Vec<WorkItem>>;

    /// Gives back everything `worker` holds (a worker ending: what it did not store waits for
    /// the next one).
    fn release(&self, worker: &str) -> Result<()>;

    /// Takes files out of the queue without storing them (gone from disk since queued).
    fn forget(&self, paths: &[std::path::PathBuf]) -> Result<()>;

    /// How much is waiting and claimed under `roots`.
    fn progress(&self, roots: &[std::path::PathBuf]) -> Result<QueueProgress>;
}

/// A lazily read sequence of `(id, value)` in id order.
pub type Entries<'a, T> = Box<dyn Iterator<Item = Result<(u64, T)>> + Send + 'a>;

/// Where a collection's truth lives. Methods are synchronous: callers run them on blocking
/// threads (the server's handlers do), and a networked store blocks the calling thread on its
/// own runtime. Ids are never reused.
pub trait Store: Send + Sync {
    /// Where it is, for messages and logs (a folder, or a URL without its password).
    fn location(&self) -> String;

    /// Whether other processes may write to it while this one has it open: the derived indexes
    /// then check the generation before they answer.
    fn is_shared(&self) -> bool {
        false
    }

    /// Told once the collection's model is known: the dimension of its global vectors (a store
    /// with a typed vector column and index creates them here).
    fn pin_dimension(&self, _dim: usize) -> Result<()> {
        Ok(())
    }

    /// A meta value.
    fn meta(&self, key: &str) -> Result<Option<Vec<u8>>>;

    /// Stores `value` under `key` unless a value is there already, durably; returns the value
    /// that is stored afterwards (the existing one if another writer got there first).
    fn meta_insert_if_absent(&self, key: &str, value: &[u8]) -> Result<Vec<u8>>;

    /// Counter of committed batches (0 for a new store).
    fn generation(&self) -> Result<u64>;

    /// Number of image records (embedded and failed).
    fn record_count(&self) -> Result<usize>;

    /// The record of an image.
    fn record(&self, id: u64) -> Result<Option<ImageRecord>>;

    /// The records of several images, in the order asked (`None` where there is none): one
    /// round trip for a networked store.
    fn records_of(&self, ids: &[u64]) -> Result<Vec<Option<ImageRecord>>> {
        ids.iter().map(|&id| self.record(id)).collect()
    }

    /// Every record, in id order.
    fn records(&self) -> Entries<'_, ImageRecord>;

    /// The id stored for a path.
    fn id_by_path(&self, path: &Path) -> Result<Option<u64>>;

    /// Ids of the images whose path starts with `prefix` (a plain string prefix).
    fn ids_with_path_prefix(&self, prefix: &str) -> Result<Vec<u64>>;

    /// Ids of images with this content hash.
    fn ids_by_hash(&self, hash: &[u8; 32]) -> Result<Vec<u64>>;

    /// One encoded value of an image.
    fn value(&self, kind: ValueKind, id: u64) -> Result<Option<Vec<u8>>>;

    /// Whether an image has a value of this kind.
    fn has_value(&self, kind: ValueKind, id: u64) -> Result<bool>;

    /// Every `step`-th value of `kind` (1: all) of the images from id `from` on, in id order.
    fn values(&self, kind: ValueKind, from: u64, step: usize) -> Entries<'_, Vec<u8>>;

    /// Ids that have a value of this kind.
    fn ids_with_value(&self, kind: ValueKind) -> Result<Vec<u64>> {
        self.values(kind, 0, 1).map(|e| e.map(|(id, _)| id)).collect()
    }

    /// Total bytes of the values of `kind`, and how many there are.
    fn value_bytes(&self, kind: ValueKind) -> Result<(u64, usize)>;

    /// `n` fresh ids, never handed out before.
    fn allocate_ids(&self, n: usize) -> Result<Vec<u64>>;

    /// Atomically and durably: the images `removed` (with the records they had) go, the
    /// `inserted` ones come in, the generation goes up by one. After a crash either all of it
    /// is there or none. Returns the ids it removed: `removed`'s, and those of any image another
    /// writer stored meanwhile at an inserted path.
    fn commit(&self, removed: &[(u64, ImageRecord)], inserted: &[StoredImage]) -> Result<Vec<u64>>;

    /// Rewrites an image's record (same path); false if there is no such image.
    fn update_record(&self, id: u64, record: &ImageRecord) -> Result<bool>;

    /// Makes everything written durable (a no-op where commits already are).
    fn flush(&self) -> Result<()>;

    /// Bytes the store takes on disk, where it can tell.
    fn disk_bytes(&self) -> u64;

    /// The work queue index workers share, for a store several processes write to.
    fn work_queue(&self) -> Option<&dyn WorkQueue> {
        None
    }

    /// The `k` images whose global vectors are most similar to `query` (unit length), best
    /// first, from the store's own vector index with beam width `ef`; `None` when the store has
    /// none (the collection's HNSW graph answers instead).
    fn nearest(
        &self,
        _query: &[f32],
        _k: usize,
        _ef: usize,
        _filter: &NearestFilter,
    ) -> Result<Option<Vec<(u64, f32)>>> {
        Ok(None)
    }
}
