//! Index jobs run by the server: one at a time, on a blocking thread, reporting progress into a
//! shared status that watchers stream.

use parking_lot::Mutex;
use pixdex_core::Collection;
use pixdex_indexer::encoder::Encoder;
use pixdex_indexer::pipeline::{FileOutcome, IndexOptions, IndexReport, Progress, ProgressEvent, run_index_job};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::batcher::panic_message;
use crate::metrics::Metrics;
use crate::pb;
use crate::status::ServiceError;

/// Errors a job keeps (the rest are counted in `failed` only): a library of a million broken
/// files must not hold a million messages in memory, in every job snapshot.
const MAX_JOB_ERRORS: usize = 10_000;
/// Finished jobs the server remembers.
const MAX_FINISHED_JOBS: usize = 100;

/// One index job: its options, its live status, and how to stop it.
pub(crate) struct IndexJob {
    pub(crate) id: String,
    roots: Vec<PathBuf>,
    metrics: Arc<Metrics>,
    pub(crate) cancel: AtomicBool,
    status: Mutex<JobStatus>,
    /// Bumped at every status change; watchers wait on it.
    changed: watch::Sender<()>,
    task: Mutex<Option<JoinHandle<()>>>,
}

struct JobStatus {
    state: pb::JobState,
    started: Instant,
    crawled_at: Option<Instant>,
    finished_at: Option<Instant>,
    found: u64,
    unchanged: u64,
    embedded: u64,
    copied: u64,
    touched: u64,
    failed: u64,
    removed: u64,
    current_file: String,
    errors: Vec<pb::FileError>,
    removal_withheld: String,
    error: String,
}

impl JobStatus {
    fn keep_error(&mut self, error: pb::FileError) {
        if self.errors.len() < MAX_JOB_ERRORS {
            self.errors.push(error);
        }
    }
}

impl IndexJob {
    fn new(id: String, roots: Vec<PathBuf>, metrics: Arc<Metrics>) -> Self {
        let status = JobStatus {
            state: pb::JobState::Crawling,
            started: Instant::now(),
            crawled_at: None,
            finished_at: None,
            found: 0,
            unchanged: 0,
            embedded: 0,
            copied: 0,
            touched: 0,
            failed: 0,
            removed: 0,
            current_file: String::new(),
            errors: Vec::new(),
            removal_withheld: String::new(),
            error: String::new(),
        };
        Self {
            id,
            roots,
            metrics,
            cancel: AtomicBool::new(false),
            status: Mutex::new(status),
            changed: watch::channel(()).0,
            task: Mutex::new(None),
        }
    }

    pub(crate) fn subscribe(&self) -> watch::Receiver<()> {
        self.changed.subscribe()
    }

    pub(crate) fn is_finished(&self) -> bool {
        let state = self.status.lock().state;
        matches!(state, pb::JobState::Succeeded | pb::JobState::Cancelled | pb::JobState::Failed)
    }

    /// The job's state as the API shows it, with the errors from index `errors_from` on; also
    /// returns the error count (where the next snapshot should start).
    pub(crate) fn snapshot(&self, errors_from: usize) -> (pb::IndexJob, usize) {
        let s = self.status.lock();
        let handled = s.embedded + s.copied + s.touched + s.failed;
        let todo = s.found.saturating_sub(s.unchanged);
        let now = s.finished_at.unwrap_or_else(Instant::now);
        let rate = match s.crawled_at {
            Some(t) if handled > 0 => handled as f64 / now.duration_since(t).as_secs_f64().max(1e-3),
            _ => 0.0,
        };
        let errors = s.errors.get(errors_from..).unwrap_or_default().to_vec();
        let job = pb::IndexJob {
            job_id: self.id.clone(),
            state: s.state.into(),
            roots: self.roots.iter().map(|r| r.display().to_string()).collect(),
            found: s.found,
            unchanged: s.unchanged,
            embedded: s.embedded,
            copied: s.copied,
            touched: s.touched,
            failed: s.failed,
            removed: s.removed,
            remaining: todo.saturating_sub(handled),
            files_per_second: rate,
            current_file: s.current_file.clone(),
            elapsed_seconds: now.duration_since(s.started).as_secs_f64(),
            errors,
            removal_withheld: s.removal_withheld.clone(),
            error: s.error.clone(),
        };
        (job, s.errors.len())
    }

    fn update(&self, f: impl FnOnce(&mut JobStatus)) {
        f(&mut self.status.lock());
        self.changed.send_replace(());
    }

    fn finish(&self, result: Result<IndexReport, String>) {
        let span = tracing::Span::current();
        self.update(|s| {
            s.finished_at = Some(Instant::now());
            match result {
                Ok(report) => {
                    s.state = if report.cancelled { pb::JobState::Cancelled } else { pb::JobState::Succeeded };
                    s.removed = report.removed as u64;
                    s.removal_withheld = report.removal_withheld.unwrap_or_default();
                    // Crawl errors (unreadable folders) are reported at the end, with the file errors.
                    for (p, e) in report.unreadable {
                        s.keep_error(pb::FileError { path: p.display().to_string(), error: e });
                    }
                }
                Err(e) => {
                    s.state = pb::JobState::Failed;
                    s.error = e;
                }
            }
            let outcome = match s.state {
                pb::JobState::Succeeded => "succeeded",
                pb::JobState::Cancelled => "cancelled",
                // `finish` sets one of the three final states.
                pb::JobState::Failed | pb::JobState::Unspecified | pb::JobState::Crawling | pb::JobState::Running => {
                    "failed"
                }
            };
            self.metrics.job_finished(outcome);
            span.record("outcome", outcome);
            for (field, n) in [
                ("found", s.found),
                ("unchanged", s.unchanged),
                ("embedded", s.embedded),
                ("copied", s.copied),
                ("touched", s.touched),
                ("failed", s.failed),
                ("removed", s.removed),
            ] {
                span.record(field, n);
            }
            tracing::info!(outcome, elapsed_s = s.started.elapsed().as_secs_f64(), "index job finished");
        });
    }
}

impl Progress for IndexJob {
    fn event(&self, event: &ProgressEvent) {
        self.update(|s| match event {
            ProgressEvent::Crawled { found, unchanged } => {
                tracing::info!(found, unchanged, elapsed_s = s.started.elapsed().as_secs_f64(), "crawled");
                s.state = pb::JobState::Running;
                s.crawled_at = Some(Instant::now());
                s.found = *found as u64;
                s.unchanged = *unchanged as u64;
            }
            ProgressEvent::File { path, outcome } => {
                s.current_file = path.display().to_string();
                let name = match outcome {
                    FileOutcome::Embedded => "embedded",
                    FileOutcome::Copied => "copied",
                    FileOutcome::Touched => "touched",
                    FileOutcome::Failed(_) => "failed",
                };
                self.metrics.file(name);
                match outcome {
                    FileOutcome::Embedded => s.embedded += 1,
                    FileOutcome::Copied => s.copied += 1,
                    FileOutcome::Touched => s.touched += 1,
                    FileOutcome::Failed(e) => {
                        s.failed += 1;
                        let error = pb::FileError { path: s.current_file.clone(), error: e.clone() };
                        s.keep_error(error);
                    }
                }
            }
            ProgressEvent::RemovalWithheld { reason } => s.removal_withheld = reason.clone(),
        });
    }
}

/// Every job since the server started; at most one runs.
pub(crate) struct IndexJobs {
    inner: Mutex<JobList>,
    metrics: Arc<Metrics>,
}

#[derive(Default)]
struct JobList {
    next: u64,
    jobs: Vec<Arc<IndexJob>>,
}

impl IndexJobs {
    pub(crate) fn new(metrics: Arc<Metrics>) -> Self {
        Self { inner: Mutex::default(), metrics }
    }

    /// Starts a job unless one is running.
    pub(crate) fn start(
        &self,
        collection: Arc<Collection>,
        encoder: Arc<dyn Encoder>,
        options: IndexOptions,
    ) -> Result<Arc<IndexJob>, ServiceError> {
        let mut list = self.inner.lock();
        if let Some(running) = list.jobs.iter().find(|j| !j.is_finished()) {
            return Err(ServiceError::FailedPrecondition(format!(
                "index job {} is running; watch or cancel it first",
                running.id
            )));
        }
        // Finished jobs beyond the newest MAX_FINISHED_JOBS are forgotten.
        let finished = list.jobs.iter().filter(|j| j.is_finished()).count();
        let mut forget = finished.saturating_sub(MAX_FINISHED_JOBS - 1);
        list.jobs.retain(|j| {
            let drop = forget > 0 && j.is_finished();
            forget -= usize::from(drop);
            !drop
        });
        list.next += 1;
        let job =
            Arc::new(IndexJob::new(format!("job-{}", list.next), options.crawl.roots.clone(), self.metrics.clone()));
        self.metrics.job_started();
        let worker = job.clone();
        // Spans the whole job: its events (crawled, finished) carry the job id and roots, and the
        // span ends with the outcome and the counts as fields.
        let span = tracing::info_span!(
            parent: None,
            "index_job",
            job = %job.id,
            roots = ?options.crawl.roots,
            outcome = tracing::field::Empty,
            found = tracing::field::Empty,
            unchanged = tracing::field::Empty,
            embedded = tracing::field::Empty,
            copied = tracing::field::Empty,
            touched = tracing::field::Empty,
            failed = tracing::field::Empty,
            removed = tracing::field::Empty,
        );
        let task = tokio::task::spawn_blocking(move || {
            let _span = span.entered();
            // A panic (a bug) fails the job with its message and frees the slot for the next.
            let run = std::panic::AssertUnwindSafe(|| {
                run_index_job(&collection, &*encoder, &options, &*worker, &worker.cancel).map_err(|e| e.to_string())
            });
            let result = std::panic::catch_unwind(run)
                .unwrap_or_else(|panic| Err(format!("the index job panicked: {}", panic_message(&*panic))));
            if let Err(e) = &result {
                tracing::error!(job = %worker.id, error = %e, "index job failed");
            }
            worker.finish(result);
        });
        *job.task.lock() = Some(task);
        list.jobs.push(job.clone());
        Ok(job)
    }

    pub(crate) fn get(&self, id: &str) -> Result<Arc<IndexJob>, ServiceError> {
        self.inner
            .lock()
            .jobs
            .iter()
            .find(|j| j.id == id)
            .cloned()
            .ok_or_else(|| ServiceError::NotFound(format!("no index job `{id}`")))
    }

    /// Newest first.
    pub(crate) fn list(&self) -> Vec<Arc<IndexJob>> {
        self.inner.lock().jobs.iter().rev().cloned().collect()
    }

    pub(crate) fn running(&self) -> Option<Arc<IndexJob>> {
        self.inner.lock().jobs.iter().find(|j| !j.is_finished()).cloned()
    }

    /// Cancels every job and waits (up to `grace`) for them to store their batch in flight.
    pub(crate) async fn cancel_all(&self, grace: Duration) {
        let tasks: Vec<JoinHandle<()>> = self
            .inner
            .lock()
            .jobs
            .iter()
            .filter_map(|j| {
                j.cancel.store(true, Ordering::Relaxed);
                j.task.lock().take()
            })
            .collect();
        for task in tasks {
            if tokio::time::timeout(grace, task).await.is_err() {
                tracing::warn!("an index job did not stop within {grace:?}");
            }
        }
    }
}
