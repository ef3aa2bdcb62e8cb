//! Fused f32 CPU kernels for the steps candle runs slowly on the CPU: exact-erf GELU (candle maps
//! it on one thread through libm's `erff`), LayerNorm (candle's fused op uses single-pass
//! `E[x²] − E[x]²` statistics; the tensor-op version allocates eight times) and attention
//! (candle runs one multi-threaded GEMM per head, with a transpose copy on each side). They run in
//! parallel with rayon. Other devices and dtypes use candle's ops.

use candle_core::{CpuStorage, CustomOp1, CustomOp3, Layout, Shape, Tensor, bail};
use rayon::prelude::*;

/// Elements per parallel work item: large enough to amortise scheduling.
const CHUNK: usize = 16 * 1024;

/// A kernel input's elements: the kernels read f32 in row-major order, so anything else (another
/// dtype, a strided view) is an error naming the kernel rather than wrong numbers.
fn contiguous_f32<'a>(kernel: &str, storage: &'a CpuStorage, layout: &Layout) -> candle_core::Result<&'a [f32]> {
    match (storage, layout.contiguous_offsets()) {
        (CpuStorage::F32(src), Some((start, end))) => Ok(&src[start..end]),
        _ => bail!("{kernel}: expects contiguous f32"),
    }
}

/// `erf(x)` in f32 as an odd/even rational function on `[-4, 4]` (erf is ±1 in f32 beyond):
/// a few ulp from the exact value, with no `exp`, so the loop vectorises.
#[inline(always)]
fn erf(x: f32) -> f32 {
    let x = x.clamp(-4.0, 4.0);
    let x2 = x * x;
    let mut p = x2 * -2.726_142_3e-10 + 2.770_681_4e-8;
    p = x2 * p + -2.101_024e-6;
    p = x2 * p + -5.692_506_4e-5;
    p = x2 * p + -7.349_906_3e-4;
    p = x2 * p + -2.954_6e-3;
    p = x2 * p + -1.609_603_3e-2;
    let mut q = x2 * -1.456_607_2e-5 + -2.133_740_6e-4;
    q = x2 * q + -1.682_827e-3;
    q = x2 * q + -7.373_329e-3;
    q = x2 * q + -1.426_474e-2;
    // erf(x) rounds to ±1 in f32 for |x| > 3.92; exact ±1 there keeps GELU exactly 0 / x in the tails.
    if x.abs() > 3.92 { 1f32.copysign(x) } else { x * p / q }
}

/// `0.5·x·(1 + erf(x/√2))`, transformers' `"gelu"`.
#[inline(always)]
fn gelu(x: f32) -> f32 {
    0.5 * x * (1.0 + erf(x * std::f32::consts::FRAC_1_SQRT_2))
}

struct GeluErf;

impl CustomOp1 for GeluErf {
    fn name(&self) -> &'static str {
        "pixio-gelu-erf"
    }

    fn cpu_fwd(&self, storage: &CpuStorage, layout: &Layout) -> candle_core::Result<(CpuStorage, Shape)> {
        let src = contiguous_f32("pixio gelu", storage, layout)?;
        let dst: Vec<f32> = src.par_iter().with_min_len(CHUNK).map(|&x| gelu(x)).collect();
        Ok((CpuStorage::F32(dst), layout.shape().clone()))
    }
}

/// Exact-erf GELU: the fused kernel for contiguous f32 on the CPU, candle's op elsewhere.
pub(crate) fn gelu_erf(x: &Tensor) -> candle_core::Result<Tensor> {
    if x.device().is_cpu() && x.dtype() == candle_core::DType::F32 && x.is_contiguous() {
        x.apply_op1_no_bwd(&GeluErf)
    } else {
        x.gelu_erf()
    }
}

pub(crate) struct LayerNormOp<'a> {
    pub(crate) weight: &'a [f32],
    pub(crate) bias: &'a [f32],
    pub(crate) eps: f32,
}

impl CustomOp1 for LayerNormOp<'_> {
    fn name(&self) -> &'static str {
        "pixio-layer-norm"
    }

    fn cpu_fwd(&self, storage: &CpuStorage, layout: &Layout) -> candle_core::Result<(CpuStorage, Shape)> {
        let src = contiguous_f32("pixio layer norm", storage, layout)?;
        let dim = self.weight.len();
        if layout.dims().last() != Some(&dim) {
            bail!("pixio layer norm: last dim of {:?} is not {dim}", layout.dims())
        }
        let mut dst = vec![0f32; src.len()];
        let rows_per_chunk = (CHUNK / dim).max(1);
        dst.par_chunks_mut(rows_per_chunk * dim).zip(src.par_chunks(rows_per_chunk * dim)).for_each(|(d, s)| {
            for (d, s) in d.chunks_exact_mut(dim).zip(s.chunks_exact(dim)) {
                // Two passes, like PyTorch: mean, then the variance of the centred values.
                let mean = s.iter().sum::<f32>() / dim as f32;
                let var = s.iter().map(|v| (v - mean) * (v - mean)).sum::<f32>() / dim as f32;
                let inv_std = 1.0 / (var + self.eps).sqrt();
                for (((d, s), w), b) in d.iter_mut().zip(s).zip(self.weight).zip(self.bias) {
                    *d = (s - mean) * inv_std * w + b;
                }
            }
        });
        Ok((CpuStorage::F32(dst), layout.shape().clone()))
    }
}

/// `x Wᵀ + b` as one GEMM that accumulates onto the bias rows (no separate bias pass).
pub(crate) struct LinearOp;

impl CustomOp3 for LinearOp {
    fn name(&self) -> &'static str {
        "pixio-linear"
    }

    fn cpu_fwd(
        &self,
        x: &CpuStorage,
        x_layout: &Layout,
        w: &CpuStorage,
        w_layout: &Layout,
        b: &CpuStorage,
        b_layout: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let x = contiguous_f32("pixio linear", x, x_layout)?;
        let w = contiguous_f32("pixio linear", w, w_layout)?;
        let bias = contiguous_f32("pixio linear", b, b_layout)?;
        let &[out_dim, in_dim] = w_layout.dims() else { bail!("pixio linear: weight must be 2-D") };
        let x_dims = x_layout.dims();
        if x_dims.last() != Some(&in_dim) || bias.len() != out_dim {
            bail!("pixio linear: {x_dims:?} × {:?}ᵀ + [{}]", w_layout.dims(), bias.len())
        }
        let rows = x.len() / in_dim;
        let mut dst: Vec<f32> = Vec::with_capacity(rows * out_dim);
        for _ in 0..rows {
            dst.extend_from_slice(bias);
        }
        // SAFETY: dst is rows × out_dim (row-major), x rows × in_dim, w out_dim × in_dim (read
        // as its transpose through the strides); all in bounds.
        unsafe {
            gemm::gemm(
                rows,
                out_dim,
                in_dim,
                dst.as_mut_ptr(),
                1,
                out_dim as isize,
                true,
                x.as_ptr(),
                1,
                in_dim as isize,
                w.as_ptr(),
                in_dim as isize,
                1,
                1.0,
                1.0,
                false,
                false,
                false,
                gemm::Parallelism::Rayon(candle_core::utils::get_num_threads()),
            );
        }
        let mut out_dims = x_dims.to_vec();
        *out_dims.last_mut().expect("x has a last dim") = out_dim;
        Ok((CpuStorage::F32(dst), Shape::from(out_dims)))
    }
}

/// Multi-head self-attention from the fused projection `[B, T, 3H]` (q, k, v blocks of `H`
/// columns, head `h` at columns `h·hd..`) to the merged context `[B, T, H]`.
pub(crate) struct AttentionOp {
    pub(crate) heads: usize,
    pub(crate) head_dim: usize,
    pub(crate) scale: f32,
}

impl CustomOp1 for AttentionOp {
    fn name(&self) -> &'static str {
        "pixio-attention"
    }

    fn cpu_fwd(&self, storage: &CpuStorage, layout: &Layout) -> candle_core::Result<(CpuStorage, Shape)> {
        let qkv = contiguous_f32("pixio attention", storage, layout)?;
        let &[b, t, three_h] = layout.dims() else {
            bail!("pixio attention: expects [B, T, 3H], got {:?}", layout.dims())
        };
        let (heads, hd) = (self.heads, self.head_dim);
        let h = heads * hd;
        if three_h != 3 * h {
            bail!("pixio attention: last dim {three_h} is not 3 × {heads} × {hd}")
        }
        // One task per (image, head): two single-threaded GEMMs and a row softmax in between, so
        // the parallelism is across heads rather than inside small matrices.
        let contexts: Vec<Vec<f32>> = (0..b * heads)
            .into_par_iter()
            .map(|task| {
                let (bi, hi) = (task / heads, task % heads);
                let base = bi * t * three_h;
                let q = qkv[base + hi * hd..].as_ptr();
                let k = qkv[base + h + hi * hd..].as_ptr();
                let v = qkv[base + 2 * h + hi * hd..].as_ptr();
                let mut scores = vec![0f32; t * t];
                let mut context = vec![0f32; t * hd];
                let rs = three_h as isize;
                // SAFETY: every pointer/stride pair addresses only elements inside `qkv` (rows
                // `0..t` of this image, columns of this head) or inside the local buffers.
                unsafe {
                    // scores = scale · Q Kᵀ   [t, t]
                    gemm::gemm(
                        t,
                        t,
                        hd,
                        scores.as_mut_ptr(),
                        1,
                        t as isize,
                        false,
                        q,
                        1,
                        rs,
                        k,
                        rs,
                        1,
                        0.0,
                        self.scale,
                        false,
                        false,
                        false,
                        gemm::Parallelism::None,
                    );
                }
                for row in scores.chunks_exact_mut(t) {
                    let max = row.iter().copied().fold(f32::NEG_INFINITY, f32::max);
                    let mut sum = 0f32;
                    for x in row.iter_mut() {
                        *x = (*x - max).exp();
                        sum += *x;
                    }
                    let inv = 1.0 / sum;
                    row.iter_mut().for_each(|x| *x *= inv);
                }
                unsafe {
                    // context = P V   [t, hd]
                    gemm::gemm(
                        t,
                        hd,
                        t,
                        context.as_mut_ptr(),
                        1,
                        hd as isize,
                        false,
                        scores.as_ptr(),
                        1,
                        t as isize,
                        v,
                        1,
                        rs,
                        0.0,
                        1.0,
                        false,
                        false,
                        false,
                        gemm::Parallelism::None,
                    );
                }
                context
            })
            .collect();
        let mut out = vec![0f32; b * t * h];
        for (task, context) in contexts.iter().enumerate() {
            let (bi, hi) = (task / heads, task % heads);
            for (ti, row) in context.chunks_exact(hd).enumerate() {
                let o = (bi * t + ti) * h + hi * hd;
                out[o..o + hd].copy_from_slice(row);
            }
        }
        Ok((CpuStorage::F32(out), Shape::from((b, t, h))))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// erf to f64 precision by its Maclaurin series (|x| ≤ 3) or the continued fraction of erfc.
    fn erf_f64(x: f64) -> f64 {
        if x.abs() > 3.0 {
            // erfc(x) = exp(-x²)/(x√π) · 1/(1 + 1/(2x²)/(1 + 2/(2x²)/(1 + …))), evaluated backwards.
            let a = x.abs();
            let mut f = 0.0;
            for k in (1..60).rev() {
                f = (k as f64 / 2.0) / (a + f);
            }
            let erfc = (-a * a).exp() / std::f64::consts::PI.sqrt() / (a + f);
            return (1.0 - erfc).copysign(x);
        }
        let mut term = x;
        let mut sum = x;
        for n in 1..200 {
            term *= -x * x / n as f64;
            sum += term / (2 * n + 1) as f64;
        }
        sum * 2.0 / std::f64::consts::PI.sqrt()
    }

    #[test]
    fn erf_is_accurate_everywhere() {
        let mut worst = 0f64;
        for i in -60_000..=60_000 {
            let x = i as f32 * 1e-4;
            worst = worst.max((erf(x) as f64 - erf_f64(x as f64)).abs());
        }
        assert!(worst < 5e-7, "max |erf error| {worst:e}");
        assert!((erf(10.0) - 1.0).abs() < 1e-6 && (erf(-10.0) + 1.0).abs() < 1e-6);
        assert!((gelu(-20.0)).abs() < 1e-6 && (gelu(20.0) - 20.0).abs() < 1e-5);
    }
}
