//! Byte encodings of the grids the collection stores: patch grids ([`PatchCodec`]:
//! average-pooled, then reduced) and reduced region grids with their frame. Format 2 stores each
//! token as the product-quantisation codes of the collection's pinned [`TokenReduction`]
//! (32 bytes for a 128-d token); format 1, which collections made before it keep, quantises each
//! token to int8 with its own f32 scale (`max |v| / 127`). Unit vectors are plain little-endian
//! f32 ([`crate::UnitVector`]).

use crate::error::{Error, Result};
use crate::product_quantizer::ProductQuantizer;
use crate::region_grid::RegionFrame;
use crate::token_reduction::TokenReduction;
use crate::vectors::PatchGrid;

/// How patch grids are reduced before storage, recorded in the collection metadata so that
/// queries reduce the same way.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct PatchCodec {
    /// Side of the average-pooling window (1 = full resolution).
    pub pool: usize,
    /// Tokens go through the collection's pinned patch [`TokenReduction`] (PCA, product
    /// quantisation: format 2) rather than int8 (format 1; collections made before it).
    #[serde(default)]
    pub quantised: bool,
}

/// Dimension of stored patch tokens in a quantised collection (centred PCA).
pub const PATCH_DIM: usize = 128;
/// Code bytes per stored patch token (4 dimensions per byte): 8 KB per 16×16 grid.
pub const PATCH_SUBSPACES: usize = 32;

const PATCH_FORMAT: u8 = 1;
const QUANTISED_FORMAT: u8 = 2;
const PATCH_HEADER: usize = 7;

impl PatchCodec {
    /// Full resolution, product-quantised: what new collections use.
    pub fn quantised() -> Self {
        Self { pool: 1, quantised: true }
    }

    /// Bytes of an int8-encoded grid of this (pooled) size.
    pub fn encoded_len(rows: usize, cols: usize, dim: usize) -> usize {
        PATCH_HEADER + rows * cols * (4 + dim)
    }

    /// Pools, then with a `reduction` that quantises, reduces each patch and stores its codes
    /// (format 2); otherwise quantises each patch to int8 with its own scale (`max |v| / 127`).
    pub fn encode(&self, grid: &PatchGrid, reduction: Option<&TokenReduction>) -> Result<Vec<u8>> {
        let g = grid.pooled(self.pool);
        if let Some((r, q)) = reduction.and_then(|r| Some((r, r.quantizer()?))) {
            let reduced = r.reduce(&g)?;
            let mut out = Vec::with_capacity(PATCH_HEADER + g.rows() * g.cols() * q.code_len());
            out.push(QUANTISED_FORMAT);
            push_shape(&mut out, &reduced);
            q.encode(reduced.values(), &mut out);
            return Ok(out);
        }
        let mut out = Vec::with_capacity(Self::encoded_len(g.rows(), g.cols(), g.dim()));
        out.push(PATCH_FORMAT);
        push_shape(&mut out, &g);
        push_int8_tokens(&mut out, &g);
        Ok(out)
    }

    /// Decodes a stored grid (in its pooled resolution; format 2 as unit reduced tokens, which
    /// needs the `reduction` it was stored through).
    pub fn decode(bytes: &[u8], reduction: Option<&TokenReduction>) -> Result<PatchGrid> {
        let corrupt = |reason: String| Error::Corrupt { what: "patch grid".into(), reason };
        if bytes.len() < PATCH_HEADER {
            return Err(corrupt("bad header".into()));
        }
        let (rows, cols, dim) = read_shape(bytes);
        match bytes[0] {
            PATCH_FORMAT => {
                if bytes.len() != Self::encoded_len(rows, cols, dim) || dim == 0 {
                    return Err(corrupt(format!("{} bytes for {rows}×{cols}×{dim}", bytes.len())));
                }
                read_int8_tokens(&bytes[PATCH_HEADER..], rows, cols, dim)
                    .ok_or_else(|| corrupt("a token's scale is not finite".into()))
            }
            QUANTISED_FORMAT => read_codes(&bytes[PATCH_HEADER..], rows, cols, dim, reduction).map_err(corrupt),
            _ => Err(corrupt("bad header".into())),
        }
    }
}

/// The unit tokens of `rows × cols` codes of `reduction`'s quantiser (`dim` its width).
fn read_codes(
    body: &[u8],
    rows: usize,
    cols: usize,
    dim: usize,
    reduction: Option<&TokenReduction>,
) -> std::result::Result<PatchGrid, String> {
    let q: &ProductQuantizer =
        reduction.and_then(|r| r.quantizer()).ok_or("quantised tokens, but the collection has no quantiser pinned")?;
    if q.dim() != dim || body.len() != rows * cols * q.code_len() {
        return Err(format!("{} code bytes for {rows}×{cols}×{dim}", body.len()));
    }
    let mut values = Vec::with_capacity(rows * cols * dim);
    q.decode_unit(body, &mut values).ok_or("a code names no centroid")?;
    Ok(PatchGrid::from_parts(rows, cols, dim, values))
}

const REGION_FORMAT: u8 = 1;
const REGION_HEADER: usize = 16;

/// Encodes a reduced region grid with its frame: each token as the codes of `quantizer` (format
/// 2), or without one, int8 with its own scale (format 1).
pub(crate) fn encode_region(frame: &RegionFrame, grid: &PatchGrid, quantizer: Option<&ProductQuantizer>) -> Vec<u8> {
    let per_token = quantizer.map_or(4 + grid.dim(), |q| q.code_len());
    let mut out = Vec::with_capacity(REGION_HEADER + grid.rows() * grid.cols() * per_token);
    out.push(if quantizer.is_some() { QUANTISED_FORMAT } else { REGION_FORMAT });
    push_shape(&mut out, grid);
    out.push(frame.orientation);
    out.extend_from_slice(&frame.width.to_le_bytes());
    out.extend_from_slice(&frame.height.to_le_bytes());
    match quantizer {
        Some(q) => q.encode(grid.values(), &mut out),
        None => push_int8_tokens(&mut out, grid),
    }
    out
}

/// Bytes of a region grid stored as int8 (format 1).
pub fn encoded_region_len(rows: usize, cols: usize, dim: usize) -> usize {
    REGION_HEADER + rows * cols * (4 + dim)
}

/// Decodes a stored region grid (tokens as stored: unit length up to int8 rounding, or the unit
/// tokens of their codes, which needs the `reduction` they were stored through).
pub(crate) fn decode_region(bytes: &[u8], reduction: Option<&TokenReduction>) -> Result<(RegionFrame, PatchGrid)> {
    let corrupt = |reason: String| Error::Corrupt { what: "region grid".into(), reason };
    if bytes.len() < REGION_HEADER {
        return Err(corrupt("bad header".into()));
    }
    let u32_at = |i: usize| u32::from_le_bytes([bytes[i], bytes[i + 1], bytes[i + 2], bytes[i + 3]]);
    let (rows, cols, dim) = read_shape(bytes);
    let frame = RegionFrame { orientation: bytes[7], width: u32_at(8), height: u32_at(12) };
    let tokens = match bytes[0] {
        REGION_FORMAT => {
            if dim == 0 || bytes.len() != encoded_region_len(rows, cols, dim) {
                return Err(corrupt(format!("{} bytes for {rows}×{cols}×{dim}", bytes.len())));
            }
            read_int8_tokens(&bytes[REGION_HEADER..], rows, cols, dim)
                .ok_or_else(|| corrupt("a token's scale is not finite".into()))?
        }
        QUANTISED_FORMAT => read_codes(&bytes[REGION_HEADER..], rows, cols, dim, reduction).map_err(corrupt)?,
        _ => return Err(corrupt("bad header".into())),
    };
    Ok((frame, tokens))
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
        let codec = PatchCodec { pool: 1, quantised: false };
        let bytes = codec.encode(&g, None).unwrap();
        assert_eq!(bytes.len(), PatchCodec::encoded_len(5, 3, 16));
        let back = PatchCodec::decode(&bytes, None).unwrap();
        for (p, q) in g.values().chunks(16).zip(back.values().chunks(16)) {
            let max = p.iter().fold(0f32, |m, v| m.max(v.abs()));
            assert!(p.iter().zip(q).all(|(a, b)| (a - b).abs() <= max / 127.0 / 2.0 + 1e-6));
        }
        assert!(PatchCodec::decode(&bytes[..bytes.len() - 1], None).is_err());
    }

    #[test]
    fn quantised_grids_round_trip_through_their_reduction_only() {
        let g = grid(6, 5, 16);
        let r = TokenReduction::fit(&[&g], 8, Some(4)).unwrap();
        let bytes = PatchCodec::quantised().encode(&g, Some(&r)).unwrap();
        assert_eq!(bytes.len(), PATCH_HEADER + 30 * 4);
        let back = PatchCodec::decode(&bytes, Some(&r)).unwrap();
        let want = r.reduce(&g).unwrap();
        assert_eq!((back.rows(), back.cols(), back.dim()), (6, 5, 8));
        let mean_cos = want
            .values()
            .chunks(8)
            .zip(back.values().chunks(8))
            .map(|(a, b)| a.iter().zip(b).map(|(x, y)| x * y).sum::<f32>())
            .sum::<f32>()
            / 30.0;
        assert!(mean_cos > 0.9, "{mean_cos}");
        // Without the reduction the codes mean nothing: an error, not a guess.
        assert!(PatchCodec::decode(&bytes, None).is_err());
        assert!(PatchCodec::decode(&bytes[..bytes.len() - 1], Some(&r)).is_err());
        let f = RegionFrame { width: 30, height: 20, orientation: 6 };
        let region = encode_region(&f, &want, r.quantizer());
        let (f2, g2) = decode_region(&region, Some(&r)).unwrap();
        assert_eq!((f2, g2.values()), (f, back.values()));
        assert!(decode_region(&region, None).is_err());
    }

    #[test]
    fn region_grids_round_trip_with_their_frame() {
        let g = PatchGrid::new(2, 3, 4, (0..24).map(|i| (i as f32 - 12.0) / 12.0).collect()).unwrap();
        let f = RegionFrame { width: 300, height: 200, orientation: 8 };
        let bytes = encode_region(&f, &g, None);
        assert_eq!(bytes.len(), encoded_region_len(2, 3, 4));
        let (f2, g2) = decode_region(&bytes, None).unwrap();
        assert_eq!(f2, f);
        assert_eq!((g2.rows(), g2.cols(), g2.dim()), (2, 3, 4));
        assert!(g.values().iter().zip(g2.values()).all(|(a, b)| (a - b).abs() < 0.01));
        assert!(decode_region(&bytes[..bytes.len() - 1], None).is_err());
    }
}
