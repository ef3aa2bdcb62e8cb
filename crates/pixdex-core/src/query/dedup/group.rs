//! [`Collection::find_duplicates`]: exact groups by content hash, then near groups as stars
//! over the verified candidate pairs ([`star_groups`]).

use rayon::prelude::*;
use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use super::keeper::{keeper_reason, rank_by_rule};
use super::neighbours::ScopedVectors;
use super::pair::{PairScorer, similarity};
use super::{DedupOptions, DedupPhase, DedupProgress, DuplicateGroup, DuplicateKind, DuplicateMember};
use crate::collection::Collection;
use crate::error::Result;
use crate::records::{ImageId, ImageRecord, ImageStatus};

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
        let mut report = |group: DuplicateGroup| {
            on_group(&group);
            groups.push(group);
        };

        // Exact copies other than their keeper take no part in near grouping.
        let mut hidden = HashSet::new();
        for group in self.exact_groups(options, &in_scope)? {
            hidden.extend(group.members[1..].iter().map(|m| m.id));
            report(group);
        }

        // Near: candidates from the k-NN graph over the remaining vectors, each pair scored over
        // the views and verified patch by patch where the score alone does not decide, then stars.
        let scoped = ScopedVectors::collect(self, |id| in_scope(id) && !hidden.contains(&id))?;
        let pairs = scoped.candidate_pairs(self, options, progress, cancel)?;
        let ids = scoped.into_ids();
        let scorer = PairScorer::new(self, options);
        let edges = verified_edges(&scorer, &ids, pairs, progress, cancel)?;
        for (centre, others) in star_groups(ids.len(), &edges) {
            let members = std::iter::once(centre).chain(others).map(|i| ids[i as usize]);
            if let Some(group) = self.near_group(&scorer, members, options)? {
                report(group);
            }
        }
        Ok(groups)
    }

    /// Ids sharing a content hash (only embedded images: a failed file is not a photo), keeper
    /// first, groups in order of their smallest id.
    fn exact_groups(&self, options: &DedupOptions, in_scope: &dyn Fn(ImageId) -> bool) -> Result<Vec<DuplicateGroup>> {
        let mut by_hash: HashMap<[u8; 32], Vec<(ImageId, ImageRecord)>> = HashMap::new();
        for entry in self.records() {
            let (id, record) = entry?;
            if in_scope(id) && matches!(record.status, ImageStatus::Embedded) {
                by_hash.entry(record.blake3).or_default().push((id, record));
            }
        }
        let mut exact: Vec<Vec<(ImageId, ImageRecord)>> = by_hash.into_values().filter(|g| g.len() > 1).collect();
        exact.sort_by_key(|g| g.iter().map(|(id, _)| *id).min());
        Ok(exact
            .into_iter()
            .map(|mut members| {
                rank_by_rule(&mut members, &options.keeper_rule);
                let keeper_reason = keeper_reason(&members, &options.keeper_rule);
                DuplicateGroup {
                    kind: DuplicateKind::Exact,
                    members: members
                        .into_iter()
                        .map(|(id, record)| DuplicateMember { id, record, score: 1.0 })
                        .collect(),
                    keeper_reason,
                }
            })
            .collect())
    }

    /// A star's members as a near group: keeper first by the rule, the others by their
    /// similarity to it; `None` if fewer than two are still stored.
    fn near_group(
        &self,
        scorer: &PairScorer<'_>,
        star: impl Iterator<Item = ImageId>,
        options: &DedupOptions,
    ) -> Result<Option<DuplicateGroup>> {
        let mut members = Vec::new();
        for id in star {
            if let Some(record) = self.get(id)? {
                members.push((id, record));
            }
        }
        if members.len() < 2 {
            return Ok(None);
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
        Ok(Some(DuplicateGroup { kind: DuplicateKind::Near, members: scored, keeper_reason }))
    }
}

/// The candidate pairs `scorer` accepts, as edges `(a, b, similarity)` between positions in
/// `ids`. `pairs` holds each pair once, grouped by its first image so that image's grids are
/// decoded once.
fn verified_edges(
    scorer: &PairScorer<'_>,
    ids: &[ImageId],
    pairs: Vec<(u32, Vec<u32>)>,
    progress: &dyn DedupProgress,
    cancel: &AtomicBool,
) -> Result<Vec<(u32, u32, f32)>> {
    let total = pairs.iter().map(|(_, r)| r.len()).sum::<usize>();
    let verified = AtomicUsize::new(0);
    let edges: Vec<Vec<(u32, u32, f32)>> = pairs
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
    Ok(edges.into_iter().flatten().collect())
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
}
