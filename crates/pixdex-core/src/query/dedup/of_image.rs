//! The duplicates of one stored image ([`Collection::duplicates_of`]): its exact copies by hash,
//! its near duplicates among its nearest neighbours, and the keeper among them all.

use super::DedupOptions;
use super::DuplicateMember;
use super::keeper::{keeper_reason, rank_by_rule};
use super::pair::PairScorer;
use crate::collection::Collection;
use crate::error::{Error, Result};
use crate::query::similar::{MAX_K, SimilarQuery};
use crate::records::{ImageId, ImageRecord};

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
    /// The exact and near duplicates of one stored image (at most [`MAX_K`] near ones).
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
        let scorer = PairScorer::new(self, options);
        if let Some(vector) = vector
            && let Some(mut this) = scorer.load(id)?
        {
            let mut exclude: Vec<ImageId> = exact.iter().map(|m| m.id).collect();
            exclude.push(id);
            let query = SimilarQuery {
                k: options.neighbours.clamp(1, MAX_K),
                min_score: Some(options.candidate_floor()),
                path_prefix: options.path_prefix.clone(),
                exclude,
                ef: None,
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
