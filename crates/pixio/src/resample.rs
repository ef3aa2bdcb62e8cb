//! Pillow's resampling (`Resample.c`), bit for bit: the separable, antialiased, fixed-point
//! filters that `Image.resize` runs on 8-bit RGB, with a uint8 image between the two passes
//! (pixio-spec §6). The [`crate::Preprocessor`] resizes through [`resize_pillow`].

use image::RgbImage;

use crate::error::{Error, Result};

/// Pillow's resampling filters (`PIL.Image.Resampling`) that the processor may name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Filter {
    /// `resample: 1`.
    Lanczos,
    /// `resample: 2`.
    Bilinear,
    /// `resample: 3`, what Pixio uses.
    Bicubic,
}

impl Filter {
    pub(crate) fn from_pil(code: u32) -> Result<Self> {
        match code {
            1 => Ok(Self::Lanczos),
            2 => Ok(Self::Bilinear),
            3 => Ok(Self::Bicubic),
            _ => {
                Err(Error::Preprocessor(format!("resample {code} is not supported (1 lanczos, 2 bilinear, 3 bicubic)")))
            }
        }
    }

    fn support(self) -> f64 {
        match self {
            Self::Lanczos => 3.0,
            Self::Bilinear => 1.0,
            Self::Bicubic => 2.0,
        }
    }

    /// Pillow's `Resample.c` filter kernels.
    fn eval(self, x: f64) -> f64 {
        let x = x.abs();
        match self {
            Self::Bicubic => {
                const A: f64 = -0.5;
                if x < 1.0 {
                    ((A + 2.0) * x - (A + 3.0)) * x * x + 1.0
                } else if x < 2.0 {
                    (((x - 5.0) * x + 8.0) * x - 4.0) * A
                } else {
                    0.0
                }
            }
            Self::Bilinear => {
                if x < 1.0 {
                    1.0 - x
                } else {
                    0.0
                }
            }
            Self::Lanczos => {
                let sinc =
                    |x: f64| if x == 0.0 { 1.0 } else { (x * std::f64::consts::PI).sin() / (x * std::f64::consts::PI) };
                if x < 3.0 { sinc(x) * sinc(x / 3.0) } else { 0.0 }
            }
        }
    }
}

/// The order of the two separable resize passes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum PassOrder {
    /// Pillow 13's choice: vertical first when the height shrinks by more than twice as many pixels
    /// as the width (`Δh > 0 && Δh > 2·Δw`), else horizontal first. Bit-exact to transformers'
    /// PIL backend with Pillow 13.
    #[default]
    Pillow,
    /// Always horizontal first, as torchvision's antialiased uint8 resize (transformers' default
    /// backend) and earlier Pillow do: within one level of the torchvision backend everywhere.
    HorizontalFirst,
}
/// Per output pixel: first input index and fixed-point weights (Pillow `precompute_coeffs` +
/// `normalize_coeffs_8bpc`).
struct Coefficients {
    starts: Vec<usize>,
    ksize: usize,
    weights: Vec<i32>,
    counts: Vec<usize>,
}

const PRECISION_BITS: u32 = 32 - 8 - 2;

fn coefficients(in_size: usize, out_size: usize, filter: Filter) -> Coefficients {
    let scale = in_size as f64 / out_size as f64;
    let filterscale = scale.max(1.0);
    let support = filter.support() * filterscale;
    let ksize = support.ceil() as usize * 2 + 1;
    let mut starts = Vec::with_capacity(out_size);
    let mut counts = Vec::with_capacity(out_size);
    let mut weights = vec![0i32; out_size * ksize];
    let mut k = vec![0f64; ksize];
    for xx in 0..out_size {
        let center = (xx as f64 + 0.5) * scale;
        let ss = 1.0 / filterscale;
        // C `(int)` truncates toward zero.
        let xmin = ((center - support + 0.5) as i64).max(0) as usize;
        let xmax = ((center + support + 0.5) as i64).min(in_size as i64) as usize - xmin;
        let mut ww = 0.0;
        for (x, kx) in k.iter_mut().enumerate().take(xmax) {
            let w = filter.eval((x as f64 + xmin as f64 - center + 0.5) * ss);
            *kx = w;
            ww += w;
        }
        for (x, kx) in k.iter().enumerate().take(xmax) {
            let v = if ww != 0.0 { kx / ww } else { *kx };
            let scaled = v * (1u32 << PRECISION_BITS) as f64;
            weights[xx * ksize + x] = if v < 0.0 { (scaled - 0.5) as i32 } else { (scaled + 0.5) as i32 };
        }
        starts.push(xmin);
        counts.push(xmax);
    }
    Coefficients { starts, ksize, weights, counts }
}

/// Pillow's `clip8`: the fixed-point accumulator to a byte.
#[inline]
fn clip8(acc: i32) -> u8 {
    if acc >= (1 << PRECISION_BITS << 8) {
        255
    } else if acc <= 0 {
        0
    } else {
        (acc >> PRECISION_BITS) as u8
    }
}

/// Pillow's `Image.resize((w, h), filter)` for 8-bit RGB: two separable passes with a uint8
/// image between them; a pass whose size does not change is skipped. Because each pass rounds to
/// uint8, the [`PassOrder`] changes pixels; the fixtures pin it against Pillow 13.0.
pub fn resize_pillow(src: &RgbImage, out_w: usize, out_h: usize, filter: Filter, order: PassOrder) -> RgbImage {
    let (in_w, in_h) = (src.width() as usize, src.height() as usize);
    let (dw, dh) = (in_w as i64 - out_w as i64, in_h as i64 - out_h as i64);
    let src = src.as_raw().as_slice();
    let vertical_first = order == PassOrder::Pillow && dh > 0 && dh > 2 * dw;
    // Each pass reads the previous buffer (the source itself first: no full-size copy).
    let buf = if vertical_first {
        let first = (out_h != in_h).then(|| resample_vertical(src, in_w, in_h, out_h, filter));
        let cur = first.as_deref().unwrap_or(src);
        if out_w != in_w { resample_horizontal(cur, in_w, out_h, out_w, filter) } else { cur.to_vec() }
    } else {
        let first = (out_w != in_w).then(|| resample_horizontal(src, in_w, in_h, out_w, filter));
        let cur = first.as_deref().unwrap_or(src);
        if out_h != in_h { resample_vertical(cur, out_w, in_h, out_h, filter) } else { cur.to_vec() }
    };
    RgbImage::from_raw(out_w as u32, out_h as u32, buf).expect("buffer sized out_w × out_h × 3")
}

/// One horizontal pass over an interleaved RGB buffer of `w × h`: to `out_w × h`.
fn resample_horizontal(src: &[u8], w: usize, h: usize, out_w: usize, filter: Filter) -> Vec<u8> {
    let co = coefficients(w, out_w, filter);
    let mut out = vec![0u8; out_w * h * 3];
    for y in 0..h {
        let row = &src[y * w * 3..(y + 1) * w * 3];
        for xx in 0..out_w {
            let k = &co.weights[xx * co.ksize..xx * co.ksize + co.counts[xx]];
            let start = co.starts[xx];
            let mut acc = [1i32 << (PRECISION_BITS - 1); 3];
            for (x, &kx) in k.iter().enumerate() {
                let p = &row[(start + x) * 3..(start + x) * 3 + 3];
                for c in 0..3 {
                    acc[c] += p[c] as i32 * kx;
                }
            }
            for c in 0..3 {
                out[(y * out_w + xx) * 3 + c] = clip8(acc[c]);
            }
        }
    }
    out
}

/// One vertical pass over an interleaved RGB buffer of `w × h`: to `w × out_h`.
fn resample_vertical(src: &[u8], w: usize, h: usize, out_h: usize, filter: Filter) -> Vec<u8> {
    let co = coefficients(h, out_h, filter);
    let mut out = vec![0u8; w * out_h * 3];
    for yy in 0..out_h {
        let k = &co.weights[yy * co.ksize..yy * co.ksize + co.counts[yy]];
        let start = co.starts[yy];
        for x in 0..w {
            let mut acc = [1i32 << (PRECISION_BITS - 1); 3];
            for (y, &ky) in k.iter().enumerate() {
                let p = &src[((start + y) * w + x) * 3..((start + y) * w + x) * 3 + 3];
                for c in 0..3 {
                    acc[c] += p[c] as i32 * ky;
                }
            }
            for c in 0..3 {
                out[(yy * w + x) * 3 + c] = clip8(acc[c]);
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resize_keeps_constant_images_constant() {
        let img = RgbImage::from_pixel(37, 23, image::Rgb([77, 0, 255]));
        for (w, h) in [(64, 64), (5, 3), (100, 7)] {
            let out = resize_pillow(&img, w, h, Filter::Bicubic, PassOrder::Pillow);
            assert!(out.pixels().all(|p| p.0 == [77, 0, 255]), "{w}x{h}");
        }
    }

    #[test]
    fn bicubic_weights_sum_to_one_in_fixed_point() {
        for (i, o) in [(640, 224), (5, 224), (224, 224), (301, 17)] {
            let co = coefficients(i, o, Filter::Bicubic);
            for xx in 0..o {
                let s: i32 = co.weights[xx * co.ksize..xx * co.ksize + co.counts[xx]].iter().sum();
                assert!((s - (1 << PRECISION_BITS)).abs() <= co.counts[xx] as i32, "{i}->{o} at {xx}: {s}");
            }
        }
    }
}
