//! Large JPEGs decoded at 1/2, 1/4 or 1/8 scale in the DCT (`jpeg-decoder`'s reduced IDCT):
//! the index needs at most about 900 pixels a side, a camera photo has 4000, and a full decode
//! followed by a resize costs several times the model's forward pass on a small CPU.

use image::{DynamicImage, GrayImage, RgbImage};
use jpeg_decoder::{Decoder, PixelFormat};

use super::{DecodeLimits, DecodedImage, MinSize};

/// The JPEG decoded at the smallest DCT scale that still covers `min`, or `None` when it would
/// not be smaller than a full decode, is not a baseline 8-bit grey or RGB JPEG, or fails: the
/// caller then decodes it fully (whose errors are the ones reported).
pub(super) fn decode(bytes: &[u8], limits: DecodeLimits, min: MinSize) -> Option<DecodedImage> {
    if !bytes.starts_with(&[0xFF, 0xD8, 0xFF]) || min.long == 0 {
        return None;
    }
    let mut decoder = Decoder::new(bytes);
    decoder.read_info().ok()?;
    let info = decoder.info()?;
    let (w, h) = (u32::from(info.width), u32::from(info.height));
    if w == 0
        || h == 0
        || w.max(h) > limits.max_side_px
        || u64::from(w) * u64::from(h) > limits.max_pixels
        || !matches!(info.pixel_format, PixelFormat::L8 | PixelFormat::RGB24)
    {
        return None;
    }
    // The smallest scale whose long and short sides both cover `min` (orientation does not
    // change which side is the long one).
    let (long, short) = (w.max(h) as f64, w.min(h) as f64);
    let s = (min.long as f64 / long).max(min.short as f64 / short);
    if s > 0.5 {
        return None;
    }
    let request = |side: u32| (side as f64 * s).ceil().min(u16::MAX as f64) as u16;
    let (sw, sh) = decoder.scale(request(w), request(h)).ok()?;
    let (sw, sh) = (u32::from(sw), u32::from(sh));
    let channels: u64 = if info.pixel_format == PixelFormat::L8 { 1 } else { 3 };
    if u64::from(sw) * u64::from(sh) * channels > limits.max_alloc_bytes {
        return None;
    }
    let orientation = decoder
        .exif_data()
        .and_then(image::metadata::Orientation::from_exif_chunk)
        .unwrap_or(image::metadata::Orientation::NoTransforms);
    let pixels = decoder.decode().ok()?;
    let mut image = match info.pixel_format {
        PixelFormat::L8 => DynamicImage::ImageLuma8(GrayImage::from_raw(sw, sh, pixels)?),
        _ => DynamicImage::ImageRgb8(RgbImage::from_raw(sw, sh, pixels)?),
    };
    image.apply_orientation(orientation);
    let full_size = match image.width() == sw {
        true => (w, h),
        false => (h, w),
    };
    Some(DecodedImage { image, orientation, full_size })
}
