//! Duplicate groups: exact duplicates by content hash, near duplicates from a k-NN graph over the
//! global vectors, verified patch by patch, and grouped so that chains of pairwise-similar images
//! do not merge different shots.
//!
//! * **Candidates**: each image's `neighbours` nearest plain vectors to its plain, mirrored and
//!   grayscale vectors (the HNSW graph above the exact-scan threshold, never all pairs), down to
//!   `verify_from`.
//! * **Similarity** of a pair: the best cosine over the stored views (plain·plain, either image
//!   mirrored against the other, grayscale·grayscale), so that a mirrored or desaturated copy
//!   scores as its original. At or above `threshold` the pair is a near duplicate.
//! * **Verification** (`query::verify`) of the pairs in between: the pair is a near duplicate if
//!   at least `min_geometry` of the patches reappear under one affine map, in the region grids
//!   (middle-block tokens at long side 448, aspect kept: finer and more local than the square
//!   grid's) or in the square patch grids (against the other image and its mirrored view, which
//!   catches mirrors and serves images stored without region grids). This recovers crops,
//!   rotations and heavy edits whose global vectors drift, without letting in look-alikes (coins,
//!   other photos of the same animal), which share a global look but not patch-level geometry.
//! * **Star grouping**: the image with the most accepted edges (then the highest sum of edge
//!   scores) becomes a centre, and its group is the centre plus its not-yet-grouped neighbours;
//!   repeat. Every member is directly a duplicate of its centre, so a chain A–B–C–D–E becomes
//!   bounded stars, not one group. Connected components would glue a burst of different shots
//!   into one giant group; complete linkage splits groups of heavy edits (two edits of one
//!   original are often less alike than either is to the original).
//! * Each group names a suggested keeper chosen by a configurable rule (largest pixel count, then
//!   larger file, then oldest), and every member's similarity to it. Nothing is ever deleted here.
//! * Identical bytes form exact groups; of those only the keeper takes part in near grouping.

use rayon::prelude::*;
use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use super::verify::{UnitGrid, geometric_score};
use crate::codec::UnitVector;
use crate::collection::{Collection, EXACT_SCAN_BELOW, ImageId, ImageRecord};
use crate::error::{Error, Result};
use crate::index::exact::TopK;

/// The similarity (best cosine over the stored views) at or above which two images are near
/// duplicates without patch verification. Chosen with [`DEFAULT_MIN_GEOMETRY`] on the
/// real-weights ViT-S/14 and the dev photos (`benches/dedup_quality.rs`, see the README).
pub const DEFAULT_NEAR_THRESHOLD: f32 = 0.9775;

/// Candidate pairs at least this similar are verified patch by patch.
pub const DEFAULT_VERIFY_FROM: f32 = 0.80;

/// The fraction of patches that must reappear under one affine map for a verified pair. Chosen
/// with [`DEFAULT_NEAR_THRESHOLD`] on the region grids; the square patch grids alone score lower
/// (0.16 was their best cut), so collections indexed without region grids find fewer crops and
/// rotations at this default.
pub const DEFAULT_MIN_GEOMETRY: f32 = 0.35;

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
    /// Similarity (best cosine over the stored views) at or above which two images are near
    /// duplicates without further checks.
    pub threshold: f32,
    /// Neighbours at least this similar (plain cosine) are scored over their views; those still
    /// below `threshold` are near duplicates if their patches match geometrically.
    pub verify_from: f32,
    /// Fraction of patches that must reappear under one affine map; `None` turns patch
    /// verification off (then only `threshold` decides).
    pub min_geometry: Option<f32>,
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
            verify_from: DEFAULT_VERIFY_FROM,
            min_geometry: Some(DEFAULT_MIN_GEOMETRY),
            neighbours: 10,
            path_prefix: None,
            keeper_rule: DEFAULT_KEEPER_RULE.to_vec(),
        }
    }
}

impl DedupOptions {
    /// The lowest plain cosine worth scoring over the views (which can lift a mirrored or
    /// desaturated copy above the threshold) and verifying.
    fn candidate_floor(&self) -> f32 {
        self.verify_from.min(self.threshold)
    }

    fn validate(&self) -> Result<()> {
        for (name, v) in [("threshold", self.threshold), ("verify_from", self.verify_from)] {
            if !(-1.0..=1.0).contains(&v) {
                return Err(Error::InvalidQuery(format!("{name} must be within -1..=1, not {v}")));
            }
        }
        if let Some(g) = self.min_geometry
            && !(0.0..=1.0).contains(&g)
        {
            return Err(Error::InvalidQuery(format!("min_geometry must be within 0..=1, not {g}")));
        }
        Ok(())
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

/// The two phases of [`Collection::find_duplicates`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DedupPhase {
    /// Looking up each image's nearest neighbours (counted in images).
    Searching,
    /// Scoring and verifying candidate pairs (counted in pairs).
    Verifying,
}

/// Progress of [`Collection::find_duplicates`].
pub trait DedupProgress: Sync {
    /// `done` of `total` units of `phase` are finished.
    fn progress(&self, phase: DedupPhase, done: usize, total: usize);
}

impl<F: Fn(DedupPhase, usize, usize) + Sync> DedupProgress for F {
    fn progress(&self, phase: DedupPhase, done: usize, total: usize) {
        self(phase, done, total)
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
        options.validate()?;
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

        // Near: candidates from the k-NN graph over the remaining vectors, each pair scored over
        // the views and verified patch by patch where the score alone does not decide, then stars.
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
        let floor = options.candidate_floor();
        let done = AtomicUsize::new(0);
        let use_graph = self.vector_count() >= EXACT_SCAN_BELOW;
        let unfiltered = n == self.vector_count();
        let index = self.index.read();
        // Each image asks for its neighbours as it is and, where stored, mirrored and in grayscale:
        // a mirrored or desaturated copy is then a neighbour however far its plain vector is.
        let neighbour_lists: Vec<Vec<u32>> = (0..n)
            .into_par_iter()
            .map(|i| {
                if cancel.load(Ordering::Relaxed) {
                    return Ok(Vec::new());
                }
                let views = self.view_vectors(ids[i])?;
                let mut queries: Vec<&[f32]> = vec![vector(i)];
                if let Some((flipped, gray)) = &views {
                    queries.extend([flipped.as_slice(), gray.as_slice()]);
                }
                let mut found: Vec<u32> = Vec::new();
                for q in queries {
                    let hits: Vec<(u32, f32)> = if use_graph {
                        // Without a scope or hidden copies every live id qualifies: no filter,
                        // which keeps hnsw_rs on its faster unfiltered search.
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
                    found.extend(hits.into_iter().filter(|&(j, s)| j as usize != i && s >= floor).map(|(j, _)| j));
                }
                let d = done.fetch_add(1, Ordering::Relaxed) + 1;
                if d.is_multiple_of(1024) || d == n {
                    progress.progress(DedupPhase::Searching, d, n);
                }
                Ok(found)
            })
            .collect::<Result<_>>()?;
        drop(index);
        drop(vectors);
        // Each candidate pair once, grouped by its first image so that image's grid is decoded once.
        let mut pairs: Vec<(u32, u32)> = Vec::new();
        for (i, list) in neighbour_lists.into_iter().enumerate() {
            pairs.extend(list.into_iter().map(|j| ((i as u32).min(j), (i as u32).max(j))));
        }
        pairs.sort_unstable();
        pairs.dedup();
        let mut by_first: Vec<(u32, Vec<u32>)> = Vec::new();
        for (a, b) in pairs {
            match by_first.last_mut() {
                Some((first, rest)) if *first == a => rest.push(b),
                _ => by_first.push((a, vec![b])),
            }
        }
        let total = by_first.iter().map(|(_, r)| r.len()).sum::<usize>();
        let verified = AtomicUsize::new(0);
        let scorer = PairScorer { collection: self, options };
        let edges: Vec<Vec<(u32, u32, f32)>> = by_first
            .into_par_iter()
            .map(|(a, rest)| {
                let mut accepted = Vec::new();
                if cancel.load(Ordering::Relaxed) {
                    return Ok(accepted);
                }
                let mut first = scorer.load(ids[a as usize])?;
                for b in rest {
                    let other = scorer.load(ids[b as usize])?;
                    if let (Some(x), Some(y)) = (first.as_mut(), other.as_ref())
                        && let Some(s) = scorer.accept(x, y)?
                    {
                        accepted.push((a, b, s));
                    }
                    let d = verified.fetch_add(1, Ordering::Relaxed) + 1;
                    if d.is_multiple_of(256) || d == total {
                        progress.progress(DedupPhase::Verifying, d, total);
                    }
                }
                Ok(accepted)
            })
            .collect::<Result<_>>()?;
        let edges: Vec<(u32, u32, f32)> = edges.into_iter().flatten().collect();

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
            let keeper = scorer.load(members[0].0)?;
            let mut scored = Vec::with_capacity(members.len());
            for (id, record) in members {
                let score = match (&keeper, scorer.load(id)?) {
                    (Some(k), Some(m)) => similarity(k, &m),
                    _ => 0.0,
                };
                scored.push(DuplicateMember { id, record, score });
            }
            scored[0].score = 1.0;
            scored[1..].sort_by(|a, b| b.score.total_cmp(&a.score).then(a.id.cmp(&b.id)));
            let group = DuplicateGroup { kind: DuplicateKind::Near, members: scored, keeper_reason };
            on_group(&group);
            groups.push(group);
        }
        Ok(groups)
    }
}

/// What pair scoring needs of one image, loaded once per use.
struct ImageViews {
    id: ImageId,
    plain: UnitVector,
    /// Mirrored and grayscale global vectors, if stored.
    views: Option<(UnitVector, UnitVector)>,
    /// The image's own patch grid, normalised, decoded on first use.
    grid: Option<Option<UnitGrid>>,
    /// The image's region grid, normalised, decoded on first use.
    region: Option<Option<UnitGrid>>,
}

/// The similarity of two images: the best cosine over their views (the plain vectors; either
/// image mirrored against the other; both in grayscale), or the plain cosine when either has no
/// stored views.
fn similarity(a: &ImageViews, b: &ImageViews) -> f32 {
    let mut s = a.plain.dot(b.plain.as_slice());
    if let (Some((af, ag)), Some((bf, bg))) = (&a.views, &b.views) {
        s = s.max(a.plain.dot(bf.as_slice())).max(af.dot(b.plain.as_slice())).max(ag.dot(bg.as_slice()));
    }
    s.min(1.0)
}

/// Decides candidate pairs by [`DedupOptions`].
struct PairScorer<'a> {
    collection: &'a Collection,
    options: &'a DedupOptions,
}

impl PairScorer<'_> {
    fn load(&self, id: ImageId) -> Result<Option<ImageViews>> {
        let Some(plain) = self.collection.global_vector(id)? else { return Ok(None) };
        Ok(Some(ImageViews { id, plain, views: self.collection.view_vectors(id)?, grid: None, region: None }))
    }

    /// The pair's similarity if the pair is a near duplicate: similar enough outright, or similar
    /// enough to check and verified patch by patch (against `b` and its mirrored view).
    fn accept(&self, a: &mut ImageViews, b: &ImageViews) -> Result<Option<f32>> {
        let s = similarity(a, b);
        if s >= self.options.threshold {
            return Ok(Some(s));
        }
        let Some(min_geometry) = self.options.min_geometry else { return Ok(None) };
        if s < self.options.verify_from {
            return Ok(None);
        }
        let verified = self.geometry(a, b, Some(min_geometry))?.is_some_and(|g| g >= min_geometry);
        Ok(verified.then_some(s))
    }

    /// The best geometric match of `a`'s patches in `b`'s: region grid against region grid,
    /// then square grid against `b`'s square grid and its mirrored view (`None` without stored
    /// patches); stops early once `enough` is reached.
    fn geometry(&self, a: &mut ImageViews, b: &ImageViews, enough: Option<f32>) -> Result<Option<f32>> {
        // The same pair always gets the same RANSAC draws.
        let seed = a.id.0.rotate_left(32) ^ b.id.0;
        let mut best: Option<f32> = None;
        let mut note = |g: f32| {
            best = Some(best.map_or(g, |b| b.max(g)));
            enough.is_some_and(|e| g >= e)
        };
        if a.region.is_none() {
            a.region = Some(self.collection.region_grid(a.id)?.map(|(_, g)| UnitGrid::from(&g)));
        }
        if let Some(Some(region)) = &a.region
            && let Some((_, other)) = self.collection.region_grid(b.id)?
            && note(geometric_score(region, &UnitGrid::from(&other), seed))
        {
            return Ok(best);
        }
        if a.grid.is_none() {
            a.grid = Some(self.collection.patch_grid(a.id)?.as_ref().map(UnitGrid::from));
        }
        let Some(Some(grid)) = &a.grid else { return Ok(best) };
        for other in
            [self.collection.patch_grid(b.id)?, self.collection.flipped_patch_grid(b.id)?].into_iter().flatten()
        {
            if note(geometric_score(grid, &UnitGrid::from(&other), seed)) {
                break;
            }
        }
        Ok(best)
    }
}

/// How two stored images compare in duplicate detection.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PairComparison {
    /// The best cosine over the views (plain, mirrored, grayscale); the plain cosine if either
    /// image has no stored views.
    pub similarity: f32,
    /// Fraction of the first image's patches (the smaller id's) that reappear in the other, or in
    /// its mirrored view, under one affine map; `None` without stored patches.
    pub geometry: Option<f32>,
}

impl Collection {
    /// The scores [`Collection::find_duplicates`] decides a pair by (`None` if either image has
    /// no vector). Symmetric: the pair is taken in id order.
    pub fn compare_images(&self, a: ImageId, b: ImageId) -> Result<Option<PairComparison>> {
        let options = DedupOptions::default();
        let scorer = PairScorer { collection: self, options: &options };
        let (a, b) = (a.min(b), a.max(b));
        let (Some(mut x), Some(y)) = (scorer.load(a)?, scorer.load(b)?) else { return Ok(None) };
        Ok(Some(PairComparison { similarity: similarity(&x, &y), geometry: scorer.geometry(&mut x, &y, None)? }))
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
        options.validate()?;
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
        let scorer = PairScorer { collection: self, options };
        if let Some(vector) = vector
            && let Some(mut this) = scorer.load(id)?
        {
            let mut exclude: Vec<ImageId> = exact.iter().map(|m| m.id).collect();
            exclude.push(id);
            let query = crate::SimilarQuery {
                k: options.neighbours.clamp(1, crate::MAX_K),
                min_score: Some(options.candidate_floor()),
                path_prefix: options.path_prefix.clone(),
                exclude,
            };
            for hit in self.search_similar(&vector, &query)? {
                if let Some(other) = scorer.load(hit.hit.id)?
                    && let Some(score) = scorer.accept(&mut this, &other)?
                {
                    near.push(DuplicateMember { id: hit.hit.id, record: hit.record, score });
                }
            }
            near.sort_by(|a, b| b.score.total_cmp(&a.score).then(a.id.cmp(&b.id)));
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
