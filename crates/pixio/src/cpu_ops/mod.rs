//! Fused f32 CPU kernels for the steps candle runs slowly on the CPU: linear layers as one GEMM
//! that starts from the bias (or from residual + bias, fusing the residual connection) and applies
//! exact-erf GELU in place (candle maps GELU on one thread through libm's `erff`), LayerNorm
//! (candle's fused op uses single-pass `E[x²] − E[x]²` statistics; the tensor-op version allocates
//! eight times) and attention ([`attention`]). They run in parallel with rayon, their element-wise
//! loops compiled for the CPU's widest SIMD ([`simd`]). Other devices and dtypes use candle's ops.

use candle_core::{CpuStorage, CustomOp1, CustomOp2, CustomOp3, Layout, Shape, bail};
use rayon::prelude::*;
use std::cell::Cell;
use std::mem::MaybeUninit;

mod attention;
mod simd;

pub(crate) use attention::AttentionOp;

/// Elements per parallel work item: large enough to amortise scheduling.
const CHUNK: usize = 16 * 1024;

thread_local! {
    /// Set while this thread runs one part of a batch split across the compute threads.
    static SINGLE_THREADED_GEMM: Cell<bool> = const { Cell::new(false) };
}

/// The threads candle and these kernels compute on (`RAYON_NUM_THREADS`, else the physical cores).
pub(crate) fn compute_threads() -> usize {
    candle_core::utils::get_num_threads()
}

fn parallel_gemm() -> bool {
    !SINGLE_THREADED_GEMM.with(Cell::get)
}

/// Runs `f` with this thread's linear-layer GEMMs single-threaded: for a part of a batch that
/// runs beside the other parts, one per compute thread (see `PixioModel`'s batch split).
pub(crate) fn with_single_threaded_gemm<R>(f: impl FnOnce() -> R) -> R {
    struct Restore(bool);
    impl Drop for Restore {
        fn drop(&mut self) {
            SINGLE_THREADED_GEMM.with(|c| c.set(self.0));
        }
    }
    let _restore = Restore(SINGLE_THREADED_GEMM.with(|c| c.replace(true)));
    f()
}

/// A new buffer of `len` elements that `fill` initialises, without zeroing it first (a
/// memset per op was 2% of a forward pass).
///
/// # Safety
/// `fill` must write every element.
unsafe fn new_buffer(len: usize, fill: impl FnOnce(&mut [MaybeUninit<f32>])) -> Vec<f32> {
    let mut buf: Vec<MaybeUninit<f32>> = Vec::with_capacity(len);
    // SAFETY: MaybeUninit elements need no initialisation.
    unsafe { buf.set_len(len) };
    fill(&mut buf);
    let mut buf = std::mem::ManuallyDrop::new(buf);
    // SAFETY: every element was written (the caller's contract); f32 and MaybeUninit<f32> have
    // the same layout, and length and capacity are the allocation's.
    unsafe { Vec::from_raw_parts(buf.as_mut_ptr().cast::<f32>(), buf.len(), buf.capacity()) }
}

/// A kernel input's elements: the kernels read f32 in row-major order, so anything else (another
/// dtype, a strided view) is an error naming the kernel rather than wrong numbers.
fn contiguous_f32<'a>(kernel: &str, storage: &'a CpuStorage, layout: &Layout) -> candle_core::Result<&'a [f32]> {
    match (storage, layout.contiguous_offsets()) {
        (CpuStorage::F32(src), Some((start, end))) => Ok(&src[start..end]),
        _ => bail!("{kernel}: expects contiguous f32"),
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
        let chunk = (CHUNK / dim).max(1) * dim;
        // SAFETY: the chunks cover `dst`, and layer_norm_rows writes every element of each.
        let dst = unsafe {
            new_buffer(src.len(), |dst| {
                dst.par_chunks_mut(chunk).zip(src.par_chunks(chunk)).for_each(|(d, s)| {
                    simd::layer_norm_rows(d, s, self.weight, self.bias, self.eps);
                })
            })
        };
        Ok((CpuStorage::F32(dst), layout.shape().clone()))
    }
}

/// `x Wᵀ + b` as one GEMM that accumulates onto the bias rows (no separate bias pass), with
/// exact-erf GELU applied in place when `gelu` is set (the MLP's first layer).
pub(crate) struct LinearOp<'a> {
    pub(crate) bias: &'a [f32],
    pub(crate) gelu: bool,
}

impl CustomOp2 for LinearOp<'_> {
    fn name(&self) -> &'static str {
        "pixio-linear"
    }

    fn cpu_fwd(
        &self,
        x: &CpuStorage,
        x_layout: &Layout,
        w: &CpuStorage,
        w_layout: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let (x, w, shape) = linear_operands(x, x_layout, w, w_layout, self.bias)?;
        let chunk = CHUNK.next_multiple_of(self.bias.len());
        // SAFETY: the chunks (whole rows) cover `dst`, and fill_rows writes every element.
        let mut dst = unsafe {
            new_buffer(shape.elem_count(), |dst| {
                dst.par_chunks_mut(chunk).for_each(|d| simd::fill_rows(d, self.bias));
            })
        };
        accumulate_product(&mut dst, x, w, self.bias.len());
        if self.gelu {
            dst.par_chunks_mut(CHUNK).for_each(simd::gelu_in_place);
        }
        Ok((CpuStorage::F32(dst), shape))
    }
}

/// `residual + x Wᵀ + b`: a residual connection and the linear layer before it as one GEMM that
/// accumulates onto `residual + b` (no separate add, no intermediate tensor).
pub(crate) struct LinearResidualOp<'a> {
    pub(crate) bias: &'a [f32],
}

impl CustomOp3 for LinearResidualOp<'_> {
    fn name(&self) -> &'static str {
        "pixio-linear-residual"
    }

    fn cpu_fwd(
        &self,
        x: &CpuStorage,
        x_layout: &Layout,
        w: &CpuStorage,
        w_layout: &Layout,
        r: &CpuStorage,
        r_layout: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let (x, w, shape) = linear_operands(x, x_layout, w, w_layout, self.bias)?;
        let residual = contiguous_f32("pixio linear residual", r, r_layout)?;
        if r_layout.shape() != &shape {
            bail!("pixio linear residual: residual {:?} for an output {:?}", r_layout.dims(), shape.dims())
        }
        let chunk = CHUNK.next_multiple_of(self.bias.len());
        // SAFETY: the chunks (whole rows) cover `dst`, and rows_plus_bias writes every element.
        let mut dst = unsafe {
            new_buffer(shape.elem_count(), |dst| {
                dst.par_chunks_mut(chunk)
                    .zip(residual.par_chunks(chunk))
                    .for_each(|(d, r)| simd::rows_plus_bias(d, r, self.bias));
            })
        };
        accumulate_product(&mut dst, x, w, self.bias.len());
        Ok((CpuStorage::F32(dst), shape))
    }
}

/// The checked operands of `x Wᵀ + b`: `x` and `W` as slices, and the output shape.
fn linear_operands<'a>(
    x: &'a CpuStorage,
    x_layout: &Layout,
    w: &'a CpuStorage,
    w_layout: &Layout,
    bias: &[f32],
) -> candle_core::Result<(&'a [f32], &'a [f32], Shape)> {
    let x_s = contiguous_f32("pixio linear", x, x_layout)?;
    let w_s = contiguous_f32("pixio linear", w, w_layout)?;
    let &[out_dim, in_dim] = w_layout.dims() else { bail!("pixio linear: weight must be 2-D") };
    let x_dims = x_layout.dims();
    if x_dims.last() != Some(&in_dim) || bias.len() != out_dim {
        bail!("pixio linear: {x_dims:?} × {:?}ᵀ + [{}]", w_layout.dims(), bias.len())
    }
    let mut out_dims = x_dims.to_vec();
    *out_dims.last_mut().expect("x has a last dim") = out_dim;
    Ok((x_s, w_s, Shape::from(out_dims)))
}

/// `dst += x Wᵀ` for `x` `[rows, in]` and `W` `[out, in]`, on all compute threads.
fn accumulate_product(dst: &mut [f32], x: &[f32], w: &[f32], out_dim: usize) {
    let in_dim = w.len() / out_dim;
    let rows = x.len() / in_dim;
    debug_assert_eq!(dst.len(), rows * out_dim);
    // SAFETY: dst is rows × out_dim (row-major), x rows × in_dim, w out_dim × in_dim (read as
    // its transpose through the strides); the callers checked these shapes.
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
            if parallel_gemm() { gemm::Parallelism::Rayon(compute_threads()) } else { gemm::Parallelism::None },
        );
    }
}
