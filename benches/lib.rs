//! Shared helpers for the benchmarks: timing with process CPU time, and random-weight checkpoints.

use candle_core::{DType, Device, Tensor};
use std::collections::HashMap;
use std::time::Instant;

/// Process CPU time (user + system, all threads), in seconds.
pub fn cpu_seconds() -> f64 {
    // SAFETY: getrusage only writes into the struct we pass.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut ru) };
    let tv = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 * 1e-6;
    tv(ru.ru_utime) + tv(ru.ru_stime)
}

/// Wall and CPU seconds of each of `iters` runs of `f`, after `warmup` untimed runs.
pub fn time_runs(
    warmup: usize,
    iters: usize,
    mut f: impl FnMut() -> anyhow::Result<()>,
) -> anyhow::Result<Vec<(f64, f64)>> {
    for _ in 0..warmup {
        f()?;
    }
    (0..iters)
        .map(|_| {
            let (t0, c0) = (Instant::now(), cpu_seconds());
            f()?;
            Ok((t0.elapsed().as_secs_f64(), cpu_seconds() - c0))
        })
        .collect()
}

/// Median and minimum.
pub fn median_min(mut v: Vec<f64>) -> (f64, f64) {
    v.sort_by(f64::total_cmp);
    let n = v.len();
    let med = if n % 2 == 1 { v[n / 2] } else { (v[n / 2 - 1] + v[n / 2]) / 2.0 };
    (med, v[0])
}

/// Random weights in the Hub layout for `cfg` (speed does not depend on the values).
pub fn random_hub_tensors(cfg: &pixio::Config) -> anyhow::Result<HashMap<String, Tensor>> {
    let dev = Device::Cpu;
    let (h, i, c, ph, pw, ncls) = (
        cfg.hidden_size,
        cfg.intermediate_size(),
        cfg.num_channels,
        cfg.patch_size.height,
        cfg.patch_size.width,
        cfg.n_cls_tokens,
    );
    let n = (cfg.image_size.height / ph) * (cfg.image_size.width / pw);
    let mut t = HashMap::new();
    let mut put = |k: String, shape: &[usize], std: f64| -> anyhow::Result<()> {
        t.insert(k, Tensor::randn(0f32, std as f32, shape, &dev)?.to_dtype(DType::F32)?);
        Ok(())
    };
    put("embeddings.cls_token".into(), &[1, ncls, h], 0.02)?;
    put("embeddings.position_embeddings".into(), &[1, ncls + n, h], 0.02)?;
    put("embeddings.patch_embeddings.projection.weight".into(), &[h, c, ph, pw], 0.02)?;
    put("embeddings.patch_embeddings.projection.bias".into(), &[h], 0.02)?;
    for l in 0..cfg.num_hidden_layers {
        let p = format!("encoder.layer.{l}");
        for (name, shape) in [
            ("norm1.weight", vec![h]),
            ("norm1.bias", vec![h]),
            ("norm2.weight", vec![h]),
            ("norm2.bias", vec![h]),
            ("attention.attention.query.weight", vec![h, h]),
            ("attention.attention.query.bias", vec![h]),
            ("attention.attention.key.weight", vec![h, h]),
            ("attention.attention.key.bias", vec![h]),
            ("attention.attention.value.weight", vec![h, h]),
            ("attention.attention.value.bias", vec![h]),
            ("attention.output.dense.weight", vec![h, h]),
            ("attention.output.dense.bias", vec![h]),
            ("mlp.fc1.weight", vec![i, h]),
            ("mlp.fc1.bias", vec![i]),
            ("mlp.fc2.weight", vec![h, i]),
            ("mlp.fc2.bias", vec![h]),
        ] {
            put(format!("{p}.{name}"), &shape, 0.02)?;
        }
    }
    put("layernorm.weight".into(), &[h], 0.02)?;
    put("layernorm.bias".into(), &[h], 0.02)?;
    Ok(t)
}

/// The value after `flag` in `args`, parsed as a count, or `default`.
pub fn arg(args: &[String], flag: &str, default: usize) -> usize {
    args.iter().position(|a| a == flag).and_then(|i| args.get(i + 1)).and_then(|s| s.parse().ok()).unwrap_or(default)
}

/// The value after `flag`, if given.
pub fn arg_str(args: &[String], flag: &str) -> Option<String> {
    args.iter().position(|a| a == flag).and_then(|i| args.get(i + 1)).cloned()
}

/// A random direction, uniform on the sphere (Box–Muller normals, normalised).
pub fn random_unit(rng: &mut impl rand::Rng, dim: usize) -> pixdex_core::UnitVector {
    let v = (0..dim)
        .map(|_| {
            let (u1, u2): (f64, f64) = (rng.random_range(1e-12..1.0), rng.random());
            ((-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos()) as f32
        })
        .collect();
    pixdex_core::UnitVector::new(v).expect("non-zero")
}

/// The fields of one CSV line (quotes and doubled quotes as in the photo manifest).
pub fn csv_fields(line: &str) -> Vec<String> {
    let mut fields = vec![String::new()];
    let mut quoted = false;
    let mut chars = line.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '"' if quoted && chars.peek() == Some(&'"') => {
                chars.next();
                fields.last_mut().expect("field").push('"');
            }
            '"' => quoted = !quoted,
            ',' if !quoted => fields.push(String::new()),
            c => fields.last_mut().expect("field").push(c),
        }
    }
    fields
}

/// Peak resident memory (VmHWM) in MiB; `reset` restarts the peak from the current size.
pub fn peak_rss_mib(reset: bool) -> f64 {
    if reset {
        let _ = std::fs::write("/proc/self/clear_refs", "5");
    }
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|kb| kb.parse::<f64>().ok())
        .map_or(f64::NAN, |kb| kb / 1024.0)
}

/// The shared dev data: `$PIXDEX_SHARED_DIR` (default `../shared` beside the workspace).
pub fn shared_dir() -> std::path::PathBuf {
    std::env::var_os("PIXDEX_SHARED_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared"))
}

/// The dev photos and the real-weights ViT-S/14 of the shared data, or `None` (with a note on
/// stderr) where they are absent: the quality benches then have nothing to measure.
pub fn shared_photos_and_model() -> Option<(std::path::PathBuf, std::path::PathBuf)> {
    let shared = shared_dir();
    let (photos, model) = (shared.join("data/photos"), shared.join("data/models/pixio-s14-real"));
    if model.is_dir() && photos.join("manifest.csv").is_file() {
        Some((photos, model))
    } else {
        eprintln!("NOTE: no {} or {}; nothing to measure", model.display(), photos.display());
        None
    }
}

/// The working folder of a quality bench: `--keep DIR` (created, kept for a later run), else a
/// temporary folder removed when the returned guard drops. Canonical, so that stored paths match.
pub fn work_dir(keep: Option<String>) -> anyhow::Result<(tempfile::TempDir, std::path::PathBuf)> {
    let tmp = tempfile::tempdir()?;
    let base = match keep {
        Some(dir) => {
            std::fs::create_dir_all(&dir)?;
            std::path::PathBuf::from(dir)
        }
        None => tmp.path().to_path_buf(),
    };
    Ok((tmp, base.canonicalize()?))
}

/// An empty collection of `dim`-d vectors in a temporary folder, pinned to a made-up model named
/// `name` (for the benches that store synthetic vectors or grids).
pub fn synthetic_collection(name: &str, dim: usize) -> anyhow::Result<(tempfile::TempDir, pixdex_core::Collection)> {
    let dir = tempfile::tempdir()?;
    let config = pixdex_core::CollectionConfig {
        model: name.into(),
        model_fingerprint: name.into(),
        embedding: name.into(),
        dim,
        patch_codec: pixdex_core::PatchCodec { pool: 1, quantised: false },
    };
    let collection = pixdex_core::Collection::open_or_create(dir.path(), &config)?;
    Ok((dir, collection))
}

/// `n` vectors: uniform on the sphere (no `centres`), or a random centre's direction plus
/// isotropic noise of about the centre's norm (cosine to the centre ≈ 0.7), as embeddings of
/// photos cluster.
pub fn clustered_vectors(
    rng: &mut rand::rngs::StdRng,
    centres: &[pixdex_core::UnitVector],
    dim: usize,
    n: usize,
) -> Vec<pixdex_core::UnitVector> {
    use rand::Rng;
    (0..n)
        .map(|_| {
            if centres.is_empty() {
                return random_unit(rng, dim);
            }
            let c = &centres[rng.random_range(0..centres.len())];
            let noise = random_unit(rng, dim);
            pixdex_core::UnitVector::new(c.as_slice().iter().zip(noise.as_slice()).map(|(a, b)| a + b).collect())
                .expect("non-zero")
        })
        .collect()
}

/// An embedded image `/random/i` with only a global vector.
pub fn vector_image(i: usize, v: pixdex_core::UnitVector) -> pixdex_core::NewImage {
    pixdex_core::NewImage {
        record: pixdex_core::ImageRecord {
            path: std::path::PathBuf::from(format!("/random/{i}")),
            size: 0,
            mtime_ns: 0,
            blake3: [0; 32],
            width: 1,
            height: 1,
            status: pixdex_core::ImageStatus::Embedded,
        },
        embedding: pixdex_core::Embedding::Computed { global: v, patches: None, views: None, region: None },
    }
}
