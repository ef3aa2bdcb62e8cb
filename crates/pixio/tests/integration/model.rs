//! last_hidden_state, pooler, hidden states and backbone maps against transformers (f32, 1e-4).

use pixio::{DType, Device, PixioBackbone, PixioModel};

use crate::fixtures::{self, get, max_abs_diff};

const TOL: f32 = 1e-4;

/// Runs every reference input (default size and the extra resolutions) through one checkpoint.
fn check_checkpoint(cfg: &str, model_name: &str) {
    let reference = fixtures::reference(cfg);
    let model = PixioModel::load(&fixtures::model_files(model_name), &Device::Cpu, DType::F32).unwrap();
    let (mut worst_lhs, mut worst_pool) = (0f32, 0f32);
    for (key, _) in fixtures::images(&reference) {
        let prefixes: Vec<String> = reference
            .keys()
            .filter_map(|k| k.strip_suffix(".pixel_values"))
            .filter(|k| *k == key || k.starts_with(&format!("{key}.res")))
            .map(str::to_string)
            .collect();
        for p in prefixes {
            let out = model.forward(get(&reference, &format!("{p}.pixel_values"))).unwrap();
            let lhs = max_abs_diff(&out.last_hidden_state, get(&reference, &format!("{p}.last_hidden_state")));
            let pool = max_abs_diff(&out.pooler_output, get(&reference, &format!("{p}.pooler_output")));
            assert!(lhs <= TOL && pool <= TOL, "{model_name}/{p}: last_hidden_state {lhs:e}, pooler {pool:e}");
            eprintln!("{model_name}/{p}: max |Δ| last_hidden_state {lhs:.2e}, pooler {pool:.2e}");
            worst_lhs = worst_lhs.max(lhs);
            worst_pool = worst_pool.max(pool);
        }
    }
    eprintln!("{model_name}: max |Δ| last_hidden_state {worst_lhs:.2e}, pooler {worst_pool:.2e}");
}

#[test]
fn config_a_hub_layout() {
    check_checkpoint("a", "a-hub");
}

#[test]
fn config_a_save_pretrained_layout() {
    check_checkpoint("a", "a-saved");
}

#[test]
fn config_a_in_memory_layout() {
    check_checkpoint("a", "a-memory");
}

#[test]
fn config_a_backbone_checkpoint_as_model() {
    check_checkpoint("a", "a-backbone");
}

#[test]
fn config_a_sharded_f16() {
    check_checkpoint("a", "a-hub-f16-sharded");
}

#[test]
fn config_a_bf16() {
    check_checkpoint("a", "a-hub-bf16");
}

#[test]
fn config_b_hub_layout() {
    check_checkpoint("b", "b-hub");
}

#[test]
fn config_b_save_pretrained_bf16() {
    check_checkpoint("b", "b-saved-bf16");
}

#[test]
fn hidden_states_and_outputs() {
    for (cfg, name) in [("a", "a-hub"), ("b", "b-hub")] {
        let reference = fixtures::reference(cfg);
        let model = PixioModel::load(&fixtures::model_files(name), &Device::Cpu, DType::F32).unwrap();
        let out = model.forward_with_hidden_states(get(&reference, "photo_jpg.pixel_values")).unwrap();
        let hidden = out.hidden_states.as_ref().unwrap();
        assert_eq!(hidden.len(), model.config().num_hidden_layers + 1);
        for (k, h) in hidden.iter().enumerate() {
            let d = max_abs_diff(h, get(&reference, &format!("photo_jpg.hidden_states.{k}")));
            assert!(d <= TOL, "{name} hidden_states[{k}]: {d:e}");
        }
        // The patch grid is the patch part of last_hidden_state, row-major.
        let grid = out.patch_grid().unwrap();
        let (b, gh, gw, h) = grid.dims4().unwrap();
        let ncls = model.config().n_cls_tokens;
        assert_eq!(b * gh * gw * h, out.last_hidden_state.narrow(1, ncls, gh * gw).unwrap().elem_count());
        let row1 = grid.get(0).unwrap().get(1).unwrap().get(0).unwrap();
        let tok = out.last_hidden_state.get(0).unwrap().get(ncls + gw).unwrap();
        assert_eq!(max_abs_diff(&row1, &tok), 0.0);
        // A pass that stops at a block gives that block's normed patches exactly, batched too.
        let pv = get(&reference, "photo_jpg.pixel_values");
        let pair = pixio::Tensor::cat(&[pv, &pv.affine(-0.5, 0.1).unwrap()], 0).unwrap();
        let full = model.forward_with_hidden_states(&pair).unwrap();
        for layer in [0, 1, model.config().num_hidden_layers] {
            let short = model.patch_grid_at_layer(&pair, layer).unwrap();
            assert_eq!(short.dims(), full.patch_grid().unwrap().dims());
            assert_eq!(
                max_abs_diff(&short, &model.layer_patch_grid(&full, layer).unwrap()),
                0.0,
                "{name} block {layer}"
            );
        }
        assert!(model.patch_grid_at_layer(&pair, model.config().num_hidden_layers + 1).is_err());
        // The global embedding is the unit-length pooler.
        let g = out.global_embedding().unwrap().sqr().unwrap().sum_all().unwrap().to_scalar::<f32>().unwrap();
        assert!((g - 1.0).abs() < 1e-5);
    }
}

#[test]
fn saved_backbone_feature_maps() {
    let reference = fixtures::reference("a");
    let backbone = PixioBackbone::load(&fixtures::model_files("a-backbone"), &Device::Cpu, DType::F32).unwrap();
    let mut checked = 0;
    for (key, _) in fixtures::images(&reference) {
        for p in [key.clone(), format!("{key}.res48x112")] {
            let Some(pv) = reference.get(&format!("{p}.pixel_values")) else { continue };
            let maps = backbone.forward(pv).unwrap();
            for m in &maps {
                let Some(want) = reference.get(&format!("{p}.backbone.{}", m.stage)) else { continue };
                let d = max_abs_diff(&m.features, want);
                assert!(d <= TOL, "a-backbone {p} {}: {d:e}", m.stage);
                checked += 1;
            }
        }
    }
    assert!(checked >= 2, "no backbone references compared");
}

#[test]
fn model_checkpoint_backbone_uses_the_learned_final_norm() {
    let reference = fixtures::reference("a");
    let backbone = PixioBackbone::load(&fixtures::model_files("a-hub"), &Device::Cpu, DType::F32)
        .unwrap()
        .with_out_features(&["stage1", "stage2"])
        .unwrap();
    assert_eq!(backbone.out_features(), vec!["stage1", "stage2"]);
    let mut checked = 0;
    for (key, _) in fixtures::images(&reference) {
        let maps = backbone.forward(get(&reference, &format!("{key}.pixel_values"))).unwrap();
        for m in &maps {
            let d = max_abs_diff(&m.features, get(&reference, &format!("model_backbone.{key}.{}", m.stage)));
            assert!(d <= TOL, "model backbone {key} {}: {d:e}", m.stage);
            checked += 1;
        }
    }
    assert!(checked > 0);
}

#[test]
fn rejects_inputs_that_do_not_fit_the_patch_grid() {
    let model = PixioModel::load(&fixtures::model_files("a-hub"), &Device::Cpu, DType::F32).unwrap();
    for shape in [(1, 3, 64, 60), (1, 3, 8, 64), (1, 1, 64, 64)] {
        let x = pixio::Tensor::zeros(shape, DType::F32, &Device::Cpu).unwrap();
        assert!(matches!(model.forward(&x), Err(pixio::Error::Input(_))), "{shape:?}");
    }
}

/// `apply_layernorm: false` and `reshape_hidden_states: false` give the raw residual streams with
/// their class tokens, i.e. transformers' `hidden_states[k]`.
#[test]
fn backbone_options_from_config() {
    let reference = fixtures::reference("a");
    let dir = tempfile::tempdir().unwrap();
    let src = fixtures::model_dir("a-hub");
    for f in ["model.safetensors", "preprocessor_config.json"] {
        std::fs::copy(src.join(f), dir.path().join(f)).unwrap();
    }
    let mut cfg: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(src.join("config.json")).unwrap()).unwrap();
    cfg["apply_layernorm"] = serde_json::json!(false);
    cfg["reshape_hidden_states"] = serde_json::json!(false);
    cfg["out_indices"] = serde_json::json!([0, -1]);
    cfg["out_features"] = serde_json::Value::Null;
    std::fs::write(dir.path().join("config.json"), cfg.to_string()).unwrap();
    let backbone =
        PixioBackbone::load(&pixio::ModelFiles::from_dir(dir.path()).unwrap(), &Device::Cpu, DType::F32).unwrap();
    assert_eq!(backbone.out_features(), vec!["stem", "stage2"]);
    let maps = backbone.forward(get(&reference, "photo_jpg.pixel_values")).unwrap();
    for (m, k) in maps.iter().zip([0, 2]) {
        assert_eq!(m.features.dims(), &[1, 8 + 16, 64]);
        let d = max_abs_diff(&m.features, get(&reference, &format!("photo_jpg.hidden_states.{k}")));
        assert!(d <= TOL, "{}: {d:e}", m.stage);
    }
}
