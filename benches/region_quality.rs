//! Region-search QUALITY (and per-query cost) on a generated benchmark from the dev photos, side
//! by side with a brute-force reference in the same run.
//!
//! Benchmark (as in `shared/notes/region-search.md`, larger): the photos of
//! `$PIXDEX_SHARED_DIR/data/photos` are split into a library (about 3/4) and held-out sources.
//! * **crop** queries: a crop of 10–30 % of a library photo's area, aspect 0.6–1.6, at a random
//!   (off-grid) pixel position; the truth is that photo and the crop's box.
//! * **pasted** queries: a crop of 10–30 % of a held-out photo, pasted at scale 0.75–1.0 at a
//!   random position into a copy of a library photo, which joins the library; the query is the
//!   crop at its native size, the truth is the composite and the pasted box. The source photo is
//!   not in the library, so the composite is the only match.
//!
//! The library is indexed with the real pipeline and the real-weights ViT-S/14. Methods:
//! * **pixdex**: `Collection::search_region` as served (inverted-file vote per scale group,
//!   rerank of the top 256 candidates on the stored grids (PCA-128, product-quantised), ranked by the peak less a quarter of
//!   the image's background);
//! * pixdex with the other rankings (fused with the vote, the peak alone, contrast), fewer
//!   candidates, and reranking every image (no candidate stage), which also gives where the vote
//!   put the true image;
//! * **brute force**: exhaustive sliding-window match of the same query grids over every image's
//!   full-precision (384-d f32, centred) region grid, at the same scales, with the reduction's
//!   mean token and with the whole library's.
//!
//! Metrics: hit@1, hit@10, and IoU@1 (IoU of the rank-1 box with the truth, 0 when rank 1 is the
//! wrong image).
//!
//! `PIXDEX_SHARED_DIR=/work/shared cargo bench -p pixdex-benches --bench region_quality -- [--crops N] [--pasted N] [--keep DIR] [--seed HEX] [--layers 6,9]`

use image::DynamicImage;
use pixdex_core::{
    BACKGROUND_WEIGHT, Collection, ImageId, MAX_K, PatchGrid, PixelBox, RegionQuery, RegionRanking, cells_per_px,
    match_template, query_grid_sizes,
};
use pixdex_indexer::crawl::CrawlOptions;
use pixdex_indexer::decode::{DecodeLimits, decode_path};
use pixdex_indexer::encoder::{Encoder, PixioEncoder};
use pixdex_indexer::inputs::RegionInput;
use pixdex_indexer::pipeline::{IndexOptions, NoProgress, run_index_job};
use pixdex_indexer::region_crop::RegionCrop;
use pixio::{DType, Device, WeightSource};
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use std::cell::Cell;
use std::collections::HashMap;
use std::fs;
use std::path::PathBuf;
use std::sync::atomic::AtomicBool;
use std::time::Instant;

use pixdex_benches::csv_fields;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// The default seed; `--seed` draws another benchmark (another split, other queries).
const SEED: u64 = 0x5EA2C4;

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Kind {
    Crop,
    Pasted,
}

struct Query {
    kind: Kind,
    image: DynamicImage,
    /// Library file (relative) that holds it, and where.
    truth: PathBuf,
    truth_box: PixelBox,
}

/// A random crop of 10–30 % of the area, aspect 0.6–1.6, inside `(w, h)`.
fn random_box(rng: &mut StdRng, w: u32, h: u32) -> (u32, u32, u32, u32) {
    loop {
        let area = rng.random_range(0.10..0.30) * (w * h) as f64;
        let aspect: f64 = rng.random_range(0.6..1.6);
        let bw = (area * aspect).sqrt().round() as u32;
        let bh = (area / aspect).sqrt().round() as u32;
        if bw >= 16 && bh >= 16 && bw < w && bh < h {
            return (rng.random_range(0..=w - bw), rng.random_range(0..=h - bh), bw, bh);
        }
    }
}

/// Full-precision region grids of the library: image, frame, centred tokens.
type Refs = Vec<(ImageId, pixdex_core::RegionFrame, PatchGrid)>;

struct Scored {
    ranked: Vec<(ImageId, PixelBox)>,
}

#[derive(Default, Clone)]
struct Tally {
    n: usize,
    hit1: usize,
    hit10: usize,
    iou1: f64,
}

impl Tally {
    fn add(&mut self, ranked: &[(ImageId, PixelBox)], truth: ImageId, truth_box: &PixelBox) {
        self.n += 1;
        if let Some(pos) = ranked.iter().position(|(id, _)| *id == truth) {
            self.hit10 += usize::from(pos < 10);
            if pos == 0 {
                self.hit1 += 1;
                self.iou1 += ranked[0].1.iou(truth_box) as f64;
            }
        }
    }

    fn row(&self) -> String {
        let n = self.n.max(1) as f64;
        format!("{:.3} | {:.3} | {:.3}", self.hit1 as f64 / n, self.hit10 as f64 / n, self.iou1 / n)
    }
}

/// Centres on `mu` and normalises each token: the brute-force reference's tokens.
fn centred(grid: &PatchGrid, mu: &[f32]) -> PatchGrid {
    let mut values = grid.values().to_vec();
    for t in values.chunks_exact_mut(grid.dim()) {
        t.iter_mut().zip(mu).for_each(|(v, m)| *v -= m);
        let n = t.iter().map(|v| v * v).sum::<f32>().sqrt().max(1e-12);
        t.iter_mut().for_each(|v| *v /= n);
    }
    PatchGrid::new(grid.rows(), grid.cols(), grid.dim(), values).expect("the grid's own shape")
}

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let arg = |name: &str| args.iter().position(|a| a == name).and_then(|i| args.get(i + 1)).cloned();
    let n_crops: usize = arg("--crops").map(|s| s.parse()).transpose()?.unwrap_or(40);
    let n_pasted: usize = arg("--pasted").map(|s| s.parse()).transpose()?.unwrap_or(40);
    let Some((photos, model)) = pixdex_benches::shared_photos_and_model() else { return Ok(()) };
    let (_tmp, base) = pixdex_benches::work_dir(arg("--keep"))?;

    // 1. Library and queries.
    let text = fs::read_to_string(photos.join("manifest.csv"))?;
    let mut lines = text.lines();
    let header = csv_fields(lines.next().unwrap_or_default());
    let file_col = header.iter().position(|h| h == "file").ok_or_else(|| anyhow::anyhow!("no file column"))?;
    let mut files: Vec<String> =
        lines.filter(|l| !l.trim().is_empty()).map(|l| csv_fields(l)[file_col].clone()).collect();
    files.sort();
    let seed: u64 =
        arg("--seed").map(|s| u64::from_str_radix(s.trim_start_matches("0x"), 16)).transpose()?.unwrap_or(SEED);
    let mut rng = StdRng::seed_from_u64(seed);
    files.shuffle(&mut rng);
    let held_out = files.len() / 4;
    let (sources, library) = files.split_at(held_out);
    let lib = base.join("lib");
    let mut queries = Vec::new();
    let mut decoded: HashMap<String, DynamicImage> = HashMap::new();
    for f in files.iter() {
        decoded.insert(f.clone(), decode_path(&photos.join(f), DecodeLimits::default())?.image);
    }
    let fresh = !lib.join("done").exists();
    for f in library {
        let to = lib.join("photos").join(f);
        if fresh {
            fs::create_dir_all(to.parent().expect("parent"))?;
            fs::copy(photos.join(f), &to)?;
        }
    }
    let big = |f: &&String| decoded[*f].width().min(decoded[*f].height()) >= 200;
    let crop_sources: Vec<&String> = library.iter().filter(big).collect();
    for _ in 0..n_crops {
        let f = crop_sources[rng.random_range(0..crop_sources.len())];
        let img = &decoded[f];
        let (x, y, w, h) = random_box(&mut rng, img.width(), img.height());
        queries.push(Query {
            kind: Kind::Crop,
            image: img.crop_imm(x, y, w, h),
            truth: PathBuf::from("photos").join(f),
            truth_box: PixelBox { x: x as f32, y: y as f32, w: w as f32, h: h as f32 },
        });
    }
    let paste_sources: Vec<&String> = sources.iter().filter(big).collect();
    for i in 0..n_pasted {
        let f = paste_sources[rng.random_range(0..paste_sources.len())];
        let img = &decoded[f];
        let (x, y, w, h) = random_box(&mut rng, img.width(), img.height());
        let object = img.crop_imm(x, y, w, h);
        let scale: f64 = rng.random_range(0.75..1.0);
        let (pw, ph) = ((w as f64 * scale).round() as u32, (h as f64 * scale).round() as u32);
        let hosts: Vec<&String> = library
            .iter()
            .filter(|g| decoded[*g].width() >= pw * 6 / 5 && decoded[*g].height() >= ph * 6 / 5)
            .collect();
        let host = hosts[rng.random_range(0..hosts.len())];
        let mut composite = decoded[host].to_rgb8();
        let (px, py) = (rng.random_range(0..=composite.width() - pw), rng.random_range(0..=composite.height() - ph));
        let pasted = object.resize_exact(pw, ph, image::imageops::FilterType::Lanczos3).to_rgb8();
        image::imageops::replace(&mut composite, &pasted, px as i64, py as i64);
        let rel = PathBuf::from("pasted").join(format!("{i:03}.png"));
        if fresh {
            fs::create_dir_all(lib.join("pasted"))?;
            composite.save(lib.join(&rel))?;
        }
        queries.push(Query {
            kind: Kind::Pasted,
            image: object,
            truth: rel,
            truth_box: PixelBox { x: px as f32, y: py as f32, w: pw as f32, h: ph as f32 },
        });
    }
    fs::write(lib.join("done"), b"")?;

    // 2. Index.
    let encoder = PixioEncoder::load(&WeightSource::Dir(model), &Device::Cpu, DType::F32)?;
    let collection = Collection::open_or_create(&base.join("collection"), &encoder.collection_config())?;
    let options = IndexOptions {
        crawl: CrawlOptions { roots: vec![lib.clone()], ..Default::default() },
        dedup_views: false,
        ..Default::default()
    };
    let report = run_index_job(&collection, &encoder, &options, &NoProgress, &AtomicBool::new(false))?;
    anyhow::ensure!(report.failed.is_empty(), "failed: {:?}", report.failed);
    let index_s = report.elapsed.as_secs_f64();
    let mut ids: HashMap<PathBuf, ImageId> = HashMap::new();
    for entry in collection.records() {
        let (id, record) = entry?;
        ids.insert(record.path.strip_prefix(&lib)?.to_path_buf(), id);
    }
    let n_db = ids.len();
    let (region_bytes, region_grids) = collection.region_storage()?;
    let reduction = collection.region_reduction().ok_or_else(|| anyhow::anyhow!("no region grids stored"))?;

    // 3. Full-precision reference grids (the stored ones are reduced and quantised).
    let t = Instant::now();
    let mut raw: Vec<(ImageId, pixdex_core::RegionFrame, PatchGrid)> = Vec::new();
    let cache_dir = base.join("reference");
    fs::create_dir_all(&cache_dir)?;
    for (rel, &id) in &ids {
        let d = decode_path(&lib.join(rel), DecodeLimits::default())?;
        let RegionInput { input, frame } = RegionInput::of(&encoder, &d)?;
        let cached = cache_dir.join(rel.to_string_lossy().replace('/', "_") + ".f32");
        let grid = match fs::read(&cached) {
            Ok(bytes) if bytes.len() > 8 => {
                let (rows, cols) = (
                    u32::from_le_bytes(bytes[..4].try_into()?) as usize,
                    u32::from_le_bytes(bytes[4..8].try_into()?) as usize,
                );
                let values: Vec<f32> =
                    bytes[8..].chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect();
                PatchGrid::new(rows, cols, values.len() / (rows * cols), values)?
            }
            _ => {
                let g = encoder.embed_region_grids(&[input])?.pop().ok_or_else(|| anyhow::anyhow!("no grid"))?;
                let mut bytes = Vec::with_capacity(8 + 4 * g.values().len());
                bytes.extend_from_slice(&(g.rows() as u32).to_le_bytes());
                bytes.extend_from_slice(&(g.cols() as u32).to_le_bytes());
                g.values().iter().for_each(|v| bytes.extend_from_slice(&v.to_le_bytes()));
                fs::write(&cached, bytes)?;
                g
            }
        };
        raw.push((id, frame, grid));
    }
    let reference_embed_s = t.elapsed().as_secs_f64();
    // The mean token over the whole library (the reduction's is fitted on a sample).
    let dim = raw[0].2.dim();
    let mut mu_all = vec![0f64; dim];
    let mut n_tokens = 0usize;
    for (_, _, g) in &raw {
        for t in g.values().chunks_exact(dim) {
            mu_all.iter_mut().zip(t).for_each(|(m, v)| *m += *v as f64);
            n_tokens += 1;
        }
    }
    let mu_all: Vec<f32> = mu_all.iter().map(|m| (m / n_tokens as f64) as f32).collect();
    let mu_gap = mu_all.iter().zip(reduction.mean()).map(|(a, b)| (a - b).powi(2)).sum::<f32>().sqrt()
        / mu_all.iter().map(|a| a * a).sum::<f32>().sqrt();
    let references: Vec<Vec<(ImageId, pixdex_core::RegionFrame, PatchGrid)>> = [reduction.mean(), &mu_all[..]]
        .iter()
        .map(|mu| raw.iter().map(|(id, f, g)| (*id, *f, centred(g, mu))).collect())
        .collect();

    // 3b. With `--layers 6,9`: the same reference on earlier blocks' tokens (final LayerNorm
    // applied), which mix in less of the surrounding photo.
    let layers: Vec<usize> = arg("--layers")
        .map(|l| l.split(',').map(|x| x.trim().parse()).collect::<Result<_, _>>())
        .transpose()?
        .unwrap_or_default();
    let mut layer_refs: Vec<(Vec<f32>, Refs)> = Vec::new();
    if !layers.is_empty() {
        let mut per_layer: Vec<Vec<(ImageId, pixdex_core::RegionFrame, PatchGrid)>> = vec![Vec::new(); layers.len()];
        for (rel, &id) in &ids {
            let d = decode_path(&lib.join(rel), DecodeLimits::default())?;
            let RegionInput { input, frame } = RegionInput::of(&encoder, &d)?;
            let grids = encoder.embed_grids_at_layers(&[input], &layers)?;
            for (l, mut g) in grids.into_iter().enumerate() {
                per_layer[l].push((id, frame, g.remove(0)));
            }
        }
        for refs in per_layer {
            let dim = refs[0].2.dim();
            let mut mu = vec![0f64; dim];
            let mut n = 0usize;
            for (_, _, g) in &refs {
                for t in g.values().chunks_exact(dim) {
                    mu.iter_mut().zip(t).for_each(|(m, v)| *m += *v as f64);
                    n += 1;
                }
            }
            let mu: Vec<f32> = mu.iter().map(|m| (m / n as f64) as f32).collect();
            let centred_refs = refs.iter().map(|(id, f, g)| (*id, *f, centred(g, &mu))).collect();
            layer_refs.push((mu, centred_refs));
        }
    }

    // 4. Queries.
    let layer_names: Vec<String> =
        layers.iter().map(|l| format!("brute force, full precision, block {l} tokens, match")).collect();
    let mut methods = vec![
        "pixdex, fused (vote + peak)",
        "pixdex (default: vote → top 256 → stored grids, peak − ¼ background)",
        "pixdex, ranked by the peak alone",
        "pixdex, ranked by contrast (peak − background)",
        "pixdex, top 64 candidates",
        "pixdex, top 128 candidates",
        "pixdex, rerank all (no vote)",
        "brute force, full precision, peak − ¼ background",
        "brute force, full precision, peak alone",
        "brute force, full precision, mu of all, peak − ¼ background",
    ];
    methods.extend(layer_names.iter().map(|s| s.as_str()));
    let mut tallies: Vec<HashMap<&str, Tally>> = vec![HashMap::new(); methods.len()];
    let (embed_s, embeds) = (Cell::new(0f64), Cell::new(0usize));
    let (mut pixdex_s, mut brute_s) = (0f64, 0f64);
    let mut vote_ranks: HashMap<&str, Vec<usize>> = HashMap::new();
    for (qi, q) in queries.iter().enumerate() {
        if qi % 10 == 0 {
            eprintln!("query {qi}/{}", queries.len());
        }
        let truth = *ids.get(&q.truth).ok_or_else(|| anyhow::anyhow!("{} not indexed", q.truth.display()))?;
        let crop = RegionCrop { image: q.image.clone(), upright_box: PixelBox { x: 0.0, y: 0.0, w: 0.0, h: 0.0 } };
        let mut cache: HashMap<(usize, usize), PatchGrid> = HashMap::new();
        let mut embed = |rows: usize, cols: usize| -> pixdex_indexer::Result<PatchGrid> {
            if let Some(g) = cache.get(&(rows, cols)) {
                return Ok(g.clone());
            }
            let t = Instant::now();
            let g = crop.embed(&encoder, rows, cols)?;
            embed_s.set(embed_s.get() + t.elapsed().as_secs_f64());
            embeds.set(embeds.get() + 1);
            cache.insert((rows, cols), g.clone());
            Ok(g)
        };
        let all = n_db.min(MAX_K);
        let variants = [
            RegionQuery { k: 10, ranking: RegionRanking::Fused, ..Default::default() },
            RegionQuery { k: 10, ..Default::default() },
            RegionQuery { k: 10, ranking: RegionRanking::Match, ..Default::default() },
            RegionQuery { k: 10, ranking: RegionRanking::Contrast, ..Default::default() },
            RegionQuery { k: 10, candidates: 64, ..Default::default() },
            RegionQuery { k: 10, candidates: 128, ..Default::default() },
            RegionQuery { k: all, candidates: all, ..Default::default() },
        ];
        let mut scored: Vec<Scored> = Vec::new();
        let kind = if q.kind == Kind::Crop { "crop" } else { "pasted" };
        for (i, v) in variants.iter().enumerate() {
            let (t, e0) = (Instant::now(), embed_s.get());
            let hits = collection.search_region(crop.size(), &mut embed, v)?;
            if i == 1 {
                pixdex_s += t.elapsed().as_secs_f64() - (embed_s.get() - e0);
            }
            if v.k == all {
                // Every image, with its vote standing: where the vote put the truth.
                let mut by_vote: Vec<&pixdex_core::RegionHit> = hits.iter().collect();
                by_vote.sort_by(|a, b| b.votes.total_cmp(&a.votes));
                let rank = by_vote.iter().position(|h| h.id == truth).unwrap_or(n_db);
                vote_ranks.entry(kind).or_default().push(rank);
            }
            scored.push(Scored { ranked: hits.iter().take(10).map(|h| (h.id, h.bbox)).collect() });
        }
        // Brute force over every full-precision grid.
        let (w, h) = crop.size();
        for (variant, refs) in [(0, &references[0]), (1, &references[0]), (2, &references[1])] {
            let mu: &[f32] = if variant == 2 { &mu_all } else { reduction.mean() };
            let (t, e0) = (Instant::now(), embed_s.get());
            let mut all: Vec<(f32, ImageId, PixelBox)> = Vec::new();
            for (id, frame, grid) in refs {
                let mut best: Option<(f32, pixdex_core::TemplateMatch)> = None;
                for size in
                    query_grid_sizes(cells_per_px(frame, grid.rows(), grid.cols()), grid.rows(), grid.cols(), w, h)
                {
                    let full = embed(size.0, size.1)?;
                    let qg = centred(&full, mu);
                    if let Some(m) = match_template(&qg, grid) {
                        let key = if variant == 1 { m.score } else { m.score - BACKGROUND_WEIGHT * m.background };
                        if best.is_none_or(|b| key > b.0) {
                            best = Some((key, m));
                        }
                    }
                }
                if let Some((key, m)) = best {
                    all.push((
                        key,
                        *id,
                        frame.box_to_stored(frame.cells_to_upright(grid.rows(), grid.cols(), m.cells)),
                    ));
                }
            }
            all.sort_by(|a, b| b.0.total_cmp(&a.0));
            if variant == 0 {
                brute_s += t.elapsed().as_secs_f64() - (embed_s.get() - e0);
            }
            scored.push(Scored { ranked: all.iter().take(10).map(|(_, id, b)| (*id, *b)).collect() });
        }
        let mut layer_cache: HashMap<(usize, usize), Vec<PatchGrid>> = HashMap::new();
        for (l, (mu, refs)) in layer_refs.iter().enumerate() {
            let mut all: Vec<(f32, ImageId, PixelBox)> = Vec::new();
            for (id, frame, grid) in refs {
                let mut best: Option<pixdex_core::TemplateMatch> = None;
                for size in
                    query_grid_sizes(cells_per_px(frame, grid.rows(), grid.cols()), grid.rows(), grid.cols(), w, h)
                {
                    let grids = match layer_cache.entry(size) {
                        std::collections::hash_map::Entry::Occupied(e) => e.into_mut(),
                        std::collections::hash_map::Entry::Vacant(e) => {
                            let input = encoder.prepare_grid(&q.image, size.0, size.1)?;
                            let grids = encoder.embed_grids_at_layers(&[input], &layers)?;
                            e.insert(grids.into_iter().map(|mut g| g.remove(0)).collect())
                        }
                    };
                    let qg = centred(&grids[l], mu);
                    if let Some(m) = match_template(&qg, grid)
                        && best.is_none_or(|b| m.score > b.score)
                    {
                        best = Some(m);
                    }
                }
                if let Some(m) = best {
                    all.push((
                        m.score,
                        *id,
                        frame.box_to_stored(frame.cells_to_upright(grid.rows(), grid.cols(), m.cells)),
                    ));
                }
            }
            all.sort_by(|a, b| b.0.total_cmp(&a.0));
            scored.push(Scored { ranked: all.iter().take(10).map(|(_, id, b)| (*id, *b)).collect() });
        }
        for (tally, s) in tallies.iter_mut().zip(&scored) {
            for key in [kind, "all"] {
                tally.entry(key).or_default().add(&s.ranked, truth, &q.truth_box);
            }
        }
    }

    // 5. Report.
    println!(
        "\nregion_quality: {n_db} library images ({} pasted composites), {} queries ({n_crops} crops, {n_pasted} pasted), seed {seed:#x}",
        n_pasted,
        queries.len()
    );
    println!(
        "indexing (region pass at long side 448, no dedup views): {index_s:.1} s, {:.2} s/image",
        index_s / n_db as f64
    );
    println!(
        "stored region grids: {region_grids}, {:.1} KB per image ({}); full precision would be {:.1} KB (f32) / {:.1} KB (fp16)",
        region_bytes as f64 / region_grids.max(1) as f64 / 1000.0,
        reduction.describe(),
        raw.iter().map(|(_, _, g)| g.values().len() * 4).sum::<usize>() as f64 / n_db as f64 / 1000.0,
        raw.iter().map(|(_, _, g)| g.values().len() * 2).sum::<usize>() as f64 / n_db as f64 / 1000.0,
    );
    println!("mean token of the reduction vs of the whole library: relative distance {mu_gap:.3}");
    let (posting_bytes, _) = collection.region_index_footprint()?;
    println!("candidate index in memory: {:.1} KB per image (postings)", posting_bytes as f64 / n_db as f64 / 1000.0);
    println!("\n| method | all: hit@1 / hit@10 / IoU@1 | crop | pasted |\n|---|---|---|---|");
    for (m, t) in methods.iter().zip(&tallies) {
        println!("| {m} | {} | {} | {} |", t["all"].row(), t["crop"].row(), t["pasted"].row());
    }
    for kind in ["crop", "pasted"] {
        let ranks = vote_ranks.get(kind).cloned().unwrap_or_default();
        let at = |n: usize| ranks.iter().filter(|&&r| r < n).count() as f64 / ranks.len().max(1) as f64;
        println!(
            "candidate vote, {kind}: the true image within the top 10 {:.3}, 32 {:.3}, 64 {:.3}, 128 {:.3}, 256 {:.3}",
            at(10),
            at(32),
            at(64),
            at(128),
            at(256)
        );
    }
    let nq = queries.len().max(1) as f64;
    println!(
        "\nper query: {:.2} query embeddings ({:.0} ms each, {:.0} ms in all), pixdex search without embeddings {:.0} ms, brute-force match {:.0} ms; reference grids took {reference_embed_s:.0} s to embed",
        embeds.get() as f64 / nq,
        embed_s.get() * 1000.0 / embeds.get().max(1) as f64,
        embed_s.get() * 1000.0 / nq,
        pixdex_s * 1000.0 / nq,
        brute_s * 1000.0 / nq,
    );
    Ok(())
}
