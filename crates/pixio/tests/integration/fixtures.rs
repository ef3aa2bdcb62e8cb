//! Paths, reference tensors and comparison helpers shared by the test modules.

use pixio::{DType, Device, ModelFiles, Tensor};
use std::collections::HashMap;
use std::path::PathBuf;

/// `tests/fixtures/pixio` at the repository root.
pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/pixio")
}

pub fn model_dir(name: &str) -> PathBuf {
    root().join("models").join(name)
}

pub fn model_files(name: &str) -> ModelFiles {
    ModelFiles::from_dir(&model_dir(name)).unwrap_or_else(|e| panic!("{name}: {e}"))
}

/// The reference outputs of transformers for config `cfg` (`a` or `b`).
pub fn reference(cfg: &str) -> HashMap<String, Tensor> {
    let path = root().join("reference").join(format!("{cfg}.safetensors"));
    candle_core::safetensors::load(&path, &Device::Cpu).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Image keys in a reference file (`photo_jpg`, …) with their file paths, sorted.
pub fn images(reference: &HashMap<String, Tensor>) -> Vec<(String, PathBuf)> {
    let mut keys: Vec<String> = reference
        .keys()
        .filter_map(|k| k.strip_suffix(".pixel_values"))
        .filter(|k| !k.contains('.'))
        .map(str::to_string)
        .collect();
    keys.sort();
    keys.into_iter()
        .map(|k| {
            let (stem, ext) = k.rsplit_once('_').expect("image key is <stem>_<ext>");
            let file = root().join("images").join(format!("{stem}.{ext}"));
            assert!(file.is_file(), "{}", file.display());
            (k, file)
        })
        .collect()
}

pub fn get<'a>(reference: &'a HashMap<String, Tensor>, key: &str) -> &'a Tensor {
    reference.get(key).unwrap_or_else(|| panic!("reference lacks `{key}`"))
}

/// Largest absolute elementwise difference (shapes must match).
pub fn max_abs_diff(a: &Tensor, b: &Tensor) -> f32 {
    assert_eq!(a.dims(), b.dims(), "shape mismatch");
    let a = a.to_dtype(DType::F32).unwrap().flatten_all().unwrap().to_vec1::<f32>().unwrap();
    let b = b.to_dtype(DType::F32).unwrap().flatten_all().unwrap().to_vec1::<f32>().unwrap();
    a.iter().zip(&b).map(|(x, y)| (x - y).abs()).fold(0f32, f32::max)
}

/// `[H, W, 3]` u8 tensor → `RgbImage`.
pub fn rgb_image(t: &Tensor) -> image::RgbImage {
    let (h, w, c) = t.dims3().unwrap();
    assert_eq!(c, 3);
    image::RgbImage::from_raw(w as u32, h as u32, t.flatten_all().unwrap().to_vec1::<u8>().unwrap()).unwrap()
}

/// `../shared` (or `$PIXDEX_SHARED_DIR`) if it holds the data; otherwise a visible skip note, or
/// a failure where CI requires the data.
pub fn shared_dir() -> Option<PathBuf> {
    let dir = std::env::var_os("PIXDEX_SHARED_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared"));
    if dir.join("data/models/pixio-s14-real/model.safetensors").is_file() {
        return Some(dir);
    }
    if std::env::var("PIXDEX_REQUIRE_SHARED_DATA").is_ok_and(|v| v == "1") {
        panic!("PIXDEX_REQUIRE_SHARED_DATA=1 but {} has no data/models/pixio-s14-real", dir.display());
    }
    eprintln!("NOTE: skipping real-weights test: no shared data at {} (set PIXDEX_SHARED_DIR)", dir.display());
    None
}
