//! What indexing costs, stage by stage, next to Hugging Face transformers embedding the same
//! photos in the same run (decode with Pillow, its image processor, one forward pass).
//!
//! On an evenly spread sample of `../shared/data/photos` with the real ViT-S/14:
//! * decode alone, and the model inputs of each kind (square, square + dedup views, region);
//! * forward passes alone by kind (global, global + views, region grid), as ms per image and as
//!   a cost in reference embeddings (transformers' time per image of this run);
//! * the full default pipeline (`pixdex index` defaults: global + views + region grid) into a
//!   fresh collection, its rate as a ratio of the reference's, and a re-index of the unchanged
//!   library; the stored bytes per image.
//!
//! `cargo bench -p pixdex-benches --bench index_throughput -- [--batch N] [--limit N|0=all]
//! [--photos DIR] [--python PY]`; the reference runs `benches/transformers_embed_photos.py` with `PY` (default
//! `$PIXDEX_REF_PYTHON`, else `python3`) when it has transformers, and is left out otherwise.

use anyhow::Context;
use pixdex_core::Collection;
use pixdex_indexer::batch::{embed_all, embed_all_regions};
use pixdex_indexer::batch::{embed_images, embed_region_grids};
use pixdex_indexer::crawl::{CrawlOptions, crawl};
use pixdex_indexer::decode::{DecodeLimits, DecodedImage, decode_bytes, decode_bytes_at_least};
use pixdex_indexer::encoder::PixioEncoder;
use pixdex_indexer::inputs::RegionInput;
use pixdex_indexer::inputs::{InputKinds, ModelInputs};
use pixdex_indexer::pipeline::{IndexOptions, NoProgress, run_index_job};
use pixio::{DType, Device, WeightSource};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::AtomicBool;
use std::time::Instant;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn arg(args: &[String], flag: &str) -> Option<String> {
    args.iter().position(|a| a == flag).and_then(|i| args.get(i + 1)).cloned()
}

/// `f` over `items` on `threads` scoped threads, results in order.
fn par_map<T: Sync, R: Send>(items: &[T], threads: usize, f: impl Fn(&T) -> R + Sync) -> Vec<R> {
    std::thread::scope(|s| {
        let f = &f;
        let handles: Vec<_> = items
            .chunks(items.len().div_ceil(threads).max(1))
            .map(|chunk| s.spawn(move || chunk.iter().map(f).collect::<Vec<_>>()))
            .collect();
        handles.into_iter().flat_map(|h| h.join().expect("bench worker")).collect()
    })
}

/// Transformers' wall seconds per embedded image on `files`, or `None` (with a note) if the
/// reference cannot run.
fn reference_seconds_per_image(python: &str, model: &Path, files: &[PathBuf], batch: usize) -> Option<f64> {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("transformers_embed_photos.py");
    let out = Command::new(python)
        .arg(&script)
        .arg("--model-dir")
        .arg(model)
        .args(["--batch", &batch.to_string(), "--threads", &pixdex_threads().to_string()])
        .args(files)
        .output();
    let out = match out {
        Ok(o) if o.status.success() => o,
        Ok(o) => {
            let err = String::from_utf8_lossy(&o.stderr);
            eprintln!("NOTE: transformers reference failed: {}", err.lines().last().unwrap_or(""));
            return None;
        }
        Err(e) => {
            eprintln!("NOTE: transformers reference not run ({python}: {e})");
            return None;
        }
    };
    let line = String::from_utf8_lossy(&out.stdout).lines().last().unwrap_or("").to_string();
    let v: serde_json::Value = serde_json::from_str(&line).ok()?;
    let (wall, n) = (v["wall_s"].as_f64()?, v["embedded"].as_f64()?);
    (n > 0.0).then(|| wall / n)
}

/// How far the index's reduced-scale decodes move the embeddings: for each photo decoded at a
/// reduced DCT scale, the cosine of its global vector and of its region grid's tokens (mean over
/// the grid) to those of the full decode.
fn reduced_decode_check(
    encoder: &PixioEncoder,
    full: &[DecodedImage],
    reduced: &[DecodedImage],
) -> anyhow::Result<String> {
    let pairs: Vec<(&DecodedImage, &DecodedImage)> =
        full.iter().zip(reduced).filter(|(_, r)| r.image.width() != r.full_size.0).collect();
    if pairs.is_empty() {
        return Ok(format!(
            "DCT-scaled decoding: none of {} photos is twice the inputs' size (full decodes)",
            full.len()
        ));
    }
    let (mut global, mut region) = (Vec::new(), Vec::new());
    for (f, r) in &pairs {
        let g: Vec<_> = [f, r]
            .iter()
            .map(|d| {
                let square = ModelInputs::of(encoder, d, InputKinds::QUERY)?.square;
                Ok(embed_images(encoder, &[&square])?.remove(0)?.global)
            })
            .collect::<anyhow::Result<_>>()?;
        global.push(g[0].dot(g[1].as_slice()));
        let grids =
            embed_region_grids(encoder, &[RegionInput::of(encoder, f)?.input, RegionInput::of(encoder, r)?.input])?;
        let dim = grids[0].dim();
        let cos: Vec<f32> = grids[0]
            .values()
            .chunks(dim)
            .zip(grids[1].values().chunks(dim))
            .map(|(a, b)| {
                let dot: f32 = a.iter().zip(b).map(|(x, y)| x * y).sum();
                let norm = |v: &[f32]| v.iter().map(|x| x * x).sum::<f32>().sqrt();
                dot / (norm(a) * norm(b)).max(1e-12)
            })
            .collect();
        region.push(cos.iter().sum::<f32>() / cos.len() as f32);
    }
    let min = |v: &[f32]| v.iter().copied().fold(f32::INFINITY, f32::min);
    Ok(format!(
        "DCT-scaled decoding: {} of {} photos decoded at a reduced scale; cosine to a full decode: global min {:.6}, region grid (mean over tokens) min {:.6}",
        pairs.len(),
        full.len(),
        min(&global),
        min(&region)
    ))
}

fn pixdex_threads() -> usize {
    candle_core::utils::get_num_threads()
}

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let batch: usize = arg(&args, "--batch").map(|s| s.parse()).transpose()?.unwrap_or(8);
    let limit: usize = arg(&args, "--limit").map(|s| s.parse()).transpose()?.unwrap_or(64);
    let python =
        arg(&args, "--python").or_else(|| std::env::var("PIXDEX_REF_PYTHON").ok()).unwrap_or_else(|| "python3".into());
    let Some((dev_photos, model)) = pixdex_benches::shared_photos_and_model() else { return Ok(()) };
    // `--photos DIR`: another folder (real camera photos are 10–50× the dev photos' pixels).
    let photos = arg(&args, "--photos").map(PathBuf::from).unwrap_or(dev_photos);
    let encoder = PixioEncoder::load(&WeightSource::Dir(model.clone()), &Device::Cpu, DType::F32)?;
    let mut files: Vec<PathBuf> = crawl(&CrawlOptions { roots: vec![photos.clone()], ..Default::default() })?
        .files
        .into_iter()
        .map(|f| f.path)
        .collect();
    files.sort();
    if limit > 0 && files.len() > limit {
        // Evenly spread, so that every source folder (and photo size) is represented.
        let step = files.len() as f64 / limit as f64;
        files = (0..limit).map(|i| files[(i as f64 * step) as usize].clone()).collect();
    }
    // The pipeline indexes a folder: copy the sample into one.
    let library = tempfile::tempdir()?;
    for (i, f) in files.iter().enumerate() {
        let name = format!("{i:04}-{}", f.file_name().and_then(|n| n.to_str()).unwrap_or("photo"));
        std::fs::copy(f, library.path().join(name)).with_context(|| format!("copy {}", f.display()))?;
    }
    let threads = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(2);
    println!(
        "{} photos of {} (evenly spread); batch {batch}; {threads} decode threads, {} compute threads; ViT-S/14 f32 CPU",
        files.len(),
        photos.display(),
        pixdex_threads()
    );

    // The reference first, on a quiet machine.
    let reference = reference_seconds_per_image(&python, &model, &files, batch);

    // Decode alone: in full, and as the index does (large JPEGs at a reduced DCT scale); then
    // the inputs of each kind from the index's decodes.
    let bytes: Vec<Vec<u8>> = files.iter().map(std::fs::read).collect::<std::io::Result<_>>()?;
    let limits = DecodeLimits::default();
    let t = Instant::now();
    let full: Vec<DecodedImage> =
        par_map(&bytes, threads, |b| decode_bytes(b, limits).ok()).into_iter().flatten().collect();
    let full_decode_s = t.elapsed().as_secs_f64();
    let need = InputKinds::STORED.min_decoded_size(&encoder);
    let t = Instant::now();
    let decoded: Vec<DecodedImage> =
        par_map(&bytes, threads, |b| decode_bytes_at_least(b, limits, need).ok()).into_iter().flatten().collect();
    let decode_s = t.elapsed().as_secs_f64();
    let n = decoded.len();
    anyhow::ensure!(full.len() == n, "the full and the reduced decodes disagree on which files decode");
    let scaled_check = reduced_decode_check(&encoder, &full, &decoded)?;
    drop(full);
    let prepare = |kinds: InputKinds| -> anyhow::Result<(f64, Vec<ModelInputs>)> {
        let t = Instant::now();
        let inputs = par_map(&decoded, threads, |d| ModelInputs::of(&encoder, d, kinds));
        Ok((t.elapsed().as_secs_f64(), inputs.into_iter().collect::<pixio::Result<Vec<_>>>()?))
    };
    let (square_s, square) = prepare(InputKinds::QUERY)?;
    let (views_s, with_views) = prepare(InputKinds { views: true, region: false })?;
    let (region_s, with_region) = prepare(InputKinds { views: false, region: true })?;

    // Forward passes alone, by kind, in batches of `batch` images as the pipeline makes them.
    let forward = |inputs: &[ModelInputs], region: bool| -> anyhow::Result<f64> {
        let t = Instant::now();
        for chunk in inputs.chunks(batch) {
            if region {
                embed_all_regions(&encoder, chunk.iter().collect(), |i| {
                    &i.region.as_ref().expect("region inputs were made").input
                })?;
            } else {
                embed_all(&encoder, chunk.iter().collect(), |i| i.square.as_slice())?;
            }
        }
        Ok(t.elapsed().as_secs_f64() / n as f64)
    };
    let global_fw = forward(&square, false)?;
    let views_fw = forward(&with_views, false)?;
    let region_fw = forward(&with_region, true)?;
    drop((square, with_views, with_region));

    // The full default pipeline into a fresh collection, then a re-index of the unchanged library.
    let dir = tempfile::tempdir()?;
    let collection = Collection::open_or_create(dir.path(), &encoder.collection_config())?;
    let options = IndexOptions {
        crawl: CrawlOptions { roots: vec![library.path().to_path_buf()], ..Default::default() },
        batch_size: batch,
        ..Default::default()
    };
    let cancel = AtomicBool::new(false);
    let first = run_index_job(&collection, &encoder, &options, &NoProgress, &cancel)?;
    let again = run_index_job(&collection, &encoder, &options, &NoProgress, &cancel)?;
    let pipeline_s = first.elapsed.as_secs_f64() / first.embedded.max(1) as f64;

    let ms = |s: f64| s * 1e3;
    let cost = |s: f64| reference.map_or("-".to_string(), |r| format!("{:.2}", s / r));
    println!("\n{:<44} {:>10} {:>10} {:>12}", "stage (per image)", "ms", "images/s", "ref. embeds");
    let row = |name: &str, s: f64| println!("{name:<44} {:>10.1} {:>10.1} {:>12}", ms(s), 1.0 / s, cost(s));
    if let Some(r) = reference {
        row("transformers: decode + process + forward", r);
    }
    row("decode in full", full_decode_s / n as f64);
    row("decode as the index does", decode_s / n as f64);
    row("prepare square input", square_s / n as f64);
    row("prepare square + dedup views", views_s / n as f64);
    row("prepare region input", region_s / n as f64);
    row("forward: global (1 input)", global_fw);
    row("forward: global + views (3 inputs)", views_fw);
    row("forward: region grid (blocks to the kept one)", region_fw);
    row("full default pipeline (first index)", pipeline_s);
    match reference {
        Some(r) => println!(
            "\nfull index rate / reference embedding rate = {:.2} (every feature costs {:.2} reference embeddings per image)",
            r / pipeline_s,
            pipeline_s / r
        ),
        None => println!("\nno reference in this run: ratios need a Python with transformers (--python)"),
    }
    println!("{scaled_check}");
    println!(
        "first index: {} embedded, {} failed, {:.1} s (incl. the one-off region reduction fit on up to {} images)",
        first.embedded,
        first.failed.len(),
        first.elapsed.as_secs_f64(),
        pixdex_indexer::pipeline::REDUCTION_SAMPLE
    );
    println!(
        "re-index unchanged: {:.3} s = {:.2}% of the first index ({} unchanged)",
        again.elapsed.as_secs_f64(),
        100.0 * again.elapsed.as_secs_f64() / first.elapsed.as_secs_f64(),
        again.unchanged
    );
    let (mut global_bytes, mut patch_bytes) = (0usize, 0usize);
    if let Some(Ok((id, _))) = collection.records().next() {
        global_bytes = collection.config().dim * 4;
        if let Some(g) = collection.patch_grid(id)? {
            patch_bytes = pixdex_core::PatchCodec::encoded_len(g.rows(), g.cols(), g.dim());
        }
    }
    println!(
        "stored per image: global {global_bytes} B + patches {patch_bytes} B (pool {}); collection on disk {:.1} KB/image",
        collection.config().patch_codec.pool,
        collection.disk_bytes() as f64 / 1024.0 / first.embedded.max(1) as f64
    );
    Ok(())
}
