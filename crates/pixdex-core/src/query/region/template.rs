//! Sliding a query grid over an image grid ([`match_template`]): the score at a position is the
//! mean cosine of the aligned tokens, cells outside the image counting 0; the peak is refined to
//! sub-cell precision by a parabola on each axis.

use crate::linalg::matmul_nt;
use crate::region_grid::PixelBox;
use crate::vectors::PatchGrid;

/// The best placement of a query grid in an image grid.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TemplateMatch {
    /// Mean cosine of the aligned tokens (cells outside the image count 0).
    pub score: f32,
    /// The mean of that score over every position tried.
    pub background: f32,
    /// The placement in grid cells (sub-cell position; size of the query grid).
    pub cells: PixelBox,
}

/// Slides `query` over `image` (both unit tokens of one dimension) and returns the best
/// placement. Positions run from fully inside to one cell outside where the query is larger.
pub fn match_template(query: &PatchGrid, image: &PatchGrid) -> Option<TemplateMatch> {
    let (qh, qw, gh, gw) = (query.rows() as i64, query.cols() as i64, image.rows() as i64, image.cols() as i64);
    if query.dim() != image.dim() || qh == 0 || qw == 0 || gh == 0 || gw == 0 {
        return None;
    }
    let sims = matmul_nt(query.values(), image.values(), query.dim());
    let ng = (gh * gw) as usize;
    let (y0, y1) = ((gh - qh).min(0), (gh - qh).max(0));
    let (x0, x1) = ((gw - qw).min(0), (gw - qw).max(0));
    let (ny, nx) = ((y1 - y0 + 1) as usize, (x1 - x0 + 1) as usize);
    let mut corr = vec![0f32; ny * nx];
    let nq = (qh * qw) as f32;
    for (iy, y) in (y0..=y1).enumerate() {
        for (ix, x) in (x0..=x1).enumerate() {
            let mut sum = 0f32;
            for i in 0..qh {
                let r = y + i;
                if !(0..gh).contains(&r) {
                    continue;
                }
                for j in 0..qw {
                    let c = x + j;
                    if (0..gw).contains(&c) {
                        sum += sims[(i * qw + j) as usize * ng + (r * gw + c) as usize];
                    }
                }
            }
            corr[iy * nx + ix] = sum / nq;
        }
    }
    let (best, &score) = corr.iter().enumerate().max_by(|a, b| a.1.total_cmp(b.1))?;
    let background = corr.iter().sum::<f32>() / corr.len() as f32;
    let (by, bx) = (best / nx, best % nx);
    let refine = |prev: Option<f32>, next: Option<f32>| match (prev, next) {
        (Some(p), Some(n)) => {
            let denom = p - 2.0 * score + n;
            if denom < 0.0 { (0.5 * (p - n) / denom).clamp(-0.5, 0.5) } else { 0.0 }
        }
        _ => 0.0,
    };
    let dy = refine(by.checked_sub(1).map(|y| corr[y * nx + bx]), (by + 1 < ny).then(|| corr[(by + 1) * nx + bx]));
    let dx = refine(bx.checked_sub(1).map(|x| corr[by * nx + x]), (bx + 1 < nx).then(|| corr[by * nx + bx + 1]));
    Some(TemplateMatch {
        score,
        background,
        cells: PixelBox {
            x: (x0 + bx as i64) as f32 + dx,
            y: (y0 + by as i64) as f32 + dy,
            w: qw as f32,
            h: qh as f32,
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::linalg::normalise_rows;

    fn noise_grid(rows: usize, cols: usize, dim: usize, seed: u64) -> PatchGrid {
        let mut s = seed;
        let mut values: Vec<f32> = (0..rows * cols * dim)
            .map(|_| {
                s = s.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                ((s >> 33) as f32 / (1u64 << 31) as f32) - 0.5
            })
            .collect();
        normalise_rows(&mut values, dim);
        PatchGrid::new(rows, cols, dim, values).unwrap()
    }

    fn window(g: &PatchGrid, r0: usize, c0: usize, rows: usize, cols: usize) -> PatchGrid {
        let mut values = Vec::new();
        for r in r0..r0 + rows {
            let at = (r * g.cols() + c0) * g.dim();
            values.extend_from_slice(&g.values()[at..at + cols * g.dim()]);
        }
        PatchGrid::new(rows, cols, g.dim(), values).unwrap()
    }

    #[test]
    fn a_window_is_found_where_it_was_cut() {
        let g = noise_grid(12, 16, 32, 3);
        let q = window(&g, 4, 9, 3, 5);
        let m = match_template(&q, &g).unwrap();
        assert!((m.score - 1.0).abs() < 1e-5);
        // Unrelated neighbours score about 0 on both sides: the refinement stays within a hair.
        assert!((m.cells.x - 9.0).abs() < 0.05 && (m.cells.y - 4.0).abs() < 0.05, "{:?}", m.cells);
        assert_eq!((m.cells.w, m.cells.h), (5.0, 3.0));
    }

    #[test]
    fn a_query_larger_than_the_image_by_one_cell_may_hang_over() {
        let g = noise_grid(4, 4, 16, 5);
        let mut q = noise_grid(5, 4, 16, 9);
        // The query's last four rows are the image.
        q.values_mut()[16 * 4..].copy_from_slice(g.values());
        let m = match_template(&q, &g).unwrap();
        assert_eq!((m.cells.x, m.cells.y), (0.0, -1.0));
        assert!((m.score - 16.0 / 20.0).abs() < 1e-5, "{}", m.score);
    }

    #[test]
    fn the_peak_is_refined_between_cells() {
        // A 1-d image whose tokens blend two "scene" tokens: the query sits halfway between
        // cells 3 and 4, so the parabola puts it past 3.
        let dim = 8;
        let base = noise_grid(1, 10, dim, 11);
        let mut img = base.clone();
        for c in 0..10 {
            let next = &base.values()[((c + 1) % 10) * dim..((c + 1) % 10 + 1) * dim];
            let here = &base.values()[c * dim..(c + 1) * dim];
            for (d, (a, b)) in here.iter().zip(next).enumerate() {
                img.values_mut()[c * dim + d] = 0.5 * a + 0.5 * b;
            }
        }
        normalise_rows(img.values_mut(), dim);
        let q = window(&base, 0, 4, 1, 2);
        let m = match_template(&q, &img).unwrap();
        assert!(m.cells.x > 3.0 && m.cells.x < 4.0, "{:?}", m.cells);
    }
}
