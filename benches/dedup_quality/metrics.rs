//! Pairwise precision / recall / F1 of predicted groups against the truth, and the choice of a
//! sweep point on seed A.

use std::collections::{BTreeMap, HashMap, HashSet};

use crate::library::{Library, pair};

/// Precision the default must keep (deleting a non-duplicate is the expensive mistake).
pub const MIN_PRECISION: f64 = 0.98;

/// Predicted (or true) pairs of item indices, smaller first.
pub type Pairs = HashSet<(u32, u32)>;

/// Score and predicted pairs at each point of a sweep.
pub type Sweep = Vec<(Score, Pairs)>;

/// Pairwise precision, recall and F1.
#[derive(Debug, Clone, Copy, Default)]
pub struct Score {
    pub p: f64,
    pub r: f64,
    pub f1: f64,
}

fn find(parent: &mut [usize], mut x: usize) -> usize {
    while parent[x] != x {
        parent[x] = parent[parent[x]];
        x = parent[x];
    }
    x
}

/// Predicted pairs of groups over items `0..n`; groups sharing an item are merged first.
pub fn group_pairs(n: usize, groups: &[Vec<usize>]) -> HashSet<(u32, u32)> {
    let mut parent: Vec<usize> = (0..n).collect();
    for g in groups {
        for w in g.windows(2) {
            let (a, b) = (find(&mut parent, w[0]), find(&mut parent, w[1]));
            parent[a] = b;
        }
    }
    let mut components: HashMap<usize, Vec<usize>> = HashMap::new();
    let mut grouped: Vec<usize> = groups.iter().flatten().copied().collect();
    grouped.sort_unstable();
    grouped.dedup();
    for i in grouped {
        let r = find(&mut parent, i);
        components.entry(r).or_default().push(i);
    }
    let mut pairs = HashSet::new();
    for members in components.values() {
        for (x, &a) in members.iter().enumerate() {
            for &b in &members[x + 1..] {
                pairs.insert(pair(a, b));
            }
        }
    }
    pairs
}

/// Connected components over the edges `(i, j)` with `edge(i, j)`.
pub fn components(n: usize, edge: impl Fn(usize, usize) -> bool) -> HashSet<(u32, u32)> {
    let mut groups = Vec::new();
    for i in 0..n {
        for j in i + 1..n {
            if edge(i, j) {
                groups.push(vec![i, j]);
            }
        }
    }
    group_pairs(n, &groups)
}

pub fn score(truth: &HashSet<(u32, u32)>, predicted: &HashSet<(u32, u32)>) -> Score {
    let correct = predicted.intersection(truth).count();
    let p = if predicted.is_empty() { 1.0 } else { correct as f64 / predicted.len() as f64 };
    let r = correct as f64 / truth.len().max(1) as f64;
    let f1 = if p + r > 0.0 { 2.0 * p * r / (p + r) } else { 0.0 };
    Score { p, r, f1 }
}

/// Index of the row with max F1 subject to P >= MIN_PRECISION (else max F1); ties: higher P.
pub fn choose(scores: &[Score]) -> (usize, bool) {
    let best = |ok: &dyn Fn(&Score) -> bool| {
        scores
            .iter()
            .enumerate()
            .filter(|(_, s)| ok(s))
            .max_by(|(_, a), (_, b)| a.f1.total_cmp(&b.f1).then(a.p.total_cmp(&b.p)))
            .map(|(i, _)| i)
    };
    match best(&|s| s.p >= MIN_PRECISION) {
        Some(i) => (i, true),
        None => (best(&|_| true).expect("scores"), false),
    }
}

/// Per pair type: (truth pairs, found).
pub fn per_type(lib: &Library, predicted: &HashSet<(u32, u32)>) -> BTreeMap<String, (usize, usize)> {
    let mut out: BTreeMap<String, (usize, usize)> = BTreeMap::new();
    for (p, t) in &lib.pair_type {
        let e = out.entry(t.clone()).or_default();
        e.0 += 1;
        e.1 += predicted.contains(p) as usize;
    }
    out
}

/// Scores the pairs `predict` gives at each point of a sweep.
pub fn sweep<T: Copy>(truth: &Pairs, points: &[T], predict: impl Fn(T) -> Pairs) -> Sweep {
    points
        .iter()
        .map(|&t| {
            let pairs = predict(t);
            (score(truth, &pairs), pairs)
        })
        .collect()
}

/// The scores of a sweep, in order.
pub fn scores(sweep: &Sweep) -> Vec<Score> {
    sweep.iter().map(|s| s.0).collect()
}
