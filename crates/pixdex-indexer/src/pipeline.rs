//! An index job: crawl → change detection → decode (worker threads) → batch → encode → one
//! sled transaction per model batch → HNSW; then removals and a flush.
//!
//! * Unchanged files (same path, size and mtime) are skipped without being read, unless they lack
//!   the dedup views this job computes (then they are embedded again).
//! * A changed file is read once: its blake3 decides whether it really changed (same bytes: only
//!   the record is updated), is a copy or move of a stored image (vectors are copied), or must be
//!   decoded and embedded.
//! * Files that fail are recorded with their error; one bad file never stops a job.
//! * Removals are withheld when a root is missing or suddenly empty, unless `prune` is set.

use pixdex_core::{Collection, Embedding, ImageId, ImageRecord, ImageStatus, NewImage, RegionFrame, RegionGrid};
use pixio::Tensor;
use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use crate::crawl::{CrawlOptions, FoundFile, crawl};
use crate::decode::{DecodeLimits, decode_bytes};
use crate::encoder::PixioEncoder;
use crate::error::Result;

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
        }
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
}

/// A decode worker's result for one file.
enum Prepared {
    Embed {
        file: FoundFile,
        record: ImageRecord,
        /// [`PixioEncoder::prepare`]'s input, or [`PixioEncoder::prepare_views`]'s three.
        input: Vec<Tensor>,
        /// [`PixioEncoder::prepare_region`]'s input, when region grids are computed.
        region: Option<(Tensor, RegionFrame)>,
    },
    Copy {
        record: ImageRecord,
        source: ImageId,
    },
    Touched {
        id: ImageId,
        record: ImageRecord,
    },
    /// `record: None` for transient failures (unreadable right now, lookup error): nothing is
    /// written, so the old record stays and the next run retries.
    Failed {
        path: PathBuf,
        record: Option<ImageRecord>,
        error: String,
    },
}

/// Runs one index job over `options.crawl.roots`.
pub fn run_index_job(
    collection: &Collection,
    encoder: &PixioEncoder,
    options: &IndexOptions,
    progress: &dyn Progress,
    cancel: &AtomicBool,
) -> Result<IndexReport> {
    let started = Instant::now();
    let crawled = crawl(&options.crawl)?;
    let mut report =
        IndexReport { found: crawled.files.len(), unreadable: crawled.unreadable.clone(), ..Default::default() };
    let mut todo = Vec::new();
    for file in &crawled.files {
        let stored = match collection.id_by_path(&file.path)? {
            Some(id) => collection.get(id)?.map(|rec| (id, rec)),
            None => None,
        };
        match stored {
            Some((id, rec))
                if rec.size == file.size
                    && rec.mtime_ns == file.mtime_ns
                    && !lacks_views(collection, id, &rec, options)? =>
            {
                report.unchanged += 1
            }
            _ => todo.push(file.clone()),
        }
    }
    progress.event(&ProgressEvent::Crawled { found: report.found, unchanged: report.unchanged });
    if options.region_grids && collection.region_reduction().is_none() && !todo.is_empty() {
        fit_region_reduction(collection, encoder, &todo, options)?;
    }

    let batch_size = options.batch_size.max(1);
    let (work_tx, work_rx) = crossbeam_channel::bounded::<FoundFile>(4 * batch_size);
    let (done_tx, done_rx) = crossbeam_channel::bounded::<Prepared>(2 * batch_size);
    let outcome: Result<()> = std::thread::scope(|s| {
        // Owned by this closure: returning early (cancel, error) drops it, which unblocks the
        // workers' sends so the scope can join them.
        let done_rx = done_rx;
        for _ in 0..options.decode_threads.max(1) {
            let (rx, tx) = (work_rx.clone(), done_tx.clone());
            s.spawn(move || {
                for file in rx {
                    if tx.send(prepare(collection, encoder, file, options)).is_err() {
                        break;
                    }
                }
            });
        }
        drop((work_rx, done_tx));
        s.spawn(move || {
            for file in todo {
                if cancel.load(Ordering::Relaxed) || work_tx.send(file).is_err() {
                    break;
                }
            }
        });
        // The encoder runs here, on the job's thread: one device worker.
        let mut pending: Vec<Prepared> = Vec::with_capacity(2 * batch_size);
        let mut embeds = 0;
        loop {
            let next = done_rx.recv().ok();
            let finished = next.is_none();
            if let Some(p) = next {
                if matches!(p, Prepared::Embed { .. }) {
                    embeds += 1;
                }
                pending.push(p);
            }
            let cancelled = cancel.load(Ordering::Relaxed);
            if embeds >= batch_size || finished || cancelled || pending.len() >= 4 * batch_size {
                write_batch(collection, encoder, std::mem::take(&mut pending), progress, &mut report)?;
                embeds = 0;
            }
            if finished || cancelled {
                report.cancelled = cancelled;
                // Dropping the receiver stops the workers.
                return Ok(());
            }
        }
    });
    outcome?;

    if !report.cancelled {
        remove_missing(
            collection,
            &options.crawl.roots,
            &crawled.files,
            &crawled.missing_roots,
            options.prune,
            progress,
            &mut report,
        )?;
    }
    collection.flush()?;
    report.elapsed = started.elapsed();
    Ok(report)
}

fn record_of(file: &FoundFile, hash: [u8; 32], width: u32, height: u32, status: ImageStatus) -> ImageRecord {
    ImageRecord {
        path: file.path.clone(),
        size: file.size,
        mtime_ns: file.mtime_ns,
        blake3: hash,
        width,
        height,
        status,
    }
}

/// Whether an embedded image misses the dedup views or the region grid this job computes
/// (indexed by an older pixdex or with them off): it is embedded again, so that an upgraded
/// collection gains them.
fn lacks_views(
    collection: &Collection,
    id: ImageId,
    record: &ImageRecord,
    options: &IndexOptions,
) -> pixdex_core::Result<bool> {
    if record.status != ImageStatus::Embedded {
        return Ok(false);
    }
    Ok((options.dedup_views && !collection.has_view_vectors(id)?)
        || (options.region_grids && !collection.has_region_grid(id)?))
}

/// Reads, hashes and (only if needed) decodes and preprocesses one file.
fn prepare(collection: &Collection, encoder: &PixioEncoder, file: FoundFile, options: &IndexOptions) -> Prepared {
    let failed = |file: &FoundFile, hash, error: String| Prepared::Failed {
        path: file.path.clone(),
        record: Some(record_of(file, hash, 0, 0, ImageStatus::Failed { error: error.clone() })),
        error,
    };
    let transient = |file: &FoundFile, error: String| Prepared::Failed { path: file.path.clone(), record: None, error };
    let bytes = match std::fs::read(&file.path) {
        Ok(b) => b,
        Err(e) => return transient(&file, format!("cannot read: {e}")),
    };
    let hash: [u8; 32] = blake3::hash(&bytes).into();
    let lookup = || -> pixdex_core::Result<Option<Prepared>> {
        // Same bytes at the same path: only the mtime changed.
        if let Some(id) = collection.id_by_path(&file.path)?
            && let Some(old) = collection.get(id)?
            && old.blake3 == hash
            && !lacks_views(collection, id, &old, options)?
        {
            let record = ImageRecord { size: file.size, mtime_ns: file.mtime_ns, ..old };
            return Ok(Some(Prepared::Touched { id, record }));
        }
        // Same bytes elsewhere (a copy or a move): reuse the stored vectors.
        for id in collection.ids_by_hash(&hash)? {
            if let Some(src) = collection.get(id)?
                && src.status == ImageStatus::Embedded
                && !lacks_views(collection, id, &src, options)?
            {
                let record = record_of(&file, hash, src.width, src.height, ImageStatus::Embedded);
                return Ok(Some(Prepared::Copy { record, source: id }));
            }
        }
        Ok(None)
    };
    match lookup() {
        Ok(Some(p)) => return p,
        Ok(None) => {}
        Err(e) => return transient(&file, format!("collection lookup: {e}")),
    }
    if bytes.is_empty() {
        return failed(&file, hash, "empty file".into());
    }
    let decoded = match decode_bytes(&bytes, options.decode_limits) {
        Ok(d) => d,
        Err(e) => return failed(&file, hash, e.to_string()),
    };
    drop(bytes);
    let (w, h) = (decoded.image.width(), decoded.image.height());
    let input = if options.dedup_views {
        encoder.prepare_views(&decoded.image)
    } else {
        encoder.prepare(&decoded.image).map(|t| vec![t])
    };
    let region = match options.region_grids {
        true => encoder.prepare_region(&decoded.image, decoded.orientation).map(Some),
        false => Ok(None),
    };
    match (input, region) {
        (Ok(input), Ok(region)) => {
            let record = record_of(&file, hash, w, h, ImageStatus::Embedded);
            Prepared::Embed { file, record, input, region }
        }
        (Err(e), _) | (_, Err(e)) => failed(&file, hash, e.to_string()),
    }
}

/// Embeds the pending inputs and commits them with the copies and failures in one transaction.
fn write_batch(
    collection: &Collection,
    encoder: &PixioEncoder,
    pending: Vec<Prepared>,
    progress: &dyn Progress,
    report: &mut IndexReport,
) -> Result<()> {
    let mut upserts = Vec::with_capacity(pending.len());
    let mut outcomes = Vec::with_capacity(pending.len());
    let mut to_embed: Vec<(FoundFile, ImageRecord, Vec<Tensor>)> = Vec::new();
    let mut region_inputs: HashMap<PathBuf, (Tensor, RegionFrame)> = HashMap::new();
    for p in pending {
        match p {
            Prepared::Embed { file, record, input, region } => {
                if let Some(r) = region {
                    region_inputs.insert(record.path.clone(), r);
                }
                to_embed.push((file, record, input));
            }
            Prepared::Copy { record, source } => {
                // The source may have been replaced by an earlier batch of this job: use any
                // image that still has these bytes, else leave the file for the next run.
                let alive = |id: ImageId| collection.global_vector(id).map(|v| v.is_some());
                let source = if alive(source)? {
                    Some(source)
                } else {
                    collection.ids_by_hash(&record.blake3)?.into_iter().find(|id| alive(*id).unwrap_or(false))
                };
                match source {
                    Some(source) => {
                        outcomes.push((record.path.clone(), FileOutcome::Copied));
                        upserts.push(NewImage { record, embedding: Embedding::CopyOf(source) });
                    }
                    None => outcomes.push((
                        record.path.clone(),
                        FileOutcome::Failed("its copy changed during the job; it is embedded on the next run".into()),
                    )),
                }
            }
            Prepared::Touched { id, record } => {
                collection.update_record(id, &record)?;
                report.touched += 1;
                progress.event(&ProgressEvent::File { path: record.path, outcome: FileOutcome::Touched });
            }
            Prepared::Failed { path, record, error } => {
                outcomes.push((path, FileOutcome::Failed(error)));
                if let Some(record) = record {
                    upserts.push(NewImage { record, embedding: Embedding::None });
                }
            }
        }
    }
    let mut regions = embed_regions(encoder, region_inputs)?;
    // One forward pass per input size (Pixio's processor gives one size; shortest-edge ones may not).
    while !to_embed.is_empty() {
        let dims = to_embed[0].2[0].dims().to_vec();
        let (same, rest): (Vec<_>, Vec<_>) = to_embed.into_iter().partition(|(_, _, t)| t[0].dims() == dims.as_slice());
        to_embed = rest;
        let inputs: Vec<Vec<Tensor>> = same.iter().map(|(_, _, t)| t.clone()).collect();
        let embedded = encoder.embed_images(&inputs)?;
        for ((_, mut record, _), result) in same.into_iter().zip(embedded) {
            match result {
                Ok(e) => {
                    outcomes.push((record.path.clone(), FileOutcome::Embedded));
                    let region = regions.remove(&record.path);
                    let embedding =
                        Embedding::Computed { global: e.global, patches: Some(e.patches), views: e.views, region };
                    upserts.push(NewImage { record, embedding });
                }
                Err(e) => {
                    outcomes.push((record.path.clone(), FileOutcome::Failed(e.to_string())));
                    record.status = ImageStatus::Failed { error: e.to_string() };
                    upserts.push(NewImage { record, embedding: Embedding::None });
                }
            }
        }
    }
    if !upserts.is_empty() {
        collection.commit(upserts, &[])?;
    }
    for (path, outcome) in outcomes {
        match &outcome {
            FileOutcome::Embedded => report.embedded += 1,
            FileOutcome::Copied => report.copied += 1,
            FileOutcome::Touched => report.touched += 1,
            FileOutcome::Failed(e) => {
                tracing::warn!(path = %path.display(), error = %e, "image failed");
                report.failed.push((path.clone(), e.clone()));
            }
        }
        progress.event(&ProgressEvent::File { path, outcome });
    }
    Ok(())
}

/// Images whose region grids fit a new collection's region reduction.
pub const REDUCTION_SAMPLE: usize = 48;

/// Fits the collection's region reduction on the region grids of up to [`REDUCTION_SAMPLE`]
/// images spread over the job (one extra forward pass each, once per collection), so that the
/// reduction reflects the library rather than its first folder. Files that fail are skipped;
/// the pipeline records them.
fn fit_region_reduction(
    collection: &Collection,
    encoder: &PixioEncoder,
    files: &[FoundFile],
    options: &IndexOptions,
) -> Result<()> {
    let step = files.len().div_ceil(REDUCTION_SAMPLE).max(1);
    let mut grids = Vec::new();
    for file in files.iter().step_by(step) {
        let Ok(decoded) = crate::decode::decode_path(&file.path, options.decode_limits) else { continue };
        let Ok((input, _)) = encoder.prepare_region(&decoded.image, decoded.orientation) else { continue };
        grids.extend(encoder.embed_region_grids(&[input])?);
    }
    if !grids.is_empty() {
        collection.ensure_region_reduction(&grids.iter().collect::<Vec<_>>())?;
    }
    Ok(())
}

/// Region grids of a batch, by path: one forward pass per distinct grid shape (a library of
/// one camera's photos has two: landscape and portrait).
fn embed_regions(
    encoder: &PixioEncoder,
    mut inputs: HashMap<PathBuf, (Tensor, RegionFrame)>,
) -> Result<HashMap<PathBuf, RegionGrid>> {
    let mut out = HashMap::with_capacity(inputs.len());
    while let Some(dims) = inputs.values().next().map(|(t, _)| t.dims().to_vec()) {
        let paths: Vec<PathBuf> =
            inputs.iter().filter(|(_, (t, _))| t.dims() == dims).map(|(p, _)| p.clone()).collect();
        let group: Vec<(PathBuf, (Tensor, RegionFrame))> =
            paths.into_iter().filter_map(|p| inputs.remove_entry(&p)).collect();
        let tensors: Vec<Tensor> = group.iter().map(|(_, (t, _))| t.clone()).collect();
        for ((path, (_, frame)), tokens) in group.into_iter().zip(encoder.embed_region_grids(&tensors)?) {
            out.insert(path, RegionGrid { frame, tokens });
        }
    }
    Ok(out)
}

/// Removes records under the crawled roots whose files are gone, unless that looks like a
/// disconnected drive (a missing or suddenly empty root) and `prune` is off.
fn remove_missing(
    collection: &Collection,
    roots: &[PathBuf],
    found: &[FoundFile],
    missing_roots: &[PathBuf],
    prune: bool,
    progress: &dyn Progress,
    report: &mut IndexReport,
) -> Result<()> {
    let present: HashSet<&Path> = found.iter().map(|f| f.path.as_path()).collect();
    // A record is gone only if its file is: the crawl also leaves out files that exist (excluded
    // by a glob, hidden, unreadable folders), and those records must stay.
    let is_gone = |p: &Path| {
        !present.contains(p)
            && matches!(std::fs::symlink_metadata(p), Err(e) if e.kind() == std::io::ErrorKind::NotFound)
    };
    let roots: Vec<(PathBuf, bool)> = roots
        .iter()
        .map(|r| {
            let missing = missing_roots.contains(r);
            let abs = std::fs::canonicalize(r).or_else(|_| std::path::absolute(r)).unwrap_or_else(|_| r.clone());
            (abs, missing)
        })
        .collect();
    let mut gone: Vec<(ImageId, usize)> = Vec::new();
    let mut stored_per_root = vec![0usize; roots.len()];
    for item in collection.records() {
        let (id, rec) = item?;
        // The most specific root that holds the file (roots may nest).
        let root = roots
            .iter()
            .enumerate()
            .filter(|(_, (r, _))| rec.path.starts_with(r))
            .max_by_key(|(_, (r, _))| r.components().count())
            .map(|(i, _)| i);
        if let Some(i) = root {
            stored_per_root[i] += 1;
            if is_gone(&rec.path) {
                gone.push((id, i));
            }
        }
    }
    let mut withheld = Vec::new();
    for (i, (root, missing)) in roots.iter().enumerate() {
        let found_here = found.iter().filter(|f| f.path.starts_with(root)).count();
        if *missing {
            withheld.push(format!("{} is missing", root.display()));
        } else if found_here == 0 && stored_per_root[i] > 0 {
            withheld.push(format!("{} has no images now ({} indexed before)", root.display(), stored_per_root[i]));
        }
    }
    let blocked: HashSet<usize> = if prune {
        HashSet::new()
    } else {
        roots
            .iter()
            .enumerate()
            .filter(|(i, (root, missing))| {
                *missing || (stored_per_root[*i] > 0 && !found.iter().any(|f| f.path.starts_with(root)))
            })
            .map(|(i, _)| i)
            .collect()
    };
    if !prune && !withheld.is_empty() {
        let reason = format!("{}; nothing was removed from it (use --prune to remove)", withheld.join("; "));
        progress.event(&ProgressEvent::RemovalWithheld { reason: reason.clone() });
        report.removal_withheld = Some(reason);
    }
    let removals: Vec<ImageId> = gone.into_iter().filter(|(_, i)| !blocked.contains(i)).map(|(id, _)| id).collect();
    if !removals.is_empty() {
        collection.commit(Vec::new(), &removals)?;
        report.removed = removals.len();
    }
    Ok(())
}
