//! The vectors an image is described by: [`UnitVector`] (an L2-normalised embedding),
//! [`PatchGrid`] (a grid of patch tokens) and [`DedupViews`] (the extra views kept for duplicate
//! detection). How they are stored as bytes lives in [`crate::codec`] (patch grids) and here
//! (the plain little-endian f32 of unit vectors).

use crate::error::{Error, Result};

/// An L2-normalised embedding: cosine similarity is a dot product.
#[derive(Debug, Clone, PartialEq)]
pub struct UnitVector(Vec<f32>);

impl UnitVector {
    /// Normalises `v`; a zero, empty or non-finite vector is an error (it would match everything).
    pub fn new(mut v: Vec<f32>) -> Result<Self> {
        if v.is_empty() || v.iter().any(|x| !x.is_finite()) {
            return Err(Error::InvalidVector("empty or not finite".into()));
        }
        let norm = v.iter().map(|x| (*x as f64) * (*x as f64)).sum::<f64>().sqrt();
        if norm < 1e-12 {
            return Err(Error::InvalidVector("zero vector".into()));
        }
        v.iter_mut().for_each(|x| *x = (*x as f64 / norm) as f32);
        Ok(Self(v))
    }

    /// The components.
    pub fn as_slice(&self) -> &[f32] {
        &self.0
    }

    /// The dimension.
    pub fn dim(&self) -> usize {
        self.0.len()
    }

    /// Cosine similarity with another unit vector.
    pub fn dot(&self, other: &[f32]) -> f32 {
        self.0.iter().zip(other).map(|(a, b)| a * b).sum()
    }

    /// Little-endian f32, as the `global` and `views` trees store it.
    pub(crate) fn to_bytes(&self) -> Vec<u8> {
        self.0.iter().flat_map(|x| x.to_le_bytes()).collect()
    }

    /// Decodes stored bytes (already normalised when written).
    pub(crate) fn from_bytes(bytes: &[u8], dim: usize) -> Result<Self> {
        if bytes.len() != dim * 4 {
            return Err(Error::Corrupt {
                what: "global vector".into(),
                reason: format!("{} bytes for dim {dim}", bytes.len()),
            });
        }
        let v: Vec<f32> = bytes.chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect();
        if !v.iter().all(|x| x.is_finite()) {
            return Err(Error::Corrupt { what: "global vector".into(), reason: "a value is not finite".into() });
        }
        Ok(Self(v))
    }
}

/// A grid of patch vectors, row-major `[rows, cols, dim]`. The fields are private so that
/// `values` always holds exactly `rows × cols × dim` values of a non-zero `dim`.
#[derive(Debug, Clone, PartialEq)]
pub struct PatchGrid {
    rows: usize,
    cols: usize,
    dim: usize,
    values: Vec<f32>,
}

impl PatchGrid {
    /// A `rows × cols` grid of `dim`-wide patches; [`Error::InvalidVector`] unless `values` holds
    /// exactly `rows × cols × dim` values and `dim` is not 0.
    pub fn new(rows: usize, cols: usize, dim: usize, values: Vec<f32>) -> Result<Self> {
        let want = rows.checked_mul(cols).and_then(|n| n.checked_mul(dim));
        if dim == 0 || want != Some(values.len()) {
            return Err(Error::InvalidVector(format!(
                "{} values for a {rows}×{cols} grid of {dim}-d patches",
                values.len()
            )));
        }
        Ok(Self { rows, cols, dim, values })
    }

    /// For grids this crate shapes itself (decoded with a checked length, pooled, reduced).
    pub(crate) fn from_parts(rows: usize, cols: usize, dim: usize, values: Vec<f32>) -> Self {
        debug_assert!(dim > 0 && values.len() == rows * cols * dim, "{rows}×{cols}×{dim}: {}", values.len());
        Self { rows, cols, dim, values }
    }

    /// Grid rows.
    pub fn rows(&self) -> usize {
        self.rows
    }

    /// Grid columns.
    pub fn cols(&self) -> usize {
        self.cols
    }

    /// Channels per patch.
    pub fn dim(&self) -> usize {
        self.dim
    }

    /// The `rows × cols × dim` values, row-major.
    pub fn values(&self) -> &[f32] {
        &self.values
    }

    /// The values, to change in place (their number is fixed).
    pub fn values_mut(&mut self) -> &mut [f32] {
        &mut self.values
    }

    /// The values, row-major.
    pub fn into_values(self) -> Vec<f32> {
        self.values
    }

    /// One patch's vector.
    pub fn patch(&self, row: usize, col: usize) -> &[f32] {
        let o = (row * self.cols + col) * self.dim;
        &self.values[o..o + self.dim]
    }

    /// Averages `pool × pool` cells (the last row/column of cells may be smaller).
    pub fn pooled(&self, pool: usize) -> PatchGrid {
        if pool <= 1 {
            return self.clone();
        }
        let (rows, cols) = (self.rows.div_ceil(pool), self.cols.div_ceil(pool));
        let mut values = vec![0f32; rows * cols * self.dim];
        for r in 0..rows {
            for c in 0..cols {
                let out = &mut values[(r * cols + c) * self.dim..(r * cols + c + 1) * self.dim];
                let mut n = 0;
                for rr in r * pool..((r + 1) * pool).min(self.rows) {
                    for cc in c * pool..((c + 1) * pool).min(self.cols) {
                        out.iter_mut().zip(self.patch(rr, cc)).for_each(|(o, v)| *o += v);
                        n += 1;
                    }
                }
                out.iter_mut().for_each(|o| *o /= n as f32);
            }
        }
        PatchGrid::from_parts(rows, cols, self.dim, values)
    }
}

/// Extra views of an image kept for duplicate detection: what the encoder sees of it mirrored
/// left to right and in grayscale. A mirrored or desaturated copy then matches its original
/// exactly (the mirrored view of a mirrored copy is the original), which the global vector
/// alone does not do. Patch tokens are not mirror-equivariant, so the mirrored view's patch grid
/// is kept too, for verifying mirrored pairs patch by patch.
#[derive(Debug, Clone, PartialEq)]
pub struct DedupViews {
    /// Global vector of the mirrored image.
    pub flipped: UnitVector,
    /// Global vector of the grayscale image.
    pub gray: UnitVector,
    /// Full-resolution patch grid of the mirrored image (reduced on storage), if kept.
    pub flipped_patches: Option<PatchGrid>,
}

impl DedupViews {
    /// The two vectors, mirrored then grayscale.
    pub(crate) fn encode_vectors(&self) -> Vec<u8> {
        let mut out = self.flipped.to_bytes();
        out.extend(self.gray.to_bytes());
        out
    }

    pub(crate) fn decode_vectors(bytes: &[u8], dim: usize) -> Result<(UnitVector, UnitVector)> {
        if bytes.len() != 8 * dim {
            return Err(Error::Corrupt {
                what: "view vectors".into(),
                reason: format!("{} bytes for dim {dim}", bytes.len()),
            });
        }
        let (a, b) = bytes.split_at(4 * dim);
        Ok((UnitVector::from_bytes(a, dim)?, UnitVector::from_bytes(b, dim)?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unit_vectors_round_trip_and_reject_garbage() {
        let v = UnitVector::new(vec![3.0, 4.0]).unwrap();
        assert_eq!(v.as_slice(), &[0.6, 0.8]);
        assert_eq!(UnitVector::from_bytes(&v.to_bytes(), 2).unwrap(), v);
        assert!(UnitVector::new(vec![0.0, 0.0]).is_err());
        assert!(UnitVector::new(vec![f32::NAN, 1.0]).is_err());
        assert!(UnitVector::from_bytes(&[0; 7], 2).is_err());
    }

    #[test]
    fn patch_grids_refuse_values_that_do_not_fill_them() {
        let g = PatchGrid::new(2, 3, 4, vec![0.5; 24]).unwrap();
        assert_eq!((g.rows(), g.cols(), g.dim(), g.values().len()), (2, 3, 4, 24));
        for (rows, cols, dim, n) in [(2, 3, 4, 23), (2, 3, 4, 25), (2, 3, 0, 0), (usize::MAX, 2, 2, 4)] {
            assert!(
                matches!(PatchGrid::new(rows, cols, dim, vec![0.0; n]), Err(Error::InvalidVector(_))),
                "{rows}×{cols}×{dim} with {n}"
            );
        }
    }

    #[test]
    fn pooling_averages_cells_including_ragged_edges() {
        let g = PatchGrid::new(3, 3, 1, (0..9).map(|i| i as f32).collect()).unwrap();
        let p = g.pooled(2);
        assert_eq!((p.rows(), p.cols()), (2, 2));
        assert_eq!(p.values(), [(0.0 + 1.0 + 3.0 + 4.0) / 4.0, (2.0 + 5.0) / 2.0, (6.0 + 7.0) / 2.0, 8.0]);
    }
}
