//! Similarity search with filters, the one entry point offline and served
//! ([`Collection::search_similar`]): `k`, a minimum score, a path prefix and excluded ids.
//!
//! * Below [`EXACT_SCAN_BELOW`] vectors the search is an exact scan, above it the HNSW graph
//!   with beam width [`Collection::search_ef`] (measured on the graph; at least 2 × k).
//! * A path prefix is answered from the `by_path` tree (a sled prefix scan), so a narrow prefix
//!   never depends on the graph finding its few members: small candidate sets are scanned
//!   exactly, large ones go through the graph with a membership filter.
//! * Exclusions and tombstones are filtered inside the graph search, so `k` results come back
//!   whenever the collection has them.
//! * A store with its own vector index (PostgreSQL + pgvector) answers the whole query itself,
//!   filters included ([`crate::Store::nearest`]), so that a sharded database can run it where
//!   the vectors are.

use std::collections::HashSet;

use crate::collection::Collection;
use crate::error::{Error, Result};
use crate::index::EXACT_SCAN_BELOW;
use crate::index::exact::TopK;
use crate::records::{Hit, ImageId, ImageRecord};
use crate::store::NearestFilter;
use crate::vectors::UnitVector;

/// The largest `k` a query may ask for.
pub const MAX_K: usize = 1000;

/// What to return for a query vector.
#[derive(Debug, Clone, Default)]
pub struct SimilarQuery {
    /// How many results (1..=[`MAX_K`]).
    pub k: usize,
    /// Drop results with a cosine similarity below this.
    pub min_score: Option<f32>,
    /// Keep only images whose path (or key) starts with this string.
    pub path_prefix: Option<String>,
    /// Leave these images out (the query itself).
    pub exclude: Vec<ImageId>,
    /// The graph search's beam width (default [`Collection::search_ef`] or 2 × `k` if wider; at least `k`, at
    /// most [`MAX_EF`]):
    /// wider finds more of the exact answer, more slowly.
    pub ef: Option<usize>,
}

/// The widest beam a query may ask for.
pub const MAX_EF: usize = 4096;

impl SimilarQuery {
    /// [`Error::InvalidQuery`] unless `k` is within 1..=[`MAX_K`] and `min_score` within -1..=1
    /// ([`Collection::search_similar`] checks this too).
    pub fn validate(&self) -> Result<()> {
        check_k(self.k)?;
        if let Some(ef) = self.ef
            && !(1..=MAX_EF).contains(&ef)
        {
            return Err(Error::InvalidQuery(format!("ef must be 1..={MAX_EF}, not {ef}")));
        }
        check_min_score(self.min_score)
    }
}

/// [`Error::InvalidQuery`] unless `k` is within 1..=[`MAX_K`].
pub(crate) fn check_k(k: usize) -> Result<()> {
    if !(1..=MAX_K).contains(&k) {
        return Err(Error::InvalidQuery(format!("k must be 1..={MAX_K}, not {k}")));
    }
    Ok(())
}

/// [`Error::InvalidQuery`] unless a minimum cosine is within -1..=1.
pub(crate) fn check_min_score(min_score: Option<f32>) -> Result<()> {
    if let Some(min) = min_score
        && !(-1.0..=1.0).contains(&min)
    {
        return Err(Error::InvalidQuery(format!("min_score must be within -1..=1, not {min}")));
    }
    Ok(())
}

/// A result with its record.
#[derive(Debug, Clone, PartialEq)]
pub struct SimilarHit {
    /// The image and its cosine similarity.
    pub hit: Hit,
    /// Its record.
    pub record: ImageRecord,
}

impl Collection {
    /// The images most similar to `vector` that pass the query's filters, best first.
    pub fn search_similar(&self, vector: &UnitVector, query: &SimilarQuery) -> Result<Vec<SimilarHit>> {
        self.check_query(vector)?;
        query.validate()?;
        let exclude: HashSet<u64> = query.exclude.iter().map(|id| id.0).collect();
        let prefix = query.path_prefix.as_deref().filter(|p| !p.is_empty());
        let excluded: Vec<u64> = exclude.iter().copied().collect();
        let filter = NearestFilter { path_prefix: prefix, exclude: &excluded };
        let ef = query.ef.unwrap_or_else(|| self.search_ef().max(query.k.saturating_mul(2))).max(query.k);
        let hits = match self.store.nearest(vector.as_slice(), query.k, ef, &filter)? {
            // The store's own vector index answered (pgvector).
            Some(found) => hits_of(found),
            None => self.search_graph(vector, query, prefix, &exclude)?,
        };
        // Best first: past the minimum score the rest are lower.
        let kept: Vec<Hit> =
            hits.into_iter().take_while(|h| query.min_score.is_none_or(|min| h.score >= min)).collect();
        let records = self.get_many(&kept.iter().map(|h| h.id).collect::<Vec<_>>())?;
        // A record removed since the search answered is simply not returned.
        Ok(kept.into_iter().zip(records).filter_map(|(hit, r)| Some(SimilarHit { hit, record: r? })).collect())
    }

    /// The search through the collection's own HNSW graph (or an exact scan where that is
    /// faster).
    fn search_graph(
        &self,
        vector: &UnitVector,
        query: &SimilarQuery,
        prefix: Option<&str>,
        exclude: &HashSet<u64>,
    ) -> Result<Vec<Hit>> {
        self.refresh_graph()?;
        Ok(match prefix {
            Some(prefix) => {
                let members: HashSet<u64> = self
                    .ids_with_path_prefix(prefix)?
                    .into_iter()
                    .map(|id| id.0)
                    .filter(|id| !exclude.contains(id))
                    .collect();
                if members.len() < EXACT_SCAN_BELOW || self.vector_count() < EXACT_SCAN_BELOW {
                    self.scan_ids(vector, query.k, members.iter().copied())?
                } else {
                    let keep = |id: u64| members.contains(&id);
                    self.search_graph_where(vector, query, Some(&keep))?
                }
            }
            None if self.vector_count() < EXACT_SCAN_BELOW => {
                let keep = |id: u64| !exclude.contains(&id);
                hits_of(self.index.read().scan(vector.as_slice(), query.k, Some(&keep)))
            }
            None if exclude.is_empty() => self.search_graph_where(vector, query, None)?,
            None => {
                let keep = |id: u64| !exclude.contains(&id);
                self.search_graph_where(vector, query, Some(&keep))?
            }
        })
    }

    /// Exact top-`k` over the given ids' vectors (ids without a vector are skipped).
    fn scan_ids(&self, vector: &UnitVector, k: usize, ids: impl Iterator<Item = u64>) -> Result<Vec<Hit>> {
        let index = self.index.read();
        let mut top = TopK::new(k);
        for id in ids {
            if let Some(v) = index.vector(id) {
                top.push(id, vector.dot(v));
            }
        }
        Ok(top.into_hits())
    }

    fn search_graph_where(
        &self,
        vector: &UnitVector,
        query: &SimilarQuery,
        keep: Option<&(dyn Fn(u64) -> bool + Sync)>,
    ) -> Result<Vec<Hit>> {
        // The default beam also widens with k: a beam of exactly k finds fewer of the true k.
        let ef = query.ef.unwrap_or_else(|| self.search_ef().max(query.k.saturating_mul(2)));
        self.search_hnsw_where(vector, query.k, ef.max(query.k), keep)
    }
}

fn hits_of(found: Vec<(u64, f32)>) -> Vec<Hit> {
    found.into_iter().map(|(id, score)| Hit { id: ImageId(id), score }).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queries_out_of_range_are_refused() {
        let ok = SimilarQuery { k: MAX_K, min_score: Some(-1.0), ..Default::default() };
        assert!(ok.validate().is_ok());
        for bad in [
            SimilarQuery { k: 0, ..ok.clone() },
            SimilarQuery { k: MAX_K + 1, ..ok.clone() },
            SimilarQuery { min_score: Some(1.5), ..ok.clone() },
            SimilarQuery { min_score: Some(f32::NAN), ..ok.clone() },
            SimilarQuery { ef: Some(0), ..ok.clone() },
            SimilarQuery { ef: Some(MAX_EF + 1), ..ok.clone() },
        ] {
            assert!(matches!(bad.validate(), Err(Error::InvalidQuery(_))), "{bad:?}");
        }
    }
}
