//! What an index job is asked to do and what it tells: its options, its progress events and
//! its report.

use std::path::PathBuf;
use std::time::Duration;

use crate::crawl::CrawlOptions;
use crate::decode::DecodeLimits;
use crate::inputs::InputKinds;

/// Options of an index job.
#[derive(Debug, Clone)]
pub struct IndexOptions {
    /// What to crawl.
    pub crawl: CrawlOptions,
    /// Images per forward pass (and per sled transaction).
    pub batch_size: usize,
    /// Decoding threads (default: all cores).
    pub decode_threads: usize,
    /// Remove records of missing files even when a root is missing or suddenly empty.
    pub prune: bool,
    /// Decoder limits.
    pub decode_limits: DecodeLimits,
    /// Also embed each image mirrored and in grayscale (two more forward passes per image) so
    /// that duplicate detection finds mirrored, desaturated and heavily edited copies.
    pub dedup_views: bool,
    /// Also embed each image aspect-preserving at [`crate::encoder::REGION_LONG_SIDE`] and keep
    /// that grid (reduced) for region search (one larger forward pass per image).
    pub region_grids: bool,
    /// With a store whose work queue several workers share: how long a claimed file is this
    /// worker's before another may take it (renewed at every claim, so only a worker that
    /// stopped loses its files).
    pub claim_lease: Duration,
}

impl Default for IndexOptions {
    fn default() -> Self {
        Self {
            crawl: CrawlOptions::default(),
            batch_size: 8,
            decode_threads: std::thread::available_parallelism().map(|n| n.get()).unwrap_or(2),
            prune: false,
            decode_limits: DecodeLimits::default(),
            dedup_views: true,
            region_grids: true,
            claim_lease: Duration::from_secs(600),
        }
    }
}

impl IndexOptions {
    /// The model inputs this job makes for each image.
    pub fn input_kinds(&self) -> InputKinds {
        InputKinds { views: self.dedup_views, region: self.region_grids }
    }
}

/// What happened to one file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FileOutcome {
    /// Decoded and embedded.
    Embedded,
    /// Same bytes as a stored image: its vectors were reused.
    Copied,
    /// Same bytes as before at the same path (only the mtime changed).
    Touched,
    /// Recorded as failed, with the reason.
    Failed(String),
}

/// Progress events, reported as they happen (the caller renders them).
#[derive(Debug, Clone)]
pub enum ProgressEvent {
    /// The crawl is done.
    Crawled {
        /// Image files found.
        found: usize,
        /// Of those, unchanged and skipped.
        unchanged: usize,
    },
    /// One file was handled.
    File {
        /// The file.
        path: PathBuf,
        /// What happened.
        outcome: FileOutcome,
    },
    /// Removal of missing files was withheld.
    RemovalWithheld {
        /// Why.
        reason: String,
    },
}

/// Receives progress events (from the job's thread).
pub trait Progress: Sync {
    /// One event.
    fn event(&self, event: &ProgressEvent);
}

/// A [`Progress`] that ignores everything.
pub struct NoProgress;

impl Progress for NoProgress {
    fn event(&self, _: &ProgressEvent) {}
}

/// The outcome of a job.
#[derive(Debug, Default, Clone)]
pub struct IndexReport {
    /// Image files found.
    pub found: usize,
    /// Skipped without reading.
    pub unchanged: usize,
    /// Decoded and embedded.
    pub embedded: usize,
    /// Reused stored vectors (copies, moves).
    pub copied: usize,
    /// Same bytes, record refreshed.
    pub touched: usize,
    /// Files that failed, with the reason.
    pub failed: Vec<(PathBuf, String)>,
    /// Records of missing files removed.
    pub removed: usize,
    /// Why removals were withheld, if they were.
    pub removal_withheld: Option<String>,
    /// Entries the crawl could not read.
    pub unreadable: Vec<(PathBuf, String)>,
    /// Whether the job was cancelled before the end.
    pub cancelled: bool,
    /// Wall time.
    pub elapsed: Duration,
    /// With a shared work queue: files this worker claimed, and the queue under its roots when
    /// it finished (files other workers still hold or that wait).
    pub shared: Option<SharedWork>,
}

/// What a worker saw of the work queue it shared with others.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SharedWork {
    /// Files queued by this worker's crawl that were not queued already.
    pub queued: usize,
    /// Files this worker claimed.
    pub claimed: usize,
    /// The queue under this worker's roots when it finished.
    pub left: pixdex_core::QueueProgress,
}
