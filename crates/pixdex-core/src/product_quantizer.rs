//! Product quantisation of unit tokens ([`ProductQuantizer`]): each token is split into
//! `subspaces` interleaved parts and each part stored as the byte of its nearest centroid among
//! up to 256, so a 128-d token takes 32 bytes (4 dimensions per byte) instead of 132 as int8
//! with a scale. The centroids are k-means on a sample of the collection's own tokens, fitted
//! once and pinned with the [`crate::TokenReduction`] they follow.
//!
//! The subspaces interleave the dimensions (subspace `s` holds dimensions `s, s + m, s + 2m, …`):
//! after a PCA the leading directions carry most of the variance, and interleaving spreads them
//! evenly over the subspaces instead of giving the first subspace all of them.

use crate::error::{Error, Result};

/// Centroids per subspace: one byte per code.
const CENTROIDS: usize = 256;
const ITERATIONS: usize = 12;

/// Product quantiser over `dim`-wide tokens; see the module docs.
#[derive(Debug, Clone, PartialEq)]
pub struct ProductQuantizer {
    dim: usize,
    subspaces: usize,
    /// Centroids per subspace (≤ 256; fewer when fitted on fewer tokens).
    k: usize,
    /// `subspaces × k × (dim / subspaces)`, each centroid's dimensions in subspace order.
    centroids: Vec<f32>,
}

impl ProductQuantizer {
    /// Fits `subspaces` codebooks (at most: the largest count ≤ `subspaces` that divides `dim`)
    /// on `tokens` (`dim` wide, at least one) by k-means seeded with evenly spaced tokens.
    /// Deterministic: the same tokens in the same order give the same quantiser.
    pub fn fit(tokens: &[f32], dim: usize, subspaces: usize) -> Result<Self> {
        let n = tokens.len() / dim.max(1);
        if dim == 0 || n == 0 || !tokens.len().is_multiple_of(dim) {
            return Err(Error::InvalidVector("no tokens to fit a product quantiser on".into()));
        }
        let subspaces = (1..=subspaces.clamp(1, dim)).rev().find(|m| dim.is_multiple_of(*m)).unwrap_or(1);
        let sub = dim / subspaces;
        let k = CENTROIDS.min(n);
        let mut centroids = Vec::with_capacity(subspaces * k * sub);
        let mut part = vec![0f32; n * sub];
        for s in 0..subspaces {
            for (t, out) in tokens.chunks_exact(dim).zip(part.chunks_exact_mut(sub)) {
                gather(t, s, subspaces, out);
            }
            centroids.extend(kmeans(&part, sub, k));
        }
        Ok(Self { dim, subspaces, k, centroids })
    }

    /// Width of the tokens it codes.
    pub fn dim(&self) -> usize {
        self.dim
    }

    /// Bytes per coded token.
    pub fn code_len(&self) -> usize {
        self.subspaces
    }

    fn sub(&self) -> usize {
        self.dim / self.subspaces
    }

    fn codebook(&self, s: usize) -> &[f32] {
        let len = self.k * self.sub();
        &self.centroids[s * len..(s + 1) * len]
    }

    /// Appends the codes of every token of `tokens` (`dim` wide) to `out`.
    pub fn encode(&self, tokens: &[f32], out: &mut Vec<u8>) {
        let sub = self.sub();
        let transposed: Vec<Vec<f32>> = (0..self.subspaces).map(|s| transpose(self.codebook(s), sub)).collect();
        let (mut part, mut distances) = (vec![0f32; sub], vec![0f32; self.k]);
        let start = out.len();
        out.resize(start + tokens.len() / self.dim * self.subspaces, 0);
        for (t, codes) in tokens.chunks_exact(self.dim).zip(out[start..].chunks_exact_mut(self.subspaces)) {
            for (s, code) in codes.iter_mut().enumerate() {
                gather(t, s, self.subspaces, &mut part);
                *code = nearest_transposed(&transposed[s], &part, &mut distances) as u8;
            }
        }
    }

    /// The tokens `codes` stand for, each scaled to unit length (a token is stored as a
    /// direction), appended to `out`; `None` if a code names a centroid it does not have
    /// (damaged bytes).
    pub fn decode_unit(&self, codes: &[u8], out: &mut Vec<f32>) -> Option<()> {
        let sub = self.sub();
        for token_codes in codes.chunks_exact(self.subspaces) {
            let start = out.len();
            out.resize(start + self.dim, 0.0);
            let token = &mut out[start..];
            for (s, &c) in token_codes.iter().enumerate() {
                let c = c as usize;
                if c >= self.k {
                    return None;
                }
                let centroid = &self.codebook(s)[c * sub..(c + 1) * sub];
                for (j, v) in centroid.iter().enumerate() {
                    token[s + j * self.subspaces] = *v;
                }
            }
            let norm = token.iter().map(|v| v * v).sum::<f32>().sqrt();
            if norm > 1e-12 {
                token.iter_mut().for_each(|v| *v /= norm);
            }
        }
        Some(())
    }

    pub(crate) fn to_bytes(&self, out: &mut Vec<u8>) {
        for n in [self.dim, self.subspaces, self.k] {
            out.extend_from_slice(&(n as u32).to_le_bytes());
        }
        for v in &self.centroids {
            out.extend_from_slice(&v.to_le_bytes());
        }
    }

    /// The quantiser [`Self::to_bytes`] wrote, from the start of `bytes` to its end.
    pub(crate) fn from_bytes(bytes: &[u8]) -> Result<Self> {
        let corrupt = |reason: &str| Error::Corrupt { what: "product quantiser".into(), reason: reason.into() };
        if bytes.len() < 12 {
            return Err(corrupt("short header"));
        }
        let u32_at = |i: usize| u32::from_le_bytes([bytes[i], bytes[i + 1], bytes[i + 2], bytes[i + 3]]) as usize;
        let (dim, subspaces, k) = (u32_at(0), u32_at(4), u32_at(8));
        if dim == 0 || subspaces == 0 || dim % subspaces != 0 || k == 0 || k > CENTROIDS {
            return Err(corrupt("bad shape"));
        }
        // Checked: a damaged header must not overflow into a length that happens to match.
        let len = subspaces.checked_mul(k).and_then(|n| n.checked_mul(dim / subspaces)).and_then(|n| n.checked_mul(4));
        if len.and_then(|n| n.checked_add(12)) != Some(bytes.len()) {
            return Err(corrupt("wrong length"));
        }
        let centroids: Vec<f32> =
            bytes[12..].chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect();
        if centroids.iter().any(|v| !v.is_finite()) {
            return Err(corrupt("a centroid is not finite"));
        }
        Ok(Self { dim, subspaces, k, centroids })
    }
}

/// Subspace `s` of `token`: dimensions `s, s + m, s + 2m, …` (`m` = `subspaces`).
fn gather(token: &[f32], s: usize, subspaces: usize, out: &mut [f32]) {
    for (j, o) in out.iter_mut().enumerate() {
        *o = token[s + j * subspaces];
    }
}

/// `codebook` (`k` rows `sub` wide) as `sub` rows of `k`: distances to every centroid then
/// vectorise across centroids.
fn transpose(codebook: &[f32], sub: usize) -> Vec<f32> {
    let k = codebook.len() / sub;
    let mut t = vec![0f32; codebook.len()];
    for (c, row) in codebook.chunks_exact(sub).enumerate() {
        for (j, v) in row.iter().enumerate() {
            t[j * k + c] = *v;
        }
    }
    t
}

/// Index of the centroid nearest to `x` (Euclidean; the first of equals), the codebook given
/// [transposed](transpose); `distances` is scratch of one slot per centroid.
fn nearest_transposed(transposed: &[f32], x: &[f32], distances: &mut [f32]) -> usize {
    let k = distances.len();
    distances.iter_mut().for_each(|d| *d = 0.0);
    for (row, &xj) in transposed.chunks_exact(k).zip(x) {
        for (d, &c) in distances.iter_mut().zip(row) {
            *d += (xj - c) * (xj - c);
        }
    }
    let mut best = (f32::INFINITY, 0);
    for (i, &d) in distances.iter().enumerate() {
        if d < best.0 {
            best = (d, i);
        }
    }
    best.1
}

/// `k` centroids of `points` (`sub` wide) by Lloyd's k-means, seeded with evenly spaced points; a
/// centroid that loses all its points keeps its place.
fn kmeans(points: &[f32], sub: usize, k: usize) -> Vec<f32> {
    let n = points.len() / sub;
    let mut centroids: Vec<f32> =
        (0..k).flat_map(|i| points[(i * n / k) * sub..(i * n / k + 1) * sub].iter().copied()).collect();
    let mut sums = vec![0f32; k * sub];
    let mut counts = vec![0usize; k];
    let mut distances = vec![0f32; k];
    for _ in 0..ITERATIONS {
        sums.iter_mut().for_each(|s| *s = 0.0);
        counts.iter_mut().for_each(|c| *c = 0);
        let transposed = transpose(&centroids, sub);
        for p in points.chunks_exact(sub) {
            let c = nearest_transposed(&transposed, p, &mut distances);
            counts[c] += 1;
            sums[c * sub..(c + 1) * sub].iter_mut().zip(p).for_each(|(s, v)| *s += v);
        }
        for ((c, s), &count) in centroids.chunks_exact_mut(sub).zip(sums.chunks_exact(sub)).zip(&counts) {
            if count > 0 {
                c.iter_mut().zip(s).for_each(|(c, s)| *c = s / count as f32);
            }
        }
    }
    centroids
}

#[cfg(test)]
mod tests {
    use super::*;

    fn unit_tokens(n: usize, dim: usize, seed: u64) -> Vec<f32> {
        let mut state = seed;
        let mut next = || {
            state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            ((state >> 40) as f32 / (1u64 << 24) as f32) - 0.5
        };
        let mut v: Vec<f32> = (0..n * dim).map(|_| next()).collect();
        crate::linalg::normalise_rows(&mut v, dim);
        v
    }

    #[test]
    fn codes_round_trip_close_to_the_tokens_and_bytes_round_trip() {
        let (dim, n) = (16, 3000);
        let tokens = unit_tokens(n, dim, 7);
        let pq = ProductQuantizer::fit(&tokens, dim, 8).unwrap();
        assert_eq!(pq.code_len(), 8);
        let mut codes = Vec::new();
        pq.encode(&tokens, &mut codes);
        assert_eq!(codes.len(), n * 8);
        let mut back = Vec::new();
        pq.decode_unit(&codes, &mut back).unwrap();
        let mean_cos: f32 = tokens
            .chunks(dim)
            .zip(back.chunks(dim))
            .map(|(a, b)| a.iter().zip(b).map(|(x, y)| x * y).sum::<f32>())
            .sum::<f32>()
            / n as f32;
        // 2 dimensions per byte of uniform noise: a close approximation.
        assert!(mean_cos > 0.95, "{mean_cos}");
        let mut bytes = Vec::new();
        pq.to_bytes(&mut bytes);
        assert_eq!(ProductQuantizer::from_bytes(&bytes).unwrap(), pq);
        assert!(ProductQuantizer::from_bytes(&bytes[..bytes.len() - 1]).is_err());
        // A code past the centroids it has is refused, not read out of bounds.
        let few = ProductQuantizer::fit(&tokens[..10 * dim], dim, 8).unwrap();
        assert!(few.decode_unit(&[200; 8], &mut Vec::new()).is_none());
    }

    #[test]
    fn subspaces_divide_the_dimension() {
        let tokens = unit_tokens(50, 12, 3);
        assert_eq!(ProductQuantizer::fit(&tokens, 12, 8).unwrap().code_len(), 6);
        assert_eq!(ProductQuantizer::fit(&tokens, 12, 64).unwrap().code_len(), 12);
        assert!(ProductQuantizer::fit(&[], 12, 4).is_err());
    }
}
