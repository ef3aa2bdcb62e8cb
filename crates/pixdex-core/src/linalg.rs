//! The dense kernels the patch-level code shares: `a · bᵀ` for row-major matrices, and
//! normalising rows to unit length.

/// `a · bᵀ` for `a` (m×k) and `b` (n×k), both row-major: row `i` of the m×n result holds the dot
/// products of `a`'s row `i` with every row of `b`.
pub(crate) fn matmul_nt(a: &[f32], b: &[f32], k: usize) -> Vec<f32> {
    assert!(k > 0 && a.len().is_multiple_of(k) && b.len().is_multiple_of(k), "matmul_nt: rows of {k} values");
    let (m, n) = (a.len() / k, b.len() / k);
    let mut out = vec![0f32; m * n];
    if m == 0 || n == 0 {
        return out;
    }
    // SAFETY: `out` is m×n row-major, `a` m×k row-major, `b` n×k row-major read as its k×n
    // transpose; every stride stays inside its buffer (checked above).
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            out.as_mut_ptr(),
            1,
            n as isize,
            false,
            a.as_ptr(),
            1,
            k as isize,
            b.as_ptr(),
            k as isize,
            1,
            0.0,
            1.0,
            false,
            false,
            false,
            gemm::Parallelism::None,
        );
    }
    out
}

/// Scales every `dim`-wide row to unit length (zero rows stay zero).
pub(crate) fn normalise_rows(values: &mut [f32], dim: usize) {
    for t in values.chunks_exact_mut(dim) {
        let norm = t.iter().map(|v| v * v).sum::<f32>().sqrt();
        if norm > 1e-12 {
            t.iter_mut().for_each(|v| *v /= norm);
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn matches_the_naive_product() {
        let a: Vec<f32> = (0..6).map(|i| i as f32).collect(); // 2×3
        let b: Vec<f32> = (0..9).map(|i| i as f32 - 4.0).collect(); // 3×3
        let mut naive = Vec::new();
        for i in 0..2 {
            for j in 0..3 {
                naive.push((0..3).map(|t| a[i * 3 + t] * b[j * 3 + t]).sum::<f32>());
            }
        }
        assert_eq!(super::matmul_nt(&a, &b, 3), naive);
    }
}
