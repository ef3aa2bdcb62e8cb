//! Which query grid sizes a crop is embedded at: per candidate image, the crop at the image's
//! scale (grid cells per pixel) times a few multipliers, snapped to a ladder of 2^(1/6) steps so
//! that images of similar sizes share a query embedding; per scale group, the ladder step the
//! candidate vote uses.

use crate::region_grid::RegionFrame;

/// Scale multipliers tried per candidate: the crop at the image's own scale, and a little
/// smaller (a pasted or re-framed object is rarely larger than its source).
const MULTIPLIERS: [f32; 3] = [0.794, 0.891, 1.0];

/// Query scales snap to 2^(k/6), so that images of similar sizes share a query embedding.
const LADDER_STEPS_PER_OCTAVE: f32 = 6.0;

/// The multiplier the candidate vote assumes (the middle one), so that the vote's query grids
/// are among the rerank's.
const VOTE_MULTIPLIER: f32 = MULTIPLIERS[1];

/// Query grid sizes `(rows, cols)` to try for a crop of `crop_w × crop_h` upright pixels against
/// an image whose grid has `cells_per_px` cells per pixel and `rows × cols` cells: one per
/// scale multiplier, snapped to the ladder, deduplicated, at most one cell larger than the image.
pub fn query_grid_sizes(cells_per_px: f32, rows: usize, cols: usize, crop_w: u32, crop_h: u32) -> Vec<(usize, usize)> {
    let mut sizes = Vec::new();
    for m in MULTIPLIERS {
        let size = crop_cells(crop_w, crop_h, snap_to_ladder(cells_per_px * m));
        if size.0 <= rows + 1 && size.1 <= cols + 1 && !sizes.contains(&size) {
            sizes.push(size);
        }
    }
    sizes
}

/// The `(rows, cols)` a crop of `crop_w × crop_h` pixels covers at `cells_per_px` (at least one
/// each).
pub(crate) fn crop_cells(crop_w: u32, crop_h: u32, cells_per_px: f32) -> (usize, usize) {
    let cells = |side: u32| ((side as f32 * cells_per_px).round() as usize).max(1);
    (cells(crop_h), cells(crop_w))
}

fn snap_to_ladder(f: f32) -> f32 {
    ladder_scale(ladder_step(f))
}

fn ladder_step(f: f32) -> i32 {
    (f.max(1e-6).log2() * LADDER_STEPS_PER_OCTAVE).round() as i32
}

/// Cells per pixel at a ladder step.
pub(crate) fn ladder_scale(step: i32) -> f32 {
    (2f32).powf(step as f32 / LADDER_STEPS_PER_OCTAVE)
}

/// The candidate vote's scale group of an image with `cells_per_px`: the ladder step its
/// middle-multiplier query grid snaps to.
pub(crate) fn scale_group(cells_per_px: f32) -> i32 {
    ladder_step(cells_per_px * VOTE_MULTIPLIER)
}

/// Grid cells per upright pixel of an image: the geometric mean of both axes.
pub fn cells_per_px(frame: &RegionFrame, rows: usize, cols: usize) -> f32 {
    ((cols as f32 / frame.width.max(1) as f32) * (rows as f32 / frame.height.max(1) as f32)).sqrt()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_sizes_follow_the_image_scale_and_skip_oversized_ones() {
        // A 640×480 photo on a 32×24 grid: 0.05 cells per pixel; a 200×100 crop is 10×5 cells.
        let sizes = query_grid_sizes(0.05, 24, 32, 200, 100);
        assert!(sizes.contains(&(5, 10)), "{sizes:?}");
        assert!(sizes.iter().all(|&(r, c)| r <= 5 && c <= 10));
        assert!(query_grid_sizes(0.05, 4, 4, 200, 100).is_empty());
        assert!((snap_to_ladder(0.05) - 0.05).abs() / 0.05 < 0.06);
    }
}
