//! Byte encodings of what the collection stores: unit vectors (little-endian f32) and reduced
//! patch grids (average-pooled, then int8 per token with an f32 scale).

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
        Ok(Self(bytes.chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect()))
    }
}

/// A grid of patch vectors, row-major `[rows, cols, dim]`.
#[derive(Debug, Clone, PartialEq)]
pub struct PatchGrid {
    /// Grid rows.
    pub rows: usize,
    /// Grid columns.
    pub cols: usize,
    /// Channels per patch.
    pub dim: usize,
    /// `rows × cols × dim` values.
    pub values: Vec<f32>,
}

impl PatchGrid {
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
        PatchGrid { rows, cols, dim: self.dim, values }
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

/// How patch grids are reduced before storage, recorded in the collection metadata so that
/// queries reduce the same way.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct PatchCodec {
    /// Side of the average-pooling window (1 = full resolution).
    pub pool: usize,
}

const PATCH_FORMAT: u8 = 1;
const PATCH_HEADER: usize = 7;

impl PatchCodec {
    /// The finest pooling (1, 2, 4, …) whose encoding of a `rows × cols × dim` grid fits in
    /// `budget_bytes`.
    pub fn for_budget(rows: usize, cols: usize, dim: usize, budget_bytes: usize) -> Self {
        let mut pool = 1;
        while pool < rows.max(cols) && Self::encoded_len(rows.div_ceil(pool), cols.div_ceil(pool), dim) > budget_bytes {
            pool *= 2;
        }
        Self { pool }
    }

    /// Bytes of an encoded grid of this (pooled) size.
    pub fn encoded_len(rows: usize, cols: usize, dim: usize) -> usize {
        PATCH_HEADER + rows * cols * (4 + dim)
    }

    /// Pools, then quantises each patch to int8 with its own scale (`max |v| / 127`).
    pub fn encode(&self, grid: &PatchGrid) -> Vec<u8> {
        let g = grid.pooled(self.pool);
        let mut out = Vec::with_capacity(Self::encoded_len(g.rows, g.cols, g.dim));
        out.push(PATCH_FORMAT);
        for n in [g.rows, g.cols, g.dim] {
            out.extend_from_slice(&(n as u16).to_le_bytes());
        }
        for patch in g.values.chunks_exact(g.dim) {
            let max = patch.iter().fold(0f32, |m, v| m.max(v.abs()));
            let scale = if max > 0.0 { max / 127.0 } else { 1.0 };
            out.extend_from_slice(&scale.to_le_bytes());
            out.extend(patch.iter().map(|v| (v / scale).round().clamp(-127.0, 127.0) as i8 as u8));
        }
        out
    }

    /// Decodes a stored grid (in its pooled resolution).
    pub fn decode(bytes: &[u8]) -> Result<PatchGrid> {
        let corrupt = |reason: String| Error::Corrupt { what: "patch grid".into(), reason };
        if bytes.len() < PATCH_HEADER || bytes[0] != PATCH_FORMAT {
            return Err(corrupt("bad header".into()));
        }
        let u16_at = |i: usize| u16::from_le_bytes([bytes[i], bytes[i + 1]]) as usize;
        let (rows, cols, dim) = (u16_at(1), u16_at(3), u16_at(5));
        if bytes.len() != Self::encoded_len(rows, cols, dim) || dim == 0 {
            return Err(corrupt(format!("{} bytes for {rows}×{cols}×{dim}", bytes.len())));
        }
        let mut values = Vec::with_capacity(rows * cols * dim);
        for rec in bytes[PATCH_HEADER..].chunks_exact(4 + dim) {
            let scale = f32::from_le_bytes([rec[0], rec[1], rec[2], rec[3]]);
            values.extend(rec[4..].iter().map(|&q| q as i8 as f32 * scale));
        }
        Ok(PatchGrid { rows, cols, dim, values })
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

    fn grid(rows: usize, cols: usize, dim: usize) -> PatchGrid {
        let values = (0..rows * cols * dim).map(|i| ((i * 7919) % 201) as f32 / 50.0 - 2.0).collect();
        PatchGrid { rows, cols, dim, values }
    }

    #[test]
    fn patch_codec_round_trips_within_quantisation_error() {
        let g = grid(5, 3, 16);
        let codec = PatchCodec { pool: 1 };
        let bytes = codec.encode(&g);
        assert_eq!(bytes.len(), PatchCodec::encoded_len(5, 3, 16));
        let back = PatchCodec::decode(&bytes).unwrap();
        for (p, q) in g.values.chunks(16).zip(back.values.chunks(16)) {
            let max = p.iter().fold(0f32, |m, v| m.max(v.abs()));
            assert!(p.iter().zip(q).all(|(a, b)| (a - b).abs() <= max / 127.0 / 2.0 + 1e-6));
        }
        assert!(PatchCodec::decode(&bytes[..bytes.len() - 1]).is_err());
    }

    #[test]
    fn pooling_averages_cells_including_ragged_edges() {
        let g = PatchGrid { rows: 3, cols: 3, dim: 1, values: (0..9).map(|i| i as f32).collect() };
        let p = g.pooled(2);
        assert_eq!((p.rows, p.cols), (2, 2));
        assert_eq!(p.values, vec![(0.0 + 1.0 + 3.0 + 4.0) / 4.0, (2.0 + 5.0) / 2.0, (6.0 + 7.0) / 2.0, 8.0]);
    }

    #[test]
    fn budget_picks_the_finest_pooling_that_fits() {
        // ViT-S/14 @224: 16×16×384 int8 is 99 335 bytes.
        assert_eq!(PatchCodec::for_budget(16, 16, 384, 128 << 10).pool, 1);
        // ViT-H/16 @256: 16×16×1280 needs 2×2 pooling (82 183 bytes).
        assert_eq!(PatchCodec::for_budget(16, 16, 1280, 128 << 10).pool, 2);
        assert_eq!(PatchCodec::encoded_len(8, 8, 1280), 82_183);
    }
}
