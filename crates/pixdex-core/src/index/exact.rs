//! Exact top-k by brute force.

use std::cmp::Ordering;
use std::collections::BinaryHeap;

use crate::records::{Hit, ImageId};

/// A candidate ordered by similarity (a min-heap keeps the best k).
#[derive(PartialEq)]
struct Scored(f32, u64);

impl Eq for Scored {}

impl PartialOrd for Scored {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Scored {
    // Reversed so that BinaryHeap's top is the worst kept candidate.
    fn cmp(&self, other: &Self) -> Ordering {
        other.0.total_cmp(&self.0).then(self.1.cmp(&other.1))
    }
}

/// Keeps the `k` highest scores seen, returning them best first (ties by smaller id).
pub(crate) struct TopK {
    k: usize,
    heap: BinaryHeap<Scored>,
}

impl TopK {
    pub(crate) fn new(k: usize) -> Self {
        // Capacity grows with use: a caller's huge k must not allocate up front.
        Self { k, heap: BinaryHeap::with_capacity(k.min(1024) + 1) }
    }

    pub(crate) fn push(&mut self, id: u64, score: f32) {
        if self.k == 0 {
            return;
        }
        if self.heap.len() < self.k {
            self.heap.push(Scored(score, id));
        } else if let Some(worst) = self.heap.peek()
            && (score > worst.0 || (score == worst.0 && id < worst.1))
        {
            self.heap.pop();
            self.heap.push(Scored(score, id));
        }
    }

    pub(crate) fn into_sorted(self) -> Vec<(u64, f32)> {
        let mut v: Vec<(u64, f32)> = self.heap.into_iter().map(|s| (s.1, s.0)).collect();
        v.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
        v
    }

    /// [`Self::into_sorted`] as image hits.
    pub(crate) fn into_hits(self) -> Vec<Hit> {
        self.into_sorted().into_iter().map(|(id, score)| Hit { id: ImageId(id), score }).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_the_best_k_in_order() {
        let mut t = TopK::new(3);
        for (id, s) in [(1, 0.1), (2, 0.9), (3, 0.5), (4, 0.7), (5, 0.9), (6, -1.0)] {
            t.push(id, s);
        }
        assert_eq!(t.into_sorted(), vec![(2, 0.9), (5, 0.9), (4, 0.7)]);
    }
}
