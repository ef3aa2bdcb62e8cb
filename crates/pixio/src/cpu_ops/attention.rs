//! Multi-head self-attention on the CPU from the fused q/k/v projection: one task per (image,
//! head), each two single-threaded GEMMs with a softmax in between (its
//! normalisation applied to the context rows, not to the `[T, T]` probabilities), writing its context straight
//! into its columns of the output. Candle's path runs one multi-threaded GEMM per head with a
//! transpose copy on each side and materialises `[B, heads, T, T]` scores for the whole batch.

use candle_core::{CpuStorage, CustomOp1, Layout, Shape, bail};
use rayon::prelude::*;
use std::mem::MaybeUninit;

use super::{contiguous_f32, simd};

/// Attention from `[B, T, 3H]` (q, k, v blocks of `H` columns, head `h` at columns `h·hd..`) to
/// the merged context `[B, T, H]`.
pub(crate) struct AttentionOp {
    pub(crate) heads: usize,
    pub(crate) head_dim: usize,
    pub(crate) scale: f32,
}

/// The output buffer, shared by the tasks: each writes only its own (image, head) block.
#[derive(Clone, Copy)]
struct Out(*mut f32);
// SAFETY: tasks write disjoint elements (their image's rows, their head's columns).
unsafe impl Send for Out {}
unsafe impl Sync for Out {}

impl Out {
    /// A method rather than a field access, so that closures capture the whole (Sync) wrapper.
    fn at(self, offset: usize) -> *mut f32 {
        self.0.wrapping_add(offset)
    }
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
        let run = |out: &mut [MaybeUninit<f32>]| {
            let dst = Out(out.as_mut_ptr().cast::<f32>());
            (0..b * heads).into_par_iter().for_each_init(
                || (vec![0f32; t * t], vec![0f32; t]),
                |(scores, inv_sums), task| {
                    let (bi, hi) = (task / heads, task % heads);
                    let base = bi * t * three_h;
                    let q = qkv[base + hi * hd..].as_ptr();
                    let k = qkv[base + h + hi * hd..].as_ptr();
                    let v = qkv[base + 2 * h + hi * hd..].as_ptr();
                    let rs = three_h as isize;
                    // SAFETY: q/k/v with row stride 3H address rows 0..t of this image and this head's
                    // hd columns, inside `qkv`; `scores` is t × t.
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
                    simd::softmax_rows_unnormalised(scores, t, inv_sums);
                    // SAFETY: the destination is this image's t rows (stride H) and this head's hd
                    // columns of `out`, which no other task writes; `out` outlives the parallel loop.
                    unsafe {
                        // context = P V   [t, hd], into out[bi, :, hi·hd..]
                        gemm::gemm(
                            t,
                            hd,
                            t,
                            dst.at(bi * t * h + hi * hd),
                            1,
                            h as isize,
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
                    for (ti, &inv) in inv_sums.iter().enumerate() {
                        // SAFETY: row ti of this task's block (hd elements), as written just above.
                        let row = unsafe { std::slice::from_raw_parts_mut(dst.at((bi * t + ti) * h + hi * hd), hd) };
                        simd::scale(row, inv);
                    }
                },
            )
        };
        // SAFETY: the (image, head) blocks cover the output, and each task's PV GEMM writes its
        // whole block (without reading it: `read_dst` is false).
        let out = unsafe { super::new_buffer(b * t * h, run) };
        Ok((CpuStorage::F32(out), Shape::from((b, t, h))))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{Device, Tensor};

    /// Against softmax(q kᵀ · scale) v in f64, batched, for a short and a longer sequence. (Taking
    /// a long sequence's query rows in L2-sized blocks was tried for region passes: 5% slower.)
    #[test]
    fn matches_plain_attention() {
        let (b, heads, hd) = (2, 2, 8);
        let h = heads * hd;
        for t in [5, 300] {
            let values: Vec<f32> =
                (0..b * t * 3 * h).map(|i| (((i * 7919) % 1009) as f32 / 1009.0 - 0.5) * 3.0).collect();
            let qkv = Tensor::from_vec(values.clone(), (b, t, 3 * h), &Device::Cpu).unwrap();
            let op = AttentionOp { heads, head_dim: hd, scale: 0.35 };
            let out = qkv.apply_op1_no_bwd(&op).unwrap().flatten_all().unwrap().to_vec1::<f32>().unwrap();
            let at = |bi: usize, ti: usize, col: usize| values[(bi * t + ti) * 3 * h + col] as f64;
            let mut worst = 0f64;
            for bi in 0..b {
                for hi in 0..heads {
                    for i in 0..t {
                        let logits: Vec<f64> = (0..t)
                            .map(|j| {
                                (0..hd).map(|d| at(bi, i, hi * hd + d) * at(bi, j, h + hi * hd + d)).sum::<f64>() * 0.35
                            })
                            .collect();
                        let m = logits.iter().copied().fold(f64::MIN, f64::max);
                        let z: f64 = logits.iter().map(|l| (l - m).exp()).sum();
                        for d in 0..hd {
                            let want: f64 =
                                (0..t).map(|j| (logits[j] - m).exp() / z * at(bi, j, 2 * h + hi * hd + d)).sum();
                            let got = out[(bi * t + i) * h + hi * hd + d] as f64;
                            worst = worst.max((got - want).abs());
                        }
                    }
                }
            }
            assert!(worst < 1e-5, "t = {t}: max |Δ| {worst:e}");
        }
    }
}
