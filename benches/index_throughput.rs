//! Indexing throughput on `../shared/data/photos` with the real ViT-S/14, in one run:
//! decode-alone (decode + preprocess on all cores), encode-alone (forward passes on
//! preprocessed inputs), the full pipeline into a fresh collection, and a re-index of the
//! unchanged library. Also the stored bytes per image.
//!
//! `cargo bench -p pixdex-benches --bench index_throughput -- [--batch N]`

use pixdex_core::Collection;
use pixdex_indexer::crawl::{CrawlOptions, crawl};
use pixdex_indexer::decode::{DecodeLimits, decode_path};
use pixdex_indexer::encoder::{Encoder, PixioEncoder};
use pixdex_indexer::inputs::{InputKinds, ModelInputs};
use pixdex_indexer::pipeline::{IndexOptions, NoProgress, run_index_job};
use pixio::{DType, Device, Tensor, WeightSource};
use std::sync::atomic::AtomicBool;
use std::time::Instant;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let batch: usize = args
        .iter()
        .position(|a| a == "--batch")
        .and_then(|i| args.get(i + 1))
        .map(|s| s.parse())
        .transpose()?
        .unwrap_or(8);
    let shared = pixdex_benches::shared_dir();
    let photos = shared.join("data/photos");
    let model = shared.join("data/models/pixio-s14-real");
    if !model.is_dir() {
        eprintln!("NOTE: no {}; nothing to measure", model.display());
        return Ok(());
    }
    let encoder = PixioEncoder::load(&WeightSource::Dir(model), &Device::Cpu, DType::F32)?;
    let files = crawl(&CrawlOptions { roots: vec![photos.clone()], ..Default::default() })?.files;
    let n = files.len();
    let threads = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(2);

    // Decode alone: all cores, as the pipeline's workers do.
    let t = Instant::now();
    let inputs: Vec<Tensor> = std::thread::scope(|s| {
        let chunks: Vec<_> = files.chunks(n.div_ceil(threads)).collect();
        let handles: Vec<_> = chunks
            .into_iter()
            .map(|chunk| {
                let encoder = &encoder;
                s.spawn(move || {
                    chunk
                        .iter()
                        .filter_map(|f| decode_path(&f.path, DecodeLimits::default()).ok())
                        .filter_map(|d| ModelInputs::of(encoder, &d, InputKinds::QUERY).ok())
                        .flat_map(|inputs| inputs.square)
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        handles.into_iter().flat_map(|h| h.join().expect("decode thread")).collect()
    });
    let decode_s = t.elapsed().as_secs_f64();

    // Encode alone.
    let t = Instant::now();
    for chunk in inputs.chunks(batch) {
        encoder.embed_global(chunk)?;
    }
    let encode_s = t.elapsed().as_secs_f64();

    // The full pipeline into a fresh collection, then a re-index of the unchanged library.
    let dir = tempfile::tempdir()?;
    let collection = Collection::open_or_create(dir.path(), &encoder.collection_config())?;
    let options = IndexOptions {
        crawl: CrawlOptions { roots: vec![photos], ..Default::default() },
        batch_size: batch,
        ..Default::default()
    };
    let cancel = AtomicBool::new(false);
    let first = run_index_job(&collection, &encoder, &options, &NoProgress, &cancel)?;
    let again = run_index_job(&collection, &encoder, &options, &NoProgress, &cancel)?;
    let pipeline_s = first.elapsed.as_secs_f64();

    let (mut global_bytes, mut patch_bytes) = (0usize, 0usize);
    if let Some(Ok((id, _))) = collection.records().next() {
        global_bytes = collection.config().dim * 4;
        if let Some(g) = collection.patch_grid(id)? {
            patch_bytes = pixdex_core::PatchCodec::encoded_len(g.rows(), g.cols(), g.dim());
        }
    }
    println!(
        "photos: {n} files, {} decodable; batch {batch}; {threads} decode threads; ViT-S/14 f32 CPU",
        inputs.len()
    );
    println!("decode+preprocess alone: {:>7.1} images/s", inputs.len() as f64 / decode_s);
    println!("encode alone:            {:>7.1} images/s", inputs.len() as f64 / encode_s);
    println!(
        "full pipeline:           {:>7.1} images/s ({} embedded, {} failed) = {:.0}% of the slower stage",
        first.embedded as f64 / pipeline_s,
        first.embedded,
        first.failed.len(),
        100.0 * (first.embedded as f64 / pipeline_s)
            / (inputs.len() as f64 / decode_s).min(inputs.len() as f64 / encode_s)
    );
    println!(
        "re-index unchanged:      {:.3} s = {:.2}% of the first index ({} unchanged)",
        again.elapsed.as_secs_f64(),
        100.0 * again.elapsed.as_secs_f64() / pipeline_s,
        again.unchanged
    );
    println!(
        "stored per image: global {global_bytes} B + patches {patch_bytes} B (pool {}); collection on disk {:.1} KB/image",
        collection.config().patch_codec.pool,
        collection.disk_bytes() as f64 / 1024.0 / first.embedded.max(1) as f64
    );
    Ok(())
}
