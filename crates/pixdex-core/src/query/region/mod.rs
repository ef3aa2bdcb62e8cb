//! Region search: which stored images contain something like this crop, and where
//! ([`Collection::search_region`]).
//!
//! 1. **Candidates**: the crop is embedded at the scale of each group of stored images of about
//!    one scale, reduced like the stored grids, and its tokens vote in the inverted file
//!    ([`crate::index::patch_ivf`]) among that group's images.
//! 2. **Rerank**: for each candidate, the crop is embedded at that image's scale (× a few
//!    multipliers, snapped to a ladder so that embeddings are shared across images) and its
//!    token grid is slid over the stored grid: the score at a position is the mean cosine of the
//!    aligned tokens, cells outside the image counting 0. The peak, refined to sub-cell precision
//!    by a parabola on each axis, gives the box, mapped back to the file's stored pixels.
//! 3. **Ranking**: by the peak less a quarter of the mean over all positions, which discounts
//!    images that resemble the crop everywhere (see [`RegionRanking`] for the rules measured).
//!
//! `vote` is stage 1 (and keeps the inverted file current), `rerank` stage 2 and the ranking,
//! `template` the sliding match, `scale` the query grid sizes.

mod rerank;
mod scale;
mod template;
mod vote;

use std::collections::HashMap;
use std::sync::Arc;

pub use scale::{cells_per_px, query_grid_sizes};
pub use template::{TemplateMatch, match_template};

use crate::collection::Collection;
use crate::error::{Error, Result};
use crate::query::similar::{check_k, check_min_score};
use crate::records::{ImageId, ImageRecord};
use crate::region_grid::PixelBox;
use crate::token_reduction::TokenReduction;
use crate::vectors::PatchGrid;

/// Candidates reranked per query by default. On the dev region benchmark (294 images) pasted
/// objects are found at hit@10 0.875 with 64 or 128 candidates and 0.925 with 256, as reranking
/// every image does (the vote puts the truth within the top 64 for 0.90 of them, the top 256 for
/// all); a rerank costs about 1.5 ms per candidate, less than the query's own embeddings.
pub const DEFAULT_REGION_CANDIDATES: usize = 256;

/// Most candidates a query may ask to rerank.
pub const MAX_REGION_CANDIDATES: usize = 2000;

/// How much of an image's background (the match's mean over all positions) is taken off its
/// peak for [`RegionRanking::Distinct`].
pub const BACKGROUND_WEIGHT: f32 = 0.25;

/// How results are ordered. On the dev region benchmark (`benches/region_quality.rs`, every
/// image reranked) the peak less a quarter of the background ranks best: hit@1 0.81 against 0.71
/// for the peak alone, and 0.78 against 0.50 on pasted objects, which the peak alone loses to
/// photos that look like the crop everywhere (foliage, sky); the full contrast gives up plain
/// crops (0.55). The others stay for measuring.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum RegionRanking {
    /// Reciprocal-rank fusion of the rerank score and the candidate vote:
    /// `1/(10 + rank_match) + 1/(10 + rank_vote)`.
    Fused,
    /// The rerank score alone (mean cosine of the aligned tokens).
    Match,
    /// The rerank score less [`BACKGROUND_WEIGHT`] times the image's background.
    #[default]
    Distinct,
    /// The rerank score above the image's background: the peak minus the mean over all
    /// positions.
    Contrast,
    /// Reciprocal-rank fusion of [`Self::Contrast`] and the candidate vote.
    FusedContrast,
}

impl RegionRanking {
    /// The score a placement ranks by.
    fn score(self, m: &TemplateMatch) -> f32 {
        match self {
            Self::Fused | Self::Match => m.score,
            Self::Distinct => m.score - BACKGROUND_WEIGHT * m.background,
            Self::Contrast | Self::FusedContrast => m.score - m.background,
        }
    }
}

/// What to return for a region query.
#[derive(Debug, Clone)]
pub struct RegionQuery {
    /// How many results (1..=[`MAX_K`](crate::MAX_K)).
    pub k: usize,
    /// How many vote candidates to rerank (at least `k`).
    pub candidates: usize,
    /// Drop results whose score ([`RegionHit::score`]) is below this.
    pub min_score: Option<f32>,
    /// Keep only images whose path (or key) starts with this string.
    pub path_prefix: Option<String>,
    /// Leave these images out.
    pub exclude: Vec<ImageId>,
    /// How results are ordered.
    pub ranking: RegionRanking,
}

impl RegionQuery {
    /// [`Error::InvalidQuery`] unless `k` is within 1..=[`MAX_K`](crate::MAX_K), `candidates` within
    /// 1..=[`MAX_REGION_CANDIDATES`] and `min_score` within -1..=1
    /// ([`Collection::search_region`] checks this too).
    pub fn validate(&self) -> Result<()> {
        check_k(self.k)?;
        if !(1..=MAX_REGION_CANDIDATES).contains(&self.candidates) {
            return Err(Error::InvalidQuery(format!(
                "candidates must be 1..={MAX_REGION_CANDIDATES}, not {}",
                self.candidates
            )));
        }
        check_min_score(self.min_score)
    }
}

impl Default for RegionQuery {
    fn default() -> Self {
        Self {
            k: 10,
            candidates: DEFAULT_REGION_CANDIDATES,
            min_score: None,
            path_prefix: None,
            exclude: Vec::new(),
            ranking: RegionRanking::default(),
        }
    }
}

/// One result.
#[derive(Debug, Clone, PartialEq)]
pub struct RegionHit {
    /// The image.
    pub id: ImageId,
    /// Its record.
    pub record: ImageRecord,
    /// The ranking score (for the default ranking: the mean cosine of the crop's tokens against
    /// the image's at the best position and scale, less a quarter of its mean over all
    /// positions).
    pub score: f32,
    /// The mean cosine of the aligned tokens at that position.
    pub similarity: f32,
    /// The candidate vote's standing: 1 minus the image's rank over its scale group's size
    /// (for diagnosis; 0 without a vote).
    pub votes: f32,
    /// The score's mean over all positions in the image (for [`RegionRanking::Contrast`]).
    pub background: f32,
    /// Where the crop is, in the file's stored pixels (before EXIF orientation).
    pub bbox: PixelBox,
}

/// The crop's query grids, embedded once per size and reduced like the stored grids.
pub(super) struct QueryGrids<'a, E> {
    embed: &'a mut dyn FnMut(usize, usize) -> std::result::Result<PatchGrid, E>,
    reduction: Arc<TokenReduction>,
    cache: HashMap<(usize, usize), PatchGrid>,
}

impl<E: From<Error>> QueryGrids<'_, E> {
    /// The reduced query grid of `(rows, cols)` cells.
    fn get(&mut self, size: (usize, usize)) -> std::result::Result<&PatchGrid, E> {
        if !self.cache.contains_key(&size) {
            let full = (self.embed)(size.0, size.1)?;
            if (full.rows(), full.cols()) != size {
                return Err(Error::InvalidVector(format!(
                    "asked for a {}×{} query grid, got {}×{}",
                    size.0,
                    size.1,
                    full.rows(),
                    full.cols()
                ))
                .into());
            }
            self.cache.insert(size, self.reduction.reduce(&full)?);
        }
        Ok(&self.cache[&size])
    }
}

impl Collection {
    /// The stored images that contain something like a crop of `crop_w × crop_h` upright pixels,
    /// best first, each with the box where it is. `embed(rows, cols)` must return the crop's
    /// full-precision patch grid when resized to `cols × rows` patches; it is called once per
    /// distinct size (a handful per query).
    pub fn search_region<E: From<Error>>(
        &self,
        crop: (u32, u32),
        embed: &mut dyn FnMut(usize, usize) -> std::result::Result<PatchGrid, E>,
        query: &RegionQuery,
    ) -> std::result::Result<Vec<RegionHit>, E> {
        query.validate()?;
        if crop.0 == 0 || crop.1 == 0 {
            return Err(Error::InvalidQuery("the query region has no area".into()).into());
        }
        let Some(reduction) = self.region_reduction() else {
            return Err(Error::NoRegionGrids.into());
        };
        let mut grids = QueryGrids { embed, reduction, cache: HashMap::new() };
        let Some(votes) = self.region_votes(crop, &mut grids)? else { return Ok(Vec::new()) };
        let candidates = self.region_candidates(votes, query)?;
        let hits = self.rerank_region(candidates, crop, &mut grids, query.ranking)?;
        Ok(rerank::rank_hits(hits, query))
    }
}
