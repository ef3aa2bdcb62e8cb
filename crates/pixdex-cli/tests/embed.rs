//! `pixdex embed` run as a user runs it: the real binary, fresh temp dirs, fixture models.

mod common;

use candle_core::{Device, Tensor};
use common::{fixtures, pixdex, pixdex_with_env, shared_dir};
use std::process::Output;

fn json(out: &Output) -> serde_json::Value {
    assert!(out.status.success(), "pixdex failed: {}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).expect("stdout is JSON")
}

fn floats(v: &serde_json::Value) -> Vec<f32> {
    v.as_array().unwrap().iter().map(|x| x.as_f64().unwrap() as f32).collect()
}

fn unit(t: &Tensor) -> Vec<f32> {
    let v = t.flatten_all().unwrap().to_vec1::<f32>().unwrap();
    let n = v.iter().map(|x| x * x).sum::<f32>().sqrt();
    v.iter().map(|x| x / n).collect()
}

fn max_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter().zip(b).map(|(x, y)| (x - y).abs()).fold(0.0, f32::max)
}

#[test]
fn json_embeddings_and_patches_match_transformers() {
    let model = fixtures().join("models/a-hub");
    let images = ["tiny.png", "rgba.png", "wide.png"].map(|f| fixtures().join("images").join(f));
    let mut args = vec!["embed", "--json", "--patches", "--model", model.to_str().unwrap()];
    args.extend(images.iter().map(|p| p.to_str().unwrap()));
    let v = json(&pixdex(&args));
    let reference = candle_core::safetensors::load(fixtures().join("reference/a.safetensors"), &Device::Cpu).unwrap();
    let embeddings = v["embeddings"].as_array().unwrap();
    assert_eq!(embeddings.len(), 3);
    for (e, path) in embeddings.iter().zip(&images) {
        assert_eq!(e["path"].as_str().unwrap(), path.to_str().unwrap());
        let key = path.file_name().unwrap().to_str().unwrap().replace('.', "_");
        let global = floats(&e["global"]);
        let want = unit(&reference[&format!("{key}.pooler_output")]);
        assert!(max_diff(&global, &want) < 1e-4, "{key}: global differs by {}", max_diff(&global, &want));
        // The patch grid is last_hidden_state without the 8 class tokens, row-major.
        assert_eq!(e["patches"]["shape"], serde_json::json!([4, 4, 64]));
        let lhs = &reference[&format!("{key}.last_hidden_state")];
        let patches = lhs.narrow(1, 8, 16).unwrap().flatten_all().unwrap().to_vec1::<f32>().unwrap();
        assert!(max_diff(&floats(&e["patches"]["values"]), &patches) < 1e-4, "{key}: patches");
    }
}

#[test]
fn a_bad_image_is_an_error_line_not_a_crash() {
    let dir = tempfile::tempdir().unwrap();
    let broken = dir.path().join("broken.jpg");
    std::fs::write(&broken, b"\xFF\xD8\xFF\xE0 truncated").unwrap();
    let good = fixtures().join("images/gray.png");
    let model = fixtures().join("models/b-hub");
    let out = pixdex(&[
        "embed",
        "--json",
        "--model",
        model.to_str().unwrap(),
        broken.to_str().unwrap(),
        good.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("broken.jpg"), "{stderr}");
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["embeddings"].as_array().unwrap().len(), 1);
    assert_eq!(floats(&v["embeddings"][0]["global"]).len(), 48);
}

#[test]
fn missing_model_is_a_clear_error() {
    let out = pixdex(&["embed", "--model", "/no/such/model", "x.png"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("/no/such/model"));
}

/// A repo id served from a Hugging Face cache laid out as huggingface_hub writes it, offline.
#[test]
fn hub_repo_id_from_the_offline_cache() {
    let cache = tempfile::tempdir().unwrap();
    let repo = cache.path().join("models--facebook--pixio-vith16");
    let snap = repo.join("snapshots/abc123");
    std::fs::create_dir_all(&snap).unwrap();
    std::fs::create_dir_all(repo.join("refs")).unwrap();
    std::fs::write(repo.join("refs/main"), "abc123").unwrap();
    let src = fixtures().join("models/a-hub-f16-sharded");
    for entry in std::fs::read_dir(&src).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), snap.join(entry.file_name())).unwrap();
    }
    let image = fixtures().join("images/tiny.png");
    // No --model: the default repo id, resolved in the cache.
    let v = json(&pixdex_with_env(&["embed", "--json", image.to_str().unwrap()], &[("HF_HUB_CACHE", cache.path())]));
    let reference = candle_core::safetensors::load(fixtures().join("reference/a.safetensors"), &Device::Cpu).unwrap();
    let want = unit(&reference["tiny_png.pooler_output"]);
    assert!(max_diff(&floats(&v["embeddings"][0]["global"]), &want) < 1e-4);
    // An uncached repo fails offline with a message that says so.
    let out = pixdex_with_env(
        &["embed", "--model", "org/absent", image.to_str().unwrap()],
        &[("HF_HUB_CACHE", cache.path())],
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("offline"));
}

#[test]
fn real_weights_model_from_a_newcomers_shell() {
    let shared = shared_dir();
    let dir = shared.join("data/models/pixio-s14-real");
    if !dir.join("model.safetensors").is_file() {
        assert!(
            std::env::var("PIXDEX_REQUIRE_SHARED_DATA").is_err(),
            "shared data required but missing at {}",
            dir.display()
        );
        eprintln!("NOTE: skipping real-weights CLI test: no {}", dir.display());
        return;
    }
    let image = shared.join("data/photos/skimage/chelsea.png");
    let v = json(&pixdex(&["embed", "--json", "--model", dir.to_str().unwrap(), image.to_str().unwrap()]));
    let reference = candle_core::safetensors::load(dir.join("reference.safetensors"), &Device::Cpu).unwrap();
    let want = unit(&reference["chelsea.pil.pooler_output"]);
    let got = floats(&v["embeddings"][0]["global"]);
    let cos: f32 = got.iter().zip(&want).map(|(a, b)| a * b).sum();
    assert!(cos > 0.99999, "cosine to transformers {cos}");
}
