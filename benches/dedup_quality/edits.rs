//! The synthetic edits of the benchmark's families: each original gets `EDITS_PER_ORIGINAL` of
//! these, drawn from its seed's RNG, and is saved as a JPEG.

use image::codecs::jpeg::JpegEncoder;
use image::imageops::FilterType;
use image::{DynamicImage, Rgb, RgbImage};
use rand::Rng;
use rand::rngs::StdRng;
use std::fs;
use std::path::Path;

/// One kind of synthetic edit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Edit {
    Resize50,
    Jpeg40,
    Crop85,
    BrightContrast,
    Rotate5,
    HFlip,
    TextStrip,
    Grayscale,
}

/// Every edit, in the order the RNG samples from.
pub const EDITS: [Edit; 8] = [
    Edit::Resize50,
    Edit::Jpeg40,
    Edit::Crop85,
    Edit::BrightContrast,
    Edit::Rotate5,
    Edit::HFlip,
    Edit::TextStrip,
    Edit::Grayscale,
];

impl Edit {
    pub fn name(self) -> &'static str {
        match self {
            Edit::Resize50 => "resize50",
            Edit::Jpeg40 => "jpeg40",
            Edit::Crop85 => "crop85",
            Edit::BrightContrast => "bright_contrast",
            Edit::Rotate5 => "rotate5",
            Edit::HFlip => "hflip",
            Edit::TextStrip => "text_strip",
            Edit::Grayscale => "grayscale",
        }
    }
}

fn uniform(rng: &mut StdRng, lo: f64, hi: f64) -> f64 {
    rng.random_range(lo..hi)
}

fn bilinear(src: &RgbImage, x: f64, y: f64) -> Rgb<u8> {
    let (w, h) = (src.width() as i64, src.height() as i64);
    let x = x.clamp(0.0, (w - 1) as f64);
    let y = y.clamp(0.0, (h - 1) as f64);
    let (x0, y0) = (x.floor() as i64, y.floor() as i64);
    let (x1, y1) = ((x0 + 1).min(w - 1), (y0 + 1).min(h - 1));
    let (fx, fy) = (x - x0 as f64, y - y0 as f64);
    let p = |x: i64, y: i64| src.get_pixel(x as u32, y as u32).0;
    let (a, b, c, d) = (p(x0, y0), p(x1, y0), p(x0, y1), p(x1, y1));
    Rgb(std::array::from_fn(|k| {
        let top = a[k] as f64 * (1.0 - fx) + b[k] as f64 * fx;
        let bottom = c[k] as f64 * (1.0 - fx) + d[k] as f64 * fx;
        (top * (1.0 - fy) + bottom * fy).round().clamp(0.0, 255.0) as u8
    }))
}

/// Rotation by `degrees` (inverse mapping, bilinear), cropped to the largest centred rectangle of
/// the same aspect ratio that holds no border.
fn rotate_autocrop(src: &RgbImage, degrees: f64) -> RgbImage {
    let (w, h) = (src.width() as f64, src.height() as f64);
    let (sin, cos) = degrees.to_radians().sin_cos();
    let s = (w / (w * cos + h * sin.abs())).min(h / (w * sin.abs() + h * cos));
    let (ow, oh) = (((w * s).floor() as u32).max(1), ((h * s).floor() as u32).max(1));
    RgbImage::from_fn(ow, oh, |x, y| {
        let (dx, dy) = (x as f64 + 0.5 - ow as f64 / 2.0, y as f64 + 0.5 - oh as f64 / 2.0);
        let sx = cos * dx + sin * dy + w / 2.0 - 0.5;
        let sy = -sin * dx + cos * dy + h / 2.0 - 0.5;
        bilinear(src, sx, sy)
    })
}

/// A dark bar across the top or bottom with light "glyph" blocks, like a caption or watermark.
fn text_strip(src: &RgbImage, rng: &mut StdRng) -> RgbImage {
    let mut img = src.clone();
    let (w, h) = (img.width(), img.height());
    let bar = ((h as f64 * uniform(rng, 0.10, 0.16)).round() as u32).clamp(6, h);
    let top = if rng.random_bool(0.5) { 0 } else { h - bar };
    for y in top..top + bar {
        for x in 0..w {
            let p = img.get_pixel_mut(x, y);
            for c in &mut p.0 {
                *c = (*c as f64 * 0.3 + 20.0 * 0.7) as u8;
            }
        }
    }
    let glyph_h = (bar as f64 * 0.6).round().max(2.0) as u32;
    let y0 = top + (bar - glyph_h) / 2;
    let end = (w as f64 * uniform(rng, 0.5, 0.92)) as u32;
    let mut x = (bar / 2).max(2);
    let ink = Rgb([235, 235, 235]);
    while x < end {
        let gw = ((glyph_h as f64 * uniform(rng, 0.3, 0.7)).round() as u32).max(2);
        let stroke = (gw / 3).max(1);
        // Solid, hollow or short (lower-case-like) letters.
        let shape = rng.random_range(0..3);
        for yy in y0..(y0 + glyph_h).min(h) {
            for xx in x..(x + gw).min(w) {
                let (dx, dy) = (xx - x, yy - y0);
                let ink_here = match shape {
                    0 => true,
                    1 => dx < stroke || dx >= gw - stroke || dy < stroke || dy >= glyph_h - stroke,
                    _ => dy >= glyph_h * 2 / 5,
                };
                if ink_here {
                    img.put_pixel(xx, yy, ink);
                }
            }
        }
        x += gw + (glyph_h / 4).max(1) + if rng.random_bool(0.18) { glyph_h } else { 0 };
    }
    img
}

/// The edited image and its JPEG quality.
pub fn apply(edit: Edit, src: &RgbImage, rng: &mut StdRng) -> (DynamicImage, u8) {
    let (w, h) = (src.width(), src.height());
    let rgb = |i: RgbImage| DynamicImage::ImageRgb8(i);
    match edit {
        Edit::Resize50 => {
            (rgb(image::imageops::resize(src, (w / 2).max(1), (h / 2).max(1), FilterType::CatmullRom)), 90)
        }
        Edit::Jpeg40 => (rgb(src.clone()), 40),
        Edit::Crop85 => {
            let (cw, ch) = (((w as f64) * 0.85).round() as u32, ((h as f64) * 0.85).round() as u32);
            let (x, y) = if rng.random_bool(0.5) {
                ((w - cw) / 2, (h - ch) / 2)
            } else {
                (rng.random_range(0..=w - cw), rng.random_range(0..=h - ch))
            };
            (rgb(image::imageops::crop_imm(src, x, y, cw, ch).to_image()), 90)
        }
        Edit::BrightContrast => {
            let b = uniform(rng, 15.0, 40.0) * if rng.random_bool(0.5) { 1.0 } else { -1.0 };
            let c = if rng.random_bool(0.5) { uniform(rng, 0.7, 0.85) } else { uniform(rng, 1.15, 1.35) };
            let mut out = src.clone();
            for p in out.pixels_mut() {
                for v in &mut p.0 {
                    *v = ((*v as f64 - 128.0) * c + 128.0 + b).round().clamp(0.0, 255.0) as u8;
                }
            }
            (rgb(out), 90)
        }
        Edit::Rotate5 => {
            let deg = uniform(rng, 4.0, 6.0) * if rng.random_bool(0.5) { 1.0 } else { -1.0 };
            (rgb(rotate_autocrop(src, deg)), 90)
        }
        Edit::HFlip => (rgb(image::imageops::flip_horizontal(src)), 90),
        Edit::TextStrip => (rgb(text_strip(src, rng)), 90),
        Edit::Grayscale => (DynamicImage::ImageLuma8(image::imageops::grayscale(src)), 90),
    }
}

pub fn save_jpeg(img: &DynamicImage, path: &Path, quality: u8) -> anyhow::Result<()> {
    let file = std::io::BufWriter::new(fs::File::create(path)?);
    img.write_with_encoder(JpegEncoder::new_with_quality(file, quality))?;
    Ok(())
}
