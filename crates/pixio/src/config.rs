//! `PixioConfig`, read from a checkpoint's `config.json`.
//!
//! Parsing is lenient the way transformers is: sizes may be an int or `[h, w]`, `mlp_ratio` an int
//! or a float, unknown keys are ignored and missing keys take the transformers 5.x defaults
//! (`configuration_pixio.py`), which are exactly ViT-H/16 (`facebook/pixio-vith16`).

use serde::Deserialize;
use std::path::Path;

use crate::error::{Error, Result};

/// A height × width pair that `config.json` may spell as `16` or `[16, 16]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Size2 {
    /// Rows (pixels).
    pub height: usize,
    /// Columns (pixels).
    pub width: usize,
}

impl Size2 {
    /// The same size in both directions.
    pub const fn square(n: usize) -> Self {
        Self { height: n, width: n }
    }
}

impl<'de> Deserialize<'de> for Size2 {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            One(usize),
            Two([usize; 2]),
            Map { height: usize, width: usize },
        }
        Ok(match Raw::deserialize(d)? {
            Raw::One(n) => Size2::square(n),
            Raw::Two([height, width]) => Size2 { height, width },
            Raw::Map { height, width } => Size2 { height, width },
        })
    }
}

/// The architecture hyper-parameters of a Pixio encoder (and its backbone options).
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct Config {
    /// Width of the token embeddings, `H`.
    #[serde(default = "hidden_size")]
    pub hidden_size: usize,
    /// Number of transformer blocks, `L`.
    #[serde(default = "num_hidden_layers")]
    pub num_hidden_layers: usize,
    /// Attention heads per block; `head_dim = hidden_size / num_attention_heads`.
    #[serde(default = "num_attention_heads")]
    pub num_attention_heads: usize,
    /// MLP width as a multiple of `hidden_size` (the original code writes `4.`).
    #[serde(default = "mlp_ratio")]
    pub mlp_ratio: f64,
    /// Number of class tokens prepended to the patch tokens.
    #[serde(default = "n_cls_tokens")]
    pub n_cls_tokens: usize,
    /// Training resolution; only sizes the position-embedding table.
    #[serde(default = "image_size")]
    pub image_size: Size2,
    /// Side of a square (or `[h, w]`) patch in pixels.
    #[serde(default = "patch_size")]
    pub patch_size: Size2,
    /// Input channels (3, RGB).
    #[serde(default = "num_channels")]
    pub num_channels: usize,
    /// Epsilon of every LayerNorm.
    #[serde(default = "layer_norm_eps")]
    pub layer_norm_eps: f64,
    /// Whether the q/k/v projections have a bias.
    #[serde(default = "qkv_bias")]
    pub qkv_bias: bool,
    /// Activation of the MLP; Pixio uses the exact-erf `gelu`.
    #[serde(default = "hidden_act")]
    pub hidden_act: String,
    /// Backbone: stage names to output (`stem`, `stage1` … `stageL`).
    #[serde(default)]
    pub out_features: Option<Vec<String>>,
    /// Backbone: indices into the stage names (negative values count from the end).
    #[serde(default)]
    pub out_indices: Option<Vec<i64>>,
    /// Backbone: apply the final LayerNorm to each feature map.
    #[serde(default = "apply_layernorm")]
    pub apply_layernorm: bool,
    /// Backbone: drop the class tokens and reshape to `[B, H, gh, gw]`.
    #[serde(default = "reshape_hidden_states")]
    pub reshape_hidden_states: bool,
}

fn hidden_size() -> usize {
    1280
}
fn num_hidden_layers() -> usize {
    32
}
fn num_attention_heads() -> usize {
    16
}
fn mlp_ratio() -> f64 {
    4.0
}
fn n_cls_tokens() -> usize {
    8
}
fn image_size() -> Size2 {
    Size2::square(256)
}
fn patch_size() -> Size2 {
    Size2::square(16)
}
fn num_channels() -> usize {
    3
}
fn layer_norm_eps() -> f64 {
    1e-6
}
fn qkv_bias() -> bool {
    true
}
fn hidden_act() -> String {
    "gelu".to_string()
}
fn apply_layernorm() -> bool {
    true
}
fn reshape_hidden_states() -> bool {
    true
}

impl Default for Config {
    /// The transformers defaults, i.e. ViT-H/16.
    fn default() -> Self {
        serde_json::from_str("{}").expect("an empty object parses with every default")
    }
}

impl Config {
    /// `facebook/pixio-vith16` (<https://huggingface.co/facebook/pixio-vith16/blob/main/config.json>).
    pub fn pixio_vith16() -> Self {
        Self::default()
    }

    /// `facebook/pixio-vitb16`: H 768, L 12, 12 heads.
    pub fn pixio_vitb16() -> Self {
        Self { hidden_size: 768, num_hidden_layers: 12, num_attention_heads: 12, ..Self::default() }
    }

    /// `facebook/pixio-vitl16`: H 1024, L 24, 16 heads.
    pub fn pixio_vitl16() -> Self {
        Self { hidden_size: 1024, num_hidden_layers: 24, num_attention_heads: 16, ..Self::default() }
    }

    /// Parses `config.json` text (call [`Config::validate`] before use).
    pub fn from_json(text: &str) -> std::result::Result<Self, serde_json::Error> {
        serde_json::from_str(text)
    }

    /// Reads and checks a `config.json` file.
    pub fn from_file(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|source| Error::Io { path: path.to_path_buf(), source })?;
        let cfg = Self::from_json(&text).map_err(|source| Error::Json { path: path.to_path_buf(), source })?;
        cfg.validate()?;
        Ok(cfg)
    }

    /// Rejects configs the forward pass cannot honour.
    pub fn validate(&self) -> Result<()> {
        let bad = |msg: String| Err(Error::Config(msg));
        if self.hidden_size == 0 || self.num_attention_heads == 0 || self.num_hidden_layers == 0 {
            return bad("hidden_size, num_attention_heads and num_hidden_layers must be positive".into());
        }
        if !self.hidden_size.is_multiple_of(self.num_attention_heads) {
            return bad(format!(
                "hidden_size {} is not divisible by num_attention_heads {}",
                self.hidden_size, self.num_attention_heads
            ));
        }
        if self.n_cls_tokens == 0 {
            return bad("n_cls_tokens must be at least 1 (the global embedding is their mean)".into());
        }
        if self.patch_size.height == 0 || self.patch_size.width == 0 {
            return bad("patch_size must be positive".into());
        }
        if !(self.mlp_ratio.is_finite() && self.mlp_ratio > 0.0) {
            return bad(format!("mlp_ratio {} must be a positive number", self.mlp_ratio));
        }
        if self.intermediate_size() == 0 {
            return bad("hidden_size × mlp_ratio rounds to zero".into());
        }
        // transformers maps "gelu" to the exact erf form (activations.py); the tanh variants would
        // silently change every embedding, so they are refused rather than approximated.
        if self.hidden_act != "gelu" {
            return bad(format!("hidden_act `{}` is not supported (Pixio uses `gelu`)", self.hidden_act));
        }
        if !(self.layer_norm_eps.is_finite() && self.layer_norm_eps >= 0.0) {
            return bad(format!("layer_norm_eps {} is invalid", self.layer_norm_eps));
        }
        Ok(())
    }

    /// Width of each attention head.
    pub fn head_dim(&self) -> usize {
        self.hidden_size / self.num_attention_heads
    }

    /// MLP hidden width, `int(hidden_size * mlp_ratio)` as in transformers.
    pub fn intermediate_size(&self) -> usize {
        (self.hidden_size as f64 * self.mlp_ratio) as usize
    }

    /// Stage names of the backbone: `stem`, `stage1` … `stageL`.
    pub fn stage_names(&self) -> Vec<String> {
        std::iter::once("stem".to_string()).chain((1..=self.num_hidden_layers).map(|i| format!("stage{i}"))).collect()
    }

    /// The backbone's selected stage indices (into [`Config::stage_names`]), in stage order.
    ///
    /// Follows transformers' `get_aligned_output_features_output_indices`: `out_features` wins
    /// when both are given (they must agree), negative indices wrap, and neither means the last
    /// stage.
    pub fn out_stage_indices(&self) -> Result<Vec<usize>> {
        let names = self.stage_names();
        let n = names.len() as i64;
        let from_indices = match &self.out_indices {
            None => None,
            Some(idx) => Some(
                idx.iter()
                    .map(|&i| {
                        let j = if i < 0 { n + i } else { i };
                        if (0..n).contains(&j) {
                            Ok(j as usize)
                        } else {
                            Err(Error::Config(format!("out_indices entry {i} is out of range for {n} stages")))
                        }
                    })
                    .collect::<Result<Vec<_>>>()?,
            ),
        };
        let from_features = match &self.out_features {
            None => None,
            Some(feats) => Some(
                feats
                    .iter()
                    .map(|f| {
                        names
                            .iter()
                            .position(|s| s == f)
                            .ok_or_else(|| Error::Config(format!("unknown out_features entry `{f}`")))
                    })
                    .collect::<Result<Vec<_>>>()?,
            ),
        };
        let idx = match (from_features, from_indices) {
            (Some(f), Some(i)) if f != i => {
                return Err(Error::Config(format!(
                    "out_features {:?} and out_indices {:?} disagree",
                    self.out_features, self.out_indices
                )));
            }
            (Some(f), _) => f,
            (None, Some(i)) => i,
            (None, None) => vec![names.len() - 1],
        };
        if idx.is_empty() || idx.windows(2).any(|w| w[0] >= w[1]) {
            return Err(Error::Config(format!("backbone stages {idx:?} must be non-empty and in stage order")));
        }
        Ok(idx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_vith16() {
        let c = Config::default();
        assert_eq!((c.hidden_size, c.num_hidden_layers, c.num_attention_heads), (1280, 32, 16));
        assert_eq!(c.head_dim(), 80);
        assert_eq!(c.intermediate_size(), 5120);
        assert_eq!((c.n_cls_tokens, c.patch_size, c.image_size), (8, Size2::square(16), Size2::square(256)));
        assert_eq!(c.layer_norm_eps, 1e-6);
        c.validate().unwrap();
    }

    #[test]
    fn lenient_parsing() {
        let c = Config::from_json(
            r#"{"hidden_size": 48, "num_attention_heads": 3, "num_hidden_layers": 2, "mlp_ratio": 2,
                "patch_size": [14, 14], "image_size": 56, "n_cls_tokens": 1, "some_future_key": {"x": 1},
                "torch_dtype": "float16", "architectures": ["PixioModel"]}"#,
        )
        .unwrap();
        assert_eq!(c.intermediate_size(), 96);
        assert_eq!(c.patch_size, Size2 { height: 14, width: 14 });
        assert_eq!(c.image_size, Size2::square(56));
        let c = Config::from_json(r#"{"mlp_ratio": 2.5, "hidden_size": 64, "num_attention_heads": 4}"#).unwrap();
        assert_eq!(c.intermediate_size(), 160);
    }

    #[test]
    fn rejects_bad_configs() {
        let c = Config::from_json(r#"{"hidden_size": 50, "num_attention_heads": 4}"#).unwrap();
        assert!(matches!(c.validate(), Err(Error::Config(_))));
        let c = Config::from_json(r#"{"hidden_act": "gelu_pytorch_tanh"}"#).unwrap();
        assert!(c.validate().is_err());
        assert!(Config::from_json(r#"{"hidden_size": "big"}"#).is_err());
    }

    #[test]
    fn backbone_stage_selection() {
        let mut c = Config { num_hidden_layers: 4, ..Config::default() };
        assert_eq!(c.out_stage_indices().unwrap(), vec![4]);
        c.out_indices = Some(vec![0, -1]);
        assert_eq!(c.out_stage_indices().unwrap(), vec![0, 4]);
        c.out_features = Some(vec!["stem".into(), "stage4".into()]);
        assert_eq!(c.out_stage_indices().unwrap(), vec![0, 4]);
        c.out_features = Some(vec!["stage2".into()]);
        assert!(c.out_stage_indices().is_err());
        c.out_indices = None;
        assert_eq!(c.out_stage_indices().unwrap(), vec![2]);
        c.out_features = Some(vec!["stage9".into()]);
        assert!(c.out_stage_indices().is_err());
    }
}
