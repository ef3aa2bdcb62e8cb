//! `PixioModel`: the Pixio vision encoder (Meta, "In Pursuit of Pixel Supervision for Visual
//! Pre-training", 2025; <https://github.com/facebookresearch/pixio>), ported from Hugging Face
//! transformers 5.x `modeling_pixio.py` so that it gives the same numbers (pixio-spec §3).
//!
//! A plain pre-norm ViT: patch embedding, `n_cls_tokens` class tokens in front, learned position
//! embeddings (bicubically interpolated for other input sizes), `L` blocks of
//! LayerNorm → attention → LayerNorm → exact-GELU MLP, and a final LayerNorm.

use candle_core::{D, DType, Device, Module, Tensor};
use std::collections::HashMap;
use std::sync::Mutex;

use crate::config::Config;
use crate::cpu_ops;
use crate::error::{Error, Result};
use crate::hub::ModelFiles;
use crate::weights::{BACKBONE_NORM, Checkpoint, Weights};

/// `nn.Linear` as a single GEMM over all tokens (`[B·T, in] × [in, out]`), which candle's CPU
/// backend runs faster than a batched matmul with a broadcast weight.
#[derive(Debug, Clone)]
struct Linear {
    weight: Tensor,
    bias: Option<Tensor>,
}

impl Linear {
    fn new(w: &Weights, in_dim: usize, out_dim: usize) -> Result<Self> {
        Ok(Self { weight: w.get("weight", &[out_dim, in_dim])?, bias: Some(w.get("bias", &[out_dim])?) })
    }
}

impl Module for Linear {
    fn forward(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        if let Some(b) = &self.bias
            && x.device().is_cpu()
            && x.dtype() == DType::F32
        {
            return x.contiguous()?.apply_op3_no_bwd(&self.weight, b, &cpu_ops::LinearOp);
        }
        let dims = x.dims();
        let in_dim = dims[dims.len() - 1];
        let rows = x.elem_count() / in_dim;
        let y = x.reshape((rows, in_dim))?.matmul(&self.weight.t()?)?;
        let y = match &self.bias {
            Some(b) => y.broadcast_add(b)?,
            None => y,
        };
        let mut out_dims = dims.to_vec();
        *out_dims.last_mut().expect("rank >= 1") = self.weight.dim(0)?;
        y.reshape(out_dims)
    }
}

/// LayerNorm with two-pass statistics in f32 whatever the compute dtype (candle's fused op uses
/// `E[x²] − E[x]²`, which loses digits on the large activations of late ViT blocks).
#[derive(Debug, Clone)]
pub(crate) struct LayerNorm {
    weight: Tensor,
    bias: Tensor,
    /// Host copies for the fused CPU kernel.
    weight_host: Vec<f32>,
    bias_host: Vec<f32>,
    eps: f64,
}

impl LayerNorm {
    pub(crate) fn new(w: &Weights, dim: usize, eps: f64) -> Result<Self> {
        let weight = w.get_f32("weight", &[dim])?;
        let bias = w.get_f32("bias", &[dim])?;
        let (weight_host, bias_host) = (weight.to_vec1()?, bias.to_vec1()?);
        Ok(Self { weight, bias, weight_host, bias_host, eps })
    }
}

impl Module for LayerNorm {
    fn forward(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        if x.device().is_cpu() && x.dtype() == DType::F32 {
            let op = cpu_ops::LayerNormOp { weight: &self.weight_host, bias: &self.bias_host, eps: self.eps as f32 };
            return x.contiguous()?.apply_op1_no_bwd(&op);
        }
        let dtype = x.dtype();
        let x = x.to_dtype(DType::F32)?;
        let mean = x.mean_keepdim(D::Minus1)?;
        let centered = x.broadcast_sub(&mean)?;
        let var = centered.sqr()?.mean_keepdim(D::Minus1)?;
        let normed = centered.broadcast_div(&(var + self.eps)?.sqrt()?)?;
        normed.broadcast_mul(&self.weight)?.broadcast_add(&self.bias)?.to_dtype(dtype)
    }
}

/// Conv2d(C→H, kernel = stride = patch) written as unfold + one GEMM.
#[derive(Debug)]
struct PatchEmbeddings {
    /// `[H, C·ph·pw]`, inner order `(c, ky, kx)` as the conv weight.
    weight: Tensor,
    bias: Tensor,
    channels: usize,
    patch: (usize, usize),
}

impl PatchEmbeddings {
    fn new(w: &Weights, cfg: &Config) -> Result<Self> {
        let (c, ph, pw, h) = (cfg.num_channels, cfg.patch_size.height, cfg.patch_size.width, cfg.hidden_size);
        let w = w.pp("projection");
        Ok(Self {
            weight: w.get("weight", &[h, c, ph, pw])?.reshape((h, c * ph * pw))?,
            bias: w.get("bias", &[h])?,
            channels: c,
            patch: (ph, pw),
        })
    }

    /// `[B, C, gh·ph, gw·pw]` → `[B, gh·gw, H]`, patches row-major.
    fn forward(&self, pixel_values: &Tensor, grid: (usize, usize)) -> candle_core::Result<Tensor> {
        let (b, (gh, gw), (ph, pw), c) = (pixel_values.dim(0)?, grid, self.patch, self.channels);
        let patches = pixel_values
            .reshape((b, c, gh, ph, gw, pw))?
            .permute((0, 2, 4, 1, 3, 5))? // [B, gh, gw, C, ph, pw]
            .contiguous()?
            .reshape((b * gh * gw, c * ph * pw))?;
        let h = self.weight.dim(0)?;
        patches.matmul(&self.weight.t()?)?.broadcast_add(&self.bias)?.reshape((b, gh * gw, h))
    }
}

/// Class tokens, patch embeddings and position embeddings.
#[derive(Debug)]
struct Embeddings {
    cls_token: Tensor,
    /// Position rows of the class tokens, `[1, ncls, H]`, compute dtype.
    cls_position: Tensor,
    /// The trained position grid `[g0h, g0w, H]`, kept in f32 for interpolation.
    grid_position: Tensor,
    grid0: (usize, usize),
    patch_embeddings: PatchEmbeddings,
    /// Patch position tables per input grid, `[1, gh·gw, H]` in the compute dtype.
    position_cache: Mutex<HashMap<(usize, usize), Tensor>>,
}

impl Embeddings {
    fn new(w: &Weights, cfg: &Config, dtype: DType) -> Result<Self> {
        let (h, ncls) = (cfg.hidden_size, cfg.n_cls_tokens);
        let grid0 = position_grid(w, cfg)?;
        let table = w.get_f32("position_embeddings", &[1, ncls + grid0.0 * grid0.1, h])?;
        Ok(Self {
            cls_token: w.get("cls_token", &[1, ncls, h])?,
            cls_position: table.narrow(1, 0, ncls)?.to_dtype(dtype)?,
            grid_position: table.narrow(1, ncls, grid0.0 * grid0.1)?.reshape((grid0.0, grid0.1, h))?,
            grid0,
            patch_embeddings: PatchEmbeddings::new(&w.pp("patch_embeddings"), cfg)?,
            position_cache: Mutex::new(HashMap::new()),
        })
    }

    fn forward(&self, pixel_values: &Tensor, grid: (usize, usize), square_input: bool) -> candle_core::Result<Tensor> {
        let b = pixel_values.dim(0)?;
        let patches = self.patch_embeddings.forward(pixel_values, grid)?;
        let h = patches.dim(2)?;
        let cls = self.cls_token.expand((b, self.cls_token.dim(1)?, h))?;
        let x = Tensor::cat(&[&cls, &patches], 1)?; // [B, ncls + gh·gw, H]
        let pos = Tensor::cat(&[&self.cls_position, &self.patch_position(grid, square_input, patches.dtype())?], 1)?;
        x.broadcast_add(&pos)
    }

    /// transformers' `interpolate_pos_encoding`: the table as stored iff the patch count matches
    /// and the input is square (in pixels), else bicubic (A = −0.75, align_corners = False).
    fn patch_position(&self, grid: (usize, usize), square_input: bool, dtype: DType) -> candle_core::Result<Tensor> {
        let key = if grid.0 * grid.1 == self.grid0.0 * self.grid0.1 && square_input { self.grid0 } else { grid };
        let mut cache = self.position_cache.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(t) = cache.get(&key) {
            return Ok(t.clone());
        }
        let h = self.grid_position.dim(2)?;
        let table = if key == self.grid0 {
            self.grid_position.clone()
        } else {
            let device = self.grid_position.device();
            let mh = Tensor::from_vec(bicubic_matrix(self.grid0.0, key.0), (key.0, self.grid0.0), device)?;
            let mw = Tensor::from_vec(bicubic_matrix(self.grid0.1, key.1), (key.1, self.grid0.1), device)?;
            let rows = mh.matmul(&self.grid_position.reshape((self.grid0.0, self.grid0.1 * h))?)?; // [gh, g0w·H]
            let rows = rows.reshape((key.0, self.grid0.1, h))?;
            mw.broadcast_left(key.0)?.contiguous()?.matmul(&rows)? // [gh, gw, H]
        };
        let table = table.reshape((1, key.0 * key.1, h))?.to_dtype(dtype)?;
        // Input sizes are the caller's choice: keep the cache small.
        if cache.len() >= POSITION_CACHE_ENTRIES {
            cache.clear();
        }
        cache.insert(key, table.clone());
        Ok(table)
    }
}

/// Interpolated position tables kept per model (one per input grid size).
const POSITION_CACHE_ENTRIES: usize = 8;

/// The trained position grid: `image_size / patch_size` when the table has that many rows, else
/// the square the table length implies (transformers reshapes to `sqrt(N)` the same way).
fn position_grid(w: &Weights, cfg: &Config) -> Result<(usize, usize)> {
    let shape = w.shape("position_embeddings")?;
    let rows = match shape.as_slice() {
        [1, t, h] if *h == cfg.hidden_size && *t > cfg.n_cls_tokens => t - cfg.n_cls_tokens,
        _ => {
            return Err(Error::ShapeMismatch {
                key: "embeddings.position_embeddings".into(),
                expected: vec![1, cfg.n_cls_tokens + 1, cfg.hidden_size],
                found: shape,
            });
        }
    };
    let from_config = (cfg.image_size.height / cfg.patch_size.height, cfg.image_size.width / cfg.patch_size.width);
    if from_config.0 * from_config.1 == rows {
        return Ok(from_config);
    }
    let side = (rows as f64).sqrt().round() as usize;
    if side * side == rows {
        return Ok((side, side));
    }
    Err(Error::Config(format!(
        "position table has {rows} patch rows: neither the {}x{} grid of image_size/patch_size nor a square",
        from_config.0, from_config.1
    )))
}

/// The `[n_out, n_in]` matrix of PyTorch's `upsample_bicubic2d` along one axis
/// (align_corners = False, A = −0.75, taps clamped to the edge, no antialias), computed in f32
/// like PyTorch's CPU kernel.
pub(crate) fn bicubic_matrix(n_in: usize, n_out: usize) -> Vec<f32> {
    const A: f32 = -0.75;
    let c1 = |x: f32| ((A + 2.0) * x - (A + 3.0)) * x * x + 1.0;
    let c2 = |x: f32| ((A * x - 5.0 * A) * x + 8.0 * A) * x - 4.0 * A;
    let scale = n_in as f32 / n_out as f32;
    let mut m = vec![0f32; n_out * n_in];
    for o in 0..n_out {
        let src = scale * (o as f32 + 0.5) - 0.5; // not clamped at 0 for cubic
        let i0 = src.floor();
        let t = src - i0;
        let weights = [c2(t + 1.0), c1(t), c1(1.0 - t), c2(2.0 - t)];
        for (k, wk) in weights.into_iter().enumerate() {
            let idx = (i0 as i64 - 1 + k as i64).clamp(0, n_in as i64 - 1) as usize;
            m[o * n_in + idx] += wk;
        }
    }
    m
}

/// Multi-head self-attention with q, k and v fused into one `[3H, H]` projection at load time.
#[derive(Debug)]
struct Attention {
    qkv: Linear,
    output: Linear,
    heads: usize,
    head_dim: usize,
}

impl Attention {
    fn new(w: &Weights, cfg: &Config) -> Result<Self> {
        let h = cfg.hidden_size;
        let att = w.pp("attention");
        let mut weights = Vec::with_capacity(3);
        let mut biases = Vec::with_capacity(3);
        for name in ["query", "key", "value"] {
            let p = att.pp(name);
            weights.push(p.get("weight", &[h, h])?);
            // qkv_bias = false checkpoints simply have no q/k/v bias.
            biases.push(if cfg.qkv_bias || p.contains("bias") {
                p.get("bias", &[h])?
            } else {
                Tensor::zeros(h, weights[0].dtype(), weights[0].device())?
            });
        }
        Ok(Self {
            qkv: Linear { weight: Tensor::cat(&weights, 0)?, bias: Some(Tensor::cat(&biases, 0)?) },
            output: Linear::new(&w.pp("output").pp("dense"), h, h)?,
            heads: cfg.num_attention_heads,
            head_dim: cfg.head_dim(),
        })
    }
}

impl Module for Attention {
    fn forward(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        let (b, t, h) = x.dims3()?;
        let qkv = self.qkv.forward(x)?; // [B, T, 3H]
        let scale = (self.head_dim as f64).powf(-0.5);
        if qkv.device().is_cpu() && qkv.dtype() == DType::F32 {
            let op = cpu_ops::AttentionOp { heads: self.heads, head_dim: self.head_dim, scale: scale as f32 };
            return self.output.forward(&qkv.contiguous()?.apply_op1_no_bwd(&op)?);
        }
        let qkv = qkv.reshape((b, t, 3, self.heads, self.head_dim))?.permute((2, 0, 3, 1, 4))?; // [3, B, heads, T, hd]
        // Scores and softmax in f32 whatever the compute dtype (as SDPA keeps them): rounding
        // bf16 logits of ~10 would cost ~0.05 each. Attention is a few percent of the FLOPs.
        let q = qkv.get(0)?.to_dtype(DType::F32)?.contiguous()?;
        let k = qkv.get(1)?.to_dtype(DType::F32)?.contiguous()?;
        let v = qkv.get(2)?.contiguous()?;
        let scores = (q.matmul(&k.t()?)? * scale)?; // [B, heads, T, T]
        let probs = candle_nn::ops::softmax_last_dim(&scores)?.to_dtype(v.dtype())?;
        let context = probs.matmul(&v)?; // [B, heads, T, hd]
        let context = context.transpose(1, 2)?.reshape((b, t, h))?;
        self.output.forward(&context)
    }
}

#[derive(Debug)]
struct Mlp {
    fc1: Linear,
    fc2: Linear,
}

impl Module for Mlp {
    fn forward(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        // gelu_erf: transformers' "gelu" is the exact erf form, not the tanh approximation.
        self.fc2.forward(&cpu_ops::gelu_erf(&self.fc1.forward(x)?)?)
    }
}

/// One pre-norm transformer block (no LayerScale, no drop-path at inference).
#[derive(Debug)]
struct Layer {
    norm1: LayerNorm,
    attention: Attention,
    norm2: LayerNorm,
    mlp: Mlp,
}

impl Layer {
    fn new(w: &Weights, cfg: &Config) -> Result<Self> {
        let (h, i, eps) = (cfg.hidden_size, cfg.intermediate_size(), cfg.layer_norm_eps);
        Ok(Self {
            norm1: LayerNorm::new(&w.pp("norm1"), h, eps)?,
            attention: Attention::new(&w.pp("attention"), cfg)?,
            norm2: LayerNorm::new(&w.pp("norm2"), h, eps)?,
            mlp: Mlp {
                fc1: Linear::new(&w.pp("mlp").pp("fc1"), h, i)?,
                fc2: Linear::new(&w.pp("mlp").pp("fc2"), i, h)?,
            },
        })
    }
}

impl Module for Layer {
    fn forward(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        let x = (x + self.attention.forward(&self.norm1.forward(x)?)?)?;
        &x + self.mlp.forward(&self.norm2.forward(&x)?)?
    }
}

/// The outputs of one forward pass.
#[derive(Debug, Clone)]
pub struct PixioOutput {
    /// `[B, ncls + gh·gw, H]` after the final LayerNorm: class tokens first, then patches row-major.
    pub last_hidden_state: Tensor,
    /// `[B, H]`: the mean of the post-norm class tokens (transformers' `pooler_output`).
    pub pooler_output: Tensor,
    /// With [`PixioModel::forward_with_hidden_states`]: the `L + 1` residual streams
    /// (embeddings, then each block's output), all before the final LayerNorm.
    pub hidden_states: Option<Vec<Tensor>>,
    pub(crate) grid: (usize, usize),
    pub(crate) n_cls_tokens: usize,
}

impl PixioOutput {
    /// The patch grid `(gh, gw)` of this input.
    pub fn grid(&self) -> (usize, usize) {
        self.grid
    }

    /// Number of class tokens in front of the patches.
    pub fn n_cls_tokens(&self) -> usize {
        self.n_cls_tokens
    }

    /// The patch tokens of `last_hidden_state` as `[B, gh, gw, H]`.
    pub fn patch_grid(&self) -> Result<Tensor> {
        let (b, t, h) = self.last_hidden_state.dims3()?;
        let patches = self.last_hidden_state.narrow(1, self.n_cls_tokens, t - self.n_cls_tokens)?;
        Ok(patches.reshape((b, self.grid.0, self.grid.1, h))?)
    }

    /// The global embedding `[B, H]` in f32: the pooler output, L2-normalised, so that cosine
    /// similarity is a dot product.
    pub fn global_embedding(&self) -> Result<Tensor> {
        Ok(l2_normalize(&self.pooler_output.to_dtype(DType::F32)?)?)
    }
}

/// Row-wise L2 normalisation of a `[B, H]` tensor.
pub fn l2_normalize(x: &Tensor) -> candle_core::Result<Tensor> {
    let norm = x.sqr()?.sum_keepdim(D::Minus1)?.sqrt()?;
    x.broadcast_div(&norm.clamp(1e-12, f64::INFINITY)?)
}

/// The Pixio encoder.
#[derive(Debug)]
pub struct PixioModel {
    config: Config,
    embeddings: Embeddings,
    layers: Vec<Layer>,
    layernorm: LayerNorm,
    device: Device,
    dtype: DType,
}

impl PixioModel {
    /// Loads the model from resolved checkpoint files onto `device`, computing in `dtype`
    /// (weights stored as f32, f16 or bf16 are converted).
    pub fn load(files: &ModelFiles, device: &Device, dtype: DType) -> Result<Self> {
        let config = Config::from_file(&files.config)?;
        let ckpt = Checkpoint::open(&files.weights, device, dtype)?;
        let model = Self::from_checkpoint(config, &ckpt, device, dtype).map_err(|e| ckpt.explain(e))?;
        // A saved PixioBackbone also carries the backbone's own feature norm.
        ckpt.ensure_all_used(&[BACKBONE_NORM])?;
        Ok(model)
    }

    /// Builds the model from tensors in memory, named in any accepted layout (random-weight
    /// models for tests and benchmarks; converted checkpoints).
    pub fn from_tensors(
        config: Config,
        tensors: HashMap<String, Tensor>,
        device: &Device,
        dtype: DType,
    ) -> Result<Self> {
        let ckpt = Checkpoint::from_tensors(tensors, device, dtype)?;
        let model = Self::from_checkpoint(config, &ckpt, device, dtype)?;
        ckpt.ensure_all_used(&[BACKBONE_NORM])?;
        Ok(model)
    }

    pub(crate) fn from_checkpoint(config: Config, ckpt: &Checkpoint, device: &Device, dtype: DType) -> Result<Self> {
        config.validate()?;
        if !matches!(dtype, DType::F32 | DType::F16 | DType::BF16) {
            return Err(Error::Config(format!("compute dtype {dtype:?} is not supported (use f32, f16 or bf16)")));
        }
        let w = Weights::root(ckpt);
        let embeddings = Embeddings::new(&w.pp("embeddings"), &config, dtype)?;
        let layers = (0..config.num_hidden_layers)
            .map(|i| Layer::new(&w.pp("encoder").pp("layer").pp(&i.to_string()), &config))
            .collect::<Result<Vec<_>>>()?;
        let layernorm = LayerNorm::new(&w.pp("layernorm"), config.hidden_size, config.layer_norm_eps)?;
        tracing::debug!(layers = layers.len(), hidden = config.hidden_size, ?dtype, "pixio model loaded");
        Ok(Self { config, embeddings, layers, layernorm, device: device.clone(), dtype })
    }

    /// The model's configuration.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// The device the weights live on.
    pub fn device(&self) -> &Device {
        &self.device
    }

    /// The compute dtype.
    pub fn dtype(&self) -> DType {
        self.dtype
    }

    pub(crate) fn final_norm(&self) -> &LayerNorm {
        &self.layernorm
    }

    /// Runs the encoder on `pixel_values` `[B, C, Hp, Wp]` (normalised RGB, as the
    /// [`crate::Preprocessor`] makes). `Hp` and `Wp` must be multiples of the patch size.
    pub fn forward(&self, pixel_values: &Tensor) -> Result<PixioOutput> {
        self.run(pixel_values, false)
    }

    /// Like [`PixioModel::forward`], also returning every block's output.
    pub fn forward_with_hidden_states(&self, pixel_values: &Tensor) -> Result<PixioOutput> {
        self.run(pixel_values, true)
    }

    fn run(&self, pixel_values: &Tensor, keep_hidden: bool) -> Result<PixioOutput> {
        let grid = self.input_grid(pixel_values)?;
        let (hp, wp) = (pixel_values.dim(2)?, pixel_values.dim(3)?);
        let x = pixel_values.to_device(&self.device)?.to_dtype(self.dtype)?;
        let mut x = self.embeddings.forward(&x, grid, hp == wp)?;
        let mut hidden = keep_hidden.then(|| Vec::with_capacity(self.layers.len() + 1));
        for layer in &self.layers {
            if let Some(h) = hidden.as_mut() {
                h.push(x.clone());
            }
            x = layer.forward(&x)?;
        }
        if let Some(h) = hidden.as_mut() {
            h.push(x.clone());
        }
        let last_hidden_state = self.layernorm.forward(&x)?;
        let ncls = self.config.n_cls_tokens;
        let pooler_output = last_hidden_state.narrow(1, 0, ncls)?.to_dtype(DType::F32)?.mean(1)?;
        Ok(PixioOutput { last_hidden_state, pooler_output, hidden_states: hidden, grid, n_cls_tokens: ncls })
    }

    /// The patch tokens of block `layer`'s output (`0` = the embeddings, `L` = the last block)
    /// with the final LayerNorm applied, as `[B, gh, gw, H]`: the last layer's are
    /// [`PixioOutput::patch_grid`]. Needs [`Self::forward_with_hidden_states`]'s output.
    pub fn layer_patch_grid(&self, out: &PixioOutput, layer: usize) -> Result<Tensor> {
        let hidden = out
            .hidden_states
            .as_ref()
            .and_then(|h| h.get(layer))
            .ok_or_else(|| Error::Input(format!("no hidden state {layer} (run forward_with_hidden_states)")))?;
        let normed = self.layernorm.forward(hidden)?;
        let (b, t, h) = normed.dims3()?;
        let patches = normed.narrow(1, out.n_cls_tokens, t - out.n_cls_tokens)?;
        Ok(patches.reshape((b, out.grid.0, out.grid.1, h))?)
    }

    /// Checks the input shape and returns its patch grid.
    fn input_grid(&self, pixel_values: &Tensor) -> Result<(usize, usize)> {
        let dims = pixel_values.dims();
        let (ph, pw) = (self.config.patch_size.height, self.config.patch_size.width);
        match *dims {
            [_, c, h, w] if c == self.config.num_channels && h >= ph && w >= pw && h % ph == 0 && w % pw == 0 => {
                Ok((h / ph, w / pw))
            }
            _ => Err(Error::Input(format!(
                "pixel_values must be [B, {}, H, W] with H and W positive multiples of the {ph}×{pw} patch, got {dims:?}",
                self.config.num_channels
            ))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bicubic_identity_when_sizes_match() {
        let m = bicubic_matrix(5, 5);
        for o in 0..5 {
            for i in 0..5 {
                assert_eq!(m[o * 5 + i], if o == i { 1.0 } else { 0.0 });
            }
        }
    }

    #[test]
    fn bicubic_rows_sum_to_one_and_clamp_edges() {
        for (n_in, n_out) in [(4, 7), (16, 3), (16, 37), (1, 4)] {
            let m = bicubic_matrix(n_in, n_out);
            for o in 0..n_out {
                let s: f32 = m[o * n_in..(o + 1) * n_in].iter().sum();
                assert!((s - 1.0).abs() < 1e-6, "{n_in}->{n_out} row {o} sums to {s}");
            }
        }
        // 2 → 4: src for o=0 is -0.25, taps -2..1 clamp to 0,0,0,1; hand-computed with A = -0.75.
        let m = bicubic_matrix(2, 4);
        let t = 0.75f32;
        let a = -0.75f32;
        let c1 = |x: f32| ((a + 2.0) * x - (a + 3.0)) * x * x + 1.0;
        let c2 = |x: f32| ((a * x - 5.0 * a) * x + 8.0 * a) * x - 4.0 * a;
        assert!((m[0] - (c2(t + 1.0) + c1(t) + c1(1.0 - t))).abs() < 1e-7);
        assert!((m[1] - c2(2.0 - t)).abs() < 1e-7);
    }
}
