//! What each Pixio size costs per image on this CPU with every index feature, and how long a
//! 10k-photo library takes: the global pass at the model's input size, the two dedup views (two
//! more such passes), and the region pass (a 4:3 photo at the region long side, blocks up to the
//! kept one), f32 at batch 8, forward passes only (decode and preprocessing add a few ms per
//! photo; `index_throughput` measures them). Random weights of the released configs (timing
//! does not depend on the values); the real ViT-S/14 when the shared data has it.
//!
//! `cargo bench -p pixdex-benches --bench model_sizes -- [--iters N] [--only b16,l16,h16,s14]`

use candle_core::{DType, Device, Tensor};
use pixdex_benches::{median_min, random_hub_tensors, time_runs};
use pixdex_core::region_grid_shape;
use pixdex_indexer::encoder::REGION_LONG_SIDE;
use pixio::{Config, ModelFiles, PixioModel};

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

const BATCH: usize = 8;
const LIBRARY: f64 = 10_000.0;

fn arg(args: &[String], flag: &str) -> Option<String> {
    args.iter().position(|a| a == flag).and_then(|i| args.get(i + 1)).cloned()
}

/// Median wall seconds per image of `pass` on a random `[BATCH, 3, h, w]` input.
fn per_image(iters: usize, h: usize, w: usize, pass: impl Fn(&Tensor) -> anyhow::Result<()>) -> anyhow::Result<f64> {
    let x = Tensor::randn(0f32, 1f32, (BATCH, 3, h, w), &Device::Cpu)?;
    let runs = time_runs(1, iters, || pass(&x))?;
    Ok(median_min(runs.iter().map(|r| r.0 / BATCH as f64).collect()).0)
}

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let iters: usize = arg(&args, "--iters").map(|s| s.parse()).transpose()?.unwrap_or(2);
    let only = arg(&args, "--only");
    let s14 = pixdex_benches::shared_dir().join("data/models/pixio-s14-real");
    let mut cases: Vec<(&str, Option<Config>)> = Vec::new();
    if s14.join("model.safetensors").is_file() {
        cases.push(("s14", None));
    } else {
        eprintln!("NOTE: no {}: the real ViT-S/14 row is left out", s14.display());
    }
    cases.extend([
        ("b16", Some(Config::pixio_vitb16())),
        ("l16", Some(Config::pixio_vitl16())),
        ("h16", Some(Config::pixio_vith16())),
    ]);
    println!(
        "f32, batch {BATCH}, {} compute threads, median of {iters} runs; ms per image; a 4:3 photo's region pass",
        candle_core::utils::get_num_threads()
    );
    println!(
        "{:<22} {:>7} {:>9} {:>9} {:>9} {:>12} {:>14} {:>14}",
        "model", "params", "global", "+ views", "region", "every feat.", "10k: global", "10k: every"
    );
    for (name, config) in cases {
        if only.as_deref().is_some_and(|o| !o.split(',').any(|x| x == name)) {
            continue;
        }
        let (label, model) = match config {
            None => ("ViT-S/14 (real)", PixioModel::load(&ModelFiles::from_dir(&s14)?, &Device::Cpu, DType::F32)?),
            Some(cfg) => {
                let label = match name {
                    "b16" => "ViT-B/16 (pixio-vitb16)",
                    "l16" => "ViT-L/16 (pixio-vitl16)",
                    _ => "ViT-H/16 (pixio-vith16)",
                };
                (label, PixioModel::from_tensors(cfg.clone(), random_hub_tensors(&cfg)?, &Device::Cpu, DType::F32)?)
            }
        };
        let cfg = model.config().clone();
        let (size, patch) = (cfg.image_size.height, cfg.patch_size.height);
        let global = per_image(iters, size, size, |x| {
            model.forward(x)?.pooler_output.sum_all()?.to_scalar::<f32>()?;
            Ok(())
        })?;
        let (rows, cols) = region_grid_shape(4000, 3000, patch, REGION_LONG_SIDE);
        let layer = (cfg.num_hidden_layers / 2).max(1);
        let region = per_image(iters, rows * patch, cols * patch, |x| {
            model.patch_grid_at_layer(x, layer)?.sum_all()?.to_scalar::<f32>()?;
            Ok(())
        })?;
        let every = 3.0 * global + region;
        let params: usize = cfg.hidden_size * cfg.hidden_size * 12 * cfg.num_hidden_layers;
        let hours = |s: f64| format!("{:.1} h", s * LIBRARY / 3600.0);
        println!(
            "{label:<22} {:>6.0}M {:>9.0} {:>9.0} {:>9.0} {:>12.0} {:>14} {:>14}",
            params as f64 / 1e6,
            global * 1e3,
            2.0 * global * 1e3,
            region * 1e3,
            every * 1e3,
            hours(global),
            hours(every)
        );
    }
    println!("params: the blocks' weights (12·H²·L); every feature = global + 2 views + region");
    Ok(())
}
