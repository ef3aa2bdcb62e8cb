//! Patch-level geometric verification of a candidate duplicate pair: do many patches of one image
//! reappear in the other under one affine map?
//!
//! 1. Cosine similarities between every patch of `a` and every patch of `b` (one GEMM).
//! 2. Mutual nearest neighbours, kept only if they pass a ratio test on the cosine distance
//!    `d = √(2 − 2s)`: `d₁ < 0.97 d₂`. Without the ratio test, flat or white backgrounds give large,
//!    geometrically consistent match sets between different objects.
//! 3. Affine RANSAC over the patch centres (grid units; affine, not similarity, because squashing
//!    to the model's square input turns aspect crops into anisotropic scales): 3-point hypotheses,
//!    inliers within 1.5 patches, linear part with singular values in `[0.3, 3.5]` and a positive
//!    determinant (a mirror is checked against the stored mirrored view instead), then a
//!    least-squares refit on the inliers.
//!
//! The score is the inlier count over `a`'s patch count. The recipe is the one
//! `shared/notes/dedup-research.md` measured; its ratio (0.95 there) is 0.97 here, chosen with
//! the thresholds on the tuning seed of `benches/dedup_quality.rs` (quantised patches make
//! near-ties a little noisier).

use crate::vectors::PatchGrid;

const RATIO: f32 = 0.97;
const HYPOTHESES: usize = 150;
const INLIER_PATCHES: f32 = 1.5;
const SINGULAR_RANGE: (f32, f32) = (0.3, 3.5);

/// A patch grid with every patch L2-normalised (a zero patch stays zero).
#[derive(Debug, Clone)]
pub(crate) struct UnitGrid {
    rows: usize,
    cols: usize,
    dim: usize,
    values: Vec<f32>,
}

impl From<&PatchGrid> for UnitGrid {
    fn from(g: &PatchGrid) -> Self {
        let mut values = g.values().to_vec();
        for patch in values.chunks_exact_mut(g.dim()) {
            let norm = patch.iter().map(|v| v * v).sum::<f32>().sqrt();
            if norm > 1e-12 {
                patch.iter_mut().for_each(|v| *v /= norm);
            }
        }
        Self { rows: g.rows(), cols: g.cols(), dim: g.dim(), values }
    }
}

impl UnitGrid {
    fn len(&self) -> usize {
        self.rows * self.cols
    }

    /// Centre of patch `i` in grid units (x = column, y = row).
    fn centre(&self, i: usize) -> (f32, f32) {
        ((i % self.cols) as f32 + 0.5, (i / self.cols) as f32 + 0.5)
    }
}

/// `a · bᵀ`: row `i` holds the similarities of `a`'s patch `i` to every patch of `b`.
fn similarities(a: &UnitGrid, b: &UnitGrid) -> Vec<f32> {
    crate::linalg::matmul_nt(&a.values, &b.values, a.dim)
}

/// Mutual nearest-neighbour matches that pass the ratio test: `(patch of a, patch of b)`.
fn matches(a: &UnitGrid, b: &UnitGrid) -> Vec<(usize, usize)> {
    let (m, n) = (a.len(), b.len());
    if m == 0 || n < 2 || a.dim != b.dim {
        return Vec::new();
    }
    let s = similarities(a, b);
    let mut best_of_col = vec![(f32::NEG_INFINITY, 0usize); n];
    let mut best_of_row = Vec::with_capacity(m);
    for i in 0..m {
        let row = &s[i * n..(i + 1) * n];
        let (mut s1, mut j1, mut s2) = (f32::NEG_INFINITY, 0, f32::NEG_INFINITY);
        for (j, &v) in row.iter().enumerate() {
            if v > s1 {
                (s2, s1, j1) = (s1, v, j);
            } else if v > s2 {
                s2 = v;
            }
            if v > best_of_col[j].0 {
                best_of_col[j] = (v, i);
            }
        }
        best_of_row.push((j1, s1, s2));
    }
    let distance = |s: f32| (2.0 - 2.0 * s).max(0.0).sqrt();
    best_of_row
        .into_iter()
        .enumerate()
        .filter(|&(i, (j, s1, s2))| best_of_col[j].1 == i && distance(s1) < RATIO * distance(s2))
        .map(|(i, (j, _, _))| (i, j))
        .collect()
}

/// `[x', y'] = [[m0, m1, m2], [m3, m4, m5]] · [x, y, 1]`.
type Affine = [f32; 6];

fn apply(t: &Affine, (x, y): (f32, f32)) -> (f32, f32) {
    (t[0] * x + t[1] * y + t[2], t[3] * x + t[4] * y + t[5])
}

/// Whether the linear part is a plausible edit: no mirror, no collapse, no extreme zoom.
fn plausible(t: &Affine) -> bool {
    let (a, b, c, d) = (t[0], t[1], t[3], t[4]);
    let det = a * d - b * c;
    if det <= 0.0 {
        return false;
    }
    // Singular values of [[a, b], [c, d]]: σ² = (S ± √(S² − 4 det²)) / 2 with S the squared norm.
    let s = a * a + b * b + c * c + d * d;
    let root = (s * s - 4.0 * det * det).max(0.0).sqrt();
    let (hi, lo) = (((s + root) / 2.0).sqrt(), ((s - root) / 2.0).max(0.0).sqrt());
    lo >= SINGULAR_RANGE.0 && hi <= SINGULAR_RANGE.1
}

/// Least-squares affine map from `src` to `dst` (exact for three points), if well-posed.
fn fit(src: &[(f32, f32)], dst: &[(f32, f32)]) -> Option<Affine> {
    // Normal equations of [x y 1] · p = x' (and y'), in f64: 3×3, solved by Cramer's rule.
    let mut ata = [[0f64; 3]; 3];
    let (mut atx, mut aty) = ([0f64; 3], [0f64; 3]);
    for (&(x, y), &(u, v)) in src.iter().zip(dst) {
        let row = [x as f64, y as f64, 1.0];
        for r in 0..3 {
            for c in 0..3 {
                ata[r][c] += row[r] * row[c];
            }
            atx[r] += row[r] * u as f64;
            aty[r] += row[r] * v as f64;
        }
    }
    let det3 = |m: &[[f64; 3]; 3]| {
        m[0][0] * (m[1][1] * m[2][2] - m[1][2] * m[2][1]) - m[0][1] * (m[1][0] * m[2][2] - m[1][2] * m[2][0])
            + m[0][2] * (m[1][0] * m[2][1] - m[1][1] * m[2][0])
    };
    let det = det3(&ata);
    if det.abs() < 1e-6 {
        return None; // collinear points
    }
    let solve = |rhs: &[f64; 3]| {
        let mut p = [0f32; 3];
        for (col, out) in p.iter_mut().enumerate() {
            let mut m = ata;
            for r in 0..3 {
                m[r][col] = rhs[r];
            }
            *out = (det3(&m) / det) as f32;
        }
        p
    };
    let (px, py) = (solve(&atx), solve(&aty));
    Some([px[0], px[1], px[2], py[0], py[1], py[2]])
}

/// A small deterministic generator (splitmix64): the same pair always gets the same score.
struct SplitMix(u64);

impl SplitMix {
    fn below(&mut self, n: usize) -> usize {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        ((z ^ (z >> 31)) % n as u64) as usize
    }
}

/// Fraction of `a`'s patches that reappear in `b` under one plausible affine map (0 to 1).
pub(crate) fn geometric_score(a: &UnitGrid, b: &UnitGrid, seed: u64) -> f32 {
    let found = matches(a, b);
    if found.len() < 3 {
        return 0.0;
    }
    let src: Vec<(f32, f32)> = found.iter().map(|&(i, _)| a.centre(i)).collect();
    let dst: Vec<(f32, f32)> = found.iter().map(|&(_, j)| b.centre(j)).collect();
    let inliers = |t: &Affine| -> Vec<usize> {
        (0..src.len())
            .filter(|&i| {
                let (x, y) = apply(t, src[i]);
                let (dx, dy) = (x - dst[i].0, y - dst[i].1);
                dx * dx + dy * dy < INLIER_PATCHES * INLIER_PATCHES
            })
            .collect()
    };
    let mut rng = SplitMix(seed);
    let mut best: Vec<usize> = Vec::new();
    for _ in 0..HYPOTHESES {
        let (i, j, k) = (rng.below(src.len()), rng.below(src.len()), rng.below(src.len()));
        if i == j || j == k || i == k {
            continue;
        }
        let Some(t) = fit(&[src[i], src[j], src[k]], &[dst[i], dst[j], dst[k]]) else { continue };
        if !plausible(&t) {
            continue;
        }
        let these = inliers(&t);
        if these.len() > best.len() {
            best = these;
        }
    }
    if best.len() >= 3 {
        let pick = |v: &[(f32, f32)]| best.iter().map(|&i| v[i]).collect::<Vec<_>>();
        if let Some(t) = fit(&pick(&src), &pick(&dst)).filter(plausible) {
            let refit = inliers(&t);
            if refit.len() > best.len() {
                best = refit;
            }
        }
    }
    best.len() as f32 / a.len() as f32
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A grid whose patch (r, c) is a pseudo-random vector determined by (r + dr, c + dc): the
    /// content of a scene seen through a window shifted by (dr, dc).
    fn scene(rows: usize, cols: usize, dr: usize, dc: usize, dim: usize, salt: u64) -> PatchGrid {
        let mut values = Vec::with_capacity(rows * cols * dim);
        for r in 0..rows {
            for c in 0..cols {
                let mut rng = SplitMix(((r + dr) as u64) << 32 ^ (c + dc) as u64 ^ salt.rotate_left(17));
                values.extend((0..dim).map(|_| rng.below(2001) as f32 / 1000.0 - 1.0));
            }
        }
        PatchGrid::new(rows, cols, dim, values).unwrap()
    }

    #[test]
    fn a_grid_matches_itself_completely() {
        let g = UnitGrid::from(&scene(8, 8, 0, 0, 32, 1));
        assert_eq!(geometric_score(&g, &g, 7), 1.0);
    }

    #[test]
    fn a_shifted_view_of_the_same_scene_matches_its_overlap() {
        // An 8×8 window and the same window moved by 2 rows and 1 column share 6×7 patches.
        let a = UnitGrid::from(&scene(8, 8, 0, 0, 32, 1));
        let b = UnitGrid::from(&scene(8, 8, 2, 1, 32, 1));
        let score = geometric_score(&a, &b, 7);
        assert!((score - 42.0 / 64.0).abs() < 1e-6, "{score}");
    }

    #[test]
    fn different_scenes_and_mirrors_do_not_match() {
        let a = UnitGrid::from(&scene(8, 8, 0, 0, 32, 1));
        let other = UnitGrid::from(&scene(8, 8, 0, 0, 32, 2));
        assert!(geometric_score(&a, &other, 7) < 0.1);
        // The same patches mirrored left to right: consistent only under a reflection.
        let g = scene(8, 8, 0, 0, 32, 1);
        let mut mirrored = g.clone();
        for r in 0..8 {
            for c in 0..8 {
                let (to, from) = ((r * 8 + c) * 32, (r * 8 + 7 - c) * 32);
                mirrored.values_mut()[to..to + 32].copy_from_slice(&g.values()[from..from + 32]);
            }
        }
        assert!(geometric_score(&a, &UnitGrid::from(&mirrored), 7) < 0.1);
    }

    #[test]
    fn affine_fit_recovers_a_map_and_rejects_implausible_ones() {
        let t: Affine = [1.2, 0.1, 3.0, -0.05, 0.9, -1.0];
        let src = [(0.0, 0.0), (5.0, 1.0), (2.0, 7.0), (4.0, 4.0)];
        let dst: Vec<_> = src.iter().map(|&p| apply(&t, p)).collect();
        let fitted = fit(&src, &dst).unwrap();
        assert!(fitted.iter().zip(&t).all(|(a, b)| (a - b).abs() < 1e-4), "{fitted:?}");
        assert!(plausible(&t));
        assert!(!plausible(&[-1.0, 0.0, 0.0, 0.0, 1.0, 0.0]), "mirror");
        assert!(!plausible(&[5.0, 0.0, 0.0, 0.0, 5.0, 0.0]), "zoom");
        assert!(fit(&[(0.0, 0.0), (1.0, 1.0), (2.0, 2.0)], &src[..3]).is_none(), "collinear");
    }
}
