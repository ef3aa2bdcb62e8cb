//! The real pretrained ViT-S/14 (f16 on disk, Hub layout) against transformers' golden outputs.

use image::DynamicImage;
use pixio::{DType, Device, ModelFiles, PixioModel, Preprocessor, Tensor};

use crate::fixtures::{get, max_abs_diff, rgb_image, shared_dir};

/// `max |a − b| ≤ rel × max |b|`.
fn assert_close_rel(a: &Tensor, b: &Tensor, rel: f32, what: &str) -> f32 {
    let scale = b.abs().unwrap().max_all().unwrap().to_scalar::<f32>().unwrap();
    let d = max_abs_diff(a, b);
    assert!(d <= rel * scale, "{what}: max |Δ| {d:e} > {rel} × {scale}");
    d / scale
}

#[test]
fn real_vits14_matches_transformers() {
    let Some(shared) = shared_dir() else { return };
    let dir = shared.join("data/models/pixio-s14-real");
    let files = ModelFiles::from_dir(&dir).unwrap();
    let reference = candle_core::safetensors::load(dir.join("reference.safetensors"), &Device::Cpu).unwrap();
    let model = PixioModel::load(&files, &Device::Cpu, DType::F32).unwrap();
    let pre = Preprocessor::load(&files).unwrap();
    let photos = shared.join("data/photos");
    for (name, file) in [
        ("chelsea", "skimage/chelsea.png"),
        ("camera", "skimage/camera.png"),
        ("koala", "tuxpaint/animals_marsupials_koala.png"),
        ("path", "kde/path_1680x1050.jpg"),
    ] {
        // Preprocessing: bit-exact to the PIL backend from the pixels PIL decoded.
        let pil_pv = get(&reference, &format!("{name}.pixel_values_pil"));
        let decoded = image::open(photos.join(file)).unwrap();
        let rgb = match reference.get(&format!("{name}.decoded_rgb")) {
            Some(t) => rgb_image(t),
            None => pixio::to_rgb(&decoded),
        };
        let pv = pre.preprocess(&DynamicImage::ImageRgb8(rgb)).unwrap().unsqueeze(0).unwrap();
        assert_eq!(max_abs_diff(&pv, pil_pv), 0.0, "{name}: pixel_values vs PIL backend");
        // Model: from transformers' own model input (torchvision backend).
        let out = model.forward(get(&reference, &format!("{name}.pixel_values"))).unwrap();
        let lhs =
            assert_close_rel(&out.last_hidden_state, get(&reference, &format!("{name}.last_hidden_state")), 1e-3, name);
        let pool = assert_close_rel(&out.pooler_output, get(&reference, &format!("{name}.pooler_output")), 1e-3, name);
        // And end to end from our own pixels against the PIL-backend pooler.
        let ours = model.forward(&pv).unwrap();
        let e2e =
            assert_close_rel(&ours.pooler_output, get(&reference, &format!("{name}.pil.pooler_output")), 1e-3, name);
        eprintln!(
            "real ViT-S/14 {name}: rel max |Δ| last_hidden_state {lhs:.2e}, pooler {pool:.2e}, end-to-end pooler {e2e:.2e}"
        );
    }
}
