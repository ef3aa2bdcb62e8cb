//! One seed's measurements: every method's sweep over its parameters, the candidate pairs scored
//! once by `Collection::compare_images`, and the real `find_duplicates` at the defaults.

use image::GrayImage;
use pixdex_core::{Collection, DEFAULT_VERIFY_FROM, DedupOptions, DedupPhase, ImageId};
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::AtomicBool;
use std::time::Instant;

use crate::hashes::{dhash, phash};
use crate::library::Library;
use crate::metrics::{Pairs, Score, Sweep, components, group_pairs, score, sweep};
use crate::star::{Candidate, knn_lists, knn_star, linear_star, rule_star};

/// Weights of the geometry in the linear rule `similarity + w · geometry >= c`.
pub const WEIGHTS: [f32; 10] = [0.1, 0.15, 0.2, 0.25, 0.3, 0.4, 0.5, 0.6, 0.75, 1.0];
/// Cuts `c` of the linear rule.
pub const LINEAR_CUTS: [f32; 37] = [
    0.96, 0.9625, 0.965, 0.9675, 0.97, 0.9725, 0.975, 0.9775, 0.98, 0.9825, 0.985, 0.9875, 0.99, 0.9925, 0.995, 0.9975,
    1.0, 1.0025, 1.005, 1.0075, 1.01, 1.0125, 1.015, 1.0175, 1.02, 1.025, 1.03, 1.035, 1.04, 1.05, 1.06, 1.07, 1.08,
    1.1, 1.125, 1.15, 1.2,
];

/// The points every seed is swept over.
pub struct Grid {
    /// Similarity thresholds.
    pub thresholds: Vec<f32>,
    /// Geometry thresholds of the verification.
    pub geometries: Vec<f32>,
    /// Hamming thresholds of the perceptual hashes.
    pub hammings: Vec<u32>,
    /// Neighbours per image (k of the k-NN candidates).
    pub k: usize,
}

impl Grid {
    /// The sweep points, with `k` neighbours per image.
    pub fn new(k: usize) -> Self {
        let thresholds: Vec<f32> = [9000, 9100, 9200, 9300]
            .into_iter()
            .chain((0..=20).map(|i| 9400 + 25 * i))
            .chain([9950, 10_100])
            .map(|t| t as f32 / 10_000.0)
            .collect();
        let geometries: Vec<f32> = [4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 16, 18, 20, 25, 30, 35, 40, 45, 50, 60]
            .map(|g| g as f32 / 100.0)
            .to_vec();
        let hammings: Vec<u32> = (0..=20).collect();
        Self { thresholds, geometries, hammings, k }
    }
}

/// One seed's results.
pub struct SeedResult {
    /// Star over the plain cosine (pixdex before views and verification), per threshold.
    pub plain_star: Sweep,
    /// Connected components over the plain cosine, per threshold.
    pub plain_cc: Sweep,
    /// Star over the similarity across views, no verification, per threshold.
    pub views_star: Sweep,
    /// Views and verification: per geometry threshold, per similarity threshold.
    pub verified: Vec<Sweep>,
    /// `similarity + w · geometry >= c`: per weight, per cut.
    pub linear: Vec<Vec<Score>>,
    pub phash: Sweep,
    pub dhash: Sweep,
    /// The plain cosine matrix.
    pub cos: Vec<f32>,
    pub candidates: Vec<Candidate>,
    /// The real `find_duplicates` at the defaults: score, pairs, seconds.
    pub default_run: (Score, Pairs, f64),
    /// Seconds to score the candidates (similarity over views and both geometries).
    pub scoring_s: f64,
}

fn dot(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

/// Measures every method on `lib`, which `collection` has indexed (among other libraries).
pub fn measure_seed(
    lib: &Library,
    collection: &Collection,
    grid: &Grid,
    cancel: &AtomicBool,
) -> anyhow::Result<SeedResult> {
    let (thresholds, k) = (&grid.thresholds, grid.k);
    let n = lib.items.len();
    let prefix = format!("{}/", lib.root.display());
    let index_of: HashMap<PathBuf, usize> =
        lib.items.iter().enumerate().map(|(i, it)| (lib.root.join(&it.rel), i)).collect();
    let mut ids: Vec<Option<ImageId>> = vec![None; n];
    for entry in collection.records() {
        let (id, record) = entry?;
        if let Some(&i) = index_of.get(&record.path) {
            ids[i] = Some(id);
        }
    }
    let ids: Vec<ImageId> = ids
        .into_iter()
        .map(|id| id.ok_or_else(|| anyhow::anyhow!("an image of seed {} was not indexed", lib.name)))
        .collect::<anyhow::Result<_>>()?;
    let vectors: Vec<Vec<f32>> = ids
        .iter()
        .map(|&id| Ok(collection.global_vector(id)?.ok_or_else(|| anyhow::anyhow!("no vector"))?.as_slice().to_vec()))
        .collect::<anyhow::Result<_>>()?;
    let mut cos = vec![0f32; n * n];
    for (i, row) in cos.chunks_mut(n).enumerate() {
        for (j, c) in row.iter_mut().enumerate() {
            *c = dot(&vectors[i], &vectors[j]);
        }
    }
    let lists = knn_lists(n, &cos, k);
    let plain_star = sweep(&lib.truth, thresholds, |t| group_pairs(n, &knn_star(&lists, t)));
    let plain_cc = sweep(&lib.truth, thresholds, |t| components(n, |i, j| cos[i * n + j] >= t));

    // Candidates as find_duplicates takes them: the k nearest plain vectors to each image's
    // plain, mirrored and grayscale vectors, down to the floor.
    let t = Instant::now();
    let mut queries: Vec<Vec<f32>> = Vec::with_capacity(2 * n);
    for &id in &ids {
        let (f, g) = collection.view_vectors(id)?.ok_or_else(|| anyhow::anyhow!("no views stored"))?;
        queries.extend([f.as_slice().to_vec(), g.as_slice().to_vec()]);
    }
    let mut pairs: Vec<(usize, usize)> = Vec::new();
    for i in 0..n {
        for q in [&vectors[i], &queries[2 * i], &queries[2 * i + 1]] {
            let mut row: Vec<(usize, f32)> = (0..n).map(|j| (j, dot(q, &vectors[j]))).collect();
            row.sort_by(|x, y| y.1.total_cmp(&x.1).then(x.0.cmp(&y.0)));
            pairs.extend(
                row.into_iter()
                    .take(k + 1)
                    .filter(|&(j, s)| j != i && s >= DEFAULT_VERIFY_FROM)
                    .map(|(j, _)| (i.min(j), i.max(j))),
            );
        }
    }
    pairs.sort_unstable();
    pairs.dedup();
    let candidates: Vec<Candidate> = pairs
        .into_iter()
        .map(|(a, b)| {
            let c = collection.compare_images(ids[a], ids[b])?.ok_or_else(|| anyhow::anyhow!("no vectors"))?;
            Ok(Candidate { a, b, similarity: c.similarity, geometry: c.geometry.unwrap_or(0.0) })
        })
        .collect::<anyhow::Result<_>>()?;
    let scoring_s = t.elapsed().as_secs_f64();
    let rule_sweep =
        |g: Option<f32>| sweep(&lib.truth, thresholds, |t| group_pairs(n, &rule_star(n, &candidates, t, g)));
    let views_star = rule_sweep(None);
    let linear: Vec<Vec<Score>> = WEIGHTS
        .iter()
        .map(|&w| {
            LINEAR_CUTS
                .iter()
                .map(|&c| score(&lib.truth, &group_pairs(n, &linear_star(n, &candidates, w, c))))
                .collect()
        })
        .collect();
    let verified: Vec<Sweep> = grid.geometries.iter().map(|&g| rule_sweep(Some(g))).collect();

    // The real thing at the defaults.
    let t = Instant::now();
    let options = DedupOptions { path_prefix: Some(prefix.clone()), neighbours: k, ..Default::default() };
    let groups = collection.find_duplicates(&options, &|_: DedupPhase, _: usize, _: usize| {}, cancel, &mut |_| {})?;
    let default_s = t.elapsed().as_secs_f64();
    let groups: Vec<Vec<usize>> = groups
        .iter()
        .map(|g| {
            g.members
                .iter()
                .map(|m| {
                    index_of
                        .get(&m.record.path)
                        .copied()
                        .ok_or_else(|| anyhow::anyhow!("{} out of scope", m.record.path.display()))
                })
                .collect()
        })
        .collect::<anyhow::Result<_>>()?;
    let default_pairs = group_pairs(n, &groups);
    let default_run = (score(&lib.truth, &default_pairs), default_pairs, default_s);

    let grays: Vec<GrayImage> = lib
        .items
        .iter()
        .map(|it| Ok(image::open(lib.root.join(&it.rel))?.to_luma8()))
        .collect::<anyhow::Result<_>>()?;
    let hash_sweep =
        |h: &[u64]| sweep(&lib.truth, &grid.hammings, |t| components(n, |i, j| (h[i] ^ h[j]).count_ones() <= t));
    let phash = hash_sweep(&grays.iter().map(phash).collect::<Vec<_>>());
    let dhash = hash_sweep(&grays.iter().map(dhash).collect::<Vec<_>>());
    Ok(SeedResult {
        plain_star,
        plain_cc,
        views_star,
        verified,
        linear,
        phash,
        dhash,
        cos,
        candidates,
        default_run,
        scoring_s,
    })
}
