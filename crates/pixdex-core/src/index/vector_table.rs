//! The global vectors in RAM, one slot each, in insertion order: what searches read instead of
//! sled. A removed image keeps its slot (graph snapshots refer to slots) and is marked dead until
//! the index is rebuilt.

use rayon::prelude::*;
use std::collections::HashMap;

use super::dot::dot;
use super::exact::TopK;

/// Above this many slots an exact scan is split over rayon's threads.
const PARALLEL_SCAN_FROM: usize = 32_768;

pub(crate) struct VectorTable {
    dim: usize,
    ids: Vec<u64>,
    /// `ids.len() × dim`, row-major.
    values: Vec<f32>,
    live: Vec<bool>,
    live_count: usize,
    slot_of: HashMap<u64, u32>,
}

impl VectorTable {
    pub(crate) fn new(dim: usize) -> Self {
        Self { dim, ids: Vec::new(), values: Vec::new(), live: Vec::new(), live_count: 0, slot_of: HashMap::new() }
    }

    pub(crate) fn dim(&self) -> usize {
        self.dim
    }

    /// Slots, live and dead.
    pub(crate) fn len(&self) -> usize {
        self.ids.len()
    }

    pub(crate) fn live_len(&self) -> usize {
        self.live_count
    }

    /// Adds `id` with its vector (of this table's dimension); returns its slot.
    pub(crate) fn push(&mut self, id: u64, v: &[f32], live: bool) -> u32 {
        debug_assert_eq!(v.len(), self.dim);
        let slot = self.ids.len() as u32;
        self.ids.push(id);
        self.values.extend_from_slice(v);
        self.live.push(live);
        self.live_count += live as usize;
        self.slot_of.insert(id, slot);
        slot
    }

    /// Marks `id` dead; false if it was not live.
    pub(crate) fn kill(&mut self, id: u64) -> bool {
        match self.slot_of.get(&id) {
            Some(&s) if self.live[s as usize] => {
                self.live[s as usize] = false;
                self.live_count -= 1;
                true
            }
            _ => false,
        }
    }

    pub(crate) fn slot(&self, id: u64) -> Option<u32> {
        self.slot_of.get(&id).copied()
    }

    pub(crate) fn contains(&self, id: u64) -> bool {
        self.slot_of.contains_key(&id)
    }

    pub(crate) fn is_live(&self, slot: u32) -> bool {
        self.live[slot as usize]
    }

    pub(crate) fn id(&self, slot: u32) -> u64 {
        self.ids[slot as usize]
    }

    pub(crate) fn vector(&self, slot: u32) -> &[f32] {
        let o = slot as usize * self.dim;
        &self.values[o..o + self.dim]
    }

    /// Every id, live or dead, with its liveness.
    pub(crate) fn entries(&self) -> impl Iterator<Item = (u64, bool)> + '_ {
        self.ids.iter().copied().zip(self.live.iter().copied())
    }

    /// The vector of a live id.
    pub(crate) fn live_vector(&self, id: u64) -> Option<&[f32]> {
        self.slot(id).filter(|&s| self.is_live(s)).map(|s| self.vector(s))
    }

    /// Exact top `k` by cosine over the live slots in `slots` for which `keep(id)` holds.
    pub(crate) fn scan(
        &self,
        query: &[f32],
        k: usize,
        slots: std::ops::Range<usize>,
        keep: Option<&(dyn Fn(u64) -> bool + Sync)>,
    ) -> Vec<(u64, f32)> {
        let scan_part = |part: std::ops::Range<usize>| {
            let mut top = TopK::new(k);
            for s in part {
                if self.live[s] && keep.is_none_or(|keep| keep(self.ids[s])) {
                    top.push(self.ids[s], dot(query, self.vector(s as u32)));
                }
            }
            top
        };
        if slots.len() < PARALLEL_SCAN_FROM {
            return scan_part(slots).into_sorted();
        }
        let parts = rayon::current_num_threads().max(1) * 4;
        let step = slots.len().div_ceil(parts);
        let tops: Vec<TopK> = (0..parts)
            .into_par_iter()
            .map(|p| scan_part(slots.start + p * step..(slots.start + (p + 1) * step).min(slots.end)))
            .collect();
        let mut all = TopK::new(k);
        for (id, score) in tops.into_iter().flat_map(TopK::into_sorted) {
            all.push(id, score);
        }
        all.into_sorted()
    }
}
