//! `PixioBackbone`: feature maps from chosen blocks, for dense heads (DPT depth, segmentation).
//!
//! Stage `stem` is the embedding output and `stageK` the output of block K (pixio-spec §5). Each
//! selected stage is optionally LayerNorm-ed (`apply_layernorm`) and reshaped to `[B, H, gh, gw]`
//! without the class tokens (`reshape_hidden_states`).
//!
//! Which norm: a saved `PixioBackbone` carries its own top-level `layernorm`, used as stored. A
//! plain `PixioModel` checkpoint (every released one) has none, and we use its learned final
//! `layernorm`, as the original code and the Dec-2025 transformers backbone do. transformers 5.x
//! instead leaves the backbone norm at weight 1 / bias 0 in that case (reported as MISSING on load).

use candle_core::{DType, Device, Module, Tensor};

use crate::config::Config;
use crate::error::Result;
use crate::hub::ModelFiles;
use crate::model::{LayerNorm, PixioModel};
use crate::weights::{BACKBONE_NORM, Checkpoint, Weights};

/// One stage's features.
#[derive(Debug, Clone)]
pub struct FeatureMap {
    /// The stage name (`stem`, `stage1` … `stageL`).
    pub stage: String,
    /// `[B, H, gh, gw]`, or `[B, T, H]` with class tokens when `reshape_hidden_states` is off.
    pub features: Tensor,
}

/// A Pixio encoder that returns intermediate feature maps.
#[derive(Debug)]
pub struct PixioBackbone {
    model: PixioModel,
    norm: LayerNorm,
    stages: Vec<usize>,
    stage_names: Vec<String>,
}

impl PixioBackbone {
    /// Loads a `PixioBackbone` or `PixioModel` checkpoint; the stages come from `config.json`
    /// (`out_features` / `out_indices`, default the last block).
    pub fn load(files: &ModelFiles, device: &Device, dtype: DType) -> Result<Self> {
        let config = Config::from_file(&files.config)?;
        let ckpt = Checkpoint::open(&files.weights, device, dtype)?;
        let stages = config.out_stage_indices()?;
        let stage_names = config.stage_names();
        let model = PixioModel::from_checkpoint(config, &ckpt, device, dtype).map_err(|e| ckpt.explain(e))?;
        let w = Weights::root(&ckpt);
        let norm = if w.contains(&format!("{BACKBONE_NORM}.weight")) {
            LayerNorm::new(&w.pp(BACKBONE_NORM), model.config().hidden_size, model.config().layer_norm_eps)?
        } else {
            model.final_norm().clone()
        };
        ckpt.ensure_all_used(&[])?;
        Ok(Self { model, norm, stages, stage_names })
    }

    /// Selects other stages by name (in stage order).
    pub fn with_out_features(mut self, names: &[&str]) -> Result<Self> {
        let mut cfg = self.model.config().clone();
        cfg.out_indices = None;
        cfg.out_features = Some(names.iter().map(|s| s.to_string()).collect());
        self.stages = cfg.out_stage_indices()?;
        Ok(self)
    }

    /// The encoder inside.
    pub fn model(&self) -> &PixioModel {
        &self.model
    }

    /// Names of the stages this backbone returns, in order.
    pub fn out_features(&self) -> Vec<&str> {
        self.stages.iter().map(|&i| self.stage_names[i].as_str()).collect()
    }

    /// Runs the encoder and returns the selected stages' feature maps, in stage order.
    pub fn forward(&self, pixel_values: &Tensor) -> Result<Vec<FeatureMap>> {
        let out = self.model.forward_with_hidden_states(pixel_values)?;
        let hidden = out.hidden_states.as_ref().expect("forward_with_hidden_states keeps them");
        let cfg = self.model.config();
        self.stages
            .iter()
            .map(|&i| {
                let mut x = hidden[i].clone();
                if cfg.apply_layernorm {
                    x = self.norm.forward(&x)?;
                }
                if cfg.reshape_hidden_states {
                    x = out.patches_of(&x)?.permute((0, 3, 1, 2))?.contiguous()?;
                }
                Ok(FeatureMap { stage: self.stage_names[i].clone(), features: x })
            })
            .collect()
    }
}
