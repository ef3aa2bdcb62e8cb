//! Image preprocessing, an exact port of the Hugging Face `BitImageProcessor` (PIL backend) that
//! Pixio checkpoints name in `preprocessor_config.json` (pixio-spec §6).
//!
//! Steps: convert to RGB (alpha composited over white with Pillow's integer arithmetic), resize
//! with Pillow's separable, antialiased, fixed-point filter ([`crate::resample`], uint8 between
//! passes), optional centre crop, rescale by 1/255 and normalise per channel.
//!
//! EXIF orientation is **not** part of this step, and transformers does not apply it at all: a
//! phone photo stored sideways is embedded sideways there. pixdex applies the orientation when it
//! decodes a file (`pixdex_indexer::decode`), so a rotated photo and its upright copy agree.

use candle_core::{Device, Tensor};
use image::{DynamicImage, RgbImage};
use serde::Deserialize;
use std::path::Path;

use crate::config::{Config, Size2};
use crate::error::{Error, Result};
use crate::hub::ModelFiles;
use crate::resample::{Filter, PassOrder, resize_pillow};

/// The resize target of `size`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResizeTarget {
    /// Exactly this size; the aspect ratio is not kept (Pixio's choice).
    Exact(Size2),
    /// Short side to this many pixels, the long side scaled with it (truncated).
    ShortestEdge(usize),
}

/// The parsed `preprocessor_config.json`.
#[derive(Debug, Clone, PartialEq)]
pub struct PreprocessorConfig {
    /// Convert to RGB, compositing alpha over white.
    pub do_convert_rgb: bool,
    /// Resize at all.
    pub do_resize: bool,
    /// Resize target.
    pub size: ResizeTarget,
    /// Resampling filter.
    pub resample: Filter,
    /// Pass order of the resize (not part of the JSON file; Pillow's by default).
    pub pass_order: PassOrder,
    /// Centre-crop after resizing.
    pub do_center_crop: bool,
    /// Centre-crop size.
    pub crop_size: Size2,
    /// Multiply by `rescale_factor`.
    pub do_rescale: bool,
    /// Usually 1/255.
    pub rescale_factor: f64,
    /// Subtract `image_mean`, divide by `image_std`.
    pub do_normalize: bool,
    /// Per-channel mean (RGB).
    pub image_mean: [f32; 3],
    /// Per-channel standard deviation (RGB).
    pub image_std: [f32; 3],
}

#[derive(Deserialize)]
struct RawConfig {
    do_convert_rgb: Option<bool>,
    do_resize: Option<bool>,
    size: Option<serde_json::Value>,
    resample: Option<u32>,
    do_center_crop: Option<bool>,
    crop_size: Option<serde_json::Value>,
    do_rescale: Option<bool>,
    rescale_factor: Option<f64>,
    do_normalize: Option<bool>,
    image_mean: Option<MeanStd>,
    image_std: Option<MeanStd>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum MeanStd {
    One(f32),
    Three([f32; 3]),
}

impl MeanStd {
    fn rgb(self) -> [f32; 3] {
        match self {
            Self::One(v) => [v; 3],
            Self::Three(v) => v,
        }
    }
}

/// Largest resized image (64 megapixels) before cropping.
const MAX_RESIZED_PIXELS: usize = 64 << 20;

const IMAGENET_MEAN: [f32; 3] = [0.485, 0.456, 0.406];
const IMAGENET_STD: [f32; 3] = [0.229, 0.224, 0.225];
// BitImageProcessor's own defaults (OPENAI_CLIP_MEAN / STD), for keys a file leaves out.
const CLIP_MEAN: [f32; 3] = [0.481_454_66, 0.457_827_5, 0.408_210_73];
const CLIP_STD: [f32; 3] = [0.268_629_54, 0.261_302_6, 0.275_777_1];

fn parse_resize(v: &serde_json::Value) -> Result<ResizeTarget> {
    let get = |k: &str| v.get(k).and_then(serde_json::Value::as_u64).map(|n| n as usize);
    if let Some(n) = v.as_u64() {
        // A bare int means the shortest edge for Bit (`get_size_dict(default_to_square=False)`).
        return Ok(ResizeTarget::ShortestEdge(n as usize));
    }
    match (get("height"), get("width"), get("shortest_edge")) {
        (Some(height), Some(width), _) => Ok(ResizeTarget::Exact(Size2 { height, width })),
        (_, _, Some(n)) if v.get("longest_edge").is_none() => Ok(ResizeTarget::ShortestEdge(n)),
        _ => Err(Error::Preprocessor(format!("unsupported size {v}"))),
    }
}

fn parse_crop(v: &serde_json::Value) -> Result<Size2> {
    if let Some(n) = v.as_u64() {
        return Ok(Size2::square(n as usize));
    }
    serde_json::from_value::<Size2>(v.clone()).map_err(|e| Error::Preprocessor(format!("crop_size {v}: {e}")))
}

impl PreprocessorConfig {
    /// What Pixio's converter pushes to the Hub: resize to the model's `image_size` (aspect not
    /// kept), bicubic, no crop, ImageNet mean and std. Used when a checkpoint has no
    /// `preprocessor_config.json`.
    pub fn pixio_default(model: &Config) -> Self {
        Self {
            do_convert_rgb: true,
            do_resize: true,
            size: ResizeTarget::Exact(model.image_size),
            resample: Filter::Bicubic,
            pass_order: PassOrder::Pillow,
            do_center_crop: false,
            crop_size: model.image_size,
            do_rescale: true,
            rescale_factor: 1.0 / 255.0,
            do_normalize: true,
            image_mean: IMAGENET_MEAN,
            image_std: IMAGENET_STD,
        }
    }

    /// Parses `preprocessor_config.json` text; missing keys take `BitImageProcessor`'s defaults,
    /// keys it does not use are ignored.
    pub fn from_json(text: &str) -> Result<Self> {
        let raw: RawConfig = serde_json::from_str(text).map_err(|e| Error::Preprocessor(e.to_string()))?;
        let cfg = Self {
            do_convert_rgb: raw.do_convert_rgb.unwrap_or(true),
            do_resize: raw.do_resize.unwrap_or(true),
            size: raw.size.as_ref().map(parse_resize).transpose()?.unwrap_or(ResizeTarget::ShortestEdge(224)),
            resample: Filter::from_pil(raw.resample.unwrap_or(3))?,
            pass_order: PassOrder::Pillow,
            do_center_crop: raw.do_center_crop.unwrap_or(true),
            crop_size: raw.crop_size.as_ref().map(parse_crop).transpose()?.unwrap_or(Size2::square(224)),
            do_rescale: raw.do_rescale.unwrap_or(true),
            rescale_factor: raw.rescale_factor.unwrap_or(1.0 / 255.0),
            do_normalize: raw.do_normalize.unwrap_or(true),
            image_mean: raw.image_mean.map(MeanStd::rgb).unwrap_or(CLIP_MEAN),
            image_std: raw.image_std.map(MeanStd::rgb).unwrap_or(CLIP_STD),
        };
        if cfg.image_std.iter().any(|s| *s == 0.0 || !s.is_finite()) {
            return Err(Error::Preprocessor("image_std must be finite and non-zero".into()));
        }
        Ok(cfg)
    }
}

/// Turns decoded images into `pixel_values`.
#[derive(Debug, Clone, PartialEq)]
pub struct Preprocessor {
    config: PreprocessorConfig,
}

impl Preprocessor {
    /// From a parsed config.
    pub fn new(config: PreprocessorConfig) -> Self {
        Self { config }
    }

    /// The checkpoint's `preprocessor_config.json`, or Pixio's default for its `config.json`.
    pub fn load(files: &ModelFiles) -> Result<Self> {
        match &files.preprocessor {
            Some(path) => Self::from_file(path),
            None => Ok(Self::new(PreprocessorConfig::pixio_default(&Config::from_file(&files.config)?))),
        }
    }

    /// Reads a `preprocessor_config.json`.
    pub fn from_file(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|source| Error::Io { path: path.to_path_buf(), source })?;
        match PreprocessorConfig::from_json(&text) {
            Ok(cfg) => Ok(Self::new(cfg)),
            Err(Error::Preprocessor(msg)) => Err(Error::Preprocessor(format!("{}: {msg}", path.display()))),
            Err(e) => Err(e),
        }
    }

    /// The config in use.
    pub fn config(&self) -> &PreprocessorConfig {
        &self.config
    }

    /// The same processing at another exact input size (position embeddings interpolate), e.g.
    /// a higher resolution for small objects. Cropping is turned off.
    pub fn with_size(mut self, height: usize, width: usize) -> Self {
        self.config.size = ResizeTarget::Exact(Size2 { height, width });
        self.config.do_resize = true;
        self.config.do_center_crop = false;
        self
    }

    /// The same processing with another resize pass order.
    pub fn with_pass_order(mut self, order: PassOrder) -> Self {
        self.config.pass_order = order;
        self
    }

    /// The size `(height, width)` of the resized image, before cropping.
    fn resized_size(&self, height: usize, width: usize) -> (usize, usize) {
        if !self.config.do_resize {
            return (height, width);
        }
        match self.config.size {
            ResizeTarget::Exact(s) => (s.height, s.width),
            ResizeTarget::ShortestEdge(short) => {
                // transformers `get_resize_output_image_size(default_to_square=False)`.
                let (s, l) = if width <= height { (width, height) } else { (height, width) };
                let long = (short as f64 * l as f64 / s as f64) as usize;
                if width <= height { (long, short) } else { (short, long) }
            }
        }
    }

    /// The image as the model's RGB: RGB8 borrowed as it is (a 100-megapixel photo is 300 MB
    /// per copy), anything else converted (`do_convert_rgb`: transformers' [`to_rgb`]).
    pub fn model_rgb<'a>(&self, image: &'a DynamicImage) -> std::borrow::Cow<'a, RgbImage> {
        match image {
            DynamicImage::ImageRgb8(rgb) => std::borrow::Cow::Borrowed(rgb),
            _ if self.config.do_convert_rgb => std::borrow::Cow::Owned(to_rgb(image)),
            _ => std::borrow::Cow::Owned(image.to_rgb8()),
        }
    }

    /// The uint8 RGB image the normalisation sees: converted, resized and cropped.
    pub fn resize(&self, image: &DynamicImage) -> Result<RgbImage> {
        if image.width() == 0 || image.height() == 0 {
            return Err(Error::Input("image has zero width or height".into()));
        }
        let rgb = self.model_rgb(image);
        let (h, w) = self.resized_size(rgb.height() as usize, rgb.width() as usize);
        // A shortest-edge resize of an extreme panorama would allocate gigabytes.
        if h == 0 || w == 0 || h.saturating_mul(w) > MAX_RESIZED_PIXELS {
            return Err(Error::Input(format!("image {}x{} resizes to {w}x{h}", image.width(), image.height())));
        }
        let resized = if (h, w) == (rgb.height() as usize, rgb.width() as usize) {
            rgb.into_owned()
        } else {
            resize_pillow(&rgb, w, h, self.config.resample, self.config.pass_order)
        };
        Ok(if self.config.do_center_crop { center_crop(&resized, self.config.crop_size) } else { resized })
    }

    /// `[3, H, W]` f32 pixel values for one image.
    pub fn preprocess(&self, image: &DynamicImage) -> Result<Tensor> {
        let rgb = self.resize(image)?;
        let (h, w) = (rgb.height() as usize, rgb.width() as usize);
        Ok(Tensor::from_vec(self.normalize(&rgb), (3, h, w), &Device::Cpu)?)
    }

    /// `[B, 3, H, W]` for images that preprocess to the same size.
    pub fn preprocess_batch(&self, images: &[DynamicImage]) -> Result<Tensor> {
        let items = images.iter().map(|i| self.preprocess(i)).collect::<Result<Vec<_>>>()?;
        if let Some(first) = items.first()
            && let Some(odd) = items.iter().find(|t| t.dims() != first.dims())
        {
            return Err(Error::Input(format!("batch mixes input sizes {:?} and {:?}", first.dims(), odd.dims())));
        }
        Ok(Tensor::stack(&items, 0)?)
    }

    /// Rescale and normalise to CHW f32, in the PIL backend's arithmetic: `u8 × factor` in f64,
    /// cast to f32, then `(x − mean) / std` in f32.
    pub fn normalize(&self, rgb: &RgbImage) -> Vec<f32> {
        let (w, h) = (rgb.width() as usize, rgb.height() as usize);
        let cfg = &self.config;
        let mut out = vec![0f32; 3 * h * w];
        for (i, px) in rgb.pixels().enumerate() {
            for c in 0..3 {
                let mut v = if cfg.do_rescale { (px.0[c] as f64 * cfg.rescale_factor) as f32 } else { px.0[c] as f32 };
                if cfg.do_normalize {
                    v = (v - cfg.image_mean[c]) / cfg.image_std[c];
                }
                out[c * h * w + i] = v;
            }
        }
        out
    }
}

/// transformers' `convert_to_rgb`: images with alpha are composited over opaque white with
/// Pillow's `alpha_composite` integer arithmetic; greyscale replicates its channel.
pub fn to_rgb(image: &DynamicImage) -> RgbImage {
    if !image.color().has_alpha() {
        return image.to_rgb8();
    }
    let rgba = image.to_rgba8();
    let mut out = RgbImage::new(rgba.width(), rgba.height());
    for (dst, src) in out.pixels_mut().zip(rgba.pixels()) {
        let a = src.0[3] as u32;
        for c in 0..3 {
            dst.0[c] = if a == 0 {
                255
            } else {
                // AlphaComposite.c with dst = (255,255,255,255): coef1 = a·128, coef2 = (255−a)·128,
                // SHIFTFORDIV255(tmp + (0x80 << 7)) >> 7.
                let tmp = src.0[c] as u32 * (a << 7) + 255 * ((255 - a) << 7) + (0x80 << 7);
                ((((tmp >> 8) + tmp) >> 8) >> 7) as u8
            };
        }
    }
    out
}

/// transformers' `center_crop`: offsets `(size − crop) // 2` (floor), zero padding where the crop
/// is larger than the image.
pub fn center_crop(img: &RgbImage, crop: Size2) -> RgbImage {
    let (h, w) = (img.height() as i64, img.width() as i64);
    let (ch, cw) = (crop.height as i64, crop.width as i64);
    let top = (h - ch).div_euclid(2);
    let left = (w - cw).div_euclid(2);
    RgbImage::from_fn(cw as u32, ch as u32, |x, y| {
        let (sy, sx) = (top + y as i64, left + x as i64);
        if (0..h).contains(&sy) && (0..w).contains(&sx) {
            *img.get_pixel(sx as u32, sy as u32)
        } else {
            image::Rgb([0, 0, 0])
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn alpha_over_white_matches_pillow_arithmetic() {
        let img = image::RgbaImage::from_raw(4, 1, vec![10, 20, 30, 0, 10, 20, 30, 255, 200, 100, 0, 128, 0, 0, 0, 1])
            .unwrap();
        let rgb = to_rgb(&DynamicImage::ImageRgba8(img));
        // a = 0 → white; a = 255 → unchanged; others ≈ round((c·a + 255·(255 − a)) / 255).
        assert_eq!(rgb.get_pixel(0, 0).0, [255, 255, 255]);
        assert_eq!(rgb.get_pixel(1, 0).0, [10, 20, 30]);
        let expect = |c: f64, a: f64| ((c * a + 255.0 * (255.0 - a)) / 255.0).round() as u8;
        assert_eq!(rgb.get_pixel(2, 0).0, [expect(200.0, 128.0), expect(100.0, 128.0), expect(0.0, 128.0)]);
        assert_eq!(rgb.get_pixel(3, 0).0, [254, 254, 254]);
    }

    #[test]
    fn shortest_edge_and_crop_sizes() {
        let cfg = PreprocessorConfig::from_json(
            r#"{"size": {"shortest_edge": 64}, "crop_size": {"height": 56, "width": 56}}"#,
        )
        .unwrap();
        let p = Preprocessor::new(cfg);
        assert_eq!(p.resized_size(100, 300), (64, 192));
        assert_eq!(p.resized_size(301, 100), (192, 64));
        let out = p.resize(&DynamicImage::ImageRgb8(RgbImage::new(300, 100))).unwrap();
        assert_eq!((out.width(), out.height()), (56, 56));
        // Bit defaults where keys are missing.
        assert_eq!(p.config().image_mean, CLIP_MEAN);
        assert!(p.config().do_center_crop);
    }

    #[test]
    fn center_crop_pads_with_black_when_too_small() {
        let img = RgbImage::from_pixel(2, 2, image::Rgb([9, 9, 9]));
        let out = center_crop(&img, Size2 { height: 4, width: 3 });
        // offsets (2-4)//2 = -1 and (2-3)//2 = -1: the image lands at rows 1..3, cols 1..3.
        assert_eq!(out.get_pixel(0, 0).0, [0, 0, 0]);
        assert_eq!(out.get_pixel(1, 1).0, [9, 9, 9]);
        assert_eq!(out.get_pixel(2, 2).0, [9, 9, 9]);
        assert_eq!(out.get_pixel(0, 3).0, [0, 0, 0]);
    }

    #[test]
    fn rejects_bad_configs() {
        assert!(PreprocessorConfig::from_json(r#"{"resample": 0}"#).is_err());
        assert!(PreprocessorConfig::from_json(r#"{"image_std": [0, 1, 1]}"#).is_err());
        assert!(PreprocessorConfig::from_json(r#"{"size": {"longest_edge": 5}}"#).is_err());
    }
}
