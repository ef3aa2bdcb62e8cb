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
//!
//! Each stage runs in its own `tracing` span (`crawl`, `change_detection`,
//! `region_reduction_fit`, `prepare` per file, `embed_batch` with its `forward` passes,
//! `commit`, `removals`) inside an `index_run` span (the server's jobs run it inside their own
//! `index_job` span, which carries the job id).

use pixdex_core::Collection;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use crate::crawl::{FoundFile, crawl};
use crate::encoder::Encoder;
use crate::error::Result;

mod change;
mod removal;
mod report;
mod shared;
#[cfg(test)]
mod tests;
mod write;

use change::{Prepared, changed_files, prepare};
pub use report::{FileOutcome, IndexOptions, IndexReport, NoProgress, Progress, ProgressEvent, SharedWork};
pub use write::REDUCTION_SAMPLE;

/// Runs one index job over `options.crawl.roots`.
pub fn run_index_job(
    collection: &Collection,
    encoder: &dyn Encoder,
    options: &IndexOptions,
    progress: &dyn Progress,
    cancel: &AtomicBool,
) -> Result<IndexReport> {
    let job_span = tracing::info_span!("index_run", roots = ?options.crawl.roots);
    let _job = job_span.enter();
    let started = Instant::now();
    let kinds = options.input_kinds();
    let crawled = tracing::info_span!("crawl").in_scope(|| crawl(&options.crawl))?;
    let mut report =
        IndexReport { found: crawled.files.len(), unreadable: crawled.unreadable.clone(), ..Default::default() };
    let (todo, unchanged) = tracing::info_span!("change_detection", files = crawled.files.len())
        .in_scope(|| changed_files(collection, &crawled.files, kinds))?;
    report.unchanged = unchanged;
    progress.event(&ProgressEvent::Crawled { found: report.found, unchanged: report.unchanged });
    let mut fitted = write::FittedRegions::new();
    let unfitted = (
        options.region_grids && collection.region_reduction().is_none(),
        collection.config().patch_codec.quantised && collection.patch_reduction().is_none(),
    );
    if (unfitted.0 || unfitted.1) && !todo.is_empty() {
        fitted = tracing::info_span!("reduction_fit")
            .in_scope(|| write::fit_reductions(collection, encoder, &todo, options, unfitted))?;
    }

    // On a store several workers share, this one embeds only the files it claims.
    let queue = collection.work_queue();
    let worker = shared::worker_name();
    if let Some(queue) = queue {
        let queued = shared::enqueue(queue, &todo)?;
        report.shared = Some(SharedWork { queued, ..Default::default() });
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
            let job_span = &job_span;
            s.spawn(move || {
                for file in rx {
                    let span = tracing::info_span!(parent: job_span, "prepare", path = %file.path.display());
                    if tx.send(span.in_scope(|| prepare(collection, encoder, file, options))).is_err() {
                        break;
                    }
                }
            });
        }
        drop((work_rx, done_tx));
        let worker = &worker;
        let feeder = s.spawn(move || -> Result<usize> {
            if let Some(queue) = queue {
                return shared::feed_claims(collection, queue, worker, options, work_tx, cancel);
            }
            for file in todo {
                if cancel.load(Ordering::Relaxed) || work_tx.send(file).is_err() {
                    break;
                }
            }
            Ok(0)
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
                let pending = std::mem::take(&mut pending);
                write::write_batch(collection, encoder, kinds, pending, &mut fitted, progress, &mut report)?;
                embeds = 0;
            }
            if finished || cancelled {
                report.cancelled = cancelled;
                break;
            }
        }
        // Dropping the receiver stops the workers (and a feeder blocked on a full channel).
        drop(done_rx);
        let claimed = feeder.join().unwrap_or_else(|panic| std::panic::resume_unwind(panic))?;
        if let Some(shared) = report.shared.as_mut() {
            shared.claimed = claimed;
        }
        Ok(())
    });
    if let Some(queue) = queue {
        // Files this worker claimed but did not store (failed to read, cancelled) wait for the
        // next worker; so does everything if this job failed.
        queue.release(&worker)?;
        if let Some(shared) = report.shared.as_mut() {
            shared.left = queue.progress(&options.crawl.roots)?;
        }
    }
    outcome?;

    if !report.cancelled {
        tracing::info_span!("removals").in_scope(|| {
            removal::remove_missing(
                collection,
                &options.crawl.roots,
                &crawled.files,
                &crawled.missing_roots,
                options.prune,
                progress,
                &mut report,
            )
        })?;
    }
    tracing::info_span!("flush").in_scope(|| collection.flush())?;
    report.elapsed = started.elapsed();
    tracing::info!(
        embedded = report.embedded,
        copied = report.copied,
        failed = report.failed.len(),
        removed = report.removed,
        elapsed_ms = report.elapsed.as_millis() as u64,
        "index job done"
    );
    Ok(report)
}
