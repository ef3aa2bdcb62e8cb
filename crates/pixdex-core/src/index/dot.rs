//! The dot product of unit vectors (cosine similarity), the inner loop of every search, with
//! the widest vector unit the CPU has, chosen once at run time: AVX-512 and AVX2 + FMA kernels
//! written with intrinsics (LLVM vectorised the plain loop only two lanes wide), and a plain loop
//! elsewhere. The release build targets baseline x86-64, so dispatch is what brings the wide units.
//!
//! Kernels sum in different orders and the SIMD ones fuse multiply-adds, so results differ in the
//! last bits between CPUs; rankings only differ on such near-ties.

use std::sync::OnceLock;

const LANES: usize = 16;

fn dot_lanes(a: &[f32], b: &[f32]) -> f32 {
    let n = a.len().min(b.len());
    let (a, b) = (&a[..n], &b[..n]);
    let mut acc = [0f32; LANES];
    let (ca, cb) = (a.chunks_exact(LANES), b.chunks_exact(LANES));
    let (ra, rb) = (ca.remainder(), cb.remainder());
    for (x, y) in ca.zip(cb) {
        for i in 0..LANES {
            acc[i] += x[i] * y[i];
        }
    }
    for (i, (x, y)) in ra.iter().zip(rb).enumerate() {
        acc[i] += x * y;
    }
    acc.iter().sum()
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
fn dot_avx512(a: &[f32], b: &[f32]) -> f32 {
    use std::arch::x86_64::*;
    let n = a.len().min(b.len());
    let (pa, pb) = (a.as_ptr(), b.as_ptr());
    let mut acc = [_mm512_setzero_ps(); 4];
    let mut i = 0;
    // SAFETY: every load reads `pa`/`pb` at offsets below `n` (full blocks while `i + 64 <= n`,
    // single registers while `i + 16 <= n`, then a masked load of the remaining `n - i` lanes).
    unsafe {
        while i + 64 <= n {
            for (j, acc) in acc.iter_mut().enumerate() {
                let o = i + 16 * j;
                *acc = _mm512_fmadd_ps(_mm512_loadu_ps(pa.add(o)), _mm512_loadu_ps(pb.add(o)), *acc);
            }
            i += 64;
        }
        while i + 16 <= n {
            acc[0] = _mm512_fmadd_ps(_mm512_loadu_ps(pa.add(i)), _mm512_loadu_ps(pb.add(i)), acc[0]);
            i += 16;
        }
        if i < n {
            let mask: __mmask16 = (1u32 << (n - i)).wrapping_sub(1) as __mmask16;
            let (x, y) = (_mm512_maskz_loadu_ps(mask, pa.add(i)), _mm512_maskz_loadu_ps(mask, pb.add(i)));
            acc[1] = _mm512_fmadd_ps(x, y, acc[1]);
        }
        _mm512_reduce_add_ps(_mm512_add_ps(_mm512_add_ps(acc[0], acc[1]), _mm512_add_ps(acc[2], acc[3])))
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
fn dot_avx2(a: &[f32], b: &[f32]) -> f32 {
    use std::arch::x86_64::*;
    let n = a.len().min(b.len());
    let (pa, pb) = (a.as_ptr(), b.as_ptr());
    let mut acc = [_mm256_setzero_ps(); 4];
    let mut i = 0;
    // SAFETY: every load reads `pa`/`pb` at offsets below `n` (full blocks while `i + 32 <= n`,
    // single registers while `i + 8 <= n`); the tail is read through the slices.
    let sum = unsafe {
        while i + 32 <= n {
            for (j, acc) in acc.iter_mut().enumerate() {
                let o = i + 8 * j;
                *acc = _mm256_fmadd_ps(_mm256_loadu_ps(pa.add(o)), _mm256_loadu_ps(pb.add(o)), *acc);
            }
            i += 32;
        }
        while i + 8 <= n {
            acc[0] = _mm256_fmadd_ps(_mm256_loadu_ps(pa.add(i)), _mm256_loadu_ps(pb.add(i)), acc[0]);
            i += 8;
        }
        let v = _mm256_add_ps(_mm256_add_ps(acc[0], acc[1]), _mm256_add_ps(acc[2], acc[3]));
        let v = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
        let v = _mm_add_ps(v, _mm_movehl_ps(v, v));
        let v = _mm_add_ss(v, _mm_shuffle_ps(v, v, 1));
        _mm_cvtss_f32(v)
    };
    sum + a[i..n].iter().zip(&b[i..n]).map(|(x, y)| x * y).sum::<f32>()
}

fn dot_baseline(a: &[f32], b: &[f32]) -> f32 {
    dot_lanes(a, b)
}

type DotFn = fn(&[f32], &[f32]) -> f32;

fn select() -> DotFn {
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("avx512f") {
            // SAFETY: the CPU has the features the function is compiled for (checked just above).
            return |a, b| unsafe { dot_avx512(a, b) };
        }
        if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma") {
            // SAFETY: as above.
            return |a, b| unsafe { dot_avx2(a, b) };
        }
    }
    dot_baseline
}

/// `a · b` over the shorter of the two, with the widest vector unit this CPU has.
#[inline]
pub(crate) fn dot(a: &[f32], b: &[f32]) -> f32 {
    static DOT: OnceLock<DotFn> = OnceLock::new();
    (DOT.get_or_init(select))(a, b)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kernel_matches_a_double_precision_sum() {
        for n in [0, 1, 7, 31, 32, 33, 384, 1280, 1283] {
            let a: Vec<f32> = (0..n).map(|i| ((i * 37 % 101) as f32 - 50.0) / 50.0).collect();
            let b: Vec<f32> = (0..n).map(|i| ((i * 53 % 97) as f32 - 48.0) / 48.0).collect();
            let exact: f64 = a.iter().zip(&b).map(|(x, y)| *x as f64 * *y as f64).sum();
            let mut kernels: Vec<(&str, DotFn)> = vec![("baseline", dot_baseline), ("dispatched", dot)];
            #[cfg(target_arch = "x86_64")]
            {
                if std::arch::is_x86_feature_detected!("avx512f") {
                    kernels.push(("avx512", |a, b| unsafe { dot_avx512(a, b) }));
                }
                if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma") {
                    kernels.push(("avx2", |a, b| unsafe { dot_avx2(a, b) }));
                }
            }
            for (name, kernel) in kernels {
                let got = kernel(&a, &b) as f64;
                assert!((got - exact).abs() < 1e-5 * (1.0 + exact.abs()), "{name}, n {n}: {got} vs {exact}");
            }
        }
    }
}
