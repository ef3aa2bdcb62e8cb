//! The embeddings of `modeling_pixio.py` (pixio-spec §3): the patch projection, the class
//! tokens in front and the learned position table, bicubically interpolated (PyTorch's
//! `upsample_bicubic2d`, A = −0.75) when the input's patch grid differs from the trained one.

use candle_core::{DType, Tensor};
use std::collections::HashMap;
use std::sync::Mutex;

use crate::config::Config;
use crate::error::{Error, Result};
use crate::weights::Weights;

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
pub(crate) struct Embeddings {
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
    pub(crate) fn new(w: &Weights, cfg: &Config, dtype: DType) -> Result<Self> {
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

    pub(crate) fn forward(
        &self,
        pixel_values: &Tensor,
        grid: (usize, usize),
        square_input: bool,
    ) -> candle_core::Result<Tensor> {
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
fn bicubic_matrix(n_in: usize, n_out: usize) -> Vec<f32> {
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
