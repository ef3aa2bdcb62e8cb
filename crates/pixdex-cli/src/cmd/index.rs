//! `pixdex index`: crawl folders and bring the collection up to date, with a progress bar.

use anyhow::Context;
use indicatif::{ProgressBar, ProgressStyle};
use pixdex_core::Collection;
use pixdex_indexer::crawl::CrawlOptions;
use pixdex_indexer::encoder::PixioEncoder;
use pixdex_indexer::pipeline::{FileOutcome, IndexOptions, Progress, ProgressEvent, run_index_job};
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use crate::args::IndexArgs;

/// Renders progress events on an indicatif bar.
struct Bar {
    bar: ProgressBar,
    embedded: AtomicUsize,
    reused: AtomicUsize,
    failed: AtomicUsize,
    skipped: AtomicUsize,
}

impl Bar {
    fn refresh(&self) {
        self.bar.set_message(format!(
            "embedded {} · reused {} · unchanged {} · failed {}",
            self.embedded.load(Ordering::Relaxed),
            self.reused.load(Ordering::Relaxed),
            self.skipped.load(Ordering::Relaxed),
            self.failed.load(Ordering::Relaxed)
        ));
    }
}

impl Progress for Bar {
    fn event(&self, event: &ProgressEvent) {
        match event {
            ProgressEvent::Crawled { found, unchanged } => {
                self.skipped.store(*unchanged, Ordering::Relaxed);
                self.bar.set_length((found - unchanged) as u64);
                self.bar.println(format!("found {found} images, {unchanged} unchanged"));
            }
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

pub fn run(args: IndexArgs) -> anyhow::Result<ExitCode> {
    let (device, dtype) = args.model.device()?;
    let source = args.model.source(pixio::DEFAULT_MODEL)?;
    let encoder = PixioEncoder::load(&source, &device, dtype).with_context(|| format!("loading model {source}"))?;
    let db = args.db.dir()?;
    let collection = Collection::open_or_create(&db, &encoder.collection_config())
        .with_context(|| format!("opening collection {}", db.display()))?;
    let options = IndexOptions {
        crawl: CrawlOptions {
            roots: args.roots.clone(),
            include_hidden: args.hidden,
            follow_links: args.follow_links,
            include: args.include.clone(),
            exclude: args.exclude.clone(),
        },
        batch_size: args.batch_size as usize,
        prune: args.prune,
        ..IndexOptions::default()
    };
    // Ctrl-C: finish the batch in flight, write it, and stop; a second Ctrl-C exits at once.
    let cancel = Arc::new(AtomicBool::new(false));
    let flag = cancel.clone();
    ctrlc::set_handler(move || {
        if flag.swap(true, Ordering::SeqCst) {
            std::process::exit(130);
        }
        eprintln!("\nstopping after the current batch (Ctrl-C again to quit now)");
    })?;
    let bar = if args.quiet { ProgressBar::hidden() } else { ProgressBar::new(0) };
    bar.set_style(ProgressStyle::with_template("{bar:30} {pos}/{len} {per_sec} eta {eta} {msg}")?);
    let progress = Bar {
        bar,
        embedded: AtomicUsize::new(0),
        reused: AtomicUsize::new(0),
        failed: AtomicUsize::new(0),
        skipped: AtomicUsize::new(0),
    };
    let report = run_index_job(&collection, &encoder, &options, &progress, &cancel)?;
    progress.bar.finish_and_clear();
    let secs = report.elapsed.as_secs_f64();
    println!(
        "{} images: {} embedded, {} reused (copies/moves/touched), {} unchanged, {} failed, {} removed in {:.1}s ({:.1} images/s){}",
        report.found,
        report.embedded,
        report.copied + report.touched,
        report.unchanged,
        report.failed.len(),
        report.removed,
        secs,
        report.embedded as f64 / secs.max(1e-9),
        if report.cancelled { " — cancelled, run again to resume" } else { "" }
    );
    for root in &report.unreadable {
        eprintln!("unreadable: {}: {}", root.0.display(), root.1);
    }
    if let Some(reason) = &report.removal_withheld {
        eprintln!("warning: {reason}");
    }
    println!("collection: {} ({} images)", db.display(), collection.len());
    Ok(if report.cancelled { ExitCode::from(130) } else { ExitCode::SUCCESS })
}
