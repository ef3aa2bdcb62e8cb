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
//!
//! Here the options and the groups; `keeper` the keeper rule, `neighbours` the k-NN candidates,
//! `pair` how a pair is scored and verified, `group` the grouping, `of_image` one image's
//! duplicates.

mod group;
mod keeper;
mod neighbours;
mod of_image;
mod pair;

pub use keeper::{DEFAULT_KEEPER_RULE, KeeperCriterion};
pub use of_image::DuplicatesOf;
pub use pair::PairComparison;

use crate::error::{Error, Result};
use crate::records::{ImageId, ImageRecord};

/// The similarity (best cosine over the stored views) at or above which two images are near
/// duplicates without patch verification. Chosen with [`DEFAULT_MIN_GEOMETRY`] on the
/// real-weights ViT-S/14 and the dev photos (`benches/dedup_quality.rs`, see the README).
pub const DEFAULT_NEAR_THRESHOLD: f32 = 0.9775;

/// Candidate pairs at least this similar are verified patch by patch.
pub const DEFAULT_VERIFY_FROM: f32 = 0.80;

/// The fraction of patches that must reappear under one affine map for a verified pair. Chosen
/// with [`DEFAULT_NEAR_THRESHOLD`] on the region grids of collections with product-quantised
/// grids (the default since schema 2); the square patch grids alone score lower (0.16 was their
/// best cut), so collections indexed without region grids find fewer crops and rotations at this
/// default. Collections made before, with int8 grids, score a little higher and were tuned at
/// 0.35 (at 0.30 their precision on the tuning set falls just below 0.98: F1 0.980 against
/// 0.992; `--min-geometry 0.35` keeps their earlier results).
pub const DEFAULT_MIN_GEOMETRY: f32 = 0.30;

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
    pub(crate) fn candidate_floor(&self) -> f32 {
        self.verify_from.min(self.threshold)
    }

    /// [`Error::InvalidQuery`] unless `threshold` and `verify_from` are within -1..=1 and
    /// `min_geometry` within 0..=1 (the searches check this too).
    pub fn validate(&self) -> Result<()> {
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
