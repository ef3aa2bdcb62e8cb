//! How stored tokens (region grids, patch grids) are reduced before storage and before matching
//! ([`TokenReduction`]): centred, projected on their top principal directions (PCA by subspace
//! iteration), unit length, and in collections made since format 2, product-quantised.

use crate::error::{Error, Result};
use crate::linalg::{matmul_nt, normalise_rows};
use crate::product_quantizer::ProductQuantizer;
use crate::vectors::PatchGrid;

/// How tokens are reduced before storage and before matching: subtract the mean token (post-LN
/// tokens share a large common component that makes every cosine high), project on the top
/// principal directions, normalise to unit length; then, where it has a quantiser, store each
/// token as product-quantisation codes. Fitted once per kind of grid, on the first grids a
/// collection stores, and pinned in its metadata so that every later grid and every query
/// reduces the same way.
#[derive(Debug, Clone, PartialEq)]
pub struct TokenReduction {
    dim_in: usize,
    dim_out: usize,
    mu: Vec<f32>,
    /// `dim_out × dim_in`, orthonormal rows.
    basis: Vec<f32>,
    /// Codes of the reduced tokens (format 2); without one (format 1, collections made before
    /// it) tokens are stored as int8.
    quantizer: Option<ProductQuantizer>,
}

/// Format 1: the PCA alone; format 2: followed by the product quantiser.
const REDUCTION_FORMAT: u8 = 1;
const QUANTISED_FORMAT: u8 = 2;
/// Tokens used to fit the reduction: plenty for a 384- or 1280-d covariance.
const FIT_SAMPLE: usize = 40_000;
const FIT_ITERATIONS: usize = 24;

impl TokenReduction {
    /// Fits the reduction to the tokens of `grids` (all of one dimension), keeping
    /// `min(dim_out, dim)` directions, and with `subspaces`, a product quantiser of that many
    /// bytes per token fitted on the same tokens reduced.
    pub fn fit(grids: &[&PatchGrid], dim_out: usize, subspaces: Option<usize>) -> Result<Self> {
        let dim = grids.first().map(|g| g.dim()).ok_or_else(|| Error::InvalidQuery("no grids to fit".into()))?;
        if dim == 0 || grids.iter().any(|g| g.dim() != dim) {
            return Err(Error::InvalidVector("region grids of different dimensions".into()));
        }
        let total: usize = grids.iter().map(|g| g.rows() * g.cols()).sum();
        let step = total.div_ceil(FIT_SAMPLE).max(1);
        let sample: Vec<&[f32]> = grids.iter().flat_map(|g| g.values().chunks_exact(dim)).step_by(step).collect();
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
        let mut reduction = Self { dim_in: dim, dim_out, mu, basis, quantizer: None };
        if let Some(subspaces) = subspaces {
            let sample: Vec<f32> = sample.concat();
            let reduced = reduction.reduce(&PatchGrid::from_parts(1, sample.len() / dim, dim, sample))?;
            reduction.quantizer = Some(ProductQuantizer::fit(reduced.values(), dim_out, subspaces)?);
        }
        Ok(reduction)
    }

    /// How reduced tokens are stored, in words: `PCA-128, 32 code bytes per token` or (without a
    /// quantiser) `PCA-128 int8`.
    pub fn describe(&self) -> String {
        match &self.quantizer {
            Some(q) => format!("PCA-{}, {} code bytes per token", self.dim_out, q.code_len()),
            None => format!("PCA-{} int8", self.dim_out),
        }
    }

    /// The product quantiser reduced tokens are stored through, if the reduction has one.
    pub fn quantizer(&self) -> Option<&ProductQuantizer> {
        self.quantizer.as_ref()
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
        if grid.dim() != self.dim_in {
            return Err(Error::InvalidVector(format!("{}-d tokens for a {}-d reduction", grid.dim(), self.dim_in)));
        }
        let mut centred = grid.values().to_vec();
        for t in centred.chunks_exact_mut(self.dim_in) {
            t.iter_mut().zip(&self.mu).for_each(|(v, m)| *v -= m);
        }
        let mut values = matmul_nt(&centred, &self.basis, self.dim_in);
        normalise_rows(&mut values, self.dim_out);
        Ok(PatchGrid::from_parts(grid.rows(), grid.cols(), self.dim_out, values))
    }

    pub(crate) fn to_bytes(&self) -> Vec<u8> {
        let mut out = vec![if self.quantizer.is_some() { QUANTISED_FORMAT } else { REDUCTION_FORMAT }];
        out.extend_from_slice(&(self.dim_in as u32).to_le_bytes());
        out.extend_from_slice(&(self.dim_out as u32).to_le_bytes());
        for v in self.mu.iter().chain(&self.basis) {
            out.extend_from_slice(&v.to_le_bytes());
        }
        if let Some(q) = &self.quantizer {
            q.to_bytes(&mut out);
        }
        out
    }

    pub(crate) fn from_bytes(bytes: &[u8]) -> Result<Self> {
        let corrupt = |reason: &str| Error::Corrupt { what: "token reduction".into(), reason: reason.into() };
        if bytes.len() < 9 || ![REDUCTION_FORMAT, QUANTISED_FORMAT].contains(&bytes[0]) {
            return Err(corrupt("bad header"));
        }
        let u32_at = |i: usize| u32::from_le_bytes([bytes[i], bytes[i + 1], bytes[i + 2], bytes[i + 3]]) as usize;
        let (dim_in, dim_out) = (u32_at(1), u32_at(5));
        // Checked: a damaged header must not overflow into a length that happens to match.
        let len = dim_out.checked_add(1).and_then(|n| n.checked_mul(dim_in)).and_then(|n| n.checked_mul(4));
        let end = len.and_then(|n| n.checked_add(9)).filter(|&end| end <= bytes.len());
        let Some(end) = end.filter(|_| dim_in > 0 && dim_out > 0) else { return Err(corrupt("wrong length")) };
        let quantizer = match bytes[0] {
            QUANTISED_FORMAT => Some(ProductQuantizer::from_bytes(&bytes[end..])?),
            _ if end != bytes.len() => return Err(corrupt("wrong length")),
            _ => None,
        };
        if quantizer.as_ref().is_some_and(|q| q.dim() != dim_out) {
            return Err(corrupt("the quantiser's width is not the reduction's"));
        }
        let floats: Vec<f32> =
            bytes[9..end].chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect();
        let (mu, basis) = floats.split_at(dim_in);
        Ok(Self { dim_in, dim_out, mu: mu.to_vec(), basis: basis.to_vec(), quantizer })
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

#[cfg(test)]
mod tests {
    use super::*;

    fn grid_along(dirs: &[Vec<f32>], rows: usize, cols: usize) -> PatchGrid {
        // Tokens = offset + a·dir0 + b·dir1 with varying a, b: a 2-d subspace plus a mean.
        let dim = dirs[0].len();
        let mut values = Vec::new();
        for i in 0..rows * cols {
            let (a, b) = ((i % 7) as f32 - 3.0, (i % 5) as f32 * 0.3 - 0.6);
            values.extend((0..dim).map(|d| 2.0 + a * dirs[0][d] + b * dirs[1][d]));
        }
        PatchGrid::new(rows, cols, dim, values).unwrap()
    }

    #[test]
    fn reduction_finds_the_principal_subspace_and_round_trips() {
        let dim = 16;
        let e = |k: usize| (0..dim).map(|d| if d == k { 1.0 } else { 0.0 }).collect::<Vec<f32>>();
        let g = grid_along(&[e(3), e(9)], 5, 7);
        let r = TokenReduction::fit(&[&g], 2, None).unwrap();
        assert_eq!((r.dim_in(), r.dim_out()), (16, 2));
        // The basis spans e3 and e9: every reduced token keeps its full norm, so it is unit.
        let reduced = r.reduce(&g).unwrap();
        for (t, orig) in reduced.values().chunks(2).zip(g.values().chunks(dim)) {
            let centred = (orig[3] - r.mean()[3]).powi(2) + (orig[9] - r.mean()[9]).powi(2);
            let n = t.iter().map(|v| v * v).sum::<f32>();
            assert!(centred < 1e-8 || (n - 1.0).abs() < 1e-4, "{n}");
        }
        assert_eq!(TokenReduction::from_bytes(&r.to_bytes()).unwrap(), r);
        assert!(TokenReduction::from_bytes(&r.to_bytes()[1..]).is_err());
        // Asking for more directions than the data has still gives an orthonormal basis.
        let wide = TokenReduction::fit(&[&g], 8, None).unwrap();
        let gram = matmul_nt(&wide.basis, &wide.basis, dim);
        for i in 0..8 {
            for j in 0..8 {
                let want = if i == j { 1.0 } else { 0.0 };
                assert!((gram[i * 8 + j] - want).abs() < 1e-4);
            }
        }
    }
}
