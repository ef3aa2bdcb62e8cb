//! Byte encodings of the grids the collection stores: reduced patch grids ([`PatchCodec`]:
//! average-pooled, then int8) and reduced region grids with their frame. Both quantise each
//! token to int8 with its own f32 scale (`max |v| / 127`). Unit vectors are plain little-endian
//! f32 ([`crate::UnitVector`]).

use crate::error::{Error, Result};
use crate::region_grid::RegionFrame;
use crate::vectors::PatchGrid;

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
        let mut out = Vec::with_capacity(Self::encoded_len(g.rows(), g.cols(), g.dim()));
        out.push(PATCH_FORMAT);
        push_shape(&mut out, &g);
        push_int8_tokens(&mut out, &g);
        out
    }

    /// Decodes a stored grid (in its pooled resolution).
    pub fn decode(bytes: &[u8]) -> Result<PatchGrid> {
        let corrupt = |reason: String| Error::Corrupt { what: "patch grid".into(), reason };
        if bytes.len() < PATCH_HEADER || bytes[0] != PATCH_FORMAT {
            return Err(corrupt("bad header".into()));
        }
        let (rows, cols, dim) = read_shape(bytes);
        if bytes.len() != Self::encoded_len(rows, cols, dim) || dim == 0 {
            return Err(corrupt(format!("{} bytes for {rows}×{cols}×{dim}", bytes.len())));
        }
        read_int8_tokens(&bytes[PATCH_HEADER..], rows, cols, dim)
            .ok_or_else(|| corrupt("a token's scale is not finite".into()))
    }
}

const REGION_FORMAT: u8 = 1;
const REGION_HEADER: usize = 16;

/// Encodes a reduced region grid with its frame: each token int8 with its own scale.
pub(crate) fn encode_region(frame: &RegionFrame, grid: &PatchGrid) -> Vec<u8> {
    let mut out = Vec::with_capacity(encoded_region_len(grid.rows(), grid.cols(), grid.dim()));
    out.push(REGION_FORMAT);
    push_shape(&mut out, grid);
    out.push(frame.orientation);
    out.extend_from_slice(&frame.width.to_le_bytes());
    out.extend_from_slice(&frame.height.to_le_bytes());
    push_int8_tokens(&mut out, grid);
    out
}

/// Bytes of a stored region grid.
pub fn encoded_region_len(rows: usize, cols: usize, dim: usize) -> usize {
    REGION_HEADER + rows * cols * (4 + dim)
}

/// Decodes a stored region grid (tokens as stored: unit length up to int8 rounding).
pub(crate) fn decode_region(bytes: &[u8]) -> Result<(RegionFrame, PatchGrid)> {
    let corrupt = |reason: String| Error::Corrupt { what: "region grid".into(), reason };
    if bytes.len() < REGION_HEADER || bytes[0] != REGION_FORMAT {
        return Err(corrupt("bad header".into()));
    }
    let u32_at = |i: usize| u32::from_le_bytes([bytes[i], bytes[i + 1], bytes[i + 2], bytes[i + 3]]);
    let (rows, cols, dim) = read_shape(bytes);
    let frame = RegionFrame { orientation: bytes[7], width: u32_at(8), height: u32_at(12) };
    if dim == 0 || bytes.len() != encoded_region_len(rows, cols, dim) {
        return Err(corrupt(format!("{} bytes for {rows}×{cols}×{dim}", bytes.len())));
    }
    let tokens = read_int8_tokens(&bytes[REGION_HEADER..], rows, cols, dim);
    Ok((frame, tokens.ok_or_else(|| corrupt("a token's scale is not finite".into()))?))
}

/// Rows, columns and dimension as three little-endian u16 after the format byte.
fn push_shape(out: &mut Vec<u8>, grid: &PatchGrid) {
    for n in [grid.rows(), grid.cols(), grid.dim()] {
        out.extend_from_slice(&(n as u16).to_le_bytes());
    }
}

/// The shape [`push_shape`] wrote; the caller checked that the header is there.
fn read_shape(bytes: &[u8]) -> (usize, usize, usize) {
    let u16_at = |i: usize| u16::from_le_bytes([bytes[i], bytes[i + 1]]) as usize;
    (u16_at(1), u16_at(3), u16_at(5))
}

/// Each token as its f32 scale (`max |v| / 127`, 1 for a zero token) then `dim` int8 values.
fn push_int8_tokens(out: &mut Vec<u8>, grid: &PatchGrid) {
    for token in grid.values().chunks_exact(grid.dim()) {
        let max = token.iter().fold(0f32, |m, v| m.max(v.abs()));
        let scale = if max > 0.0 { max / 127.0 } else { 1.0 };
        out.extend_from_slice(&scale.to_le_bytes());
        out.extend(token.iter().map(|v| (v / scale).round().clamp(-127.0, 127.0) as i8 as u8));
    }
}

/// The tokens [`push_int8_tokens`] wrote; the caller checked `body`'s length against the shape.
/// The tokens, or `None` if a scale could not have been written (negative, or so large that a
/// value would not be finite): damaged bytes must not become NaN scores.
fn read_int8_tokens(body: &[u8], rows: usize, cols: usize, dim: usize) -> Option<PatchGrid> {
    let mut values = Vec::with_capacity(rows * cols * dim);
    for rec in body.chunks_exact(4 + dim) {
        let scale = f32::from_le_bytes([rec[0], rec[1], rec[2], rec[3]]);
        if !(scale >= 0.0 && (scale * 128.0).is_finite()) {
            return None;
        }
        values.extend(rec[4..].iter().map(|&q| q as i8 as f32 * scale));
    }
    Some(PatchGrid::from_parts(rows, cols, dim, values))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn grid(rows: usize, cols: usize, dim: usize) -> PatchGrid {
        let values = (0..rows * cols * dim).map(|i| ((i * 7919) % 201) as f32 / 50.0 - 2.0).collect();
        PatchGrid::new(rows, cols, dim, values).unwrap()
    }

    #[test]
    fn patch_codec_round_trips_within_quantisation_error() {
        let g = grid(5, 3, 16);
        let codec = PatchCodec { pool: 1 };
        let bytes = codec.encode(&g);
        assert_eq!(bytes.len(), PatchCodec::encoded_len(5, 3, 16));
        let back = PatchCodec::decode(&bytes).unwrap();
        for (p, q) in g.values().chunks(16).zip(back.values().chunks(16)) {
            let max = p.iter().fold(0f32, |m, v| m.max(v.abs()));
            assert!(p.iter().zip(q).all(|(a, b)| (a - b).abs() <= max / 127.0 / 2.0 + 1e-6));
        }
        assert!(PatchCodec::decode(&bytes[..bytes.len() - 1]).is_err());
    }

    #[test]
    fn budget_picks_the_finest_pooling_that_fits() {
        // ViT-S/14 @224: 16×16×384 int8 is 99 335 bytes.
        assert_eq!(PatchCodec::for_budget(16, 16, 384, 128 << 10).pool, 1);
        // ViT-H/16 @256: 16×16×1280 needs 2×2 pooling (82 183 bytes).
        assert_eq!(PatchCodec::for_budget(16, 16, 1280, 128 << 10).pool, 2);
        assert_eq!(PatchCodec::encoded_len(8, 8, 1280), 82_183);
    }

    #[test]
    fn region_grids_round_trip_with_their_frame() {
        let g = PatchGrid::new(2, 3, 4, (0..24).map(|i| (i as f32 - 12.0) / 12.0).collect()).unwrap();
        let f = RegionFrame { width: 300, height: 200, orientation: 8 };
        let bytes = encode_region(&f, &g);
        assert_eq!(bytes.len(), encoded_region_len(2, 3, 4));
        let (f2, g2) = decode_region(&bytes).unwrap();
        assert_eq!(f2, f);
        assert_eq!((g2.rows(), g2.cols(), g2.dim()), (2, 3, 4));
        assert!(g.values().iter().zip(g2.values()).all(|(a, b)| (a - b).abs() < 0.01));
        assert!(decode_region(&bytes[..bytes.len() - 1]).is_err());
    }
}
