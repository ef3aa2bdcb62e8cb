//! The HNSW graph's lifecycle inside a [`Collection`]: loaded on open if it reflects the
//! current generation, caught up by id-set difference if older, rebuilt if missing, unreadable
//! or more than 20% tombstones; saved atomically on [`Collection::flush`]; rebuilt without
//! tombstones by [`Collection::compact`]. Also the graph's raw searches: the filtered one
//! similarity search and dedup go through, and the measurement APIs recall is checked with.

use std::collections::HashSet;
use std::sync::atomic::Ordering;

use super::hnsw::HnswIndex;
use crate::collection::Collection;
use crate::error::Result;
use crate::records::{Hit, ImageId};
use crate::store::ValueKind;
use crate::vectors::UnitVector;

/// Above this fraction of tombstones, opening rebuilds the graph.
const MAX_TOMBSTONE_RATIO: f64 = 0.2;

impl Collection {
    /// Makes everything committed durable (sled flush) and saves the HNSW graph and the region
    /// index (brought up to date first: building it is the index job's work, not a query's).
    pub fn flush(&self) -> Result<()> {
        self.refresh_graph()?;
        {
            // No commit between reading the generation and saving the graph it labels.
            let _commit = self.commit_lock.lock();
            self.flush_store()?;
            // Where other processes write, the graph reflects the generation it was last caught
            // up to (and this process's own commits since: an older label only means a longer
            // catch-up by id set next time).
            let generation =
                if self.store.is_shared() { self.graph_generation.load(Ordering::Acquire) } else { self.generation()? };
            self.index.write().freeze();
            self.index.read().save(self.dir(), generation)?;
        }
        // The region index reads the generation and the live ids together and catches up by id
        // set, so commits may go on while it builds (which takes minutes on a large library).
        self.save_region_index()
    }

    /// Rebuilds the graph from the stored vectors, dropping tombstones.
    pub fn compact(&self) -> Result<()> {
        {
            // A commit between reading the vectors and swapping the graph would be lost from it.
            let _commit = self.commit_lock.lock();
            let fresh = self.build_index()?;
            *self.index.write() = fresh;
        }
        self.flush()
    }

    /// The beam width similarity search uses by default: the narrowest that reached recall@10
    /// 0.995 on this collection's own vectors queried as if not stored ([`crate::SEARCH_EF`]
    /// until it is measured).
    pub fn search_ef(&self) -> usize {
        self.index.read().search_ef()
    }

    /// Deleted vectors still in the HNSW graph (filtered at query time until [`Collection::compact`]).
    pub fn hnsw_tombstones(&self) -> usize {
        self.index.read().tombstone_count()
    }

    /// Loads the persisted graph if it matches, catches it up with sled, or rebuilds it.
    pub(crate) fn load_index(&self) -> Result<()> {
        let generation = self.generation()?;
        let dim = self.config().dim;
        let loaded = HnswIndex::load(self.dir()).filter(|(ix, _)| ix.dim() == dim);
        let index = match loaded {
            Some((ix, g)) if g == generation => ix,
            Some((mut ix, g)) => {
                let (added, removed) = self.catch_up(&mut ix)?;
                tracing::info!(from = g, to = generation, added, removed, "HNSW caught up");
                ix
            }
            None => self.build_index()?,
        };
        let rebuild = index.tombstone_ratio() > MAX_TOMBSTONE_RATIO;
        *self.index.write() = if rebuild { self.build_index()? } else { index };
        self.graph_generation.store(generation, Ordering::Release);
        Ok(())
    }

    /// Brings `ix` level with the store by id-set difference: ids are never reused and vectors
    /// never change under an id, so the difference is exactly what happened since it was built.
    /// Reads the ids, and the vectors only from the first missing id on. Returns (added, removed).
    fn catch_up(&self, ix: &mut HnswIndex) -> Result<(usize, usize)> {
        let live: HashSet<u64> = self.store.ids_with_value(ValueKind::Global)?.into_iter().collect();
        let gone: Vec<u64> = ix.member_ids().filter(|id| !live.contains(id)).collect();
        let mut missing = Vec::new();
        if let Some(&first) = live.iter().filter(|id| !ix.contains(**id)).min() {
            self.for_each_vector_from(first, |id, v| {
                if !ix.contains(id) {
                    missing.push((id, v.to_vec()));
                }
            })?;
        }
        let counts = (missing.len(), gone.len());
        gone.into_iter().for_each(|id| ix.remove(id));
        ix.insert(&missing);
        ix.freeze();
        Ok(counts)
    }

    /// For a store other processes write to: catches the graph up when the store's generation
    /// moved since it was last caught up (queries that read the graph call this first).
    pub(crate) fn refresh_graph(&self) -> Result<()> {
        if !self.store.is_shared() {
            return Ok(());
        }
        let generation = self.generation()?;
        if self.graph_generation.load(Ordering::Acquire) == generation {
            return Ok(());
        }
        // No commit of this process between the catch-up and the swap.
        let _commit = self.commit_lock.lock();
        let (added, removed) = self.catch_up(&mut self.index.write())?;
        if added + removed > 0 {
            tracing::debug!(added, removed, generation, "HNSW caught up with other writers");
        }
        self.graph_generation.store(generation, Ordering::Release);
        Ok(())
    }

    /// A fresh graph of every stored global vector.
    fn build_index(&self) -> Result<HnswIndex> {
        let mut vectors = Vec::new();
        self.for_each_vector(|id, v| vectors.push((id, v.to_vec())))?;
        let mut index = HnswIndex::new(self.config().dim, vectors.len());
        index.insert(&vectors);
        index.freeze();
        Ok(index)
    }

    /// HNSW search keeping only ids for which `keep` is true.
    pub(crate) fn search_hnsw_where(
        &self,
        query: &UnitVector,
        k: usize,
        ef: usize,
        keep: Option<&(dyn Fn(u64) -> bool + Sync)>,
    ) -> Result<Vec<Hit>> {
        self.check_query(query)?;
        self.refresh_graph()?;
        let index = self.index.read();
        let k = k.min(index.live_len());
        Ok(index
            .search_where(query.as_slice(), k, ef, keep)
            .into_iter()
            .map(|(id, score)| Hit { id: ImageId(id), score })
            .collect())
    }

    /// **Measurement API**: the exact `k` most similar images by scanning every stored vector,
    /// the reference recall is measured against (`benches/hnsw_recall.rs`, the recall tests).
    /// Queries go through [`Collection::search_similar`].
    pub fn search_exact(&self, query: &UnitVector, k: usize) -> Result<Vec<Hit>> {
        self.check_query(query)?;
        self.refresh_graph()?;
        Ok(self
            .index
            .read()
            .scan(query.as_slice(), k, None)
            .into_iter()
            .map(|(id, score)| Hit { id: ImageId(id), score })
            .collect())
    }

    /// **Measurement API**: HNSW search with beam width `ef` whatever the collection's size, for
    /// measuring its recall against [`Collection::search_exact`]. Queries go through
    /// [`Collection::search_similar`].
    pub fn search_hnsw(&self, query: &UnitVector, k: usize, ef: usize) -> Result<Vec<Hit>> {
        self.search_hnsw_where(query, k, ef, None)
    }
}
