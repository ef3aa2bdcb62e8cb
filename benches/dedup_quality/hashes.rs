//! The perceptual hashes the bench compares against (64 bits each, as imagehash computes them).

use image::GrayImage;
use image::imageops::FilterType;

/// frequencies against their median.
pub fn phash(gray: &GrayImage) -> u64 {
    const N: usize = 32;
    let small = image::imageops::resize(gray, N as u32, N as u32, FilterType::Lanczos3);
    let px: Vec<f64> = small.pixels().map(|p| p.0[0] as f64).collect();
    let basis: Vec<f64> = (0..8 * N)
        .map(|i| {
            let (k, n) = (i / N, i % N);
            (std::f64::consts::PI * k as f64 * (2 * n + 1) as f64 / (2 * N) as f64).cos()
        })
        .collect();
    // Rows first (only the 8 lowest frequencies are needed), then columns.
    let mut rows = vec![0f64; N * 8];
    for y in 0..N {
        for k in 0..8 {
            rows[y * 8 + k] = (0..N).map(|x| px[y * N + x] * basis[k * N + x]).sum();
        }
    }
    let mut low = [0f64; 64];
    for (i, v) in low.iter_mut().enumerate() {
        let (ky, kx) = (i / 8, i % 8);
        *v = (0..N).map(|y| rows[y * 8 + kx] * basis[ky * N + y]).sum();
    }
    let mut sorted = low;
    sorted.sort_by(f64::total_cmp);
    let median = (sorted[31] + sorted[32]) / 2.0;
    low.iter().enumerate().fold(0u64, |h, (i, &v)| h | (((v > median) as u64) << i))
}

/// dHash: 9x8 grayscale, one bit per horizontally adjacent pair.
pub fn dhash(gray: &GrayImage) -> u64 {
    let small = image::imageops::resize(gray, 9, 8, FilterType::Lanczos3);
    let mut h = 0u64;
    for y in 0..8 {
        for x in 0..8 {
            let bit = small.get_pixel(x + 1, y).0[0] > small.get_pixel(x, y).0[0];
            h |= (bit as u64) << (y * 8 + x);
        }
    }
    h
}
