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

/// Bytes of attention scores one task keeps: about a third of a Zen 4 / Sapphire Rapids core's
/// L2, so that ViT-S/14's 257 tokens (264 KB) run in one block.
const SCORES_BYTES: usize = 320 << 10;

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
        // Long sequences (region passes: ~770 tokens) take their query rows in blocks, so that a
        // block's scores stay in the core's L2 cache between the two GEMMs and the softmax; the
        // rows are independent, so the numbers are the same.
        let blocks = (t * t * 4).div_ceil(SCORES_BYTES).max(1);
        let block_rows = t.div_ceil(blocks);
        let blocks = t.div_ceil(block_rows);
        let run = |out: &mut [MaybeUninit<f32>]| {
            let dst = Out(out.as_mut_ptr().cast::<f32>());
            (0..b * heads * blocks).into_par_iter().for_each_init(
                || (vec![0f32; block_rows * t], vec![0f32; block_rows]),
                |(scores, inv_sums), task| {
                    let (bi, hi, block) = (task / (heads * blocks), task / blocks % heads, task % blocks);
                    let r0 = block * block_rows;
                    let n = block_rows.min(t - r0);
                    let (scores, inv_sums) = (&mut scores[..n * t], &mut inv_sums[..n]);
                    let base = bi * t * three_h;
                    let q = qkv[base + r0 * three_h + hi * hd..].as_ptr();
                    let k = qkv[base + h + hi * hd..].as_ptr();
                    let v = qkv[base + 2 * h + hi * hd..].as_ptr();
                    let rs = three_h as isize;
                    // SAFETY: q (rows r0..r0+n) and k/v (rows 0..t) with row stride 3H address this
                    // image's rows and this head's hd columns, inside `qkv`; `scores` is n × t.
                    unsafe {
                        // scores = scale · Q Kᵀ   [n, t]
                        gemm::gemm(
                            n,
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
                    // SAFETY: the destination is this image's rows r0..r0+n (stride H) and this head's
                    // hd columns of `out`, which no other task writes; `out` outlives the loop.
                    unsafe {
                        // context = P V   [n, hd], into out[bi, r0.., hi·hd..]
                        gemm::gemm(
                            n,
                            hd,
                            t,
                            dst.at((bi * t + r0) * h + hi * hd),
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
                    for (i, &inv) in inv_sums.iter().enumerate() {
                        // SAFETY: row r0 + i of this task's block (hd elements), as written just above.
                        let row =
                            unsafe { std::slice::from_raw_parts_mut(dst.at((bi * t + r0 + i) * h + hi * hd), hd) };
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

    /// Against softmax(q kᵀ · scale) v in f64, for a sequence long enough to be split into
    /// row blocks (and a short one that is not).
    #[test]
    fn matches_plain_attention_with_and_without_row_blocks() {
        let (b, heads, hd) = (2, 2, 8);
        let h = heads * hd;
        for t in [5, 400] {
            assert_eq!(t * t * 4 > SCORES_BYTES, t == 400, "the long case must take the blocked path");
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
