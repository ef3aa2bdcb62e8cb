//! The element-wise parts of the fused kernels, written as plain loops that LLVM vectorises, and
//! compiled three times: for AVX-512, for AVX2 + FMA, and for the baseline x86-64 (or another
//! architecture). The release build targets baseline x86-64 (SSE2: four lanes), so without this
//! the kernels would run at a quarter of an AVX-512 core's width.
//!
//! Reductions keep 16 explicit lanes whatever the ISA, and Rust never contracts `a * b + c` into
//! an FMA by itself, so every ISA gives bit-identical results: the dispatch changes speed only.

use std::mem::MaybeUninit;
use std::sync::OnceLock;

/// Lanes of the explicit reductions: one AVX-512 register of f32.
const LANES: usize = 16;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Isa {
    Avx512,
    Avx2,
    Baseline,
}

/// The widest instruction set this CPU runs, detected once.
pub(crate) fn isa() -> Isa {
    static ISA: OnceLock<Isa> = OnceLock::new();
    *ISA.get_or_init(|| {
        #[cfg(target_arch = "x86_64")]
        {
            if std::arch::is_x86_feature_detected!("avx512f") && std::arch::is_x86_feature_detected!("avx512vl") {
                return Isa::Avx512;
            }
            if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma") {
                return Isa::Avx2;
            }
        }
        Isa::Baseline
    })
}

/// Defines `fn $name(args)` whose body is compiled for each [`Isa`] and chosen at run time.
macro_rules! multiversion {
    ($(#[$meta:meta])* $vis:vis fn $name:ident($($arg:ident : $ty:ty),* $(,)?) $body:block) => {
        $(#[$meta])*
        $vis fn $name($($arg: $ty),*) {
            #[inline(always)]
            fn imp($($arg: $ty),*) $body
            #[cfg(target_arch = "x86_64")]
            {
                #[target_feature(enable = "avx512f,avx512vl,avx2,fma")]
                unsafe fn avx512($($arg: $ty),*) {
                    imp($($arg),*)
                }
                #[target_feature(enable = "avx2,fma")]
                unsafe fn avx2($($arg: $ty),*) {
                    imp($($arg),*)
                }
                match isa() {
                    // SAFETY: `isa()` detected these features on this CPU.
                    Isa::Avx512 => return unsafe { avx512($($arg),*) },
                    // SAFETY: as above.
                    Isa::Avx2 => return unsafe { avx2($($arg),*) },
                    Isa::Baseline => {}
                }
            }
            imp($($arg),*)
        }
    };
}

/// `step` folded over `x` in 16 lanes (element `i` into lane `i % 16`), then the lanes combined
/// pairwise: a fixed order on every ISA, and a loop LLVM vectorises.
#[inline(always)]
fn lane_fold(x: &[f32], init: f32, step: impl Fn(f32, f32) -> f32, combine: impl Fn(f32, f32) -> f32) -> f32 {
    let mut acc = [init; LANES];
    let chunks = x.chunks_exact(LANES);
    let rest = chunks.remainder();
    for c in chunks {
        for (a, v) in acc.iter_mut().zip(c) {
            *a = step(*a, *v);
        }
    }
    for (a, v) in acc.iter_mut().zip(rest) {
        *a = step(*a, *v);
    }
    reduce(acc, combine)
}

#[inline(always)]
fn sum(x: &[f32]) -> f32 {
    lane_fold(x, 0.0, |a, v| a + v, |a, b| a + b)
}

/// Sum of `(x - mean)²`.
#[inline(always)]
fn sum_sq_centered(x: &[f32], mean: f32) -> f32 {
    lane_fold(x, 0.0, |a, v| a + (v - mean) * (v - mean), |a, b| a + b)
}

#[inline(always)]
fn max(x: &[f32]) -> f32 {
    lane_fold(x, f32::NEG_INFINITY, f32::max, f32::max)
}

#[inline(always)]
fn reduce(mut acc: [f32; LANES], op: impl Fn(f32, f32) -> f32) -> f32 {
    let mut width = LANES / 2;
    while width > 0 {
        for i in 0..width {
            acc[i] = op(acc[i], acc[i + width]);
        }
        width /= 2;
    }
    acc[0]
}

/// `eˣ` for `x ≤ 88`, within 2 ulp (Cephes' `expf`: `2ⁿ·e^r` with `|r| ≤ ln2/2` and a degree-6
/// polynomial), branch-free so that the loop vectorises. Inputs below -87 give `e^-87` (≈ 1.6e-38)
/// rather than a denormal: far below anything softmax adds to a sum of at least 1.
#[inline(always)]
pub(crate) fn exp(x: f32) -> f32 {
    const LOG2E: f32 = std::f32::consts::LOG2_E;
    // ln 2 in two parts, so that `n · LN2_HI` is exact.
    const LN2_HI: f32 = 0.693_359_4;
    const LN2_LO: f32 = -2.121_944_4e-4;
    // Adding and subtracting 1.5·2²³ rounds to the nearest integer without a rounding instruction.
    const ROUND: f32 = 12_582_912.0;
    let x = x.clamp(-87.0, 88.0);
    let n = (x * LOG2E + ROUND) - ROUND;
    let r = x - n * LN2_HI - n * LN2_LO;
    let mut p = 1.987_569_1e-4f32;
    p = p * r + 1.398_199_9e-3;
    p = p * r + 8.333_452e-3;
    p = p * r + 4.166_579_6e-2;
    p = p * r + 1.666_666_5e-1;
    p = p * r + 0.5;
    let y = p * r * r + r + 1.0;
    y * f32::from_bits(((n as i32 + 127) as u32) << 23)
}

/// `erf(x)` in f32 as an odd/even rational function on `[-4, 4]` (erf is ±1 in f32 beyond):
/// a few ulp from the exact value, with no `exp`, so the loop vectorises.
#[inline(always)]
pub(crate) fn erf(x: f32) -> f32 {
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
pub(crate) fn gelu(x: f32) -> f32 {
    0.5 * x * (1.0 + erf(x * std::f32::consts::FRAC_1_SQRT_2))
}

multiversion! {
    /// Exact-erf GELU of every element, in place.
    pub(crate) fn gelu_in_place(x: &mut [f32]) {
        for v in x.iter_mut() {
            *v = gelu(*v);
        }
    }
}

multiversion! {
    /// The unnormalised softmax of each `len`-element row of `rows`, in place: `exp(x - max)`
    /// (max-subtracted, as PyTorch), with `1 / Σ` of each row in `inv_sums`. Attention scales
    /// the `[T, hd]` context by it rather than the `[T, T]` probabilities.
    pub(crate) fn softmax_rows_unnormalised(rows: &mut [f32], len: usize, inv_sums: &mut [f32]) {
        for (row, inv) in rows.chunks_exact_mut(len).zip(inv_sums.iter_mut()) {
            let m = max(row);
            let mut acc = [0f32; LANES];
            let mut chunks = row.chunks_exact_mut(LANES);
            for c in chunks.by_ref() {
                for (a, v) in acc.iter_mut().zip(c.iter_mut()) {
                    *v = exp(*v - m);
                    *a += *v;
                }
            }
            for (a, v) in acc.iter_mut().zip(chunks.into_remainder()) {
                *v = exp(*v - m);
                *a += *v;
            }
            *inv = 1.0 / reduce(acc, |a, b| a + b);
        }
    }
}

multiversion! {
    /// `row *= factor`.
    pub(crate) fn scale(row: &mut [f32], factor: f32) {
        for v in row.iter_mut() {
            *v *= factor;
        }
    }
}

multiversion! {
    /// LayerNorm of each row of `src` into `dst` (rows of `weight.len()`), with two-pass
    /// statistics like PyTorch: the mean, then the variance of the centred values.
    pub(crate) fn layer_norm_rows(dst: &mut [MaybeUninit<f32>], src: &[f32], weight: &[f32], bias: &[f32], eps: f32) {
        let dim = weight.len();
        for (d, s) in dst.chunks_exact_mut(dim).zip(src.chunks_exact(dim)) {
            let mean = sum(s) / dim as f32;
            let var = sum_sq_centered(s, mean) / dim as f32;
            let inv_std = 1.0 / (var + eps).sqrt();
            for (((d, s), w), b) in d.iter_mut().zip(s).zip(weight).zip(bias) {
                d.write((s - mean) * inv_std * w + b);
            }
        }
    }
}

multiversion! {
    /// `dst[r] = residual[r] + bias` for each row `r` (rows of `bias.len()`): the starting value
    /// a GEMM then accumulates onto.
    pub(crate) fn rows_plus_bias(dst: &mut [MaybeUninit<f32>], residual: &[f32], bias: &[f32]) {
        for (d, r) in dst.chunks_exact_mut(bias.len()).zip(residual.chunks_exact(bias.len())) {
            for ((d, r), b) in d.iter_mut().zip(r).zip(bias) {
                d.write(r + b);
            }
        }
    }
}

/// Every row of `dst` (rows of `row.len()`) set to `row`.
pub(crate) fn fill_rows(dst: &mut [MaybeUninit<f32>], row: &[f32]) {
    for d in dst.chunks_exact_mut(row.len()) {
        for (d, v) in d.iter_mut().zip(row) {
            d.write(*v);
        }
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

    #[test]
    fn exp_is_within_two_ulp() {
        let mut worst = 0f64;
        for i in -870_000..=880_000 {
            let x = i as f32 * 1e-4;
            let want = (x as f64).exp();
            worst = worst.max(((exp(x) as f64 - want) / want).abs());
        }
        // 2 ulp of f32 is 2.4e-7 relative.
        assert!(worst < 2.4e-7, "max relative exp error {worst:e}");
        assert_eq!(exp(0.0), 1.0);
        assert!(exp(-1000.0) < 1e-37 && exp(-1000.0) >= 0.0);
    }

    /// The multiversioned kernels agree with plain f64 arithmetic, and every ISA this CPU has
    /// gives the same bits as the baseline build.
    #[test]
    fn kernels_match_f64_and_agree_across_isas() {
        let len = 37; // not a multiple of the lanes
        let data: Vec<f32> = (0..len * 3).map(|i| ((i * 7919) % 101) as f32 * 0.37 - 15.0).collect();
        let mut soft = data.clone();
        let mut inv = vec![0f32; 3];
        softmax_rows_unnormalised(&mut soft, len, &mut inv);
        for ((row, src), inv) in soft.chunks_mut(len).zip(data.chunks(len)).zip(&inv) {
            scale(row, *inv);
            let m = src.iter().copied().fold(f32::MIN, f32::max) as f64;
            let z: f64 = src.iter().map(|&v| (v as f64 - m).exp()).sum();
            for (&p, &v) in row.iter().zip(src) {
                assert!((p as f64 - (v as f64 - m).exp() / z).abs() < 1e-6);
            }
        }
        let (w, b) = (vec![1.5f32; len], vec![0.25f32; len]);
        let mut normed = vec![MaybeUninit::new(0f32); data.len()];
        layer_norm_rows(&mut normed, &data, &w, &b, 1e-6);
        // SAFETY: initialised above.
        let normed: Vec<f32> = normed.into_iter().map(|v| unsafe { v.assume_init() }).collect();
        for (row, src) in normed.chunks(len).zip(data.chunks(len)) {
            let mean = src.iter().map(|&v| v as f64).sum::<f64>() / len as f64;
            let var = src.iter().map(|&v| (v as f64 - mean).powi(2)).sum::<f64>() / len as f64;
            for (&y, &v) in row.iter().zip(src) {
                let want = (v as f64 - mean) / (var + 1e-6).sqrt() * 1.5 + 0.25;
                assert!((y as f64 - want).abs() < 1e-5, "{y} vs {want}");
            }
        }
        // The baseline body, called directly, gives the same bits as the dispatched one.
        let mut base = data.clone();
        for row in base.chunks_exact_mut(len) {
            let m = max(row);
            let mut acc = [0f32; LANES];
            for (i, v) in row.iter_mut().enumerate() {
                *v = exp(*v - m);
                acc[i % LANES] += *v;
            }
            let inv = 1.0 / reduce(acc, |a, b| a + b);
            row.iter_mut().for_each(|v| *v *= inv);
        }
        assert_eq!(base, soft, "dispatched softmax ({:?}) differs from the baseline", isa());
    }
}
