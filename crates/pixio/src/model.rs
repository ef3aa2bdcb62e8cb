//! `PixioModel`: the Pixio vision encoder (Meta, "In Pursuit of Pixel Supervision for Visual
//! Pre-training", 2025; <https://github.com/facebookresearch/pixio>), ported from Hugging Face
//! transformers 5.x `modeling_pixio.py` so that it gives the same numbers (pixio-spec §3).
//!
//! A plain pre-norm ViT: patch embedding, `n_cls_tokens` class tokens in front, learned position
//! embeddings (bicubically interpolated for other input sizes), `L` blocks of
//! LayerNorm → attention → LayerNorm → exact-GELU MLP, and a final LayerNorm. The embeddings
//! (patch projection, class tokens, position interpolation) live in [`crate::embeddings`].

use candle_core::{D, DType, Device, Module, Tensor};
use rayon::prelude::*;
use std::collections::HashMap;

use crate::config::Config;
use crate::cpu_ops;
use crate::embeddings::Embeddings;
use crate::error::{Error, Result};
use crate::hub::ModelFiles;
use crate::weights::{BACKBONE_NORM, Checkpoint, Weights};

/// `nn.Linear` as a single GEMM over all tokens (`[B·T, in] × [in, out]`), which candle's CPU
/// backend runs faster than a batched matmul with a broadcast weight. On the CPU in f32, the GELU
/// after it or the residual connection around it is fused into the same kernel.
#[derive(Debug, Clone)]
struct Linear {
    weight: Tensor,
    bias: Tensor,
    /// Host copy of the bias for the fused CPU kernels (f32 models only).
    bias_host: Option<Vec<f32>>,
}

impl Linear {
    fn new(w: &Weights, in_dim: usize, out_dim: usize) -> Result<Self> {
        Self::from_parts(w.get("weight", &[out_dim, in_dim])?, w.get("bias", &[out_dim])?)
    }

    fn from_parts(weight: Tensor, bias: Tensor) -> Result<Self> {
        let fused = weight.device().is_cpu() && weight.dtype() == DType::F32;
        let bias_host = if fused { Some(bias.to_vec1()?) } else { None };
        Ok(Self { weight, bias, bias_host })
    }

    /// The fused kernels' bias, when `x` can take them (f32 on the CPU).
    fn fused_bias(&self, x: &Tensor) -> Option<&[f32]> {
        self.bias_host.as_deref().filter(|_| x.device().is_cpu() && x.dtype() == DType::F32)
    }

    /// `x Wᵀ + b` with candle's ops.
    fn unfused(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        let dims = x.dims();
        let in_dim = dims[dims.len() - 1];
        let rows = x.elem_count() / in_dim;
        let y = x.reshape((rows, in_dim))?.matmul(&self.weight.t()?)?.broadcast_add(&self.bias)?;
        let mut out_dims = dims.to_vec();
        *out_dims.last_mut().expect("rank >= 1") = self.weight.dim(0)?;
        y.reshape(out_dims)
    }

    /// `gelu(x Wᵀ + b)` (exact erf).
    fn forward_gelu(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        match self.fused_bias(x) {
            Some(bias) => x.contiguous()?.apply_op2_no_bwd(&self.weight, &cpu_ops::LinearOp { bias, gelu: true }),
            None => self.unfused(x)?.gelu_erf(),
        }
    }

    /// `residual + x Wᵀ + b`.
    fn forward_residual(&self, x: &Tensor, residual: &Tensor) -> candle_core::Result<Tensor> {
        match self.fused_bias(x) {
            Some(bias) => x.contiguous()?.apply_op3_no_bwd(
                &self.weight,
                &residual.contiguous()?,
                &cpu_ops::LinearResidualOp { bias },
            ),
            None => residual + self.unfused(x)?,
        }
    }
}

impl Module for Linear {
    fn forward(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        match self.fused_bias(x) {
            Some(bias) => x.contiguous()?.apply_op2_no_bwd(&self.weight, &cpu_ops::LinearOp { bias, gelu: false }),
            None => self.unfused(x),
        }
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
            qkv: Linear::from_parts(Tensor::cat(&weights, 0)?, Tensor::cat(&biases, 0)?)?,
            output: Linear::new(&w.pp("output").pp("dense"), h, h)?,
            heads: cfg.num_attention_heads,
            head_dim: cfg.head_dim(),
        })
    }
}

impl Attention {
    /// `residual + attention(x)`: the output projection carries the residual connection.
    fn forward_residual(&self, x: &Tensor, residual: &Tensor) -> candle_core::Result<Tensor> {
        let (b, t, h) = x.dims3()?;
        let qkv = self.qkv.forward(x)?; // [B, T, 3H]
        let scale = (self.head_dim as f64).powf(-0.5);
        if qkv.device().is_cpu() && qkv.dtype() == DType::F32 {
            let op = cpu_ops::AttentionOp { heads: self.heads, head_dim: self.head_dim, scale: scale as f32 };
            return self.output.forward_residual(&qkv.contiguous()?.apply_op1_no_bwd(&op)?, residual);
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
        self.output.forward_residual(&context, residual)
    }
}

#[derive(Debug)]
struct Mlp {
    fc1: Linear,
    fc2: Linear,
}

impl Mlp {
    /// `residual + mlp(x)`. transformers' "gelu" is the exact erf form, not the tanh approximation.
    fn forward_residual(&self, x: &Tensor, residual: &Tensor) -> candle_core::Result<Tensor> {
        self.fc2.forward_residual(&self.fc1.forward_gelu(x)?, residual)
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
        let x = self.attention.forward_residual(&self.norm1.forward(x)?, x)?;
        self.mlp.forward_residual(&self.norm2.forward(&x)?, &x)
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
        Ok(self.patches_of(&self.last_hidden_state)?)
    }

    /// The patch tokens of a `[B, ncls + gh·gw, H]` sequence of this input (the last hidden
    /// state or a block's output) as `[B, gh, gw, H]`, without the class tokens.
    pub(crate) fn patches_of(&self, tokens: &Tensor) -> candle_core::Result<Tensor> {
        let (b, t, h) = tokens.dims3()?;
        tokens.narrow(1, self.n_cls_tokens, t - self.n_cls_tokens)?.reshape((b, self.grid.0, self.grid.1, h))
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

    /// The token sequence entering block 1, and the input's patch grid.
    fn embed(&self, pixel_values: &Tensor) -> Result<(Tensor, (usize, usize))> {
        let grid = self.input_grid(pixel_values)?;
        let (hp, wp) = (pixel_values.dim(2)?, pixel_values.dim(3)?);
        let x = pixel_values.to_device(&self.device)?.to_dtype(self.dtype)?;
        Ok((self.embeddings.forward(&x, grid, hp == wp)?, grid))
    }

    /// How many parts to split a batch of `batch` inputs into, one per compute thread, each
    /// running its whole forward pass on one thread: on the CPU in f32, when every thread gets
    /// an equal share (within 10%). A GEMM split across threads for every op waits on the
    /// slowest thread dozens of times per pass and runs smaller tiles; parts run independently.
    fn batch_parts(&self, batch: usize) -> usize {
        let threads = cpu_ops::compute_threads();
        if !self.device.is_cpu() || self.dtype != DType::F32 || threads < 2 || batch < threads {
            return 1;
        }
        // The slowest part has ceil(batch / threads) inputs.
        let efficiency = batch as f64 / (threads * batch.div_ceil(threads)) as f64;
        if efficiency >= 0.9 { threads } else { 1 }
    }

    /// `f` over parts of the batch in parallel (see [`Self::batch_parts`]), or over the whole
    /// batch; the results in batch order.
    fn over_batch_parts<T: Send>(
        &self,
        pixel_values: &Tensor,
        f: impl Fn(&Tensor) -> Result<T> + Sync,
    ) -> Result<Vec<T>> {
        let parts = self.batch_parts(pixel_values.dim(0)?);
        if parts <= 1 {
            return Ok(vec![f(pixel_values)?]);
        }
        pixel_values
            .chunk(parts, 0)?
            .into_par_iter()
            .map(|part| cpu_ops::with_single_threaded_gemm(|| f(&part)))
            .collect()
    }

    fn run(&self, pixel_values: &Tensor, keep_hidden: bool) -> Result<PixioOutput> {
        let mut parts = self.over_batch_parts(pixel_values, |part| self.run_part(part, keep_hidden))?;
        if parts.len() == 1 {
            return Ok(parts.remove(0));
        }
        let cat = |pick: fn(&PixioOutput) -> &Tensor| -> Result<Tensor> {
            Ok(Tensor::cat(&parts.iter().map(pick).collect::<Vec<_>>(), 0)?)
        };
        let hidden_states = match keep_hidden {
            true => Some(
                (0..=self.layers.len())
                    .map(|i| {
                        let layer: Vec<&Tensor> =
                            parts.iter().map(|p| &p.hidden_states.as_ref().expect("kept in every part")[i]).collect();
                        Ok(Tensor::cat(&layer, 0)?)
                    })
                    .collect::<Result<Vec<_>>>()?,
            ),
            false => None,
        };
        Ok(PixioOutput {
            last_hidden_state: cat(|p| &p.last_hidden_state)?,
            pooler_output: cat(|p| &p.pooler_output)?,
            hidden_states,
            grid: parts[0].grid,
            n_cls_tokens: parts[0].n_cls_tokens,
        })
    }

    fn run_part(&self, pixel_values: &Tensor, keep_hidden: bool) -> Result<PixioOutput> {
        let (mut x, grid) = self.embed(pixel_values)?;
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
        Ok(out.patches_of(&self.layernorm.forward(hidden)?)?)
    }

    /// The patch tokens of block `layer`'s output with the final LayerNorm applied, as
    /// `[B, gh, gw, H]`, running only blocks `1..=layer`: the same numbers as
    /// [`Self::layer_patch_grid`] after a full [`Self::forward_with_hidden_states`], at
    /// `layer / L` of its cost and without keeping every block's output.
    pub fn patch_grid_at_layer(&self, pixel_values: &Tensor, layer: usize) -> Result<Tensor> {
        if layer > self.layers.len() {
            return Err(Error::Input(format!("no block {layer} (the model has {})", self.layers.len())));
        }
        let parts = self.over_batch_parts(pixel_values, |part| {
            let (mut x, grid) = self.embed(part)?;
            for block in &self.layers[..layer] {
                x = block.forward(&x)?;
            }
            let (b, t, h) = x.dims3()?;
            let ncls = self.config.n_cls_tokens;
            let patches = self.layernorm.forward(&x.narrow(1, ncls, t - ncls)?)?;
            Ok(patches.reshape((b, grid.0, grid.1, h))?)
        })?;
        Ok(Tensor::cat(&parts, 0)?)
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
