//! Loader errors: a missing, mis-shaped or foreign tensor is an error that names it.

use pixio::{DType, Device, Error, ModelFiles, PixioModel, Tensor};
use std::collections::HashMap;

use crate::fixtures;

/// A copy of the `a-hub` model folder whose tensors were edited by `edit`.
fn edited_copy(edit: impl FnOnce(&mut HashMap<String, Tensor>)) -> (tempfile::TempDir, ModelFiles) {
    let src = fixtures::model_dir("a-hub");
    let dir = tempfile::tempdir().unwrap();
    for f in ["config.json", "preprocessor_config.json"] {
        std::fs::copy(src.join(f), dir.path().join(f)).unwrap();
    }
    let mut tensors = candle_core::safetensors::load(src.join("model.safetensors"), &Device::Cpu).unwrap();
    edit(&mut tensors);
    candle_core::safetensors::save(&tensors, dir.path().join("model.safetensors")).unwrap();
    let files = ModelFiles::from_dir(dir.path()).unwrap();
    (dir, files)
}

#[test]
fn missing_tensor_is_named() {
    let (_d, files) = edited_copy(|t| {
        t.remove("encoder.layer.1.mlp.fc2.bias");
    });
    match PixioModel::load(&files, &Device::Cpu, DType::F32) {
        Err(Error::MissingTensor { key }) => assert_eq!(key, "encoder.layer.1.mlp.fc2.bias"),
        other => panic!("expected MissingTensor, got {other:?}"),
    }
}

#[test]
fn misshaped_tensor_is_named() {
    let (_d, files) = edited_copy(|t| {
        let w = t["encoder.layer.0.attention.attention.key.weight"].clone();
        t.insert("encoder.layer.0.attention.attention.key.weight".into(), w.narrow(0, 0, 8).unwrap());
    });
    let err = PixioModel::load(&files, &Device::Cpu, DType::F32).unwrap_err();
    assert!(
        matches!(&err, Error::ShapeMismatch { key, .. } if key == "encoder.layer.0.attention.attention.key.weight"),
        "{err}"
    );
    assert!(err.to_string().contains("encoder.layer.0.attention.attention.key.weight"));
}

#[test]
fn foreign_tensor_is_reported() {
    let (_d, files) = edited_copy(|t| {
        t.insert("decoder.head.weight".into(), Tensor::zeros((2, 2), DType::F32, &Device::Cpu).unwrap());
    });
    let err = PixioModel::load(&files, &Device::Cpu, DType::F32).unwrap_err();
    assert!(matches!(&err, Error::UnexpectedTensors { keys } if keys == &["decoder.head.weight"]), "{err}");
}

#[test]
fn layer_count_beyond_the_checkpoint_is_a_missing_tensor() {
    let (dir, _) = edited_copy(|_| {});
    let cfg = std::fs::read_to_string(dir.path().join("config.json")).unwrap();
    let mut v: serde_json::Value = serde_json::from_str(&cfg).unwrap();
    v["num_hidden_layers"] = serde_json::json!(5);
    std::fs::write(dir.path().join("config.json"), v.to_string()).unwrap();
    let files = ModelFiles::from_dir(dir.path()).unwrap();
    assert!(matches!(PixioModel::load(&files, &Device::Cpu, DType::F32), Err(Error::MissingTensor { .. })));
}

/// The CUDA path (bf16 compute, LayerNorm and softmax in f32) against the f32 reference. Run on a
/// GPU machine with `cargo test -p pixio --features cuda -- --ignored cuda`, or without a Rust
/// toolchain with `bash deploy/gpu-check.sh` (its `encoder_gpu` runs the same check).
#[test]
#[ignore = "needs a CUDA device"]
fn cuda_bf16_matches_reference() {
    let device = pixio::DeviceChoice::Cuda(0).open().expect("a CUDA device");
    let reference = fixtures::reference("a");
    for name in ["a-hub", "a-hub-f16-sharded"] {
        let model = PixioModel::load(&fixtures::model_files(name), &device, DType::BF16).unwrap();
        for (key, _) in fixtures::images(&reference) {
            let out = model.forward(fixtures::get(&reference, &format!("{key}.pixel_values"))).unwrap();
            let ours = out.global_embedding().unwrap().to_device(&Device::Cpu).unwrap();
            let want = pixio::l2_normalize(fixtures::get(&reference, &format!("{key}.pooler_output"))).unwrap();
            let cos = (ours * want).unwrap().sum_all().unwrap().to_scalar::<f32>().unwrap();
            assert!(cos > 0.99, "{name}/{key}: cosine {cos}");
            let grid = out.patch_grid().unwrap().to_dtype(DType::F32).unwrap().to_device(&Device::Cpu).unwrap();
            assert_eq!(grid.dims(), &[1, 4, 4, 64]);
        }
    }
}

#[test]
fn half_precision_compute_stays_close() {
    // bf16/f16 compute (what CUDA uses) on the CPU: LayerNorm and softmax in f32 keep the global
    // embedding within a loose bound of the f32 reference.
    let reference = fixtures::reference("a");
    let files = fixtures::model_files("a-hub");
    for dtype in [DType::BF16, DType::F16] {
        let model = PixioModel::load(&files, &Device::Cpu, dtype).unwrap();
        let out = model.forward(fixtures::get(&reference, "photo_jpg.pixel_values")).unwrap();
        let ours = out.global_embedding().unwrap();
        let want = pixio::l2_normalize(fixtures::get(&reference, "photo_jpg.pooler_output")).unwrap();
        let cos = (ours * want).unwrap().sum_all().unwrap().to_scalar::<f32>().unwrap();
        assert!(cos > 0.99, "{dtype:?}: cosine {cos}");
    }
}

#[test]
fn foreign_layout_names_what_is_missing_and_what_is_foreign() {
    let (_d, files) = edited_copy(|t| {
        let cls = t.remove("embeddings.cls_token").unwrap();
        t.insert("cls_token".into(), cls);
    });
    let err = PixioModel::load(&files, &Device::Cpu, DType::F32).unwrap_err();
    assert!(
        matches!(&err, Error::UnknownLayout { missing, foreign } if missing == "embeddings.cls_token" && foreign == "cls_token"),
        "{err}"
    );
}
