//! Where region-search data sits in an image: the aspect-preserving region grids kept for
//! finding crops ([`RegionGrid`], its shape and [`REGION_DIM`]), their frame in the file
//! ([`RegionFrame`]: upright size and EXIF orientation), and the box arithmetic between grid
//! cells, the upright image and the file's stored pixels ([`PixelBox`]). How the grids are
//! reduced is [`crate::TokenReduction`]; how they are stored, `codec`.

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::vectors::PatchGrid;

/// Dimension of stored region tokens: PCA-128 keeps the region benchmark's quality at a sixth of
/// the bytes of 384-d fp16 (`shared/notes/region-search.md`).
pub const REGION_DIM: usize = 128;

/// Code bytes per stored region token in collections made since product quantisation (8
/// dimensions per byte): 12.3 KB for a 24×32 grid, against 101 KB as int8. On the region
/// benchmark 16 and 32 bytes scored alike (IoU@1 0.718 and 0.717, int8 0.719).
pub const REGION_SUBSPACES: usize = 16;

/// Where a region grid sits in its image: the upright size the grid covers and the EXIF
/// orientation that turned the stored pixels upright.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct RegionFrame {
    /// Upright width in pixels (after EXIF orientation).
    pub width: u32,
    /// Upright height in pixels.
    pub height: u32,
    /// EXIF orientation 1–8 of the file (1 = stored upright).
    pub orientation: u8,
}

impl RegionFrame {
    /// Width and height of the file's stored pixels (before EXIF orientation).
    pub fn stored_size(&self) -> (u32, u32) {
        if self.orientation >= 5 { (self.height, self.width) } else { (self.width, self.height) }
    }

    /// Maps an upright point to the stored pixel grid (continuous coordinates, pixel edges at
    /// integers).
    fn upright_to_stored(&self, u: f32, v: f32) -> (f32, f32) {
        let (ws, hs) = self.stored_size();
        let (ws, hs) = (ws as f32, hs as f32);
        match self.orientation {
            2 => (ws - u, v),
            3 => (ws - u, hs - v),
            4 => (u, hs - v),
            5 => (v, u),
            6 => (v, hs - u),
            7 => (ws - v, hs - u),
            8 => (ws - v, u),
            _ => (u, v),
        }
    }

    /// Maps a stored point to the upright image: the inverse of [`Self::upright_to_stored`].
    fn stored_to_upright(&self, x: f32, y: f32) -> (f32, f32) {
        let (ws, hs) = self.stored_size();
        let (ws, hs) = (ws as f32, hs as f32);
        match self.orientation {
            2 => (ws - x, y),
            3 => (ws - x, hs - y),
            4 => (x, hs - y),
            5 => (y, x),
            6 => (hs - y, x),
            7 => (hs - y, ws - x),
            8 => (y, ws - x),
            _ => (x, y),
        }
    }

    /// A box in upright pixels as a box in stored pixels.
    pub fn box_to_stored(&self, b: PixelBox) -> PixelBox {
        PixelBox::spanning(self.upright_to_stored(b.x, b.y), self.upright_to_stored(b.x + b.w, b.y + b.h))
    }

    /// A box in stored pixels as a box in upright pixels.
    pub fn box_to_upright(&self, b: PixelBox) -> PixelBox {
        PixelBox::spanning(self.stored_to_upright(b.x, b.y), self.stored_to_upright(b.x + b.w, b.y + b.h))
    }

    /// A box given in grid cells (`rows × cols` over the whole upright image) in upright pixels,
    /// clipped to the image.
    pub fn cells_to_upright(&self, rows: usize, cols: usize, cells: PixelBox) -> PixelBox {
        let (sx, sy) = (self.width as f32 / cols as f32, self.height as f32 / rows as f32);
        let x0 = (cells.x * sx).clamp(0.0, self.width as f32);
        let y0 = (cells.y * sy).clamp(0.0, self.height as f32);
        let x1 = ((cells.x + cells.w) * sx).clamp(0.0, self.width as f32);
        let y1 = ((cells.y + cells.h) * sy).clamp(0.0, self.height as f32);
        PixelBox { x: x0, y: y0, w: x1 - x0, h: y1 - y0 }
    }

    /// Checks that `b` (stored pixels) has an area and lies inside the image.
    pub fn check_box(&self, b: PixelBox) -> Result<()> {
        let (ws, hs) = self.stored_size();
        let finite = [b.x, b.y, b.w, b.h].iter().all(|v| v.is_finite());
        if !finite || b.w <= 0.0 || b.h <= 0.0 {
            return Err(Error::InvalidQuery(format!("box {b} has no area")));
        }
        if b.x < 0.0 || b.y < 0.0 || b.x + b.w > ws as f32 || b.y + b.h > hs as f32 {
            return Err(Error::InvalidQuery(format!("box {b} is not inside the {ws}×{hs} image")));
        }
        Ok(())
    }
}

/// An axis-aligned box in pixels: left, top, width, height.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct PixelBox {
    /// Left edge.
    pub x: f32,
    /// Top edge.
    pub y: f32,
    /// Width.
    pub w: f32,
    /// Height.
    pub h: f32,
}

impl PixelBox {
    /// The box with corners `a` and `b` (in any order).
    pub fn spanning(a: (f32, f32), b: (f32, f32)) -> Self {
        let (x0, x1) = (a.0.min(b.0), a.0.max(b.0));
        let (y0, y1) = (a.1.min(b.1), a.1.max(b.1));
        Self { x: x0, y: y0, w: x1 - x0, h: y1 - y0 }
    }

    /// Intersection over union with `other` (0 when either has no area).
    pub fn iou(&self, other: &PixelBox) -> f32 {
        let ix = ((self.x + self.w).min(other.x + other.w) - self.x.max(other.x)).max(0.0);
        let iy = ((self.y + self.h).min(other.y + other.h) - self.y.max(other.y)).max(0.0);
        let inter = ix * iy;
        let union = self.w * self.h + other.w * other.h - inter;
        if union > 0.0 { inter / union } else { 0.0 }
    }
}

impl std::fmt::Display for PixelBox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{},{},{},{}", self.x, self.y, self.w, self.h)
    }
}

/// The region grid of an image whose upright size is `width × height`: the aspect ratio kept,
/// the long side at `long_side` pixels, both sides rounded to whole patches (at least one).
/// Returns `(rows, cols)`.
pub fn region_grid_shape(width: u32, height: u32, patch: usize, long_side: usize) -> (usize, usize) {
    let s = long_side as f64 / width.max(height).max(1) as f64;
    let cells = |side: u32| ((side as f64 * s / patch as f64).round() as usize).max(1);
    (cells(height), cells(width))
}

/// An image's full-precision region grid, as the encoder computed it.
#[derive(Debug, Clone, PartialEq)]
pub struct RegionGrid {
    /// Where it sits in the image.
    pub frame: RegionFrame,
    /// The patch tokens, `rows × cols` over the whole upright image.
    pub tokens: PatchGrid,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(width: u32, height: u32, orientation: u8) -> RegionFrame {
        RegionFrame { width, height, orientation }
    }

    #[test]
    fn boxes_round_trip_through_every_orientation() {
        let b = PixelBox { x: 10.0, y: 20.0, w: 30.0, h: 5.0 };
        for o in 1..=8 {
            let f = frame(120, 80, o);
            let stored = f.box_to_stored(b);
            assert_eq!(f.box_to_upright(stored), b, "orientation {o}");
            let (ws, hs) = f.stored_size();
            assert!(stored.x >= 0.0 && stored.x + stored.w <= ws as f32 && stored.y + stored.h <= hs as f32);
        }
        // Rotated 90° clockwise for display (EXIF 6): the upright top-left corner is the stored
        // bottom-left one.
        let f = frame(80, 120, 6);
        assert_eq!(f.stored_size(), (120, 80));
        assert_eq!(
            f.box_to_stored(PixelBox { x: 0.0, y: 0.0, w: 10.0, h: 20.0 }),
            PixelBox { x: 0.0, y: 70.0, w: 20.0, h: 10.0 }
        );
    }

    #[test]
    fn cells_map_to_upright_pixels_and_clip() {
        let f = frame(640, 480, 1);
        // A 32×24 grid: 20 px per cell on both axes.
        let b = f.cells_to_upright(24, 32, PixelBox { x: 1.5, y: 2.0, w: 4.0, h: 3.0 });
        assert_eq!(b, PixelBox { x: 30.0, y: 40.0, w: 80.0, h: 60.0 });
        let clipped = f.cells_to_upright(24, 32, PixelBox { x: -1.0, y: 22.0, w: 4.0, h: 3.0 });
        assert_eq!(clipped, PixelBox { x: 0.0, y: 440.0, w: 60.0, h: 40.0 });
    }

    #[test]
    fn bad_boxes_are_refused() {
        let f = frame(100, 50, 1);
        assert!(f.check_box(PixelBox { x: 0.0, y: 0.0, w: 100.0, h: 50.0 }).is_ok());
        for bad in [(0.0, 0.0, 0.0, 10.0), (90.0, 0.0, 20.0, 10.0), (-1.0, 0.0, 5.0, 5.0), (0.0, 45.0, 5.0, 6.0)] {
            let b = PixelBox { x: bad.0, y: bad.1, w: bad.2, h: bad.3 };
            assert!(matches!(f.check_box(b), Err(Error::InvalidQuery(_))), "{b}");
        }
        // Rotated files are checked in stored pixels.
        assert!(frame(50, 100, 6).check_box(PixelBox { x: 0.0, y: 0.0, w: 100.0, h: 50.0 }).is_ok());
    }

    #[test]
    fn grid_shape_keeps_the_aspect_ratio() {
        assert_eq!(region_grid_shape(640, 480, 14, 448), (24, 32));
        assert_eq!(region_grid_shape(150, 150, 14, 448), (32, 32));
        assert_eq!(region_grid_shape(4000, 10, 14, 448), (1, 32));
    }

    #[test]
    fn iou_of_boxes() {
        let a = PixelBox { x: 0.0, y: 0.0, w: 10.0, h: 10.0 };
        assert_eq!(a.iou(&a), 1.0);
        assert_eq!(a.iou(&PixelBox { x: 5.0, y: 0.0, w: 10.0, h: 10.0 }), 50.0 / 150.0);
        assert_eq!(a.iou(&PixelBox { x: 20.0, y: 0.0, w: 1.0, h: 1.0 }), 0.0);
    }
}
