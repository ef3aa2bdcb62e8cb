//! The one way from a decoded image to its model inputs, for indexing and for queries alike:
//! the square input (with the dedup views when asked) and the aspect-kept region input with the
//! frame its grid covers.

use pixdex_core::{RegionFrame, region_grid_shape};
use pixio::Tensor;

use crate::decode::DecodedImage;
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
        let (w, h) = (decoded.image.width(), decoded.image.height());
        let (rows, cols) = region_grid_shape(w, h, encoder.patch_size(), encoder.region_long_side());
        let frame = RegionFrame { width: w, height: h, orientation: decoded.orientation.to_exif() };
        Ok(Self { input: encoder.prepare_grid(&decoded.image, rows, cols)?, frame })
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
        let square = encoder.prepare_square(&decoded.image, kinds.views)?;
        let region = match kinds.region {
            true => Some(RegionInput::of(encoder, decoded)?),
            false => None,
        };
        Ok(Self { square, region })
    }
}
