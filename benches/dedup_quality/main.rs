//! Near-duplicate QUALITY (not speed) of `Collection::find_duplicates` on a generated benchmark,
//! side by side with perceptual hashes (pHash and dHash, 64 bits, connected components over
//! Hamming distance as czkawka and imagededup group), in one run. It picks the default
//! near-duplicate threshold.
//!
//! Benchmark (as in `shared/notes/dedup-research.md`), one library per seed, from the dev photos
//! `$PIXDEX_SHARED_DIR/data/photos`:
//! * synthetic families: `--originals` (60) photos, each with 3 random edits out of resize 50 %,
//!   JPEG q40, crop 85 % (centre or offset), brightness/contrast, rotation of about 5° (auto-cropped),
//!   horizontal flip, a text strip, grayscale;
//! * the natural families of the manifest (`family` column: the KDE wallpaper sizes, mirror
//!   pairs, a stereo pair);
//! * every other photo as a distractor, including the hard ones (different coins, thyme and
//!   lavender, two firemen, bears), which are never chosen as originals.
//!
//! Both libraries are indexed into one collection with the real pipeline (three views per image)
//! and the real-weights ViT-S/14, then scored separately (`path_prefix`). Metric: pairwise
//! precision / recall / F1 over all unordered pairs inside the predicted groups (exact + near;
//! groups sharing an image are merged); the truth is every pair inside each family.
//!
//! Every candidate pair (k-NN by plain cosine down to `DEFAULT_VERIFY_FROM`) is scored once with
//! `Collection::compare_images`; the similarity and geometry thresholds are then swept with the
//! same star rule as pixdex-core, chosen on seed A (max F1 with P >= 0.98) and reported unchanged
//! on seed B. `find_duplicates` itself runs at the defaults, and the run checks that the sweep
//! reproduces it. Beside it: the plain cosine (pixdex before views), the views without patch
//! verification, and pHash / dHash.
//!
//! `PIXDEX_SHARED_DIR=/work/shared cargo bench -p pixdex-benches --bench dedup_quality -- [--originals N] [--keep DIR]
//! [--neighbours K] [--all-misses]`
//!
//! Modules: `library` and `edits` generate the libraries, `measure` scores one seed (with
//! `star`, `metrics` and `hashes`), `report` prints the markdown.

mod edits;
mod hashes;
mod library;
mod measure;
mod metrics;
mod report;
mod star;

use pixdex_core::{Collection, DedupOptions};
use pixdex_indexer::crawl::CrawlOptions;
use pixdex_indexer::encoder::PixioEncoder;
use pixdex_indexer::pipeline::{IndexOptions, NoProgress, run_index_job};
use pixio::{DType, Device, WeightSource};
use std::sync::atomic::AtomicBool;
use std::time::Instant;

use library::{Library, build_library, read_manifest};
use measure::{Grid, measure_seed};
use report::{Setup, print_report};

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Seed A chooses the thresholds; seed B checks them.
/// Seeds after B are further held-out checks, reported for the chosen parameters only.
const SEEDS: [(&str, u64); 3] = [("A", 0xA11CE), ("B", 0xB0B), ("C", 0xC0FFEE)];

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let arg = |name: &str| args.iter().position(|a| a == name).and_then(|i| args.get(i + 1)).cloned();
    let originals: usize = arg("--originals").map(|s| s.parse()).transpose()?.unwrap_or(60);
    let Some((photos, model)) = pixdex_benches::shared_photos_and_model() else { return Ok(()) };
    let started = Instant::now();
    let (_tmp, base) = pixdex_benches::work_dir(arg("--keep"))?;

    // 1. Libraries.
    let manifest = read_manifest(&photos)?;
    let t = Instant::now();
    let libs: Vec<Library> = SEEDS
        .iter()
        .map(|&(name, seed)| build_library(name, seed, &photos, &manifest, &base.join("lib").join(name), originals))
        .collect::<anyhow::Result<_>>()?;
    let generate_s = t.elapsed().as_secs_f64();

    // 2. Index both libraries into one collection (seed B's unedited photos are copies of seed A's:
    // the pipeline reuses their vectors).
    let encoder = PixioEncoder::load(&WeightSource::Dir(model), &Device::Cpu, DType::F32)?;
    let collection = Collection::open_or_create(&base.join("collection"), &encoder.collection_config())?;
    let cancel = AtomicBool::new(false);
    let t = Instant::now();
    let mut index_lines = Vec::new();
    for lib in &libs {
        let options = IndexOptions {
            crawl: CrawlOptions { roots: vec![lib.root.clone()], ..Default::default() },
            ..Default::default()
        };
        let report = run_index_job(&collection, &encoder, &options, &NoProgress, &cancel)?;
        anyhow::ensure!(report.failed.is_empty(), "failed: {:?}", report.failed);
        index_lines.push(format!(
            "seed {}: {} files, {} embedded, {} copied, {:.1} s",
            lib.name,
            report.found,
            report.embedded,
            report.copied,
            report.elapsed.as_secs_f64()
        ));
    }
    let index_s = t.elapsed().as_secs_f64();

    // 3. Scores and sweeps.
    let k: usize = arg("--neighbours").map(|s| s.parse()).transpose()?.unwrap_or(DedupOptions::default().neighbours);
    let grid = Grid::new(k);
    let results =
        libs.iter().map(|lib| measure_seed(lib, &collection, &grid, &cancel)).collect::<anyhow::Result<Vec<_>>>()?;

    // 4. Report.
    let setup = Setup { index_lines, generate_s, index_s };
    print_report(&libs, &results, &grid, &setup, args.iter().any(|a| a == "--all-misses"));
    println!("total {:.1} s", started.elapsed().as_secs_f64());
    Ok(())
}
