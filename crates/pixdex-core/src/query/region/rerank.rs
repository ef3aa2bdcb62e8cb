//! Stage 2 of region search: each candidate's stored grid against the crop embedded at that
//! image's scale (× a few multipliers), the best placement mapped back to the file's stored
//! pixels; then the hits ordered by the query's ranking.

use super::scale::query_grid_sizes;
use super::template::{TemplateMatch, match_template};
use super::vote::Candidate;
use super::{QueryGrids, RegionHit, RegionQuery, RegionRanking};
use crate::collection::Collection;
use crate::error::Error;
use crate::records::ImageId;

/// A reranked candidate and its place among the candidates (for the fused rankings).
pub(super) struct Reranked {
    hit: RegionHit,
    vote_rank: usize,
}

impl Collection {
    /// Each candidate's best placement of the crop (`crop_w × crop_h` upright pixels) by
    /// `ranking`; candidates removed since the vote, or without a placement, drop out.
    pub(super) fn rerank_region<E: From<Error>>(
        &self,
        candidates: Vec<Candidate>,
        (crop_w, crop_h): (u32, u32),
        grids: &mut QueryGrids<'_, E>,
        ranking: RegionRanking,
    ) -> std::result::Result<Vec<Reranked>, E> {
        let mut out = Vec::new();
        for Candidate { image, record, votes, vote_rank } in candidates {
            let Some((frame, grid)) = self.region_grid(ImageId(image.id))? else {
                continue; // removed since the index was built
            };
            let mut best: Option<(f32, TemplateMatch)> = None;
            for size in query_grid_sizes(image.cells_per_px, grid.rows(), grid.cols(), crop_w, crop_h) {
                if let Some(m) = match_template(grids.get(size)?, &grid) {
                    let key = ranking.score(&m);
                    if best.is_none_or(|b| key > b.0) {
                        best = Some((key, m));
                    }
                }
            }
            let Some((score, m)) = best else { continue };
            let bbox = frame.box_to_stored(frame.cells_to_upright(grid.rows(), grid.cols(), m.cells));
            let hit = RegionHit {
                id: ImageId(image.id),
                record,
                score,
                similarity: m.score,
                votes,
                background: m.background,
                bbox,
            };
            out.push(Reranked { hit, vote_rank });
        }
        Ok(out)
    }
}

/// The best `query.k` hits at or above `query.min_score`: by score, or for the fused rankings
/// by reciprocal-rank fusion of the score's rank and the vote's.
pub(super) fn rank_hits(hits: Vec<Reranked>, query: &RegionQuery) -> Vec<RegionHit> {
    let key = |h: &RegionHit| h.score;
    let mut order: Vec<usize> = (0..hits.len()).collect();
    order.sort_by(|&a, &b| key(&hits[b].hit).total_cmp(&key(&hits[a].hit)));
    if matches!(query.ranking, RegionRanking::Fused | RegionRanking::FusedContrast) {
        let mut fused = vec![0f32; hits.len()];
        for (rank, &i) in order.iter().enumerate() {
            fused[i] = 1.0 / (10.0 + rank as f32) + 1.0 / (10.0 + hits[i].vote_rank as f32);
        }
        order.sort_by(|&a, &b| fused[b].total_cmp(&fused[a]).then(key(&hits[b].hit).total_cmp(&key(&hits[a].hit))));
    }
    let mut out = Vec::with_capacity(query.k);
    for i in order {
        let hit = &hits[i].hit;
        if query.min_score.is_some_and(|min| hit.score < min) {
            continue;
        }
        out.push(hit.clone());
        if out.len() == query.k {
            break;
        }
    }
    out
}
