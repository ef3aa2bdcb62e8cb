//! The one way from a decoded image to its model inputs, for indexing and for queries alike:
//! the square input (with the dedup views when asked) and the aspect-kept region input with the
//! frame its grid covers.

use image::DynamicImage;
use pixdex_core::{RegionFrame, region_grid_shape};
use pixio::Tensor;

use crate::decode::{DecodedImage, MinSize};
use crate::encoder::Encoder;

/// Which inputs to make besides the square one.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct InputKinds {
    /// The mirrored and grayscale square views (duplicate detection).
    pub views: bool,
    /// The aspect-kept region input (region search).
    pub region: bool,
}

impl InputKinds {
    /// The decoded size these inputs need, four times their own so that the resize filters see
    /// nearly what a full decode gives (a larger JPEG is decoded at a reduced DCT scale:
    /// [`crate::decode::decode_bytes_at_least`]). Measured on 4000×2250 photos (`benches/
    /// index_throughput --photos`): cosine to a full decode ≥ 0.99998 for the global vector and
    /// ≥ 0.99994 for the region grid's tokens at four times; twice gave 0.9998 and 0.9995.
    pub fn min_decoded_size(self, encoder: &dyn Encoder) -> MinSize {
        let square = encoder.square_side() as u32;
        let region = if self.region { encoder.region_long_side() as u32 } else { 0 };
        MinSize { long: 4 * square.max(region), short: 4 * square }
    }

    /// A similarity query: the square input only.
    pub const QUERY: Self = Self { views: false, region: false };
    /// An image to store, as the index pipeline stores images: views and region grid.
    pub const STORED: Self = Self { views: true, region: true };
}

/// An image's region input: the upright image at [`Encoder::region_long_side`], aspect kept.
#[derive(Debug, Clone)]
pub struct RegionInput {
    /// `[3, rows·P, cols·P]`.
    pub input: Tensor,
    /// The upright image the grid covers, and its EXIF orientation.
    pub frame: RegionFrame,
}

impl RegionInput {
    /// The region input of one decoded image.
    pub fn of(encoder: &dyn Encoder, decoded: &DecodedImage) -> pixio::Result<Self> {
        Self::from_pixels(encoder, decoded, &decoded.image)
    }

    /// [`Self::of`] with `pixels` standing for `decoded.image` (its RGB conversion).
    fn from_pixels(encoder: &dyn Encoder, decoded: &DecodedImage, pixels: &DynamicImage) -> pixio::Result<Self> {
        // The full-resolution size: the grid's shape and the boxes it maps to do not depend on
        // the scale the pixels were decoded at.
        let (w, h) = decoded.full_size;
        let (rows, cols) = region_grid_shape(w, h, encoder.patch_size(), encoder.region_long_side());
        let frame = RegionFrame { width: w, height: h, orientation: decoded.orientation.to_exif() };
        Ok(Self { input: encoder.prepare_grid(pixels, rows, cols)?, frame })
    }
}

/// Everything the encoder needs for one image.
#[derive(Debug, Clone)]
pub struct ModelInputs {
    /// The square input, followed by the mirrored and grayscale views when asked.
    pub square: Vec<Tensor>,
    /// The region input, when asked.
    pub region: Option<RegionInput>,
}

impl ModelInputs {
    /// The inputs `kinds` asks for, from one decoded (upright) image.
    pub fn of(encoder: &dyn Encoder, decoded: &DecodedImage, kinds: InputKinds) -> pixio::Result<Self> {
        // One RGB conversion per image for all of its inputs (a 100-megapixel RGBA photo is
        // 400 MB per copy); RGB8 pixels, most photos, are used as they are.
        let converted =
            if kinds.region { encoder.model_rgb(&decoded.image).map(DynamicImage::ImageRgb8) } else { None };
        let pixels = converted.as_ref().unwrap_or(&decoded.image);
        let square = encoder.prepare_square(pixels, kinds.views)?;
        let region = match kinds.region {
            true => Some(RegionInput::from_pixels(encoder, decoded, pixels)?),
            false => None,
        };
        Ok(Self { square, region })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::batch::embed_images;
    use crate::decode::{DecodeLimits, decode_path};
    use crate::encoder::PixioEncoder;
    use std::path::Path;

    /// The square input made with the dedup views starts with exactly the plain query input, so
    /// an image indexed with views and the same image as a query get the same global vector.
    #[test]
    fn the_views_input_starts_with_the_query_input_and_embeds_the_same() {
        let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/pixio");
        let source = pixio::WeightSource::Dir(fixtures.join("models/a-hub"));
        let encoder = PixioEncoder::load(&source, &pixio::Device::Cpu, pixio::DType::F32).unwrap();
        let decoded = decode_path(&fixtures.join("images/exif_rot6.jpg"), DecodeLimits::default()).unwrap();
        let query = ModelInputs::of(&encoder, &decoded, InputKinds::QUERY).unwrap();
        let stored = ModelInputs::of(&encoder, &decoded, InputKinds::STORED).unwrap();
        assert_eq!((query.square.len(), stored.square.len()), (1, 3));
        assert!(query.region.is_none());
        let diff = (&query.square[0] - &stored.square[0]).unwrap().abs().unwrap().max_all().unwrap();
        assert_eq!(diff.to_scalar::<f32>().unwrap(), 0.0);
        let region = stored.region.unwrap();
        assert_eq!((region.frame.width, region.frame.height), (24, 40), "the upright image's frame");
        let embedded = embed_images(&encoder, &[&query.square, &stored.square]).unwrap();
        let (q, s) = (embedded[0].as_ref().unwrap(), embedded[1].as_ref().unwrap());
        let cos = q.global.dot(s.global.as_slice());
        assert!(cos > 1.0 - 1e-6, "cosine {cos}");
        assert!(q.views.is_none() && s.views.is_some());
    }

    /// Converting an RGBA or greyscale image once for all its inputs gives exactly the inputs
    /// each would have made from the decoded pixels itself.
    #[test]
    fn one_conversion_for_all_inputs_changes_no_input() {
        let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/pixio");
        let source = pixio::WeightSource::Dir(fixtures.join("models/a-hub"));
        let encoder = PixioEncoder::load(&source, &pixio::Device::Cpu, pixio::DType::F32).unwrap();
        for name in ["rgba.png", "gray.png", "palette.png"] {
            let decoded = decode_path(&fixtures.join("images").join(name), DecodeLimits::default()).unwrap();
            assert!(!matches!(decoded.image, DynamicImage::ImageRgb8(_)), "{name} should need a conversion");
            let shared = ModelInputs::of(&encoder, &decoded, InputKinds::STORED).unwrap();
            let square = encoder.prepare_square(&decoded.image, true).unwrap();
            let (w, h) = decoded.full_size;
            let (rows, cols) = region_grid_shape(w, h, encoder.patch_size(), encoder.region_long_side());
            let grid = encoder.prepare_grid(&decoded.image, rows, cols).unwrap();
            let same = |a: &Tensor, b: &Tensor| {
                a.dims() == b.dims()
                    && (a - b).unwrap().abs().unwrap().max_all().unwrap().to_scalar::<f32>().unwrap() == 0.0
            };
            assert!(shared.square.iter().zip(&square).all(|(a, b)| same(a, b)), "{name}: square inputs differ");
            assert!(same(&shared.region.unwrap().input, &grid), "{name}: region inputs differ");
        }
    }
}
