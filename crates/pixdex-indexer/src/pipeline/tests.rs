//! The index job with the fake encoder over real files and a real collection in a temp dir.

use image::{Rgb, RgbImage};
use pixdex_core::{Collection, ImageId, ImageStatus, UnitVector};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};

use super::*;
use crate::crawl::CrawlOptions;
use crate::testing::FakeEncoder;

struct Fixture {
    _dir: tempfile::TempDir,
    root: PathBuf,
    collection: Collection,
    encoder: FakeEncoder,
}

fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("photos");
    std::fs::create_dir(&root).unwrap();
    let root = std::fs::canonicalize(root).unwrap();
    let encoder = FakeEncoder::default();
    let collection = Collection::open_or_create(&dir.path().join("db"), &encoder.collection_config()).unwrap();
    Fixture { _dir: dir, root, collection, encoder }
}

/// A small PNG whose pixels depend on `seed`: a colour gradient with a seed-placed block.
fn write_png(path: &Path, seed: u8) {
    let img = RgbImage::from_fn(12, 9, |x, y| {
        let block = (x / 4) as u8 == seed % 3 && (y / 3) as u8 == seed % 3;
        if block { Rgb([255, 255 - seed, 0]) } else { Rgb([seed.wrapping_mul(40), (x * 20) as u8, (y * 25) as u8]) }
    });
    img.save(path).unwrap();
}

fn options(f: &Fixture) -> IndexOptions {
    IndexOptions {
        crawl: CrawlOptions { roots: vec![f.root.clone()], ..Default::default() },
        batch_size: 2,
        decode_threads: 2,
        ..Default::default()
    }
}

fn run_with(f: &Fixture, options: &IndexOptions, progress: &dyn Progress, cancel: &AtomicBool) -> IndexReport {
    run_index_job(&f.collection, &f.encoder, options, progress, cancel).unwrap()
}

fn run(f: &Fixture) -> IndexReport {
    run_with(f, &options(f), &NoProgress, &AtomicBool::new(false))
}

fn id(f: &Fixture, name: &str) -> ImageId {
    f.collection.id_by_path(&f.root.join(name)).unwrap().unwrap_or_else(|| panic!("{name} is not indexed"))
}

fn vector(f: &Fixture, name: &str) -> UnitVector {
    f.collection.global_vector(id(f, name)).unwrap().unwrap()
}

#[test]
fn unchanged_files_are_skipped_touched_ones_refreshed_changed_ones_embedded_again() {
    let f = fixture();
    for (name, seed) in [("a.png", 1), ("b.png", 2), ("c.png", 3)] {
        write_png(&f.root.join(name), seed);
    }
    let first = run(&f);
    assert_eq!((first.found, first.embedded, first.unchanged), (3, 3, 0));
    assert!(first.failed.is_empty(), "{:?}", first.failed);
    let a = id(&f, "a.png");
    assert!(f.collection.has_view_vectors(a).unwrap() && f.collection.has_region_grid(a).unwrap());
    assert_ne!(vector(&f, "a.png"), vector(&f, "b.png"));

    let passes = f.encoder.forward_passes();
    let again = run(&f);
    assert_eq!((again.unchanged, again.embedded, again.touched, again.copied), (3, 0, 0, 0));
    assert_eq!(f.encoder.forward_passes(), passes, "unchanged files cost no forward pass");

    // Same bytes, new mtime: the record is refreshed, nothing is embedded.
    let file = std::fs::File::options().write(true).open(f.root.join("a.png")).unwrap();
    file.set_modified(std::time::SystemTime::now() + std::time::Duration::from_secs(60)).unwrap();
    drop(file);
    let before_b = vector(&f, "b.png");
    write_png(&f.root.join("b.png"), 7);
    let third = run(&f);
    assert_eq!((third.unchanged, third.touched, third.embedded), (1, 1, 1));
    assert_eq!(id(&f, "a.png"), a, "a touched file keeps its id");
    assert_ne!(vector(&f, "b.png"), before_b, "changed bytes are embedded again");
}

/// A new collection's region reduction is fitted on a sample of the job's images; those images'
/// grids are stored from the fit, not embedded a second time.
#[test]
fn the_region_reduction_sample_is_embedded_once() {
    let f = fixture();
    for i in 0..5u8 {
        write_png(&f.root.join(format!("{i}.png")), i);
    }
    let report = run(&f);
    assert_eq!(report.embedded, 5);
    assert!(f.collection.region_reduction().is_some());
    assert_eq!(f.encoder.region_inputs_embedded(), 5, "each image's region input is embedded exactly once");
    for i in 0..5u8 {
        let (frame, grid) = f.collection.region_grid(id(&f, &format!("{i}.png"))).unwrap().unwrap();
        assert_eq!((frame.width, frame.height), (12, 9));
        assert!(grid.rows() > 0 && grid.cols() > 0);
    }
}

#[test]
fn copies_and_moves_reuse_the_stored_vectors() {
    let f = fixture();
    write_png(&f.root.join("a.png"), 1);
    write_png(&f.root.join("b.png"), 2);
    assert_eq!(run(&f).embedded, 2);
    let (a, b) = (vector(&f, "a.png"), vector(&f, "b.png"));
    std::fs::copy(f.root.join("a.png"), f.root.join("copy.png")).unwrap();
    std::fs::rename(f.root.join("b.png"), f.root.join("moved.png")).unwrap();
    let passes = f.encoder.forward_passes();
    let report = run(&f);
    assert_eq!((report.copied, report.embedded, report.removed, report.unchanged), (2, 0, 1, 1));
    assert_eq!(f.encoder.forward_passes(), passes, "copies cost no forward pass");
    assert_eq!(vector(&f, "copy.png"), a);
    assert_eq!(vector(&f, "moved.png"), b);
    assert!(f.collection.has_region_grid(id(&f, "moved.png")).unwrap());
    assert!(f.collection.id_by_path(&f.root.join("b.png")).unwrap().is_none());
}

#[test]
fn a_corrupt_file_is_recorded_as_failed_and_the_job_goes_on() {
    let f = fixture();
    write_png(&f.root.join("a.png"), 1);
    std::fs::write(f.root.join("broken.png"), b"\x89PNG\r\n\x1a\nnot really a png").unwrap();
    write_png(&f.root.join("c.png"), 3);
    let report = run(&f);
    assert_eq!(report.embedded, 2);
    assert_eq!(report.failed.len(), 1);
    assert_eq!(report.failed[0].0, f.root.join("broken.png"));
    let broken = f.collection.get(id(&f, "broken.png")).unwrap().unwrap();
    assert!(matches!(broken.status, ImageStatus::Failed { .. }), "{:?}", broken.status);
    assert!(f.collection.global_vector(id(&f, "broken.png")).unwrap().is_none());
    // An unchanged failed file is not retried.
    let again = run(&f);
    assert_eq!((again.unchanged, again.failed.len()), (3, 0));
}

/// Sets the cancel flag at the first file handled.
struct CancelAtFirstFile<'a>(&'a AtomicBool);

impl Progress for CancelAtFirstFile<'_> {
    fn event(&self, event: &ProgressEvent) {
        if matches!(event, ProgressEvent::File { .. }) {
            self.0.store(true, Ordering::Relaxed);
        }
    }
}

#[test]
fn cancellation_stops_the_job_and_removes_nothing() {
    let f = fixture();
    write_png(&f.root.join("a.png"), 1);
    write_png(&f.root.join("b.png"), 2);
    assert_eq!(run(&f).embedded, 2);
    std::fs::remove_file(f.root.join("b.png")).unwrap();
    for seed in 3..12 {
        write_png(&f.root.join(format!("n{seed}.png")), seed);
    }
    // Cancelled before it starts.
    let report = run_with(&f, &options(&f), &NoProgress, &AtomicBool::new(true));
    assert!(report.cancelled);
    assert_eq!((report.removed, report.embedded), (0, 0));
    assert!(f.collection.id_by_path(&f.root.join("b.png")).unwrap().is_some(), "no removals when cancelled");
    // Cancelled while running: at the first file handled, one batch of 1 stored at most.
    let cancel = AtomicBool::new(false);
    let one_at_a_time = IndexOptions { batch_size: 1, decode_threads: 1, ..options(&f) };
    let report = run_with(&f, &one_at_a_time, &CancelAtFirstFile(&cancel), &cancel);
    assert!(report.cancelled);
    assert!(report.embedded >= 1 && report.embedded < 9, "embedded {}", report.embedded);
    assert_eq!(report.removed, 0);
    assert!(f.collection.id_by_path(&f.root.join("b.png")).unwrap().is_some());
    // Finishing the job later removes the missing file.
    let done = run(&f);
    assert!(!done.cancelled);
    assert_eq!(done.removed, 1);
}

#[test]
fn removal_is_withheld_for_a_root_that_is_suddenly_empty() {
    let f = fixture();
    write_png(&f.root.join("a.png"), 1);
    write_png(&f.root.join("b.png"), 2);
    assert_eq!(run(&f).embedded, 2);
    std::fs::remove_file(f.root.join("a.png")).unwrap();
    std::fs::remove_file(f.root.join("b.png")).unwrap();
    let report = run(&f);
    assert_eq!(report.removed, 0);
    assert!(report.removal_withheld.as_deref().is_some_and(|r| r.contains("has no images now")), "{report:?}");
    assert_eq!(f.collection.records().count(), 2);
    let pruned = run_with(&f, &IndexOptions { prune: true, ..options(&f) }, &NoProgress, &AtomicBool::new(false));
    assert_eq!(pruned.removed, 2);
    assert_eq!(f.collection.records().count(), 0);
}
