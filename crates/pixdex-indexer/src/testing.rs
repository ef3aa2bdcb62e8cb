//! A fake [`Encoder`] for tests: tiny inputs and cheap outputs computed from the pixels, so
//! that identical images give identical vectors and different images different ones, with no
//! model to load.

use image::{DynamicImage, RgbImage, imageops::FilterType};
use pixdex_core::{CollectionConfig, PatchCodec, PatchGrid};
use pixio::{Device, Tensor};
use std::sync::atomic::{AtomicUsize, Ordering};

use crate::encoder::{Encoder, GlobalOutput, square_views, unit_vector};

/// Square input side, in pixels.
const SIDE: usize = 8;
/// Pixels per patch side.
const PATCH: usize = 2;
/// Vector dimension: 12 pixel values per patch (or quadrant means) and 4 constants.
pub const FAKE_DIM: usize = 16;

/// Each patch token holds its 2×2 pixels' RGB values, its position and a constant; the global
/// vector holds the mean colour of each image quadrant and a constant (never zero).
#[derive(Debug, Default)]
pub struct FakeEncoder {
    passes: AtomicUsize,
    region_inputs: AtomicUsize,
    /// Passes still to panic (a bug in a forward pass, for the tests that contain it).
    panics: AtomicUsize,
}

impl FakeEncoder {
    /// The next `n` forward passes panic.
    pub fn panic_in_next_passes(&self, n: usize) {
        self.panics.store(n, Ordering::SeqCst);
    }

    fn forward_pass(&self) {
        self.passes.fetch_add(1, Ordering::Relaxed);
        if self.panics.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1)).is_ok() {
            panic!("FakeEncoder: a forward pass panicked (as asked)");
        }
    }

    /// Forward passes run so far (global and region).
    pub fn forward_passes(&self) -> usize {
        self.passes.load(Ordering::Relaxed)
    }

    /// Region inputs embedded so far, over all region passes.
    pub fn region_inputs_embedded(&self) -> usize {
        self.region_inputs.load(Ordering::Relaxed)
    }
}

/// `[3, H, W]` in `0..=1`.
fn to_tensor(rgb: &RgbImage) -> pixio::Result<Tensor> {
    let (w, h) = (rgb.width() as usize, rgb.height() as usize);
    let mut values = vec![0f32; 3 * h * w];
    for (x, y, px) in rgb.enumerate_pixels() {
        for c in 0..3 {
            values[c * h * w + y as usize * w + x as usize] = px.0[c] as f32 / 255.0;
        }
    }
    Ok(Tensor::from_vec(values, (3, h, w), &Device::Cpu)?)
}

/// The patch grid of one `[3, H, W]` input.
fn grid(input: &Tensor) -> pixio::Result<PatchGrid> {
    let px = input.to_vec3::<f32>()?; // [c][y][x]
    let (rows, cols) = (px[0].len() / PATCH, px[0][0].len() / PATCH);
    let mut values = Vec::with_capacity(rows * cols * FAKE_DIM);
    for r in 0..rows {
        for c in 0..cols {
            for ch in &px {
                for dy in 0..PATCH {
                    values.extend((0..PATCH).map(|dx| ch[r * PATCH + dy][c * PATCH + dx]));
                }
            }
            values.extend([1.0, r as f32 / rows as f32, c as f32 / cols as f32, 0.5]);
        }
    }
    PatchGrid::new(rows, cols, FAKE_DIM, values).map_err(|e| pixio::Error::Input(format!("fake grid: {e}")))
}

/// Mean colour of each quadrant, then constants.
fn global(input: &Tensor) -> pixio::Result<Vec<f32>> {
    let px = input.to_vec3::<f32>()?;
    let (h, w) = (px[0].len(), px[0][0].len());
    let mut v = Vec::with_capacity(FAKE_DIM);
    for (y0, x0) in [(0, 0), (0, w / 2), (h / 2, 0), (h / 2, w / 2)] {
        for ch in &px {
            let cells: Vec<f32> =
                ch[y0..y0 + h / 2].iter().flat_map(|row| row[x0..x0 + w / 2].iter().copied()).collect();
            v.push(cells.iter().sum::<f32>() / cells.len().max(1) as f32);
        }
    }
    v.extend([1.0, 0.0, 0.0, 0.0]);
    Ok(v)
}

impl Encoder for FakeEncoder {
    fn collection_config(&self) -> CollectionConfig {
        CollectionConfig {
            model: "fake".into(),
            model_fingerprint: "fake-encoder-v1".into(),
            embedding: "fake-quadrant-means/v1".into(),
            dim: FAKE_DIM,
            patch_codec: PatchCodec::quantised(),
        }
    }

    fn patch_size(&self) -> usize {
        PATCH
    }

    fn square_side(&self) -> usize {
        SIDE
    }

    fn region_long_side(&self) -> usize {
        4 * PATCH
    }

    fn prepare_square(&self, image: &DynamicImage, views: bool) -> pixio::Result<Vec<Tensor>> {
        let rgb = image.resize_exact(SIDE as u32, SIDE as u32, FilterType::Triangle).to_rgb8();
        match views {
            true => square_views(rgb).iter().map(to_tensor).collect(),
            false => Ok(vec![to_tensor(&rgb)?]),
        }
    }

    fn prepare_grid(&self, image: &DynamicImage, rows: usize, cols: usize) -> pixio::Result<Tensor> {
        if rows == 0 || cols == 0 {
            return Err(pixio::Error::Input("empty grid".into()));
        }
        let (w, h) = ((cols * PATCH) as u32, (rows * PATCH) as u32);
        to_tensor(&image.resize_exact(w, h, FilterType::Triangle).to_rgb8())
    }

    fn embed_global(&self, inputs: &[Tensor]) -> pixio::Result<Vec<GlobalOutput>> {
        self.forward_pass();
        inputs.iter().map(|t| Ok(Ok((unit_vector(global(t)?)?, grid(t)?)))).collect()
    }

    fn embed_region_grids(&self, inputs: &[Tensor]) -> pixio::Result<Vec<PatchGrid>> {
        self.forward_pass();
        self.region_inputs.fetch_add(inputs.len(), Ordering::Relaxed);
        inputs.iter().map(grid).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::batch::embed_images;

    fn solid(rgb: [u8; 3]) -> DynamicImage {
        DynamicImage::ImageRgb8(RgbImage::from_pixel(10, 6, image::Rgb(rgb)))
    }

    #[test]
    fn same_pixels_same_vectors_other_pixels_other_vectors() {
        let fake = FakeEncoder::default();
        let embed = |img: &DynamicImage| {
            let inputs = fake.prepare_square(img, true).unwrap();
            embed_images(&fake, &[&inputs]).unwrap().pop().unwrap().unwrap()
        };
        let (red, red2, blue) = (embed(&solid([200, 0, 0])), embed(&solid([200, 0, 0])), embed(&solid([0, 0, 200])));
        assert_eq!(red.global, red2.global);
        assert!(red.global.dot(blue.global.as_slice()) < 0.99);
        assert_eq!(red.patches.dim(), FAKE_DIM);
        assert!(red.views.is_some());
        assert_eq!(fake.forward_passes(), 3);
    }
}
