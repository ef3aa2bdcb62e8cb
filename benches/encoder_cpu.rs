//! Encoder forward time on the CPU, pixdex (candle) next to Hugging Face transformers (PyTorch) in
//! the same run, f32, batch 1 and 8:
//! * the real ViT-S/14 in `../shared/data/models/pixio-s14-real` at 224 px (skipped if absent);
//! * a random-weight ViT-H/16 (`facebook/pixio-vith16`'s architecture) at 256 px.
//!
//! `cargo bench -p pixdex-benches --bench encoder_cpu -- [--iters N] [--only s14|h16] [--python PY]`
//! The reference runs `benches/transformers_forward.py` with `PY` (default `$PIXDEX_REF_PYTHON`,
//! else `python3`) when that Python has transformers; otherwise only pixdex is timed.
//! Wall times on a shared machine are noisy: compare the two columns of one run, and read the CPU
//! seconds too.

use anyhow::Context;
use candle_core::{DType, Device, Tensor};
use pixdex_benches::{median_min, random_hub_tensors, time_runs};
use pixio::{Config, ModelFiles, PixioModel};
use std::path::{Path, PathBuf};
use std::process::Command;

// candle allocates a fresh buffer per op; mimalloc reuses them instead of faulting in new pages.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

struct Case {
    name: &'static str,
    size: usize,
    model_dir: Option<PathBuf>,
}

struct Timing {
    wall_per_image_med: f64,
    wall_per_image_min: f64,
    cpu_per_image_med: f64,
}

fn arg(args: &[String], flag: &str) -> Option<String> {
    args.iter().position(|a| a == flag).and_then(|i| args.get(i + 1)).cloned()
}

fn time_candle(model: &PixioModel, size: usize, batch: usize, iters: usize) -> anyhow::Result<Timing> {
    let x = Tensor::randn(0f32, 1f32, (batch, 3, size, size), &Device::Cpu)?;
    let runs = time_runs(1, iters, || {
        let out = model.forward(&x)?;
        // Touch the output so the work cannot be skipped.
        out.pooler_output.sum_all()?.to_scalar::<f32>()?;
        Ok(())
    })?;
    let b = batch as f64;
    let (wm, wmin) = median_min(runs.iter().map(|r| r.0 / b).collect());
    let (cm, _) = median_min(runs.iter().map(|r| r.1 / b).collect());
    Ok(Timing { wall_per_image_med: wm, wall_per_image_min: wmin, cpu_per_image_med: cm })
}

fn time_transformers(python: &str, case: &Case, batch: usize, iters: usize) -> anyhow::Result<Option<Timing>> {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("transformers_forward.py");
    let mut cmd = Command::new(python);
    cmd.arg(&script).args([
        "--size",
        &case.size.to_string(),
        "--batch",
        &batch.to_string(),
        "--iters",
        &iters.to_string(),
    ]);
    match &case.model_dir {
        Some(d) => cmd.arg("--model-dir").arg(d),
        None => cmd.args(["--random-config", "vith16"]),
    };
    let out = match cmd.output() {
        Ok(o) if o.status.success() => o,
        Ok(o) => {
            eprintln!(
                "transformers reference failed: {}",
                String::from_utf8_lossy(&o.stderr).lines().last().unwrap_or("")
            );
            return Ok(None);
        }
        Err(e) => {
            eprintln!("transformers reference not run ({python}: {e})");
            return Ok(None);
        }
    };
    let line = String::from_utf8_lossy(&out.stdout).lines().last().unwrap_or("").to_string();
    let v: serde_json::Value = serde_json::from_str(&line).with_context(|| format!("reference printed `{line}`"))?;
    let f = |k: &str| v[k].as_f64().with_context(|| format!("reference JSON lacks {k}"));
    Ok(Some(Timing {
        wall_per_image_med: f("per_image_s_median")?,
        wall_per_image_min: f("wall_s_min")? / batch as f64,
        cpu_per_image_med: f("cpu_s_per_image_median")?,
    }))
}

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let iters: usize = arg(&args, "--iters").map(|s| s.parse()).transpose()?.unwrap_or(3);
    let only = arg(&args, "--only");
    let python =
        arg(&args, "--python").or_else(|| std::env::var("PIXDEX_REF_PYTHON").ok()).unwrap_or_else(|| "python3".into());
    let s14 = pixdex_benches::shared_dir().join("data/models/pixio-s14-real");
    let mut cases = Vec::new();
    if s14.join("model.safetensors").is_file() {
        cases.push(Case { name: "s14", size: 224, model_dir: Some(s14) });
    } else {
        eprintln!("NOTE: no {} — ViT-S/14 case skipped", s14.display());
    }
    cases.push(Case { name: "h16", size: 256, model_dir: None });
    println!(
        "threads: candle {} | iters {iters} (+1 warm-up) | per-image seconds, median (min) wall, median CPU",
        candle_core::utils::get_num_threads()
    );
    println!(
        "{:<22} {:>5} {:>24} {:>24} {:>12}",
        "model", "batch", "pixdex wall (cpu)", "transformers wall (cpu)", "ratio wall"
    );
    for case in cases.iter().filter(|c| only.as_deref().is_none_or(|o| o == c.name)) {
        let model = match &case.model_dir {
            Some(d) => PixioModel::load(&ModelFiles::from_dir(d)?, &Device::Cpu, DType::F32)?,
            None => {
                let cfg = Config::pixio_vith16();
                PixioModel::from_tensors(cfg.clone(), random_hub_tensors(&cfg)?, &Device::Cpu, DType::F32)?
            }
        };
        let label = match case.name {
            "s14" => "ViT-S/14 real @224",
            _ => "ViT-H/16 random @256",
        };
        for batch in [1usize, 8] {
            let ours = time_candle(&model, case.size, batch, iters)?;
            let theirs = time_transformers(&python, case, batch, iters)?;
            let fmt = |t: &Timing| {
                format!("{:.3} ({:.3}) [{:.3}]", t.wall_per_image_med, t.wall_per_image_min, t.cpu_per_image_med)
            };
            let (theirs_s, ratio) = match &theirs {
                Some(t) => (fmt(t), format!("{:.2}x", ours.wall_per_image_med / t.wall_per_image_med)),
                None => ("-".into(), "-".into()),
            };
            println!("{label:<22} {batch:>5} {:>24} {:>24} {:>12}", fmt(&ours), theirs_s, ratio);
        }
    }
    println!("ratio = pixdex / transformers median wall per image (< 1: pixdex faster)");
    Ok(())
}
