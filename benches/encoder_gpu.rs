//! The GPU check, one binary so that a GPU machine without a Rust toolchain can run it
//! (`deploy/gpu-check.sh` carries it; build it with `deploy/build-cuda.sh`):
//!
//! 1. **parity**: the bf16 CUDA path against the transformers reference in
//!    `tests/fixtures/pixio` (what the ignored test `cuda_bf16_matches_reference` checks):
//!    models `a-hub` and `a-hub-f16-sharded`, every reference image, cosine of the global embedding
//!    > 0.99 and the patch grid's shape;
//! 2. **bf16 vs f32**: one random-weight ViT-H/16 (the real config) run in both dtypes on the same
//!    batch, cosine of the global embeddings;
//! 3. **speed**: ViT-H/16 bf16 images/s at 256 px for each batch size, the FLOP count from the
//!    config, the TFLOP/s achieved and the fraction of the GPU's dense bf16 peak.
//!
//! `encoder_gpu [--device cuda|cuda:N|cpu] [--batches 32,64,128] [--iters 10] [--model h16|l16|b16]
//!  [--fixtures DIR] [--peak-tflops 989] [--skip parity,cosine,speed]`
//!
//! Exit status 1 if the parity or the bf16-vs-f32 check fails. `--device cpu --model b16
//! --batches 1 --iters 1` runs the same code on the CPU (a smoke test, not a measurement).

use anyhow::{Context, bail};
use candle_core::{DType, Device, Tensor};
use pixdex_benches::{median_min, random_hub_tensors};
use pixio::{Config, DeviceChoice, ModelFiles, PixioModel};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

// candle allocates a fresh buffer per op; mimalloc reuses them (host side only on a GPU).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn arg(args: &[String], flag: &str) -> Option<String> {
    args.iter().position(|a| a == flag).and_then(|i| args.get(i + 1)).cloned()
}

/// Multiply-accumulates of one forward pass of one image at `size`×`size` px, counted from the
/// config: the patch embedding, and per block the q/k/v/output projections, the two attention
/// products (QKᵀ and the weights times V, over all heads) and the two MLP linears. LayerNorm,
/// softmax, GELU and the bias adds are left out (they are not matrix work).
fn macs_per_image(cfg: &Config, size: usize) -> f64 {
    let (h, i) = (cfg.hidden_size as f64, cfg.intermediate_size() as f64);
    let (ph, pw) = (cfg.patch_size.height, cfg.patch_size.width);
    let patches = ((size / ph) * (size / pw)) as f64;
    let n = patches + cfg.n_cls_tokens as f64;
    let patch_embed = patches * h * (cfg.num_channels * ph * pw) as f64;
    let projections = 4.0 * n * h * h;
    let attention = 2.0 * n * n * h;
    let mlp = 2.0 * n * h * i;
    patch_embed + cfg.num_hidden_layers as f64 * (projections + attention + mlp)
}

fn config(name: &str) -> anyhow::Result<Config> {
    Ok(match name {
        "h16" => Config::pixio_vith16(),
        "l16" => Config::pixio_vitl16(),
        "b16" => Config::pixio_vitb16(),
        _ => bail!("--model {name}: expected h16, l16 or b16"),
    })
}

fn cosine_rows(a: &Tensor, b: &Tensor) -> anyhow::Result<Vec<f32>> {
    // Both are L2-normalised global embeddings, so the row-wise dot product is the cosine.
    let a = a.to_device(&Device::Cpu)?.to_dtype(DType::F32)?;
    let b = b.to_device(&Device::Cpu)?.to_dtype(DType::F32)?;
    Ok((a * b)?.sum(1)?.to_vec1::<f32>()?)
}

/// The reference check of `crates/pixio/tests/integration/layouts.rs::cuda_bf16_matches_reference`.
fn parity(device: &Device, fixtures: &Path) -> anyhow::Result<bool> {
    let reference_path = fixtures.join("reference/a.safetensors");
    let reference: HashMap<String, Tensor> = candle_core::safetensors::load(&reference_path, &Device::Cpu)
        .with_context(|| format!("{} (pass --fixtures DIR)", reference_path.display()))?;
    let mut keys: Vec<&str> =
        reference.keys().filter_map(|k| k.strip_suffix(".pixel_values")).filter(|k| !k.contains('.')).collect();
    keys.sort_unstable();
    let get = |k: &str| reference.get(k).with_context(|| format!("reference lacks `{k}`"));
    let mut ok = true;
    for name in ["a-hub", "a-hub-f16-sharded"] {
        let files = ModelFiles::from_dir(&fixtures.join("models").join(name))?;
        let model = PixioModel::load(&files, device, DType::BF16)?;
        let mut worst = f32::INFINITY;
        for key in &keys {
            let out = model.forward(get(&format!("{key}.pixel_values"))?)?;
            let want = pixio::l2_normalize(get(&format!("{key}.pooler_output"))?)?;
            let cos = cosine_rows(&out.global_embedding()?, &want)?.into_iter().fold(f32::INFINITY, f32::min);
            worst = worst.min(cos);
            let grid = out.patch_grid()?;
            if grid.dims() != [1, 4, 4, 64] {
                println!("parity {name}/{key}: patch grid {:?}, expected [1, 4, 4, 64]", grid.dims());
                ok = false;
            }
            if cos.is_nan() || cos <= 0.99 {
                println!("parity {name}/{key}: cosine {cos:.6} <= 0.99");
                ok = false;
            }
        }
        println!("parity {name}: {} images, worst cosine bf16 vs reference {worst:.6}", keys.len());
    }
    Ok(ok)
}

/// The same random ViT weights in f32 and bf16 on the same inputs.
fn bf16_vs_f32(device: &Device, cfg: &Config, tensors: &HashMap<String, Tensor>, batch: usize) -> anyhow::Result<bool> {
    let size = cfg.image_size.height;
    let x = Tensor::randn(0f32, 1f32, (batch, cfg.num_channels, size, size), device)?;
    let f32_model = PixioModel::from_tensors(cfg.clone(), tensors.clone(), device, DType::F32)?;
    let want = f32_model.forward(&x)?.global_embedding()?;
    drop(f32_model);
    let bf16_model = PixioModel::from_tensors(cfg.clone(), tensors.clone(), device, DType::BF16)?;
    let got = bf16_model.forward(&x)?.global_embedding()?;
    let cos = cosine_rows(&got, &want)?;
    let min = cos.iter().copied().fold(f32::INFINITY, f32::min);
    let mean = cos.iter().sum::<f32>() / cos.len() as f32;
    println!("bf16 vs f32 (random weights, batch {batch}): global-embedding cosine mean {mean:.6}, min {min:.6}");
    Ok(!min.is_nan() && min > 0.99)
}

fn speed(
    device: &Device,
    cfg: &Config,
    tensors: HashMap<String, Tensor>,
    batches: &[usize],
    iters: usize,
    peak_tflops: f64,
) -> anyhow::Result<()> {
    let size = cfg.image_size.height;
    let gflop = 2.0 * macs_per_image(cfg, size) / 1e9;
    println!(
        "speed: {} layers, hidden {}, {size} px, bf16: {gflop:.1} GFLOP per image (2 x MACs of the linears, attention and patch embedding)",
        cfg.num_hidden_layers, cfg.hidden_size
    );
    let model = PixioModel::from_tensors(cfg.clone(), tensors, device, DType::BF16)?;
    println!(
        "{:>6} {:>10} {:>12} {:>10} {:>10} {:>9}",
        "batch", "images/s", "ms/batch", "(min ms)", "TFLOP/s", "of peak"
    );
    for &batch in batches {
        // The input is made on the device once: what is timed is the encoder, not the upload.
        let x = Tensor::randn(0f32, 1f32, (batch, cfg.num_channels, size, size), device)?;
        let run = || -> anyhow::Result<f64> {
            let t0 = Instant::now();
            let out = model.forward(&x)?;
            // Reading one number back waits for every kernel of the pass.
            out.pooler_output.sum_all()?.to_dtype(DType::F32)?.to_scalar::<f32>()?;
            Ok(t0.elapsed().as_secs_f64())
        };
        // Two untimed passes: kernel loading, cuBLAS heuristics, the allocator's first buffers.
        run()?;
        run()?;
        let times = (0..iters).map(|_| run()).collect::<anyhow::Result<Vec<f64>>>()?;
        let (med, min) = median_min(times);
        let ips = batch as f64 / med;
        let tflops = ips * gflop / 1e3;
        println!(
            "{batch:>6} {ips:>10.1} {:>12.2} {:>10.2} {tflops:>10.1} {:>8.1}%",
            med * 1e3,
            min * 1e3,
            100.0 * tflops / peak_tflops
        );
    }
    Ok(())
}

fn main() -> std::process::ExitCode {
    // One line per failure (a missing driver, a failed check), even with RUST_BACKTRACE set.
    match run() {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn run() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let choice: DeviceChoice = arg(&args, "--device").as_deref().unwrap_or("cuda").parse()?;
    let batches = arg(&args, "--batches")
        .as_deref()
        .unwrap_or("32,64,128")
        .split(',')
        .map(|b| b.trim().parse::<usize>().with_context(|| format!("--batches: `{b}` is not a count")))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let iters: usize = arg(&args, "--iters").map(|s| s.parse()).transpose()?.unwrap_or(10);
    let cfg = config(arg(&args, "--model").as_deref().unwrap_or("h16"))?;
    let fixtures = arg(&args, "--fixtures").map(PathBuf::from).unwrap_or_else(|| "tests/fixtures/pixio".into());
    // H100 SXM dense bf16 (989.4 TFLOP/s); pass the number of the GPU at hand (e.g. 1979 is
    // the sparse figure, not this one).
    let peak: f64 = arg(&args, "--peak-tflops").map(|s| s.parse()).transpose()?.unwrap_or(989.0);
    let skip = arg(&args, "--skip").unwrap_or_default();
    let skipped = |part: &str| skip.split(',').any(|s| s.trim() == part);

    let device = choice.open()?;
    println!("device: {choice:?}");
    let mut ok = true;
    if !skipped("parity") {
        ok &= parity(&device, &fixtures)?;
    }
    let tensors = random_hub_tensors(&cfg)?;
    if !skipped("cosine") {
        ok &= bf16_vs_f32(&device, &cfg, &tensors, 8.min(batches.iter().copied().max().unwrap_or(8)))?;
    }
    if !skipped("speed") {
        speed(&device, &cfg, tensors, &batches, iters.max(1), peak)?;
    }
    if !ok {
        bail!("GPU check FAILED (see the lines above)");
    }
    println!("GPU check passed");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vith16_at_256_px_is_344_gflop() {
        let gflop = 2.0 * macs_per_image(&Config::pixio_vith16(), 256) / 1e9;
        assert!((gflop - 344.1).abs() < 0.1, "{gflop}");
    }
}
