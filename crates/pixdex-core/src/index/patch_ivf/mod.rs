//! Stage 1 of region search: an inverted file over the stored region tokens, with votes per
//! image on the offset between query and stored cells (a Hough vote).
//!
//! Every stored token is assigned to its nearest centroid of a spherical k-means codebook; a
//! posting is 6 bytes (image slot, cell), so 100k photos of about 730 tokens take about 440 MB.
//! A query token votes for every posting in its `nprobe` nearest lists, weighted by its
//! similarity to the centroid and by the list's rarity (idf), into the bin (image, Δrow, Δcol):
//! tokens of the right image agree on one offset, look-alike textures scatter.
//!
//! Offsets only agree when the query grid has the object's scale in the image, so postings are
//! kept apart by the image's scale group (a step of a 2^(1/6) ladder of grid cells per pixel),
//! and a query votes in each group with its grid at that group's scale. A library from one
//! camera has one or two groups.
//! The index is derived from sled's `regions` tree: built by the index job (on flush) or the
//! first region query, persisted beside the collection ([`file`]), caught up with the images
//! added and removed since by id set, and rebuilt when it drifts too far from what it was
//! trained on.

mod file;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::hash::{BuildHasherDefault, Hasher};

use crate::linalg::{matmul_nt, normalise_rows};
use crate::vectors::PatchGrid;

/// Tokens k-means is trained on.
const TRAIN_SAMPLE: usize = 60_000;
const TRAIN_ITERATIONS: usize = 8;

/// Number of lists for `tokens` stored tokens: about √n, so that a list holds about √n
/// postings (clamped to 64..=4096: more lists make assignment, the build's cost, slower).
pub(crate) fn list_count(tokens: usize) -> usize {
    ((tokens as f64).sqrt().round() as usize).clamp(64, 4096)
}

#[derive(Default, Debug, PartialEq)]
struct PostingList {
    slots: Vec<u32>,
    cells: Vec<u16>,
}

/// One indexed image.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct IvfImage {
    pub(crate) id: u64,
    pub(crate) cols: u16,
    /// Grid cells per upright pixel (geometric mean of both axes): the image's scale.
    pub(crate) cells_per_px: f32,
    /// The scale group its postings are kept in.
    pub(crate) group: i32,
}

/// The inverted file.
pub(crate) struct PatchIvf {
    dim: usize,
    centroids: Vec<f32>,
    /// Postings per scale group, one list per centroid.
    groups: BTreeMap<i32, Vec<PostingList>>,
    /// Postings per centroid over all groups (for the idf).
    list_sizes: Vec<u32>,
    pub(crate) images: Vec<IvfImage>,
    tokens: usize,
    trained_on: usize,
    /// Collection generation this index reflects.
    pub(crate) generation: u64,
    /// Every image id examined: indexed, or found without a region grid.
    pub(crate) seen: HashSet<u64>,
    /// The (generation, graph slots) it was last caught up at; not persisted.
    pub(crate) caught_up_to: Option<(u64, usize)>,
    /// Changed since it was last written; not persisted.
    pub(crate) unsaved: bool,
}

impl PatchIvf {
    /// Trains a codebook of `lists` centroids on `sample` (unit tokens, `dim` wide) with
    /// spherical k-means, seeded by evenly spaced sample tokens.
    pub(crate) fn train(sample: &[f32], dim: usize, lists: usize, total_tokens: usize) -> Self {
        let n = sample.len() / dim;
        let k = lists.min(n).max(1);
        let mut centroids: Vec<f32> = if n == 0 {
            let mut c = vec![0f32; dim];
            c[0] = 1.0;
            c
        } else {
            (0..k).flat_map(|i| sample[(i * n / k) * dim..(i * n / k + 1) * dim].iter().copied()).collect()
        };
        for _ in 0..TRAIN_ITERATIONS {
            if n == 0 {
                break;
            }
            let assign = nearest(sample, &centroids, dim);
            let mut sums = vec![0f32; centroids.len()];
            for (t, &c) in sample.chunks_exact(dim).zip(&assign) {
                sums[c * dim..(c + 1) * dim].iter_mut().zip(t).for_each(|(s, v)| *s += v);
            }
            for (c, s) in centroids.chunks_exact_mut(dim).zip(sums.chunks_exact(dim)) {
                if s.iter().any(|v| *v != 0.0) {
                    c.copy_from_slice(s);
                }
            }
            normalise_rows(&mut centroids, dim);
        }
        let list_sizes = vec![0; centroids.len() / dim];
        Self {
            dim,
            centroids,
            groups: BTreeMap::new(),
            list_sizes,
            images: Vec::new(),
            tokens: 0,
            trained_on: total_tokens,
            generation: 0,
            seen: HashSet::new(),
            caught_up_to: None,
            unsaved: true,
        }
    }

    /// Whether the collection grew so much past what the codebook was trained on that the
    /// lists are too long: time to rebuild.
    pub(crate) fn outgrown(&self, tokens: usize) -> bool {
        tokens > 4 * self.trained_on.max(TRAIN_SAMPLE / 4)
    }

    /// Stored tokens indexed.
    pub(crate) fn tokens(&self) -> usize {
        self.tokens
    }

    /// Bytes of postings held in memory.
    pub(crate) fn posting_bytes(&self) -> usize {
        self.tokens * 6
    }

    /// Indexes one image's reduced grid.
    #[cfg(test)]
    pub(crate) fn add(&mut self, image: IvfImage, grid: &PatchGrid) {
        self.add_all(vec![(image, grid)]);
    }

    /// Indexes several images' reduced grids, in order. Their tokens are assigned to lists in
    /// one pass on every core (one image alone is smaller than a slab): the assignment is the
    /// build's main cost.
    pub(crate) fn add_all(&mut self, images: Vec<(IvfImage, &PatchGrid)>) {
        let tokens: Vec<f32> = images.iter().flat_map(|(_, g)| g.values().iter().copied()).collect();
        let assigned = nearest(&tokens, &self.centroids, self.dim);
        let mut offset = 0;
        for (image, grid) in images {
            let n = grid.rows() * grid.cols();
            self.add_assigned(image, &assigned[offset..offset + n]);
            offset += n;
        }
    }

    /// Indexes one image whose tokens were assigned to lists `assigned` (one per cell).
    fn add_assigned(&mut self, image: IvfImage, assigned: &[usize]) {
        let slot = self.images.len() as u32;
        let n_lists = self.list_sizes.len();
        let lists =
            self.groups.entry(image.group).or_insert_with(|| (0..n_lists).map(|_| PostingList::default()).collect());
        for (cell, &c) in assigned.iter().enumerate() {
            lists[c].slots.push(slot);
            lists[c].cells.push(cell as u16);
            self.list_sizes[c] += 1;
        }
        self.tokens += assigned.len();
        self.seen.insert(image.id);
        self.images.push(image);
    }

    /// The scale groups that hold images.
    pub(crate) fn groups(&self) -> Vec<i32> {
        self.groups.keys().copied().collect()
    }

    /// Hough votes for `query` (reduced, unit tokens) among the images of scale `group`: each
    /// image's best 3×3-smoothed offset bin, best first.
    pub(crate) fn vote(&self, query: &PatchGrid, group: i32, nprobe: usize) -> Vec<(usize, f32)> {
        let Some(lists) = self.groups.get(&group) else { return Vec::new() };
        let n_lists = self.list_sizes.len();
        let sims = matmul_nt(query.values(), &self.centroids, self.dim);
        let total = self.tokens.max(1) as f32;
        let mut bins: HashMap<u64, f32, BuildHasherDefault<MixHasher>> = HashMap::default();
        let mut order: Vec<usize> = (0..n_lists).collect();
        for (q, row) in sims.chunks_exact(n_lists).enumerate() {
            let (qr, qc) = ((q / query.cols()) as i32, (q % query.cols()) as i32);
            let probe = nprobe.min(n_lists);
            order.select_nth_unstable_by(probe - 1, |&a, &b| row[b].total_cmp(&row[a]));
            for &c in &order[..probe] {
                let list = &lists[c];
                if list.slots.is_empty() || row[c] <= 0.0 {
                    continue;
                }
                let w = row[c] * (total / self.list_sizes[c] as f32).ln().max(0.0);
                for (&slot, &cell) in list.slots.iter().zip(&list.cells) {
                    let cols = self.images[slot as usize].cols as i32;
                    let (r, col) = (cell as i32 / cols, cell as i32 % cols);
                    *bins.entry(bin_key(slot, r - qr, col - qc)).or_insert(0.0) += w;
                }
            }
        }
        let mut best: HashMap<u32, f32, BuildHasherDefault<MixHasher>> = HashMap::default();
        for (&key, _) in bins.iter() {
            let (slot, dy, dx) = unpack(key);
            let mut s = 0.0;
            for ny in -1..=1 {
                for nx in -1..=1 {
                    s += bins.get(&bin_key(slot, dy + ny, dx + nx)).copied().unwrap_or(0.0);
                }
            }
            let e = best.entry(slot).or_insert(0.0);
            *e = e.max(s);
        }
        let mut out: Vec<(usize, f32)> = best.into_iter().map(|(s, v)| (s as usize, v)).collect();
        out.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
        out
    }
}

const OFFSET_BIAS: i32 = 1 << 15;

fn bin_key(slot: u32, dy: i32, dx: i32) -> u64 {
    ((slot as u64) << 32) | (((dy + OFFSET_BIAS) as u64 & 0xffff) << 16) | ((dx + OFFSET_BIAS) as u64 & 0xffff)
}

fn unpack(key: u64) -> (u32, i32, i32) {
    ((key >> 32) as u32, ((key >> 16) & 0xffff) as i32 - OFFSET_BIAS, (key & 0xffff) as i32 - OFFSET_BIAS)
}

/// Index of the nearest centroid (largest dot product) of every token.
fn nearest(tokens: &[f32], centroids: &[f32], dim: usize) -> Vec<usize> {
    use rayon::prelude::*;
    let k = centroids.len() / dim;
    // In slabs, so that the similarity matrix stays small, and on every core: assigning a large
    // library is the index's main build cost.
    let slab = 1024 * dim;
    tokens
        .par_chunks(slab)
        .flat_map_iter(|chunk| {
            let sims = matmul_nt(chunk, centroids, dim);
            sims.chunks_exact(k)
                .map(|row| row.iter().enumerate().fold((0, f32::MIN), |b, (i, &v)| if v > b.1 { (i, v) } else { b }).0)
                .collect::<Vec<_>>()
        })
        .collect()
}

/// A fast hasher for the integer bin keys (splitmix finaliser).
#[derive(Default)]
struct MixHasher(u64);

impl Hasher for MixHasher {
    fn finish(&self) -> u64 {
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = self.0.rotate_left(8) ^ b as u64;
        }
    }

    fn write_u64(&mut self, v: u64) {
        self.0 = v;
    }

    fn write_u32(&mut self, v: u32) {
        self.0 = v as u64;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A grid of `rows × cols` tokens drawn from `palette` by a per-cell pattern.
    fn grid(rows: usize, cols: usize, palette: &[Vec<f32>], pattern: impl Fn(usize, usize) -> usize) -> PatchGrid {
        let dim = palette[0].len();
        let mut values = Vec::with_capacity(rows * cols * dim);
        for r in 0..rows {
            for c in 0..cols {
                values.extend(&palette[pattern(r, c) % palette.len()]);
            }
        }
        PatchGrid::new(rows, cols, dim, values).unwrap()
    }

    fn palette(n: usize, dim: usize, seed: u64) -> Vec<Vec<f32>> {
        let mut s = seed;
        (0..n)
            .map(|_| {
                let mut v: Vec<f32> = (0..dim)
                    .map(|_| {
                        s = s.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                        ((s >> 33) as f32 / (1u64 << 31) as f32) - 0.5
                    })
                    .collect();
                normalise_rows(&mut v, dim);
                v
            })
            .collect()
    }

    #[test]
    fn the_image_holding_the_query_pattern_wins_the_vote() {
        let dim = 16;
        let p = palette(40, dim, 7);
        // Ten images of scattered palette tokens; image 6 holds a distinctive 3×4 block at (2, 5).
        let mut images: Vec<PatchGrid> =
            (0..10).map(|i| grid(8, 10, &p[..30], move |r, c| (r * 7 + c * 3 + i * 11) % 29)).collect();
        let block = |r: usize, c: usize| 30 + (r * 4 + c) % 10;
        for r in 0..3 {
            for c in 0..4 {
                let at = ((2 + r) * 10 + 5 + c) * dim;
                images[6].values_mut()[at..at + dim].copy_from_slice(&p[block(r, c)]);
            }
        }
        let sample: Vec<f32> = images.iter().flat_map(|g| g.values().iter().copied()).collect();
        let mut ivf = PatchIvf::train(&sample, dim, 40, sample.len() / dim);
        for (i, g) in images.iter().enumerate() {
            ivf.add(IvfImage { id: i as u64 + 1, cols: 10, cells_per_px: 0.05, group: (i % 2) as i32 }, g);
        }
        assert_eq!(ivf.tokens(), 800);
        let query = grid(3, 4, &p, block);
        assert_eq!(ivf.groups(), vec![0, 1]);
        let votes = ivf.vote(&query, 0, 2);
        assert_eq!(votes[0].0, 6, "{votes:?}");
        assert!(votes[0].1 > 2.0 * votes[1].1, "{votes:?}");
        // The other group holds only the odd images.
        let odd = ivf.vote(&query, 1, 2);
        assert!(!odd.is_empty() && odd.iter().all(|&(slot, _)| slot % 2 == 1), "{odd:?}");
    }

    #[test]
    fn bin_keys_round_trip_negative_offsets() {
        for (s, dy, dx) in [(0u32, 0, 0), (7, -3, 12), (u32::MAX >> 1, -200, -1)] {
            assert_eq!(unpack(bin_key(s, dy, dx)), (s, dy, dx));
        }
    }
}
