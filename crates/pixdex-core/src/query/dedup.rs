//! Duplicate groups: exact duplicates by content hash, near duplicates from a k-NN graph over the
//! global vectors, grouped so that chains of pairwise-similar images do not merge different
//! shots.
//!
//! * Candidates come from each image's `neighbours` nearest vectors (the HNSW graph above the
//!   exact-scan threshold, never all pairs); an edge is kept when the cosine reaches the
//!   threshold.
//! * **Star grouping**: the image with the most edges (then the highest sum of edge scores)
//!   becomes a centre, and its group is the centre plus its not-yet-grouped neighbours; repeat.
//!   Every member is directly similar to its centre, so a chain A–B–C–D–E (each similar only to
//!   the next) becomes bounded stars, not one group. Connected components would glue a burst of
//!   different shots into one giant group; complete linkage splits groups of heavy edits (two
//!   edits of one original are often less similar to each other than to the original).
//! * Each group names a suggested keeper chosen by a configurable rule (largest pixel count, then
//!   larger file, then oldest), and every member's similarity to it. Nothing is ever deleted here.
//! * Identical bytes form exact groups; of those only the keeper takes part in near grouping.

use rayon::prelude::*;
use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use crate::collection::{Collection, EXACT_SCAN_BELOW, ImageId, ImageRecord};
use crate::error::{Error, Result};
use crate::index::exact::TopK;

/// The cosine similarity above which two images are near duplicates by default: the highest F1
/// with precision ≥ 0.98 on the real-weights ViT-S/14 and the dev photos (`benches/dedup_quality.rs`:
/// P 0.984, R 0.755 on the tuning seed; P 0.983, R 0.697 held out). 0.965 already lets coins of
/// different denominations pair up.
pub const DEFAULT_NEAR_THRESHOLD: f32 = 0.9675;

/// What makes one copy the one to keep.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeeperCriterion {
    /// More pixels (width × height) first.
    Pixels,
    /// Larger file first.
    FileSize,
    /// Older modification time first.
    Oldest,
}

impl std::str::FromStr for KeeperCriterion {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "pixels" => Ok(Self::Pixels),
            "size" => Ok(Self::FileSize),
            "oldest" => Ok(Self::Oldest),
            _ => Err(Error::InvalidQuery(format!("unknown keeper criterion `{s}` (pixels, size, oldest)"))),
        }
    }
}

impl KeeperCriterion {
    fn name(self) -> &'static str {
        match self {
            Self::Pixels => "largest pixel count",
            Self::FileSize => "larger file",
            Self::Oldest => "oldest",
        }
    }
}

/// The default keeper rule: largest pixel count, then larger file, then oldest.
pub const DEFAULT_KEEPER_RULE: [KeeperCriterion; 3] =
    [KeeperCriterion::Pixels, KeeperCriterion::FileSize, KeeperCriterion::Oldest];

/// How to look for duplicates.
#[derive(Debug, Clone)]
pub struct DedupOptions {
    /// Cosine similarity at or above which two images are near duplicates.
    pub threshold: f32,
    /// Nearest neighbours examined per image.
    pub neighbours: usize,
    /// Only images whose path (or key) starts with this string.
    pub path_prefix: Option<String>,
    /// Keeper rule, most important criterion first (ties fall through; the smaller id last).
    pub keeper_rule: Vec<KeeperCriterion>,
}

impl Default for DedupOptions {
    fn default() -> Self {
        Self {
            threshold: DEFAULT_NEAR_THRESHOLD,
            neighbours: 10,
            path_prefix: None,
            keeper_rule: DEFAULT_KEEPER_RULE.to_vec(),
        }
    }
}

/// Exact (same bytes) or near (similar global vectors).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DuplicateKind {
    /// Identical bytes (blake3).
    Exact,
    /// Cosine similarity at or above the threshold to the group's centre.
    Near,
}

/// One image of a group.
#[derive(Debug, Clone, PartialEq)]
pub struct DuplicateMember {
    /// The image.
    pub id: ImageId,
    /// Its record.
    pub record: ImageRecord,
    /// Cosine similarity to the keeper (1 for the keeper and for exact copies).
    pub score: f32,
}

/// A group of duplicates; `members[0]` is the suggested keeper.
#[derive(Debug, Clone, PartialEq)]
pub struct DuplicateGroup {
    /// Exact or near.
    pub kind: DuplicateKind,
    /// Keeper first, then the others by decreasing score.
    pub members: Vec<DuplicateMember>,
    /// Why the keeper was suggested, e.g. `largest pixel count (4032×3024)`.
    pub keeper_reason: String,
}

impl DuplicateGroup {
    /// The suggested keeper.
    pub fn keeper(&self) -> &DuplicateMember {
        &self.members[0]
    }
}

/// Progress of [`Collection::find_duplicates`].
pub trait DedupProgress: Sync {
    /// `done` of `total` images have had their neighbours examined.
    fn searched(&self, done: usize, total: usize);
}

impl<F: Fn(usize, usize) + Sync> DedupProgress for F {
    fn searched(&self, done: usize, total: usize) {
        self(done, total)
    }
}

/// Star grouping over undirected weighted edges between nodes `0..n`: returns (centre, members)
/// with members excluding the centre, for stars of at least two nodes.
pub(crate) fn star_groups(n: usize, edges: &[(u32, u32, f32)]) -> Vec<(u32, Vec<u32>)> {
    let mut adjacency: Vec<Vec<u32>> = vec![Vec::new(); n];
    let mut strength = vec![0f64; n];
    for &(a, b, s) in edges {
        adjacency[a as usize].push(b);
        adjacency[b as usize].push(a);
        strength[a as usize] += s as f64;
        strength[b as usize] += s as f64;
    }
    let mut order: Vec<u32> = (0..n as u32).filter(|&i| !adjacency[i as usize].is_empty()).collect();
    order.sort_by(|&a, &b| {
        let (a, b) = (a as usize, b as usize);
        adjacency[b].len().cmp(&adjacency[a].len()).then(strength[b].total_cmp(&strength[a])).then(a.cmp(&b))
    });
    let mut assigned = vec![false; n];
    let mut groups = Vec::new();
    for centre in order {
        if assigned[centre as usize] {
            continue;
        }
        let mut members: Vec<u32> =
            adjacency[centre as usize].iter().copied().filter(|&m| !assigned[m as usize]).collect();
        members.sort_unstable();
        members.dedup();
        if members.is_empty() {
            continue;
        }
        assigned[centre as usize] = true;
        for &m in &members {
            assigned[m as usize] = true;
        }
        groups.push((centre, members));
    }
    groups
}

/// Orders candidates by the keeper rule: the best first.
fn rank_by_rule(members: &mut [(ImageId, ImageRecord)], rule: &[KeeperCriterion]) {
    members.sort_by(|(ia, a), (ib, b)| {
        rule.iter()
            .map(|c| match c {
                KeeperCriterion::Pixels => (b.width as u64 * b.height as u64).cmp(&(a.width as u64 * a.height as u64)),
                KeeperCriterion::FileSize => b.size.cmp(&a.size),
                KeeperCriterion::Oldest => a.mtime_ns.cmp(&b.mtime_ns),
            })
            .find(|o| o.is_ne())
            .unwrap_or(std::cmp::Ordering::Equal)
            .then(ia.cmp(ib))
    });
}

/// The first criterion that tells the keeper from the runner-up, for the report.
fn keeper_reason(members: &[(ImageId, ImageRecord)], rule: &[KeeperCriterion]) -> String {
    let (Some((_, k)), Some((_, r))) = (members.first(), members.get(1)) else { return String::new() };
    for c in rule {
        let (differs, detail) = match c {
            KeeperCriterion::Pixels => (
                k.width as u64 * k.height as u64 != r.width as u64 * r.height as u64,
                format!("{}×{}", k.width, k.height),
            ),
            KeeperCriterion::FileSize => (k.size != r.size, format!("{} bytes", k.size)),
            KeeperCriterion::Oldest => (k.mtime_ns != r.mtime_ns, "modified first".to_string()),
        };
        if differs {
            return format!("{} ({detail})", c.name());
        }
    }
    "all criteria tie: the first indexed".to_string()
}

impl Collection {
    /// Exact and near duplicate groups, exact ones first. `on_group` sees each group as it is
    /// found; the groups are also returned. Stops early (returning what was found) when `cancel`
    /// is set.
    pub fn find_duplicates(
        &self,
        options: &DedupOptions,
        progress: &dyn DedupProgress,
        cancel: &AtomicBool,
        on_group: &mut dyn FnMut(&DuplicateGroup),
    ) -> Result<Vec<DuplicateGroup>> {
        if !(-1.0..=1.0).contains(&options.threshold) {
            return Err(Error::InvalidQuery(format!("threshold must be within -1..=1, not {}", options.threshold)));
        }
        let in_scope: Option<HashSet<ImageId>> = match options.path_prefix.as_deref().filter(|p| !p.is_empty()) {
            Some(prefix) => Some(self.ids_with_path_prefix(prefix)?.into_iter().collect()),
            None => None,
        };
        let in_scope = |id: ImageId| in_scope.as_ref().is_none_or(|s| s.contains(&id));
        let mut groups = Vec::new();

        // Exact: ids sharing a content hash (only embedded images: a failed file is not a photo).
        let mut by_hash: HashMap<[u8; 32], Vec<(ImageId, ImageRecord)>> = HashMap::new();
        for entry in self.records() {
            let (id, record) = entry?;
            if in_scope(id) && matches!(record.status, crate::ImageStatus::Embedded) {
                by_hash.entry(record.blake3).or_default().push((id, record));
            }
        }
        let mut hidden = HashSet::new(); // exact copies other than their keeper
        let mut exact: Vec<Vec<(ImageId, ImageRecord)>> = by_hash.into_values().filter(|g| g.len() > 1).collect();
        exact.sort_by_key(|g| g.iter().map(|(id, _)| *id).min());
        for mut members in exact {
            rank_by_rule(&mut members, &options.keeper_rule);
            let keeper_reason = keeper_reason(&members, &options.keeper_rule);
            hidden.extend(members[1..].iter().map(|(id, _)| *id));
            let group = DuplicateGroup {
                kind: DuplicateKind::Exact,
                members: members.into_iter().map(|(id, record)| DuplicateMember { id, record, score: 1.0 }).collect(),
                keeper_reason,
            };
            on_group(&group);
            groups.push(group);
        }

        // Near: the k-NN graph over the remaining vectors, then stars.
        let mut ids = Vec::new();
        let mut vectors = Vec::new();
        self.for_each_vector(|id, v| {
            let id = ImageId(id);
            if in_scope(id) && !hidden.contains(&id) {
                ids.push(id);
                vectors.extend_from_slice(v);
            }
        })?;
        let dim = self.config().dim;
        let n = ids.len();
        let position: HashMap<u64, u32> = ids.iter().enumerate().map(|(i, id)| (id.0, i as u32)).collect();
        let vector = |i: usize| &vectors[i * dim..(i + 1) * dim];
        let dot = |a: &[f32], b: &[f32]| a.iter().zip(b).map(|(x, y)| x * y).sum::<f32>();
        let k = options.neighbours.max(1);
        let done = AtomicUsize::new(0);
        let use_graph = self.vector_count() >= EXACT_SCAN_BELOW;
        let unfiltered = n == self.vector_count();
        let index = self.index.read();
        let neighbour_lists: Vec<Vec<(u32, f32)>> = (0..n)
            .into_par_iter()
            .map(|i| {
                if cancel.load(Ordering::Relaxed) {
                    return Vec::new();
                }
                let q = vector(i);
                let found: Vec<(u32, f32)> = if use_graph {
                    // Without a scope or hidden copies every live id qualifies: no filter, which
                    // keeps hnsw_rs on its faster unfiltered search.
                    let keep = |id: u64| position.contains_key(&id);
                    let keep: Option<&(dyn Fn(u64) -> bool + Sync)> = if unfiltered { None } else { Some(&keep) };
                    index
                        .search_where(q, k + 1, (4 * (k + 1)).max(64), keep)
                        .into_iter()
                        .filter_map(|(id, _)| position.get(&id).map(|&j| (j, dot(q, vector(j as usize)))))
                        .collect()
                } else {
                    let mut top = TopK::new(k + 1);
                    for j in 0..n {
                        top.push(j as u64, dot(q, vector(j)));
                    }
                    top.into_sorted().into_iter().map(|(j, s)| (j as u32, s)).collect()
                };
                let d = done.fetch_add(1, Ordering::Relaxed) + 1;
                if d.is_multiple_of(1024) || d == n {
                    progress.searched(d, n);
                }
                found.into_iter().filter(|&(j, s)| j as usize != i && s >= options.threshold).collect()
            })
            .collect();
        drop(index);
        let mut edges: Vec<(u32, u32, f32)> = Vec::new();
        for (i, list) in neighbour_lists.iter().enumerate() {
            for &(j, s) in list {
                edges.push(((i as u32).min(j), (i as u32).max(j), s));
            }
        }
        edges.sort_by_key(|e| (e.0, e.1));
        edges.dedup_by(|a, b| (a.0, a.1) == (b.0, b.1));

        for (centre, others) in star_groups(n, &edges) {
            let mut members = Vec::with_capacity(others.len() + 1);
            for i in std::iter::once(centre).chain(others) {
                let id = ids[i as usize];
                if let Some(record) = self.get(id)? {
                    members.push((id, record));
                }
            }
            if members.len() < 2 {
                continue;
            }
            rank_by_rule(&mut members, &options.keeper_rule);
            let keeper_reason = keeper_reason(&members, &options.keeper_rule);
            let keeper_vector = vector(position[&members[0].0.0] as usize);
            let mut members: Vec<DuplicateMember> = members
                .into_iter()
                .map(|(id, record)| {
                    let score = dot(keeper_vector, vector(position[&id.0] as usize)).min(1.0);
                    DuplicateMember { id, record, score }
                })
                .collect();
            members[1..].sort_by(|a, b| b.score.total_cmp(&a.score).then(a.id.cmp(&b.id)));
            let group = DuplicateGroup { kind: DuplicateKind::Near, members, keeper_reason };
            on_group(&group);
            groups.push(group);
        }
        Ok(groups)
    }
}

/// The duplicates of one image: its exact copies and its near duplicates, each scored against
/// that image, and which of them all the keeper rule would keep.
#[derive(Debug, Clone, PartialEq)]
pub struct DuplicatesOf {
    /// Images with identical bytes.
    pub exact: Vec<DuplicateMember>,
    /// Images at or above the threshold (best first), without the exact copies.
    pub near: Vec<DuplicateMember>,
    /// The keeper among the image and all of these.
    pub keeper: ImageId,
    /// Why.
    pub keeper_reason: String,
}

impl Collection {
    /// The exact and near duplicates of one stored image (at most [`crate::MAX_K`] near ones).
    pub fn duplicates_of(&self, id: ImageId, options: &DedupOptions) -> Result<DuplicatesOf> {
        let record = self.get(id)?.ok_or(Error::NotFound(id.0))?;
        let vector = self.global_vector(id)?;
        let mut exact = Vec::new();
        for other in self.ids_by_hash(&record.blake3)? {
            if other != id
                && let Some(r) = self.get(other)?
            {
                exact.push(DuplicateMember { id: other, record: r, score: 1.0 });
            }
        }
        let mut near = Vec::new();
        if let Some(vector) = vector {
            let mut exclude: Vec<ImageId> = exact.iter().map(|m| m.id).collect();
            exclude.push(id);
            let query = crate::SimilarQuery {
                k: options.neighbours.clamp(1, crate::MAX_K),
                min_score: Some(options.threshold),
                path_prefix: options.path_prefix.clone(),
                exclude,
            };
            for hit in self.search_similar(&vector, &query)? {
                near.push(DuplicateMember { id: hit.hit.id, record: hit.record, score: hit.hit.score.min(1.0) });
            }
        }
        let mut all: Vec<(ImageId, ImageRecord)> =
            std::iter::once((id, record)).chain(exact.iter().chain(&near).map(|m| (m.id, m.record.clone()))).collect();
        rank_by_rule(&mut all, &options.keeper_rule);
        let keeper_reason = if all.len() > 1 { keeper_reason(&all, &options.keeper_rule) } else { String::new() };
        Ok(DuplicatesOf { exact, near, keeper: all[0].0, keeper_reason })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_chain_becomes_bounded_stars_not_one_group() {
        // 0-1-2-3-4-5-6: each similar only to the next.
        let edges: Vec<(u32, u32, f32)> = (0..6).map(|i| (i, i + 1, 0.97)).collect();
        let groups = star_groups(7, &edges);
        for (centre, members) in &groups {
            for m in members {
                assert!(edges.iter().any(|&(a, b, _)| (a, b) == (*centre.min(m), *centre.max(m))), "{centre}-{m}");
            }
        }
        assert!(groups.iter().all(|(_, m)| m.len() <= 2), "{groups:?}");
        assert!(groups.len() >= 2);
    }

    #[test]
    fn the_best_connected_image_is_the_centre() {
        // 0 is an original with three edits; 3 also resembles an unrelated 4.
        let edges = [(0, 1, 0.99), (0, 2, 0.98), (0, 3, 0.97), (3, 4, 0.96)];
        assert_eq!(star_groups(5, &edges), vec![(0, vec![1, 2, 3])]);
    }

    #[test]
    fn keeper_rule_orders_by_pixels_then_size_then_age() {
        let rec = |w, h, size, mtime| ImageRecord {
            path: "p".into(),
            size,
            mtime_ns: mtime,
            blake3: [0; 32],
            width: w,
            height: h,
            status: crate::ImageStatus::Embedded,
        };
        let mut m = vec![
            (ImageId(1), rec(10, 10, 500, 3)),
            (ImageId(2), rec(20, 10, 100, 5)),
            (ImageId(3), rec(20, 10, 100, 4)),
        ];
        rank_by_rule(&mut m, &DEFAULT_KEEPER_RULE);
        assert_eq!(m.iter().map(|(id, _)| id.0).collect::<Vec<_>>(), vec![3, 2, 1]);
        assert_eq!(keeper_reason(&m, &DEFAULT_KEEPER_RULE), "oldest (modified first)");
        rank_by_rule(&mut m, &[KeeperCriterion::FileSize]);
        assert_eq!(m[0].0, ImageId(1));
        assert_eq!(keeper_reason(&m, &[KeeperCriterion::FileSize]), "larger file (500 bytes)");
    }
}
