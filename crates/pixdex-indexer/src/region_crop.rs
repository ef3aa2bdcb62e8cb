//! Cutting and embedding a region query, as the server, the CLI and the benchmarks make it: cut
//! the query region out of a decoded image (a box given in the file's stored pixels), and embed
//! it at the grid sizes region search asks for. (Storing and searching region grids is
//! `pixdex_core`'s.)

use image::DynamicImage;
use pixdex_core::{Collection, PatchGrid, PixelBox, RegionFrame, RegionHit, RegionQuery};
use pixio::Tensor;

use crate::batch::embed_region_grids;
use crate::decode::DecodedImage;
use crate::encoder::Encoder;
use crate::error::{Error, Result};

/// The query region, upright.
#[derive(Debug, Clone)]
pub struct RegionCrop {
    /// The region's pixels, upright.
    pub image: DynamicImage,
    /// The region in the source image's upright pixels (whole pixels).
    pub upright_box: PixelBox,
}

impl RegionCrop {
    /// The whole image, or the part of it inside `stored_box` (in the file's stored pixels,
    /// before EXIF orientation, as region search reports boxes). A box outside the image or
    /// without area is [`pixdex_core::Error::InvalidQuery`].
    pub fn new(decoded: &DecodedImage, stored_box: Option<PixelBox>) -> pixdex_core::Result<Self> {
        let (w, h) = (decoded.image.width(), decoded.image.height());
        let frame = RegionFrame { width: w, height: h, orientation: decoded.orientation.to_exif() };
        let Some(b) = stored_box else {
            let upright_box = PixelBox { x: 0.0, y: 0.0, w: w as f32, h: h as f32 };
            return Ok(Self { image: decoded.image.clone(), upright_box });
        };
        frame.check_box(b)?;
        let u = frame.box_to_upright(b);
        // Whole pixels covering the box.
        let x0 = (u.x.floor().max(0.0) as u32).min(w - 1);
        let y0 = (u.y.floor().max(0.0) as u32).min(h - 1);
        let x1 = ((u.x + u.w).ceil() as u32).clamp(x0 + 1, w);
        let y1 = ((u.y + u.h).ceil() as u32).clamp(y0 + 1, h);
        let image = decoded.image.crop_imm(x0, y0, x1 - x0, y1 - y0);
        let upright_box = PixelBox { x: x0 as f32, y: y0 as f32, w: (x1 - x0) as f32, h: (y1 - y0) as f32 };
        Ok(Self { image, upright_box })
    }

    /// Width and height in pixels.
    pub fn size(&self) -> (u32, u32) {
        (self.image.width(), self.image.height())
    }

    /// The model input of the region at `rows × cols` patches.
    pub fn input(&self, encoder: &dyn Encoder, rows: usize, cols: usize) -> pixio::Result<Tensor> {
        encoder.prepare_grid(&self.image, rows, cols)
    }

    /// The region's full-precision patch grid at `rows × cols` patches (one forward pass).
    pub fn embed(&self, encoder: &dyn Encoder, rows: usize, cols: usize) -> Result<PatchGrid> {
        embed_region_grids(encoder, &[self.input(encoder, rows, cols)?])?
            .pop()
            .ok_or_else(|| Error::Encoder(pixio::Error::Input("no output".into())))
    }
}

/// Runs a region query in this process, embedding the crop with `encoder` (offline queries and
/// benchmarks; the server goes through its batcher instead).
pub fn search_region(
    collection: &Collection,
    encoder: &dyn Encoder,
    crop: &RegionCrop,
    query: &RegionQuery,
) -> Result<Vec<RegionHit>> {
    collection.search_region(crop.size(), &mut |rows, cols| crop.embed(encoder, rows, cols), query)
}
