//! A frozen copy of the HNSW graph's links as flat arrays over [`VectorTable`] slots, and the
//! search over it.
//!
//! hnsw_rs builds and persists the graph; its own search allocates an `Arc` per candidate,
//! hashes visited points with SipHash and takes a lock per node, which made a query at 100k
//! vectors an order of magnitude slower than faiss. This search walks the same links through
//! `u32` adjacency arrays, a visited list reset by an epoch counter, and SIMD dot products on
//! the vectors held in RAM. Filters are applied inside the walk: rejected points are still
//! stepped through, they only never enter the results.

use std::cell::RefCell;
use std::cmp::Ordering;
use std::collections::BinaryHeap;

use hnsw_rs::prelude::Hnsw;

use super::hnsw::CosineDistance;

use super::dot::dot;
use super::vector_table::VectorTable;

/// One layer's links: the neighbours of slot `s` are `targets[offsets[s]..offsets[s + 1]]`.
struct Adjacency {
    offsets: Vec<u32>,
    targets: Vec<u32>,
}

impl Adjacency {
    fn of(&self, slot: u32) -> &[u32] {
        let s = slot as usize;
        match (self.offsets.get(s), self.offsets.get(s + 1)) {
            (Some(&a), Some(&b)) => &self.targets[a as usize..b as usize],
            _ => &[],
        }
    }
}

pub(crate) struct FlatGraph {
    /// Slots `0..covered` are in the graph; later ones were inserted since it was frozen.
    covered: usize,
    entry: u32,
    /// Layer 0 first.
    layers: Vec<Adjacency>,
}

impl FlatGraph {
    /// Freezes `graph`'s links; every point's data id must have a slot in `table`.
    pub(crate) fn freeze(graph: &Hnsw<'static, f32, CosineDistance>, table: &VectorTable) -> Option<Self> {
        if graph.get_nb_point() == 0 {
            return None; // (hnsw_rs's point iterator panics on an empty graph)
        }
        let points = graph.get_point_indexation();
        let top = points.get_max_level_observed() as usize;
        let entry = points.get_layer_iterator(top).next()?;
        let entry = table.slot(entry.get_origin_id() as u64)?;
        let n = table.len();
        let mut layer0: Vec<Vec<u32>> = vec![Vec::new(); n];
        let mut lists: Vec<Vec<(u32, Vec<u32>)>> = (0..=top).map(|_| Vec::new()).collect();
        for point in points {
            let Some(slot) = table.slot(point.get_origin_id() as u64) else { continue };
            for (layer, neighbours) in point.get_neighborhood_id().into_iter().enumerate().take(top + 1) {
                if layer > point.get_point_id().0 as usize {
                    break;
                }
                let targets = neighbours.iter().filter_map(|nb| table.slot(nb.d_id as u64)).collect();
                if layer == 0 {
                    layer0[slot as usize] = targets;
                } else {
                    lists[layer].push((slot, targets));
                }
            }
        }
        let linked = link_unreachable(&mut layer0, entry, table);
        if linked > 0 {
            tracing::debug!(linked, points = n, "HNSW: points layer 0 could not reach linked from a neighbour");
        }
        lists[0] = layer0.into_iter().enumerate().map(|(slot, targets)| (slot as u32, targets)).collect();
        let layers = lists
            .into_iter()
            .map(|mut list| {
                list.sort_unstable_by_key(|(slot, _)| *slot);
                let mut offsets = Vec::with_capacity(n + 1);
                let mut targets = Vec::with_capacity(list.iter().map(|(_, t)| t.len()).sum());
                let mut next = list.into_iter().peekable();
                offsets.push(0);
                for slot in 0..n as u32 {
                    if let Some((_, t)) = next.next_if(|(s, _)| *s == slot) {
                        targets.extend(t);
                    }
                    offsets.push(targets.len() as u32);
                }
                Adjacency { offsets, targets }
            })
            .collect();
        Some(Self { covered: n, entry, layers })
    }

    /// Slots the frozen links cover (`0..covered`).
    pub(crate) fn covered(&self) -> usize {
        self.covered
    }

    /// Up to `ef` slots nearest `query` for which `accept` holds, best first, with their cosine.
    pub(crate) fn search(
        &self,
        table: &VectorTable,
        query: &[f32],
        ef: usize,
        accept: &dyn Fn(u32) -> bool,
    ) -> Vec<(u32, f32)> {
        self.search_avoiding(table, query, ef, accept, None)
    }

    /// [`FlatGraph::search`] as if `avoid` were not in the graph: never entered, so its links
    /// are not followed (a stored vector queried this way behaves like a query that is not stored).
    pub(crate) fn search_avoiding(
        &self,
        table: &VectorTable,
        query: &[f32],
        ef: usize,
        accept: &dyn Fn(u32) -> bool,
        avoid: Option<u32>,
    ) -> Vec<(u32, f32)> {
        let ef = ef.max(1);
        // Greedy descent through the upper layers to the point nearest the query.
        let mut cur = self.entry;
        let mut cur_sim = dot(query, table.vector(cur));
        for layer in self.layers.iter().skip(1).rev() {
            loop {
                let mut moved = false;
                for &nb in layer.of(cur) {
                    if Some(nb) == avoid {
                        continue;
                    }
                    let s = dot(query, table.vector(nb));
                    if s > cur_sim {
                        (cur, cur_sim) = (nb, s);
                        moved = true;
                    }
                }
                if !moved {
                    break;
                }
            }
        }
        VISITED.with(|visited| {
            let mut visited = visited.borrow_mut();
            let mut marks = visited.start(self.covered);
            if let Some(a) = avoid.filter(|&a| a != cur) {
                marks.mark(a);
            }
            self.beam(table, query, ef, accept, &mut marks, (cur, cur_sim))
        })
    }

    /// The beam search of layer 0 from `start`.
    fn beam(
        &self,
        table: &VectorTable,
        query: &[f32],
        ef: usize,
        accept: &dyn Fn(u32) -> bool,
        visited: &mut Marks<'_>,
        start: (u32, f32),
    ) -> Vec<(u32, f32)> {
        let layer0 = &self.layers[0];
        // `candidates`: best first; `results`: worst first, at most `ef`.
        let mut candidates: BinaryHeap<Near> = BinaryHeap::with_capacity(4 * ef);
        let mut results: BinaryHeap<Far> = BinaryHeap::with_capacity(ef + 1);
        visited.mark(start.0);
        candidates.push(Near(start.1, start.0));
        if accept(start.0) {
            results.push(Far(start.1, start.0));
        }
        let mut fresh: Vec<u32> = Vec::with_capacity(64);
        while let Some(Near(sim, slot)) = candidates.pop() {
            if results.len() >= ef && results.peek().is_some_and(|w| sim < w.0) {
                break;
            }
            fresh.clear();
            fresh.extend(layer0.of(slot).iter().copied().filter(|&nb| visited.mark(nb)));
            if let Some(&first) = fresh.first() {
                prefetch(table.vector(first));
            }
            for (i, &nb) in fresh.iter().enumerate() {
                // The next vector is fetched from memory while this one's dot product runs.
                if let Some(&next) = fresh.get(i + 1) {
                    prefetch(table.vector(next));
                }
                let s = dot(query, table.vector(nb));
                let worst = results.peek().map_or(f32::NEG_INFINITY, |w| w.0);
                if results.len() < ef || s > worst {
                    candidates.push(Near(s, nb));
                    if accept(nb) {
                        results.push(Far(s, nb));
                        if results.len() > ef {
                            results.pop();
                        }
                    }
                }
            }
        }
        let mut out: Vec<(u32, f32)> = results.into_iter().map(|Far(s, slot)| (slot, s)).collect();
        out.sort_unstable_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
        out
    }
}

/// Makes every slot reachable on layer 0 from `entry` and returns how many needed a link.
///
/// hnsw_rs adds a reverse link only where the neighbour's list has room or the new point beats
/// its farthest; a point that loses everywhere has no link pointing to it and no search can
/// find it, not even its own vector (about one build in twenty of 62 photos from a small model
/// left one such point; the kill harness found it), and on well-separated clusters whole groups
/// can be cut off. Each such point gets a link from its most similar out-neighbour that is
/// reachable or, with none (an island), from the nearest reachable point a beam walk finds; what
/// it links to becomes reachable with it. One pass, linear in the graph plus a walk per island.
fn link_unreachable(layer0: &mut [Vec<u32>], entry: u32, table: &VectorTable) -> usize {
    let n = layer0.len();
    if n == 0 {
        return 0;
    }
    let mut reached = vec![false; n];
    let reach = |layer0: &[Vec<u32>], from: u32, reached: &mut [bool]| {
        reached[from as usize] = true;
        let mut stack = vec![from];
        while let Some(s) = stack.pop() {
            for &t in &layer0[s as usize] {
                if !std::mem::replace(&mut reached[t as usize], true) {
                    stack.push(t);
                }
            }
        }
    };
    reach(layer0, entry, &mut reached);
    let mut linked = 0;
    for u in 0..n as u32 {
        if reached[u as usize] {
            continue;
        }
        let v = table.vector(u);
        let out = layer0[u as usize].iter().copied().filter(|&w| reached[w as usize]);
        let best_out = out.map(|w| (w, dot(v, table.vector(w)))).max_by(|a, b| a.1.total_cmp(&b.1)).map(|(w, _)| w);
        let w = best_out.unwrap_or_else(|| nearest_reachable(layer0, entry, table, v));
        layer0[w as usize].push(u);
        linked += 1;
        reach(layer0, u, &mut reached);
    }
    linked
}

/// The slot nearest `v` that a beam walk of layer 0 from `entry` finds (every slot it visits is
/// reachable by construction).
fn nearest_reachable(layer0: &[Vec<u32>], entry: u32, table: &VectorTable, v: &[f32]) -> u32 {
    const BEAM: usize = 32;
    let start = dot(v, table.vector(entry));
    let mut visited = std::collections::HashSet::from([entry]);
    let mut candidates = BinaryHeap::from([Near(start, entry)]);
    let mut results = BinaryHeap::from([Far(start, entry)]);
    while let Some(Near(sim, s)) = candidates.pop() {
        if results.len() >= BEAM && results.peek().is_some_and(|w| sim < w.0) {
            break;
        }
        for &t in &layer0[s as usize] {
            if !visited.insert(t) {
                continue;
            }
            let d = dot(v, table.vector(t));
            if results.len() < BEAM || results.peek().is_some_and(|w| d > w.0) {
                candidates.push(Near(d, t));
                results.push(Far(d, t));
                if results.len() > BEAM {
                    results.pop();
                }
            }
        }
    }
    results.into_iter().max_by(|a, b| a.0.total_cmp(&b.0)).map_or(entry, |f| f.1)
}

/// Asks the CPU to start loading `v` into cache (a hint: never faults, does nothing elsewhere).
#[inline(always)]
fn prefetch(v: &[f32]) {
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::x86_64::{_MM_HINT_T0, _mm_prefetch};
        for line in v.chunks(16) {
            // SAFETY: prefetching is a hint and reads nothing; `line` is a valid address anyway.
            unsafe { _mm_prefetch::<_MM_HINT_T0>(line.as_ptr().cast()) };
        }
    }
}

/// A candidate ordered by similarity, most similar on top.
struct Near(f32, u32);
/// A result ordered by similarity, least similar on top.
struct Far(f32, u32);

impl PartialEq for Near {
    fn eq(&self, o: &Self) -> bool {
        self.cmp(o) == Ordering::Equal
    }
}
impl Eq for Near {}
impl PartialOrd for Near {
    fn partial_cmp(&self, o: &Self) -> Option<Ordering> {
        Some(self.cmp(o))
    }
}
impl Ord for Near {
    fn cmp(&self, o: &Self) -> Ordering {
        self.0.total_cmp(&o.0).then(o.1.cmp(&self.1))
    }
}
impl PartialEq for Far {
    fn eq(&self, o: &Self) -> bool {
        self.cmp(o) == Ordering::Equal
    }
}
impl Eq for Far {}
impl PartialOrd for Far {
    fn partial_cmp(&self, o: &Self) -> Option<Ordering> {
        Some(self.cmp(o))
    }
}
impl Ord for Far {
    fn cmp(&self, o: &Self) -> Ordering {
        o.0.total_cmp(&self.0).then(self.1.cmp(&o.1))
    }
}

thread_local! {
    /// Per-thread visited marks, reused across searches (no allocation per query).
    static VISITED: RefCell<VisitedList> = const { RefCell::new(VisitedList { epochs: Vec::new(), epoch: 0 }) };
}

/// Visited marks as epoch stamps: starting a search bumps the epoch instead of clearing.
struct VisitedList {
    epochs: Vec<u32>,
    epoch: u32,
}

struct Marks<'a> {
    epochs: &'a mut [u32],
    epoch: u32,
}

impl VisitedList {
    fn start(&mut self, n: usize) -> Marks<'_> {
        if self.epochs.len() < n {
            self.epochs.resize(n, 0);
        }
        self.epoch = self.epoch.wrapping_add(1);
        if self.epoch == 0 {
            self.epochs.iter_mut().for_each(|e| *e = 0);
            self.epoch = 1;
        }
        Marks { epochs: &mut self.epochs[..n], epoch: self.epoch }
    }
}

impl Marks<'_> {
    /// Marks `slot` visited; false if it already was.
    fn mark(&mut self, slot: u32) -> bool {
        let e = &mut self.epochs[slot as usize];
        if *e == self.epoch {
            return false;
        }
        *e = self.epoch;
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn points_without_a_link_to_them_are_linked_from_a_reachable_neighbour() {
        let mut table = VectorTable::new(2);
        for (id, v) in [[1.0, 0.0], [0.8, 0.6], [0.6, 0.8], [0.0, 1.0], [-1.0, 0.0]].iter().enumerate() {
            table.push(id as u64, v, true);
        }
        // 0 <-> 1; 2 links to 1 and 0, 3 links to 2, and nothing links to 2, 3 or 4.
        let mut layer0 = vec![vec![1], vec![0], vec![1, 0], vec![2], vec![]];
        assert_eq!(link_unreachable(&mut layer0, 0, &table), 3);
        // 2 from its most similar reachable out-neighbour (1), 3 from 2 once 2 is reached, and
        // 4 (no links at all) from the nearest reachable point a walk finds (3).
        assert!(layer0[1].contains(&2) && layer0[2].contains(&3) && layer0[3].contains(&4), "{layer0:?}");
        assert_eq!(link_unreachable(&mut layer0, 0, &table), 0, "all reachable now");
    }

    #[test]
    fn an_island_of_points_linked_only_among_themselves_gets_one_link() {
        let mut table = VectorTable::new(2);
        let angles = [0.0f32, 0.1, 0.2, 0.3, 2.0, 2.1, 2.2, 2.3];
        for (id, a) in angles.iter().enumerate() {
            table.push(id as u64, &[a.cos(), a.sin()], true);
        }
        // Two rings, 0..4 and 4..8, with no link between them.
        let ring = |s: u32, base: u32| vec![base + (s - base + 1) % 4, base + (s - base + 3) % 4];
        let mut layer0: Vec<Vec<u32>> = (0..8).map(|s| ring(s, if s < 4 { 0 } else { 4 })).collect();
        assert_eq!(link_unreachable(&mut layer0, 0, &table), 1, "{layer0:?}");
        // From the reachable point nearest the island's first point (3, at angle 0.3).
        assert!(layer0[3].contains(&4), "{layer0:?}");
    }
}
