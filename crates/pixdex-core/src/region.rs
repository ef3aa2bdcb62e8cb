//! Region-search data: the aspect-preserving patch grids kept for finding crops, how they are
//! reduced for storage (centred PCA to [`REGION_DIM`], unit length, int8), and the box arithmetic
//! between grid cells, the upright image and the file's stored pixels.

use serde::{Deserialize, Serialize};

use crate::codec::PatchGrid;
use crate::error::{Error, Result};
use crate::linalg::matmul_nt;

/// Dimension of stored region tokens: PCA-128 keeps the region benchmark's quality at a sixth of
/// the bytes of 384-d fp16 (`shared/notes/region-search.md`).
pub const REGION_DIM: usize = 128;

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

/// How region tokens are reduced before storage and before matching: subtract the mean token
/// (post-LN tokens share a large common component that makes every cosine high), project on the
/// top principal directions, normalise to unit length. Fitted once, on the first region grids a
/// collection stores, and pinned in its metadata so that every later grid and every query
/// reduces the same way.
#[derive(Debug, Clone, PartialEq)]
pub struct RegionReduction {
    dim_in: usize,
    dim_out: usize,
    mu: Vec<f32>,
    /// `dim_out × dim_in`, orthonormal rows.
    basis: Vec<f32>,
}

const REDUCTION_FORMAT: u8 = 1;
/// Tokens used to fit the reduction: plenty for a 384- or 1280-d covariance.
const FIT_SAMPLE: usize = 40_000;
const FIT_ITERATIONS: usize = 24;

impl RegionReduction {
    /// Fits the reduction to the tokens of `grids` (all of one dimension), keeping
    /// `min(dim_out, dim)` directions.
    pub fn fit(grids: &[&PatchGrid], dim_out: usize) -> Result<Self> {
        let dim = grids.first().map(|g| g.dim).ok_or_else(|| Error::InvalidQuery("no grids to fit".into()))?;
        if dim == 0 || grids.iter().any(|g| g.dim != dim) {
            return Err(Error::InvalidVector("region grids of different dimensions".into()));
        }
        let total: usize = grids.iter().map(|g| g.rows * g.cols).sum();
        let step = total.div_ceil(FIT_SAMPLE).max(1);
        let sample: Vec<&[f32]> = grids.iter().flat_map(|g| g.values.chunks_exact(dim)).step_by(step).collect();
        let n = sample.len().max(1) as f32;
        let mut mu = vec![0f32; dim];
        for t in &sample {
            for (m, v) in mu.iter_mut().zip(*t) {
                *m += v / n;
            }
        }
        let dim_out = dim_out.min(dim);
        let basis = if dim_out == dim {
            (0..dim * dim).map(|i| if i / dim == i % dim { 1.0 } else { 0.0 }).collect()
        } else {
            // Covariance C = XᵀX / n of the centred sample, then subspace iteration on C.
            let mut xt = vec![0f32; dim * sample.len()];
            for (j, t) in sample.iter().enumerate() {
                for (i, (v, m)) in t.iter().zip(&mu).enumerate() {
                    xt[i * sample.len() + j] = v - m;
                }
            }
            let mut cov = matmul_nt(&xt, &xt, sample.len());
            cov.iter_mut().for_each(|c| *c /= n);
            let mut rng = 0x9e37_79b9_7f4a_7c15u64;
            let mut v: Vec<f32> = (0..dim_out * dim).map(|_| next_uniform(&mut rng) - 0.5).collect();
            orthonormalise(&mut v, dim, &mut rng);
            for _ in 0..FIT_ITERATIONS {
                v = matmul_nt(&v, &cov, dim); // rows of V·C (C is symmetric)
                orthonormalise(&mut v, dim, &mut rng);
            }
            v
        };
        Ok(Self { dim_in: dim, dim_out, mu, basis })
    }

    /// Dimension of the tokens it takes.
    pub fn dim_in(&self) -> usize {
        self.dim_in
    }

    /// Dimension of the tokens it gives.
    pub fn dim_out(&self) -> usize {
        self.dim_out
    }

    /// The mean token it subtracts.
    pub fn mean(&self) -> &[f32] {
        &self.mu
    }

    /// Centres, projects and normalises every token of `grid` (a zero token stays zero).
    pub fn reduce(&self, grid: &PatchGrid) -> Result<PatchGrid> {
        if grid.dim != self.dim_in {
            return Err(Error::InvalidVector(format!("{}-d tokens for a {}-d reduction", grid.dim, self.dim_in)));
        }
        let mut centred = grid.values.clone();
        for t in centred.chunks_exact_mut(self.dim_in) {
            t.iter_mut().zip(&self.mu).for_each(|(v, m)| *v -= m);
        }
        let mut values = matmul_nt(&centred, &self.basis, self.dim_in);
        normalise_rows(&mut values, self.dim_out);
        Ok(PatchGrid { rows: grid.rows, cols: grid.cols, dim: self.dim_out, values })
    }

    pub(crate) fn to_bytes(&self) -> Vec<u8> {
        let mut out = vec![REDUCTION_FORMAT];
        out.extend_from_slice(&(self.dim_in as u32).to_le_bytes());
        out.extend_from_slice(&(self.dim_out as u32).to_le_bytes());
        for v in self.mu.iter().chain(&self.basis) {
            out.extend_from_slice(&v.to_le_bytes());
        }
        out
    }

    pub(crate) fn from_bytes(bytes: &[u8]) -> Result<Self> {
        let corrupt = |reason: &str| Error::Corrupt { what: "region reduction".into(), reason: reason.into() };
        if bytes.len() < 9 || bytes[0] != REDUCTION_FORMAT {
            return Err(corrupt("bad header"));
        }
        let u32_at = |i: usize| u32::from_le_bytes([bytes[i], bytes[i + 1], bytes[i + 2], bytes[i + 3]]) as usize;
        let (dim_in, dim_out) = (u32_at(1), u32_at(5));
        if dim_in == 0 || dim_out == 0 || bytes.len() != 9 + 4 * dim_in * (1 + dim_out) {
            return Err(corrupt("wrong length"));
        }
        let floats: Vec<f32> =
            bytes[9..].chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect();
        let (mu, basis) = floats.split_at(dim_in);
        Ok(Self { dim_in, dim_out, mu: mu.to_vec(), basis: basis.to_vec() })
    }
}

fn next_uniform(state: &mut u64) -> f32 {
    // splitmix64: deterministic, so a collection's reduction does not depend on the run.
    *state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    ((z ^ (z >> 31)) >> 40) as f32 / (1u64 << 24) as f32
}

/// Modified Gram–Schmidt on the rows of `v` (`dim` wide); a row that vanishes (the sample spans
/// fewer directions than asked for) is replaced by a fresh random direction.
fn orthonormalise(v: &mut [f32], dim: usize, rng: &mut u64) {
    let rows = v.len() / dim;
    for i in 0..rows {
        for attempt in 0..4 {
            let (done, rest) = v.split_at_mut(i * dim);
            let row = &mut rest[..dim];
            for j in 0..i {
                let prev = &done[j * dim..(j + 1) * dim];
                let d: f32 = row.iter().zip(prev).map(|(a, b)| a * b).sum();
                row.iter_mut().zip(prev).for_each(|(a, b)| *a -= d * b);
            }
            let norm = row.iter().map(|a| a * a).sum::<f32>().sqrt();
            if norm > 1e-6 {
                row.iter_mut().for_each(|a| *a /= norm);
                break;
            }
            if attempt < 3 {
                row.iter_mut().for_each(|a| *a = next_uniform(rng) - 0.5);
            }
        }
    }
}

/// Scales every `dim`-wide row to unit length (zero rows stay zero).
pub(crate) fn normalise_rows(values: &mut [f32], dim: usize) {
    for t in values.chunks_exact_mut(dim) {
        let norm = t.iter().map(|v| v * v).sum::<f32>().sqrt();
        if norm > 1e-12 {
            t.iter_mut().for_each(|v| *v /= norm);
        }
    }
}

const GRID_FORMAT: u8 = 1;
const GRID_HEADER: usize = 16;

/// Encodes a reduced grid with its frame: each token int8 with its own scale (`max |v| / 127`).
pub(crate) fn encode_region(frame: &RegionFrame, grid: &PatchGrid) -> Vec<u8> {
    let mut out = Vec::with_capacity(encoded_region_len(grid.rows, grid.cols, grid.dim));
    out.push(GRID_FORMAT);
    for n in [grid.rows, grid.cols, grid.dim] {
        out.extend_from_slice(&(n as u16).to_le_bytes());
    }
    out.push(frame.orientation);
    out.extend_from_slice(&frame.width.to_le_bytes());
    out.extend_from_slice(&frame.height.to_le_bytes());
    for t in grid.values.chunks_exact(grid.dim) {
        let max = t.iter().fold(0f32, |m, v| m.max(v.abs()));
        let scale = if max > 0.0 { max / 127.0 } else { 1.0 };
        out.extend_from_slice(&scale.to_le_bytes());
        out.extend(t.iter().map(|v| (v / scale).round().clamp(-127.0, 127.0) as i8 as u8));
    }
    out
}

/// Bytes of a stored region grid.
pub fn encoded_region_len(rows: usize, cols: usize, dim: usize) -> usize {
    GRID_HEADER + rows * cols * (4 + dim)
}

/// Decodes a stored region grid (tokens as stored: unit length up to int8 rounding).
pub(crate) fn decode_region(bytes: &[u8]) -> Result<(RegionFrame, PatchGrid)> {
    let corrupt = |reason: String| Error::Corrupt { what: "region grid".into(), reason };
    if bytes.len() < GRID_HEADER || bytes[0] != GRID_FORMAT {
        return Err(corrupt("bad header".into()));
    }
    let u16_at = |i: usize| u16::from_le_bytes([bytes[i], bytes[i + 1]]) as usize;
    let u32_at = |i: usize| u32::from_le_bytes([bytes[i], bytes[i + 1], bytes[i + 2], bytes[i + 3]]);
    let (rows, cols, dim) = (u16_at(1), u16_at(3), u16_at(5));
    let frame = RegionFrame { orientation: bytes[7], width: u32_at(8), height: u32_at(12) };
    if dim == 0 || bytes.len() != encoded_region_len(rows, cols, dim) {
        return Err(corrupt(format!("{} bytes for {rows}×{cols}×{dim}", bytes.len())));
    }
    let mut values = Vec::with_capacity(rows * cols * dim);
    for rec in bytes[GRID_HEADER..].chunks_exact(4 + dim) {
        let scale = f32::from_le_bytes([rec[0], rec[1], rec[2], rec[3]]);
        values.extend(rec[4..].iter().map(|&q| q as i8 as f32 * scale));
    }
    Ok((frame, PatchGrid { rows, cols, dim, values }))
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

    fn grid_along(dirs: &[Vec<f32>], rows: usize, cols: usize) -> PatchGrid {
        // Tokens = offset + a·dir0 + b·dir1 with varying a, b: a 2-d subspace plus a mean.
        let dim = dirs[0].len();
        let mut values = Vec::new();
        for i in 0..rows * cols {
            let (a, b) = ((i % 7) as f32 - 3.0, (i % 5) as f32 * 0.3 - 0.6);
            values.extend((0..dim).map(|d| 2.0 + a * dirs[0][d] + b * dirs[1][d]));
        }
        PatchGrid { rows, cols, dim, values }
    }

    #[test]
    fn reduction_finds_the_principal_subspace_and_round_trips() {
        let dim = 16;
        let e = |k: usize| (0..dim).map(|d| if d == k { 1.0 } else { 0.0 }).collect::<Vec<f32>>();
        let g = grid_along(&[e(3), e(9)], 5, 7);
        let r = RegionReduction::fit(&[&g], 2).unwrap();
        assert_eq!((r.dim_in(), r.dim_out()), (16, 2));
        // The basis spans e3 and e9: every reduced token keeps its full norm, so it is unit.
        let reduced = r.reduce(&g).unwrap();
        for (t, orig) in reduced.values.chunks(2).zip(g.values.chunks(dim)) {
            let centred = (orig[3] - r.mean()[3]).powi(2) + (orig[9] - r.mean()[9]).powi(2);
            let n = t.iter().map(|v| v * v).sum::<f32>();
            assert!(centred < 1e-8 || (n - 1.0).abs() < 1e-4, "{n}");
        }
        assert_eq!(RegionReduction::from_bytes(&r.to_bytes()).unwrap(), r);
        assert!(RegionReduction::from_bytes(&r.to_bytes()[1..]).is_err());
        // Asking for more directions than the data has still gives an orthonormal basis.
        let wide = RegionReduction::fit(&[&g], 8).unwrap();
        let gram = matmul_nt(&wide.basis, &wide.basis, dim);
        for i in 0..8 {
            for j in 0..8 {
                let want = if i == j { 1.0 } else { 0.0 };
                assert!((gram[i * 8 + j] - want).abs() < 1e-4);
            }
        }
    }

    #[test]
    fn region_grids_round_trip_with_their_frame() {
        let g = PatchGrid { rows: 2, cols: 3, dim: 4, values: (0..24).map(|i| (i as f32 - 12.0) / 12.0).collect() };
        let f = frame(300, 200, 8);
        let bytes = encode_region(&f, &g);
        assert_eq!(bytes.len(), encoded_region_len(2, 3, 4));
        let (f2, g2) = decode_region(&bytes).unwrap();
        assert_eq!(f2, f);
        assert_eq!((g2.rows, g2.cols, g2.dim), (2, 3, 4));
        assert!(g.values.iter().zip(&g2.values).all(|(a, b)| (a - b).abs() < 0.01));
        assert!(decode_region(&bytes[..bytes.len() - 1]).is_err());
    }
}
