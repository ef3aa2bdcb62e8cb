//! Region search at scale: query latency and memory over N images' region grids (random
//! clustered tokens, 24×32 cells as a 640×480 photo at long side 448), next to a brute-force
//! rerank of every stored grid for a few of the same queries; the candidate index's build (in
//! the flush that ends an index job), its file, and the first query after reopening the collection.
//!
//! The tokens are synthetic (a vocabulary of `--words` random 384-d directions plus noise), so
//! this measures cost, not quality; `region_quality` measures quality. Query embeddings are not
//! included: the crop's grid is handed over directly (see `region_quality` for their cost).
//!
//! `cargo bench -p pixdex-benches --bench region_scale -- [--n 10000] [--queries 20] [--words 4096]`

use pixdex_benches::{arg, peak_rss_mib, random_unit};
use pixdex_core::{
    Collection, DEFAULT_REGION_CANDIDATES, Embedding, ImageId, ImageRecord, ImageStatus, NewImage, PatchGrid,
    RegionFrame, RegionGrid, RegionQuery, UnitVector, cells_per_px, match_template, query_grid_sizes,
};
use rand::{Rng, SeedableRng};
use std::path::PathBuf;
use std::time::Instant;

const ROWS: usize = 24;
const COLS: usize = 32;
const DIM: usize = 384;
const FRAME: RegionFrame = RegionFrame { width: 640, height: 480, orientation: 1 };

fn grid(rng: &mut impl Rng, words: &[UnitVector], rows: usize, cols: usize) -> PatchGrid {
    let mut values = Vec::with_capacity(rows * cols * DIM);
    for _ in 0..rows * cols {
        let w = &words[rng.random_range(0..words.len())];
        let noise = random_unit(rng, DIM);
        values.extend(w.as_slice().iter().zip(noise.as_slice()).map(|(a, b)| a + 0.6 * b));
    }
    PatchGrid::new(rows, cols, DIM, values).expect("rows × cols tokens")
}

fn resample(g: &PatchGrid, rows: usize, cols: usize) -> PatchGrid {
    let mut values = Vec::with_capacity(rows * cols * DIM);
    for r in 0..rows {
        for c in 0..cols {
            let at = ((r * g.rows() / rows) * g.cols() + c * g.cols() / cols) * DIM;
            values.extend_from_slice(&g.values()[at..at + DIM]);
        }
    }
    PatchGrid::new(rows, cols, DIM, values).expect("rows × cols tokens")
}

fn window(g: &PatchGrid, r0: usize, c0: usize, rows: usize, cols: usize) -> PatchGrid {
    let mut values = Vec::with_capacity(rows * cols * DIM);
    for r in r0..r0 + rows {
        let at = (r * g.cols() + c0) * DIM;
        values.extend_from_slice(&g.values()[at..at + cols * DIM]);
    }
    PatchGrid::new(rows, cols, DIM, values).expect("rows × cols tokens")
}

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let n = arg(&args, "--n", 10_000);
    let n_queries = arg(&args, "--queries", 20);
    let n_words = arg(&args, "--words", 4096);
    let (dir, c) = pixdex_benches::synthetic_collection("synthetic", DIM)?;
    let mut rng = rand::rngs::StdRng::seed_from_u64(11);
    let words: Vec<UnitVector> = (0..n_words).map(|_| random_unit(&mut rng, DIM)).collect();

    // Queries: an 8×6-cell window (a 160×120-pixel crop) of some images, kept full precision.
    let planted: Vec<(usize, usize, usize)> = (0..n_queries)
        .map(|_| (rng.random_range(0..n), rng.random_range(0..=ROWS - 6), rng.random_range(0..=COLS - 8)))
        .collect();
    let mut blocks: Vec<Option<PatchGrid>> = vec![None; n_queries];
    let t = Instant::now();
    for start in (0..n).step_by(500) {
        let mut batch = Vec::new();
        for i in start..(start + 500).min(n) {
            let g = grid(&mut rng, &words, ROWS, COLS);
            for (q, &(img, r0, c0)) in planted.iter().enumerate() {
                if img == i {
                    blocks[q] = Some(window(&g, r0, c0, 6, 8));
                }
            }
            let mut blake3 = [0u8; 32];
            blake3[..8].copy_from_slice(&(i as u64).to_le_bytes());
            batch.push(NewImage {
                record: ImageRecord {
                    path: PathBuf::from(format!("/synthetic/{i}.jpg")),
                    size: 1,
                    mtime_ns: 0,
                    blake3,
                    width: FRAME.width,
                    height: FRAME.height,
                    status: ImageStatus::Embedded,
                },
                embedding: Embedding::Computed {
                    global: random_unit(&mut rng, DIM),
                    patches: None,
                    views: None,
                    region: Some(RegionGrid { frame: FRAME, tokens: g }),
                },
            });
        }
        c.commit(batch, &[])?;
    }
    let fill_s = t.elapsed().as_secs_f64();
    let (bytes, grids) = c.region_storage()?;
    let ids: Vec<ImageId> = c.records().map(|r| r.map(|(id, _)| id)).collect::<Result<_, _>>()?;

    // The index job's flush builds the candidate index and writes it beside the collection.
    let before = peak_rss_mib(true);
    let t = Instant::now();
    c.flush()?;
    let build_s = t.elapsed().as_secs_f64();
    let after = peak_rss_mib(false);
    let (posting_bytes, indexed) = c.region_index_footprint()?;
    let file_bytes = std::fs::metadata(dir.path().join("region_index"))?.len();

    let crop = (160u32, 120u32);
    let query = RegionQuery { k: 10, ..Default::default() };
    let run = |c: &Collection, block: &PatchGrid| -> anyhow::Result<(f64, Option<ImageId>)> {
        // At other sizes, the block resampled (nearest cell): what an encoder gives at another
        // scale, roughly (the vote asks for a grid a little smaller than the block).
        let mut embed = |rows: usize, cols: usize| -> Result<PatchGrid, pixdex_core::Error> {
            Ok(if (rows, cols) == (block.rows(), block.cols()) { block.clone() } else { resample(block, rows, cols) })
        };
        let t = Instant::now();
        let hits = c.search_region(crop, &mut embed, &query)?;
        Ok((t.elapsed().as_secs_f64(), hits.first().map(|h| h.id)))
    };
    let blocks: Vec<PatchGrid> = blocks
        .into_iter()
        .enumerate()
        .map(|(q, b)| b.ok_or_else(|| anyhow::anyhow!("query {q} not planted")))
        .collect::<Result<_, _>>()?;
    let mut latencies = Vec::new();
    let mut found = 0;
    for (q, block) in blocks.iter().enumerate() {
        let (s, first) = run(&c, block)?;
        latencies.push(s);
        found += usize::from(first == Some(ids[planted[q].0]));
    }
    latencies.sort_by(f64::total_cmp);

    // A restart: open the collection again (as `pixdex serve` does) and answer one query.
    drop(c);
    let t = Instant::now();
    let c = Collection::open(dir.path())?;
    c.cache_records()?;
    let open_s = t.elapsed().as_secs_f64();
    let (first_query_s, first) = run(&c, &blocks[0])?;
    anyhow::ensure!(first == Some(ids[planted[0].0]), "after the restart the planted image is not first");

    // Brute force: every stored grid reranked, for the first 3 queries.
    let reduction = c.region_reduction().ok_or_else(|| anyhow::anyhow!("no reduction"))?;
    let mut brute = Vec::new();
    for block in blocks.iter().take(3) {
        let t = Instant::now();
        let q = reduction.reduce(block)?;
        let mut best = (f32::MIN, ImageId(0));
        for &id in &ids {
            let Some((frame, g)) = c.region_grid(id)? else { continue };
            for size in query_grid_sizes(cells_per_px(&frame, g.rows(), g.cols()), g.rows(), g.cols(), crop.0, crop.1) {
                if size != (q.rows(), q.cols()) {
                    continue;
                }
                if let Some(m) = match_template(&q, &g)
                    && m.score > best.0
                {
                    best = (m.score, id);
                }
            }
        }
        brute.push(t.elapsed().as_secs_f64());
    }

    println!(
        "\nregion_scale: {n} images of {ROWS}×{COLS} synthetic 384-d tokens ({n_words} words), {n_queries} queries"
    );
    println!("| what | value |\n|---|---|");
    println!(
        "| stored region grids | {grids}, {:.1} KB each ({}), {:.0} MB in all |",
        bytes as f64 / grids as f64 / 1e3,
        reduction.describe(),
        bytes as f64 / 1e6
    );
    println!("| writing them (reduction included) | {fill_s:.1} s |");
    println!(
        "| candidate index build (in the index job's flush, written to disk) | {build_s:.1} s, {indexed} images, postings {:.0} MB ({:.1} KB/image); RSS peak {after:.0} MiB from {before:.0} MiB |",
        posting_bytes as f64 / 1e6,
        posting_bytes as f64 / indexed.max(1) as f64 / 1e3
    );
    println!(
        "| candidate index file | {:.0} MB ({:.1} KB/image) |",
        file_bytes as f64 / 1e6,
        file_bytes as f64 / indexed.max(1) as f64 / 1e3
    );
    println!(
        "| restart: open the collection, then the first region query (index read from its file) | open {:.2} s, first query {:.2} s |",
        open_s, first_query_s
    );
    println!(
        "| region query latency (vote + rerank of {DEFAULT_REGION_CANDIDATES}, no query embedding) | median {:.0} ms, p90 {:.0} ms, max {:.0} ms |",
        latencies[latencies.len() / 2] * 1e3,
        latencies[latencies.len() * 9 / 10] * 1e3,
        latencies[latencies.len() - 1] * 1e3
    );
    println!("| planted image first | {found}/{n_queries} |");
    if !brute.is_empty() {
        let b = brute.iter().sum::<f64>() / brute.len() as f64;
        println!(
            "| brute-force rerank of every stored grid (one scale) | {:.0} ms/query: pixdex is {:.1}× faster |",
            b * 1e3,
            b / latencies[latencies.len() / 2]
        );
    }
    println!(
        "| memory per 100k images (postings, extrapolated) | {:.0} MB |",
        posting_bytes as f64 / indexed.max(1) as f64 * 100_000.0 / 1e6
    );
    Ok(())
}
