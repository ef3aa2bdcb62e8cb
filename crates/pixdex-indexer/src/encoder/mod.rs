//! The encoder boundary: what the pipeline and the query paths need from a model, and nothing
//! of how it computes it.
//!
//! An [`Encoder`] prepares model inputs from decoded pixels (a square input, with the dedup
//! views when asked, and a grid-sized input for region grids) and runs forward passes over
//! inputs of one size. [`PixioEncoder`] is the real one; [`crate::testing::FakeEncoder`] is a
//! cheap deterministic stand-in for tests. Callers do not call the forward passes one by one:
//! [`crate::inputs::ModelInputs::of`] builds an image's inputs, [`crate::batch`] groups them by
//! size and unpacks the outputs.

use image::{DynamicImage, RgbImage};
use pixdex_core::{CollectionConfig, DedupViews, PatchGrid, UnitVector};
use pixio::Tensor;

mod pixio_encoder;

pub use pixio_encoder::PixioEncoder;

/// Name and version of what a global vector is: the mean of the class tokens after the final
/// LayerNorm (transformers' `pooler_output`), L2-normalised.
pub const EMBEDDING_DEFINITION: &str = "pixio-pooler-l2/v1";

/// Long side, in pixels, of the aspect-preserving pass kept for region search: 32 patches of
/// ViT-S/14 (about 730 tokens for a 4:3 photo), 28 of a /16 model. Small objects need the
/// detail; a square 224 pass squashes and blurs them.
pub const REGION_LONG_SIDE: usize = 448;

/// What the encoder computes for one image.
#[derive(Debug, Clone)]
pub struct ImageEmbedding {
    /// The global vector.
    pub global: UnitVector,
    /// The full-resolution patch grid.
    pub patches: PatchGrid,
    /// The mirrored and grayscale views, when the input had them.
    pub views: Option<DedupViews>,
}

/// One forward pass's outputs for one input: its global vector and last-layer patch grid, or
/// why this input alone failed (a degenerate embedding).
pub type GlobalOutput = pixio::Result<(UnitVector, PatchGrid)>;

/// A model that turns pixels into vectors. Object-safe: the server holds an `Arc<dyn Encoder>`.
///
/// Each forward pass takes inputs of one size (`[3, H, W]` tensors, as the `prepare_*`
/// methods make them) and fails as a whole only when the pass itself fails.
pub trait Encoder: Send + Sync {
    /// The config a collection built with this encoder pins.
    fn collection_config(&self) -> CollectionConfig;

    /// Pixels per patch side.
    fn patch_size(&self) -> usize;

    /// The largest side, in pixels, the square input is resized to from the decoded image (the
    /// exact size, or the short side's target).
    fn square_side(&self) -> usize;

    /// Long side, in pixels, of an image's region input ([`REGION_LONG_SIDE`] for real models).
    fn region_long_side(&self) -> usize {
        REGION_LONG_SIDE
    }

    /// The square model input of one decoded (upright) image; with `views`, followed by its
    /// mirrored and its grayscale version, each made from the same resized pixels.
    fn prepare_square(&self, image: &DynamicImage, views: bool) -> pixio::Result<Vec<Tensor>>;

    /// `image` converted to the RGB the model's inputs are made from, or `None` when it is RGB8
    /// already (or the encoder has no conversion of its own): [`crate::inputs::ModelInputs::of`]
    /// converts once for all of an image's inputs.
    fn model_rgb(&self, _image: &DynamicImage) -> Option<image::RgbImage> {
        None
    }

    /// `[3, rows·P, cols·P]` model input: `image` resized to exactly `rows × cols` patches (no
    /// crop). Region inputs and region queries are made this way.
    fn prepare_grid(&self, image: &DynamicImage, rows: usize, cols: usize) -> pixio::Result<Tensor>;

    /// Forward pass over square inputs of one size: each input's global vector and patch grid.
    fn embed_global(&self, inputs: &[Tensor]) -> pixio::Result<Vec<GlobalOutput>>;

    /// Forward pass over grid inputs of one size: each input's region grid (the patch tokens
    /// of the block region search keeps).
    fn embed_region_grids(&self, inputs: &[Tensor]) -> pixio::Result<Vec<PatchGrid>>;
}

/// The three square views of one resized image: itself, mirrored, and grayscale (ITU-R 601
/// luma, as Pillow's `L`, in all three channels).
pub(crate) fn square_views(rgb: RgbImage) -> [RgbImage; 3] {
    let flipped = image::imageops::flip_horizontal(&rgb);
    let mut gray = rgb.clone();
    for px in gray.pixels_mut() {
        let [r, g, b] = px.0.map(u32::from);
        let l = ((r * 19595 + g * 38470 + b * 7471 + 0x8000) >> 16) as u8;
        px.0 = [l; 3];
    }
    [rgb, flipped, gray]
}

/// A global vector, or this input's own error when it is degenerate (zero or not finite).
pub(crate) fn unit_vector(v: Vec<f32>) -> pixio::Result<UnitVector> {
    UnitVector::new(v).map_err(|e| pixio::Error::Input(format!("degenerate embedding: {e}")))
}
