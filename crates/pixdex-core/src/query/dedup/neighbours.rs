//! The candidate pairs of near-duplicate grouping: each image's nearest neighbours among the
//! images in scope, asked for with its plain, mirrored and grayscale vectors (the HNSW graph at
//! and above [`EXACT_SCAN_BELOW`] vectors, an exact scan below; never all pairs).

use rayon::prelude::*;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use super::{DedupOptions, DedupPhase, DedupProgress};
use crate::collection::Collection;
use crate::error::Result;
use crate::index::EXACT_SCAN_BELOW;
use crate::index::exact::TopK;
use crate::records::ImageId;

/// The global vectors of the images taking part, in id order; images are named by their
/// position here.
pub(super) struct ScopedVectors {
    ids: Vec<ImageId>,
    /// `ids.len() × dim`, row-major.
    vectors: Vec<f32>,
    dim: usize,
}

impl ScopedVectors {
    /// The stored global vectors of the images for which `keep` is true.
    pub(super) fn collect(collection: &Collection, keep: impl Fn(ImageId) -> bool) -> Result<Self> {
        let mut ids = Vec::new();
        let mut vectors = Vec::new();
        collection.for_each_vector(|id, v| {
            let id = ImageId(id);
            if keep(id) {
                ids.push(id);
                vectors.extend_from_slice(v);
            }
        })?;
        Ok(Self { ids, vectors, dim: collection.config().dim })
    }

    /// The ids, by position.
    pub(super) fn into_ids(self) -> Vec<ImageId> {
        self.ids
    }

    fn vector(&self, i: usize) -> &[f32] {
        &self.vectors[i * self.dim..(i + 1) * self.dim]
    }

    /// Each pair of positions where one is among the other's `options.neighbours` nearest at a
    /// plain cosine of at least the candidate floor, once, grouped by its first (smaller)
    /// position: `(first, seconds)` in order.
    pub(super) fn candidate_pairs(
        &self,
        collection: &Collection,
        options: &DedupOptions,
        progress: &dyn DedupProgress,
        cancel: &AtomicBool,
    ) -> Result<Vec<(u32, Vec<u32>)>> {
        let mut pairs: Vec<(u32, u32)> = Vec::new();
        for (i, list) in self.neighbour_lists(collection, options, progress, cancel)?.into_iter().enumerate() {
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
        Ok(by_first)
    }

    /// Each image's neighbours (positions) at or above the candidate floor.
    fn neighbour_lists(
        &self,
        collection: &Collection,
        options: &DedupOptions,
        progress: &dyn DedupProgress,
        cancel: &AtomicBool,
    ) -> Result<Vec<Vec<u32>>> {
        collection.refresh_graph()?;
        let n = self.ids.len();
        let position: HashMap<u64, u32> = self.ids.iter().enumerate().map(|(i, id)| (id.0, i as u32)).collect();
        let dot = |a: &[f32], b: &[f32]| a.iter().zip(b).map(|(x, y)| x * y).sum::<f32>();
        let k = options.neighbours.max(1);
        let floor = options.candidate_floor();
        let done = AtomicUsize::new(0);
        let use_graph = collection.vector_count() >= EXACT_SCAN_BELOW;
        let unfiltered = n == collection.vector_count();
        let index = collection.index.read();
        // Each image asks for its neighbours as it is and, where stored, mirrored and in grayscale:
        // a mirrored or desaturated copy is then a neighbour however far its plain vector is.
        (0..n)
            .into_par_iter()
            .map(|i| {
                if cancel.load(Ordering::Relaxed) {
                    return Ok(Vec::new());
                }
                let views = collection.view_vectors(self.ids[i])?;
                let mut queries: Vec<&[f32]> = vec![self.vector(i)];
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
                            .filter_map(|(id, _)| position.get(&id).map(|&j| (j, dot(q, self.vector(j as usize)))))
                            .collect()
                    } else {
                        let mut top = TopK::new(k + 1);
                        for j in 0..n {
                            top.push(j as u64, dot(q, self.vector(j)));
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
            .collect()
    }
}
