//! `pixdex index`: crawl folders and bring the collection up to date, with a progress bar —
//! offline, or as a job in a running server whose progress is streamed back.

use anyhow::Context;
use indicatif::{ProgressBar, ProgressStyle};
use pixdex_indexer::pipeline::{FileOutcome, IndexReport, Progress, ProgressEvent, run_index_job};
use pixdex_server::convert::IndexJobRequest;
use pixdex_server::pb;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use crate::args::IndexArgs;
use crate::remote;

/// Renders progress on an indicatif bar: offline from pipeline events, with a server from job
/// snapshots.
struct Bar {
    bar: ProgressBar,
    embedded: AtomicUsize,
    reused: AtomicUsize,
    failed: AtomicUsize,
    skipped: AtomicUsize,
}

impl Bar {
    fn new(quiet: bool) -> anyhow::Result<Self> {
        let bar = if quiet { ProgressBar::hidden() } else { ProgressBar::new(0) };
        bar.set_style(ProgressStyle::with_template("{bar:30} {pos}/{len} {per_sec} eta {eta} {msg}")?);
        Ok(Self {
            bar,
            embedded: AtomicUsize::new(0),
            reused: AtomicUsize::new(0),
            failed: AtomicUsize::new(0),
            skipped: AtomicUsize::new(0),
        })
    }

    fn refresh(&self) {
        self.bar.set_message(format!(
            "embedded {} · reused {} · unchanged {} · failed {}",
            self.embedded.load(Ordering::Relaxed),
            self.reused.load(Ordering::Relaxed),
            self.skipped.load(Ordering::Relaxed),
            self.failed.load(Ordering::Relaxed)
        ));
    }

    fn crawled(&self, found: usize, unchanged: usize) {
        self.skipped.store(unchanged, Ordering::Relaxed);
        self.bar.set_length(found.saturating_sub(unchanged) as u64);
        self.bar.println(format!("found {found} images, {unchanged} unchanged"));
    }
}

impl Progress for Bar {
    fn event(&self, event: &ProgressEvent) {
        match event {
            ProgressEvent::Crawled { found, unchanged } => self.crawled(*found, *unchanged),
            ProgressEvent::File { outcome, path } => {
                match outcome {
                    FileOutcome::Embedded => self.embedded.fetch_add(1, Ordering::Relaxed),
                    FileOutcome::Copied | FileOutcome::Touched => self.reused.fetch_add(1, Ordering::Relaxed),
                    FileOutcome::Failed(e) => {
                        self.bar.println(format!("failed: {}: {e}", path.display()));
                        self.failed.fetch_add(1, Ordering::Relaxed)
                    }
                };
                self.bar.inc(1);
            }
            ProgressEvent::RemovalWithheld { reason } => self.bar.println(format!("warning: {reason}")),
        }
        self.refresh();
    }
}

/// What a finished job prints, whichever mode ran it.
struct Summary {
    found: usize,
    embedded: usize,
    reused: usize,
    unchanged: usize,
    failed: usize,
    removed: usize,
    secs: f64,
    cancelled: bool,
    unreadable: Vec<(String, String)>,
    removal_withheld: Option<String>,
    /// With a work queue shared by several workers: what this one saw of it.
    shared: Option<pixdex_indexer::pipeline::SharedWork>,
    /// The collection folder or the server URL, and its image count if known.
    collection: (String, Option<u64>),
}

impl Summary {
    fn from_report(report: &IndexReport, db: &str, images: usize) -> Self {
        Self {
            found: report.found,
            embedded: report.embedded,
            reused: report.copied + report.touched,
            unchanged: report.unchanged,
            failed: report.failed.len(),
            removed: report.removed,
            secs: report.elapsed.as_secs_f64(),
            cancelled: report.cancelled,
            unreadable: report.unreadable.iter().map(|(p, e)| (p.display().to_string(), e.clone())).collect(),
            removal_withheld: report.removal_withheld.clone(),
            shared: report.shared,
            collection: (db.to_string(), Some(images as u64)),
        }
    }

    /// Prints the summary; an error (a closed pipe: `pixdex index … | head -1`) is returned, not a
    /// panic.
    fn print(&self) -> std::io::Result<()> {
        use std::io::Write;
        let mut out = std::io::stdout().lock();
        writeln!(
            out,
            "{} images: {} embedded, {} reused (copies/moves/touched), {} unchanged, {} failed, {} removed in {:.1}s ({:.1} images/s){}",
            self.found,
            self.embedded,
            self.reused,
            self.unchanged,
            self.failed,
            self.removed,
            self.secs,
            self.embedded as f64 / self.secs.max(1e-9),
            if self.cancelled { " — cancelled, run again to resume" } else { "" }
        )?;
        for (path, error) in &self.unreadable {
            eprintln!("unreadable: {path}: {error}");
        }
        if let Some(reason) = &self.removal_withheld {
            eprintln!("warning: {reason}");
        }
        if let Some(shared) = &self.shared {
            writeln!(
                out,
                "shared work: this worker queued {} new files and claimed {}; under its roots {} wait and {} are \
                 claimed by other workers",
                shared.queued, shared.claimed, shared.left.waiting, shared.left.claimed
            )?;
        }
        match &self.collection {
            (name, Some(images)) => writeln!(out, "collection: {name} ({images} images)"),
            (name, None) => writeln!(out, "collection: {name}"),
        }
    }

    fn exit_code(&self) -> ExitCode {
        if self.cancelled { ExitCode::from(130) } else { ExitCode::SUCCESS }
    }
}

pub fn run(args: IndexArgs) -> anyhow::Result<ExitCode> {
    match args.collection.server.remote()? {
        Some(remote) => remote::runtime()?.block_on(index_served(&args, &remote)),
        None => index_offline(&args),
    }
}

fn index_offline(args: &IndexArgs) -> anyhow::Result<ExitCode> {
    let (model, db) = (&args.collection.model, args.collection.db.location()?);
    if model.model.is_none() && model.device == pixio::DeviceChoice::Cpu {
        // The default model is sized for a GPU; say so before hours of CPU work start.
        eprintln!(
            "note: {} on a CPU takes about 7.5 s per photo with every feature on 2 cores (20 h per 10k photos); \
             on a CPU-only machine consider --model facebook/pixio-vitb16 (about 1.1 s), see `pixdex index --help`",
            pixio::DEFAULT_MODEL
        );
    }
    let encoder = model.load_encoder(pixio::DEFAULT_MODEL)?;
    let collection = db
        .open_or_create(&encoder.collection_config())
        .with_context(|| format!("opening collection {}", db.describe()))?;
    let options = args.options();
    // Ctrl-C: finish the batch in flight, write it, and stop; a second Ctrl-C exits at once.
    let cancel = Arc::new(AtomicBool::new(false));
    let flag = cancel.clone();
    ctrlc::set_handler(move || {
        if flag.swap(true, Ordering::SeqCst) {
            std::process::exit(130);
        }
        eprintln!("\nstopping after the current batch (Ctrl-C again to quit now)");
    })?;
    let progress = Bar::new(args.quiet)?;
    let report = run_index_job(&collection, &encoder, &options, &progress, &cancel)?;
    progress.bar.finish_and_clear();
    let summary = Summary::from_report(&report, &db.describe(), collection.len()?);
    summary.print()?;
    Ok(summary.exit_code())
}

/// A root as the server needs it: absolute (the server runs elsewhere, maybe in another working
/// folder), with symbolic links resolved when it exists.
fn absolute_root(root: &Path) -> anyhow::Result<PathBuf> {
    match std::fs::canonicalize(root) {
        Ok(path) => Ok(path),
        // A missing root is the server's to report (it removes nothing then).
        Err(_) => std::path::absolute(root).with_context(|| format!("making {} absolute", root.display())),
    }
}

/// Follows a job's snapshots on the bar: the crawl result once, file errors as they come.
#[derive(Default)]
struct JobView {
    crawl_shown: bool,
    /// Errors received so far (a stream sends each error once).
    errors_seen: u64,
    /// Crawl errors (unreadable folders), which the server sends after the file errors.
    unreadable: Vec<(String, String)>,
}

impl JobView {
    fn show(&mut self, bar: &Bar, job: &pb::IndexJob) {
        let state = job.state();
        let crawled = !matches!(state, pb::JobState::Unspecified | pb::JobState::Crawling | pb::JobState::Failed);
        if crawled && !self.crawl_shown {
            self.crawl_shown = true;
            bar.crawled(job.found as usize, job.unchanged as usize);
        }
        for error in &job.errors {
            // The first `failed` errors are files; the rest come from the crawl.
            if self.errors_seen < job.failed {
                bar.bar.println(format!("failed: {}: {}", error.path, error.error));
            } else {
                self.unreadable.push((error.path.clone(), error.error.clone()));
            }
            self.errors_seen += 1;
        }
        bar.embedded.store(job.embedded as usize, Ordering::Relaxed);
        bar.reused.store((job.copied + job.touched) as usize, Ordering::Relaxed);
        bar.failed.store(job.failed as usize, Ordering::Relaxed);
        bar.bar.set_position(job.embedded + job.copied + job.touched + job.failed);
        bar.refresh();
    }
}

fn is_final(state: pb::JobState) -> bool {
    matches!(state, pb::JobState::Succeeded | pb::JobState::Cancelled | pb::JobState::Failed)
}

/// Starts a job in the server and watches it to its end. Ctrl-C asks the server to stop after the
/// batch in flight and keeps watching; a second Ctrl-C stops watching at once.
async fn index_served(args: &IndexArgs, remote: &remote::Remote) -> anyhow::Result<ExitCode> {
    let mut options = args.options();
    options.crawl.roots = args.roots.iter().map(|r| absolute_root(r)).collect::<anyhow::Result<Vec<_>>>()?;
    let request = pb::StartIndexJobRequest::from(IndexJobRequest::from_options(&options)?);
    // Listen before the job starts, so that no Ctrl-C falls between start and watch.
    let mut interrupts = remote::Interrupts::listen()?;
    let mut client = remote::connect_ready(remote).await?;
    let mut job = client
        .index
        .start_index_job(request)
        .await
        .map_err(|s| remote::call_failed("starting the index job", s))?
        .into_inner();
    let job_id = job.job_id.clone();
    let mut stream = client
        .index
        .watch_index_job(pb::WatchIndexJobRequest { job_id: job_id.clone() })
        .await
        .map_err(|s| remote::call_failed(&format!("watching index job {job_id}"), s))?
        .into_inner();
    let bar = Bar::new(args.quiet)?;
    let mut view = JobView::default();
    let mut cancel_sent = false;
    while !is_final(job.state()) {
        tokio::select! {
            message = stream.message() => match message {
                Ok(Some(snapshot)) => {
                    view.show(&bar, &snapshot);
                    job = snapshot;
                }
                Ok(None) => break,
                Err(status) => {
                    bar.bar.abandon();
                    return Err(remote::call_failed(&format!("watching index job {job_id}"), status));
                }
            },
            () = interrupts.next() => {
                if cancel_sent {
                    bar.bar.abandon();
                    eprintln!("stopped watching; the server stops job {job_id} after its batch in flight");
                    return Ok(ExitCode::from(130));
                }
                cancel_sent = true;
                bar.bar.println("stopping after the current batch (Ctrl-C again to stop watching)");
                client
                    .index
                    .cancel_index_job(pb::CancelIndexJobRequest { job_id: job_id.clone() })
                    .await
                    .map_err(|s| remote::call_failed(&format!("cancelling index job {job_id}"), s))?;
            }
        }
    }
    bar.bar.finish_and_clear();
    match job.state() {
        pb::JobState::Succeeded | pb::JobState::Cancelled => {}
        pb::JobState::Failed => anyhow::bail!("index job {job_id} failed: {}", job.error),
        state => anyhow::bail!("the server stopped sending progress of index job {job_id} (last state: {state:?})"),
    }
    // The image count is a nicety: the server may be shutting down (which cancels the job).
    let images = match client.collection.get_stats(pb::GetStatsRequest {}).await {
        Ok(stats) => Some(stats.into_inner().images),
        Err(_) => None,
    };
    let removal_withheld = Some(job.removal_withheld.clone()).filter(|r| !r.is_empty());
    let summary = Summary {
        found: job.found as usize,
        embedded: job.embedded as usize,
        reused: (job.copied + job.touched) as usize,
        unchanged: job.unchanged as usize,
        failed: job.failed as usize,
        removed: job.removed as usize,
        secs: job.elapsed_seconds,
        cancelled: job.state() == pb::JobState::Cancelled,
        unreadable: view.unreadable,
        removal_withheld,
        shared: None,
        collection: (remote.url.clone(), images),
    };
    summary.print()?;
    Ok(summary.exit_code())
}
