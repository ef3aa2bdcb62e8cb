//! Region search: which stored images contain something like this crop, and where.
//!
//! 1. **Candidates**: the crop is embedded at the scale of each group of stored images of about
//!    one scale, reduced like the stored grids, and its tokens vote in the inverted file
//!    ([`crate::index::patch_ivf`]) among that group's images.
//! 2. **Rerank**: for each candidate, the crop is embedded at that image's scale (× a few
//!    multipliers, snapped to a ladder so that embeddings are shared across images) and its
//!    token grid is slid over the stored grid: the score at a position is the mean cosine of the
//!    aligned tokens, cells outside the image counting 0. The peak, refined to sub-cell precision
//!    by a parabola on each axis, gives the box, mapped back to the file's stored pixels.
//! 3. **Ranking**: by the peak less a quarter of the mean over all positions, which discounts
//!    images that resemble the crop everywhere (see [`RegionRanking`] for the rules measured).

use std::collections::HashMap;

use crate::codec::PatchGrid;
use crate::collection::{Collection, ImageId, ImageRecord};
use crate::error::{Error, Result};
use crate::index::patch_ivf::{IvfImage, PatchIvf, list_count};
use crate::linalg::matmul_nt;
use crate::query::similar::MAX_K;
use crate::region::{PixelBox, RegionFrame, decode_region};
use crate::schema;

/// Candidates reranked per query by default. On the dev region benchmark (294 images) pasted
/// objects are found at hit@10 0.875 with 64 or 128 candidates and 0.925 with 256, as reranking
/// every image does (the vote puts the truth within the top 64 for 0.90 of them, the top 256 for
/// all); a rerank costs about 1.5 ms per candidate, less than the query's own embeddings.
pub const DEFAULT_REGION_CANDIDATES: usize = 256;

/// Most candidates a query may ask to rerank.
pub const MAX_REGION_CANDIDATES: usize = 2000;

/// Scale multipliers tried per candidate: the crop at the image's own scale, and a little
/// smaller (a pasted or re-framed object is rarely larger than its source).
const MULTIPLIERS: [f32; 3] = [0.794, 0.891, 1.0];

/// Query scales snap to 2^(k/6), so that images of similar sizes share a query embedding.
const LADDER_STEPS_PER_OCTAVE: f32 = 6.0;

/// The multiplier the candidate vote assumes (the middle one), so that the vote's query grids
/// are among the rerank's.
const VOTE_MULTIPLIER: f32 = MULTIPLIERS[1];

/// The query grid's short side for the candidate vote, at least.
const MIN_VOTE_CELLS: usize = 3;

/// The query grid's long side for the candidate vote, at most.
const MAX_VOTE_CELLS: usize = 48;

/// Inverted lists probed per query token.
const NPROBE: usize = 3;

/// How much of an image's background (the match's mean over all positions) is taken off its
/// peak for [`RegionRanking::Distinct`].
pub const BACKGROUND_WEIGHT: f32 = 0.25;

/// How results are ordered. On the dev region benchmark (`benches/region_quality.rs`, every
/// image reranked) the peak less a quarter of the background ranks best: hit@1 0.81 against 0.71
/// for the peak alone, and 0.78 against 0.50 on pasted objects, which the peak alone loses to
/// photos that look like the crop everywhere (foliage, sky); the full contrast gives up plain
/// crops (0.55). The others stay for measuring.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum RegionRanking {
    /// Reciprocal-rank fusion of the rerank score and the candidate vote:
    /// `1/(10 + rank_match) + 1/(10 + rank_vote)`.
    Fused,
    /// The rerank score alone (mean cosine of the aligned tokens).
    Match,
    /// The rerank score less [`BACKGROUND_WEIGHT`] times the image's background.
    #[default]
    Distinct,
    /// The rerank score above the image's background: the peak minus the mean over all
    /// positions.
    Contrast,
    /// Reciprocal-rank fusion of [`Self::Contrast`] and the candidate vote.
    FusedContrast,
}

impl RegionRanking {
    /// The score a placement ranks by.
    fn score(self, m: &TemplateMatch) -> f32 {
        match self {
            Self::Fused | Self::Match => m.score,
            Self::Distinct => m.score - BACKGROUND_WEIGHT * m.background,
            Self::Contrast | Self::FusedContrast => m.score - m.background,
        }
    }
}

/// What to return for a region query.
#[derive(Debug, Clone)]
pub struct RegionQuery {
    /// How many results (1..=[`MAX_K`]).
    pub k: usize,
    /// How many vote candidates to rerank (at least `k`).
    pub candidates: usize,
    /// Drop results whose score ([`RegionHit::score`]) is below this.
    pub min_score: Option<f32>,
    /// Keep only images whose path (or key) starts with this string.
    pub path_prefix: Option<String>,
    /// Leave these images out.
    pub exclude: Vec<ImageId>,
    /// How results are ordered.
    pub ranking: RegionRanking,
}

impl Default for RegionQuery {
    fn default() -> Self {
        Self {
            k: 10,
            candidates: DEFAULT_REGION_CANDIDATES,
            min_score: None,
            path_prefix: None,
            exclude: Vec::new(),
            ranking: RegionRanking::default(),
        }
    }
}

/// One result.
#[derive(Debug, Clone, PartialEq)]
pub struct RegionHit {
    /// The image.
    pub id: ImageId,
    /// Its record.
    pub record: ImageRecord,
    /// The ranking score (for the default ranking: the mean cosine of the crop's tokens against
    /// the image's at the best position and scale, less a quarter of its mean over all
    /// positions).
    pub score: f32,
    /// The mean cosine of the aligned tokens at that position.
    pub similarity: f32,
    /// The candidate vote's standing: 1 minus the image's rank over its scale group's size
    /// (for diagnosis; 0 without a vote).
    pub votes: f32,
    /// The score's mean over all positions in the image (for [`RegionRanking::Contrast`]).
    pub background: f32,
    /// Where the crop is, in the file's stored pixels (before EXIF orientation).
    pub bbox: PixelBox,
}

/// The best placement of a query grid in an image grid.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TemplateMatch {
    /// Mean cosine of the aligned tokens (cells outside the image count 0).
    pub score: f32,
    /// The mean of that score over every position tried.
    pub background: f32,
    /// The placement in grid cells (sub-cell position; size of the query grid).
    pub cells: PixelBox,
}

/// Slides `query` over `image` (both unit tokens of one dimension) and returns the best
/// placement. Positions run from fully inside to one cell outside where the query is larger.
pub fn match_template(query: &PatchGrid, image: &PatchGrid) -> Option<TemplateMatch> {
    let (qh, qw, gh, gw) = (query.rows as i64, query.cols as i64, image.rows as i64, image.cols as i64);
    if query.dim != image.dim || qh == 0 || qw == 0 || gh == 0 || gw == 0 {
        return None;
    }
    let sims = matmul_nt(&query.values, &image.values, query.dim);
    let ng = (gh * gw) as usize;
    let (y0, y1) = ((gh - qh).min(0), (gh - qh).max(0));
    let (x0, x1) = ((gw - qw).min(0), (gw - qw).max(0));
    let (ny, nx) = ((y1 - y0 + 1) as usize, (x1 - x0 + 1) as usize);
    let mut corr = vec![0f32; ny * nx];
    let nq = (qh * qw) as f32;
    for (iy, y) in (y0..=y1).enumerate() {
        for (ix, x) in (x0..=x1).enumerate() {
            let mut sum = 0f32;
            for i in 0..qh {
                let r = y + i;
                if !(0..gh).contains(&r) {
                    continue;
                }
                for j in 0..qw {
                    let c = x + j;
                    if (0..gw).contains(&c) {
                        sum += sims[(i * qw + j) as usize * ng + (r * gw + c) as usize];
                    }
                }
            }
            corr[iy * nx + ix] = sum / nq;
        }
    }
    let (best, &score) = corr.iter().enumerate().max_by(|a, b| a.1.total_cmp(b.1))?;
    let background = corr.iter().sum::<f32>() / corr.len() as f32;
    let (by, bx) = (best / nx, best % nx);
    let refine = |prev: Option<f32>, next: Option<f32>| match (prev, next) {
        (Some(p), Some(n)) => {
            let denom = p - 2.0 * score + n;
            if denom < 0.0 { (0.5 * (p - n) / denom).clamp(-0.5, 0.5) } else { 0.0 }
        }
        _ => 0.0,
    };
    let dy = refine(by.checked_sub(1).map(|y| corr[y * nx + bx]), (by + 1 < ny).then(|| corr[(by + 1) * nx + bx]));
    let dx = refine(bx.checked_sub(1).map(|x| corr[by * nx + x]), (bx + 1 < nx).then(|| corr[by * nx + bx + 1]));
    Some(TemplateMatch {
        score,
        background,
        cells: PixelBox {
            x: (x0 + bx as i64) as f32 + dx,
            y: (y0 + by as i64) as f32 + dy,
            w: qw as f32,
            h: qh as f32,
        },
    })
}

/// Query grid sizes `(rows, cols)` to try for a crop of `crop_w × crop_h` upright pixels against
/// an image whose grid has `cells_per_px` cells per pixel and `rows × cols` cells: one per
/// scale multiplier, snapped to the ladder, deduplicated, at most one cell larger than the image.
pub fn query_grid_sizes(cells_per_px: f32, rows: usize, cols: usize, crop_w: u32, crop_h: u32) -> Vec<(usize, usize)> {
    let mut sizes = Vec::new();
    for m in MULTIPLIERS {
        let f = snap_to_ladder(cells_per_px * m);
        let size = (((crop_h as f32 * f).round() as usize).max(1), ((crop_w as f32 * f).round() as usize).max(1));
        if size.0 <= rows + 1 && size.1 <= cols + 1 && !sizes.contains(&size) {
            sizes.push(size);
        }
    }
    sizes
}

fn snap_to_ladder(f: f32) -> f32 {
    ladder_scale(ladder_step(f))
}

fn ladder_step(f: f32) -> i32 {
    (f.max(1e-6).log2() * LADDER_STEPS_PER_OCTAVE).round() as i32
}

fn ladder_scale(step: i32) -> f32 {
    (2f32).powf(step as f32 / LADDER_STEPS_PER_OCTAVE)
}

/// The candidate vote's scale group of an image with `cells_per_px`: the ladder step its
/// middle-multiplier query grid snaps to.
pub(crate) fn scale_group(cells_per_px: f32) -> i32 {
    ladder_step(cells_per_px * VOTE_MULTIPLIER)
}

/// Grid cells per upright pixel of an image: the geometric mean of both axes.
pub fn cells_per_px(frame: &RegionFrame, rows: usize, cols: usize) -> f32 {
    ((cols as f32 / frame.width.max(1) as f32) * (rows as f32 / frame.height.max(1) as f32)).sqrt()
}

impl Collection {
    /// The stored images that contain something like a crop of `crop_w × crop_h` upright pixels,
    /// best first, each with the box where it is. `embed(rows, cols)` must return the crop's
    /// full-precision patch grid when resized to `cols × rows` patches; it is called once per
    /// distinct size (a handful per query).
    pub fn search_region<E: From<Error>>(
        &self,
        (crop_w, crop_h): (u32, u32),
        embed: &mut dyn FnMut(usize, usize) -> std::result::Result<PatchGrid, E>,
        query: &RegionQuery,
    ) -> std::result::Result<Vec<RegionHit>, E> {
        if !(1..=MAX_K).contains(&query.k) {
            return Err(Error::InvalidQuery(format!("k must be 1..={MAX_K}, not {}", query.k)).into());
        }
        if !(1..=MAX_REGION_CANDIDATES).contains(&query.candidates) {
            return Err(Error::InvalidQuery(format!(
                "candidates must be 1..={MAX_REGION_CANDIDATES}, not {}",
                query.candidates
            ))
            .into());
        }
        if let Some(min) = query.min_score
            && !(-1.0..=1.0).contains(&min)
        {
            return Err(Error::InvalidQuery(format!("min_score must be within -1..=1, not {min}")).into());
        }
        if crop_w == 0 || crop_h == 0 {
            return Err(Error::InvalidQuery("the query region has no area".into()).into());
        }
        let Some(reduction) = self.region_reduction() else {
            return Err(Error::NoRegionGrids.into());
        };
        let mut cache: HashMap<(usize, usize), PatchGrid> = HashMap::new();
        let mut query_grid = |size: (usize, usize)| -> std::result::Result<PatchGrid, E> {
            if let Some(g) = cache.get(&size) {
                return Ok(g.clone());
            }
            let full = embed(size.0, size.1)?;
            if (full.rows, full.cols) != size {
                return Err(Error::InvalidVector(format!(
                    "asked for a {}×{} query grid, got {}×{}",
                    size.0, size.1, full.rows, full.cols
                ))
                .into());
            }
            let g = reduction.reduce(&full)?;
            cache.insert(size, g.clone());
            Ok(g)
        };

        // Stage 1: candidate vote, the crop at each scale group's scale. The index lock is not
        // held across the embeddings, so concurrent queries share batcher passes.
        let vote_sizes: Vec<(i32, (usize, usize))> = {
            let mut guard = self.region_index.lock();
            self.refresh_region_index(&mut guard)?;
            let ivf = guard.as_ref().expect("refreshed");
            if ivf.images.is_empty() {
                return Ok(Vec::new());
            }
            let (short, long) = (crop_w.min(crop_h) as f32, crop_w.max(crop_h) as f32);
            ivf.groups()
                .into_iter()
                .map(|group| {
                    // At least a few cells across, and at most MAX_VOTE_CELLS along (a thin strip
                    // must not ask for a grid of thousands of patches).
                    let f = ladder_scale(group).max(MIN_VOTE_CELLS as f32 / short).min(MAX_VOTE_CELLS as f32 / long);
                    let size =
                        (((crop_h as f32 * f).round() as usize).max(1), ((crop_w as f32 * f).round() as usize).max(1));
                    (group, size)
                })
                .collect()
        };
        let mut vote_grids = Vec::with_capacity(vote_sizes.len());
        for &(group, size) in &vote_sizes {
            vote_grids.push((group, query_grid(size)?));
        }
        let (votes, images) = {
            let mut guard = self.region_index.lock();
            self.refresh_region_index(&mut guard)?;
            let ivf = guard.as_ref().expect("refreshed");
            // Votes cast with grids of different sizes do not compare, so the groups' rankings
            // are merged by rank over group size: every group gets its share of the candidates.
            let mut votes: Vec<(usize, f32)> = Vec::new();
            for (group, grid) in &vote_grids {
                let size = ivf.images.iter().filter(|i| i.group == *group).count().max(1) as f32;
                let ranked = ivf.vote(grid, *group, NPROBE);
                votes.extend(
                    ranked.into_iter().enumerate().map(|(rank, (slot, _))| (slot, 1.0 - (rank as f32 + 0.5) / size)),
                );
            }
            votes.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
            (votes, ivf.images.clone())
        };

        // Candidates that pass the filters, in vote order; images without a single vote follow
        // (in id order), so that asking for as many candidates as images reranks them all.
        let prefix = query.path_prefix.as_deref().filter(|p| !p.is_empty());
        let wanted = query.candidates.max(query.k);
        let mut candidates: Vec<(IvfImage, ImageRecord, f32, usize)> = Vec::new();
        let mut voted = vec![false; images.len()];
        votes.iter().for_each(|&(slot, _)| voted[slot] = true);
        let unvoted = (0..images.len()).filter(|&s| !voted[s]).map(|s| (s, 0.0));
        for (slot, v) in votes.into_iter().chain(unvoted) {
            if candidates.len() == wanted {
                break;
            }
            let image = images[slot];
            if query.exclude.contains(&ImageId(image.id)) {
                continue;
            }
            let Some(record) = self.get(ImageId(image.id))? else { continue };
            if prefix.is_some_and(|p| !record.path.to_string_lossy().starts_with(p)) {
                continue;
            }
            let rank = candidates.len();
            candidates.push((image, record, v, rank));
        }

        // Stage 2: rerank.
        let mut hits: Vec<(RegionHit, usize)> = Vec::new();
        for (image, record, votes, vote_rank) in candidates {
            let Some(bytes) = self.regions_tree().get(schema::id_key(image.id)).map_err(|e| self.store_error(e))?
            else {
                continue; // removed since the index was built
            };
            let (frame, grid) = decode_region(&bytes)?;
            let mut best: Option<(f32, TemplateMatch)> = None;
            for size in query_grid_sizes(image.cells_per_px, grid.rows, grid.cols, crop_w, crop_h) {
                let q = query_grid(size)?;
                if let Some(m) = match_template(&q, &grid) {
                    let key = query.ranking.score(&m);
                    if best.is_none_or(|b| key > b.0) {
                        best = Some((key, m));
                    }
                }
            }
            let Some((score, m)) = best else { continue };
            let bbox = frame.box_to_stored(frame.cells_to_upright(grid.rows, grid.cols, m.cells));
            let hit = RegionHit {
                id: ImageId(image.id),
                record,
                score,
                similarity: m.score,
                votes,
                background: m.background,
                bbox,
            };
            hits.push((hit, vote_rank));
        }
        let key = |h: &RegionHit| h.score;
        let mut order: Vec<usize> = (0..hits.len()).collect();
        order.sort_by(|&a, &b| key(&hits[b].0).total_cmp(&key(&hits[a].0)));
        if matches!(query.ranking, RegionRanking::Fused | RegionRanking::FusedContrast) {
            let mut fused = vec![0f32; hits.len()];
            for (rank, &i) in order.iter().enumerate() {
                fused[i] = 1.0 / (10.0 + rank as f32) + 1.0 / (10.0 + hits[i].1 as f32);
            }
            order.sort_by(|&a, &b| fused[b].total_cmp(&fused[a]).then(key(&hits[b].0).total_cmp(&key(&hits[a].0))));
        }
        let mut out = Vec::with_capacity(query.k);
        for i in order {
            let hit = &hits[i].0;
            if query.min_score.is_some_and(|min| hit.score < min) {
                continue;
            }
            out.push(hit.clone());
            if out.len() == query.k {
                break;
            }
        }
        Ok(out)
    }

    /// Brings the region index up to the collection's generation: built from scratch the first
    /// time (or when images were removed or added far beyond what it was trained on), caught up
    /// with new images otherwise.
    fn refresh_region_index(&self, slot: &mut Option<PatchIvf>) -> Result<()> {
        let generation = self.generation()?;
        if slot.as_ref().is_some_and(|ivf| ivf.generation == generation) {
            return Ok(());
        }
        let tree = self.regions_tree();
        let live = tree.len();
        let rebuild = match slot.as_ref() {
            None => true,
            Some(ivf) => live * 5 < ivf.images.len() * 4 || ivf.outgrown(live * ivf.tokens() / ivf.images.len().max(1)),
        };
        if rebuild {
            // Pass 1: sizes, and a sample of whole images for the codebook.
            let mut tokens = 0usize;
            let mut grids = 0usize;
            for kv in tree.iter() {
                let (_, v) = kv.map_err(|e| self.store_error(e))?;
                let (_, g) = decode_region(&v)?;
                tokens += g.rows * g.cols;
                grids += 1;
            }
            let per_image = tokens / grids.max(1);
            let step = (grids * per_image).div_ceil(60_000).max(1);
            let mut sample = Vec::new();
            let mut dim = self.region_reduction().map(|r| r.dim_out()).unwrap_or(1);
            for kv in tree.iter().step_by(step) {
                let (_, v) = kv.map_err(|e| self.store_error(e))?;
                let (_, g) = decode_region(&v)?;
                dim = g.dim;
                sample.extend_from_slice(&g.values);
            }
            let mut ivf = PatchIvf::train(&sample, dim, list_count(tokens), tokens);
            self.add_region_images(&mut ivf, tree.iter())?;
            *slot = Some(ivf);
        } else if let Some(ivf) = slot.as_mut() {
            let from = schema::id_key(ivf.max_id.saturating_add(1));
            self.add_region_images(ivf, tree.range(from..))?;
        }
        if let Some(ivf) = slot.as_mut() {
            ivf.generation = generation;
            tracing::debug!(
                images = ivf.images.len(),
                tokens = ivf.tokens(),
                bytes = ivf.posting_bytes(),
                "region index"
            );
        }
        Ok(())
    }

    fn add_region_images(
        &self,
        ivf: &mut PatchIvf,
        entries: impl Iterator<Item = sled::Result<(sled::IVec, sled::IVec)>>,
    ) -> Result<()> {
        for kv in entries {
            let (k, v) = kv.map_err(|e| self.store_error(e))?;
            let Some(id) = schema::id_from_key(&k) else { continue };
            let (frame, grid) = decode_region(&v)?;
            let scale = cells_per_px(&frame, grid.rows, grid.cols);
            let image = IvfImage { id, cols: grid.cols as u16, cells_per_px: scale, group: scale_group(scale) };
            ivf.add(image, &grid);
        }
        Ok(())
    }

    /// Bytes the region index holds in memory for its postings, and the images it covers
    /// (building it if needed).
    pub fn region_index_footprint(&self) -> Result<(usize, usize)> {
        let mut guard = self.region_index.lock();
        self.refresh_region_index(&mut guard)?;
        Ok(guard.as_ref().map(|i| (i.posting_bytes(), i.images.len())).unwrap_or((0, 0)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::region::normalise_rows;

    fn noise_grid(rows: usize, cols: usize, dim: usize, seed: u64) -> PatchGrid {
        let mut s = seed;
        let mut values: Vec<f32> = (0..rows * cols * dim)
            .map(|_| {
                s = s.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                ((s >> 33) as f32 / (1u64 << 31) as f32) - 0.5
            })
            .collect();
        normalise_rows(&mut values, dim);
        PatchGrid { rows, cols, dim, values }
    }

    fn window(g: &PatchGrid, r0: usize, c0: usize, rows: usize, cols: usize) -> PatchGrid {
        let mut values = Vec::new();
        for r in r0..r0 + rows {
            let at = (r * g.cols + c0) * g.dim;
            values.extend_from_slice(&g.values[at..at + cols * g.dim]);
        }
        PatchGrid { rows, cols, dim: g.dim, values }
    }

    #[test]
    fn a_window_is_found_where_it_was_cut() {
        let g = noise_grid(12, 16, 32, 3);
        let q = window(&g, 4, 9, 3, 5);
        let m = match_template(&q, &g).unwrap();
        assert!((m.score - 1.0).abs() < 1e-5);
        // Unrelated neighbours score about 0 on both sides: the refinement stays within a hair.
        assert!((m.cells.x - 9.0).abs() < 0.05 && (m.cells.y - 4.0).abs() < 0.05, "{:?}", m.cells);
        assert_eq!((m.cells.w, m.cells.h), (5.0, 3.0));
    }

    #[test]
    fn a_query_larger_than_the_image_by_one_cell_may_hang_over() {
        let g = noise_grid(4, 4, 16, 5);
        let mut q = noise_grid(5, 4, 16, 9);
        // The query's last four rows are the image.
        q.values[16 * 4..].copy_from_slice(&g.values);
        let m = match_template(&q, &g).unwrap();
        assert_eq!((m.cells.x, m.cells.y), (0.0, -1.0));
        assert!((m.score - 16.0 / 20.0).abs() < 1e-5, "{}", m.score);
    }

    #[test]
    fn the_peak_is_refined_between_cells() {
        // A 1-d image whose tokens blend two "scene" tokens: the query sits halfway between
        // cells 3 and 4, so the parabola puts it past 3.
        let dim = 8;
        let base = noise_grid(1, 10, dim, 11);
        let mut img = base.clone();
        for c in 0..10 {
            let next = &base.values[((c + 1) % 10) * dim..((c + 1) % 10 + 1) * dim];
            let here = &base.values[c * dim..(c + 1) * dim];
            for (d, (a, b)) in here.iter().zip(next).enumerate() {
                img.values[c * dim + d] = 0.5 * a + 0.5 * b;
            }
        }
        normalise_rows(&mut img.values, dim);
        let q = window(&base, 0, 4, 1, 2);
        let m = match_template(&q, &img).unwrap();
        assert!(m.cells.x > 3.0 && m.cells.x < 4.0, "{:?}", m.cells);
    }

    #[test]
    fn query_sizes_follow_the_image_scale_and_skip_oversized_ones() {
        // A 640×480 photo on a 32×24 grid: 0.05 cells per pixel; a 200×100 crop is 10×5 cells.
        let sizes = query_grid_sizes(0.05, 24, 32, 200, 100);
        assert!(sizes.contains(&(5, 10)), "{sizes:?}");
        assert!(sizes.iter().all(|&(r, c)| r <= 5 && c <= 10));
        assert!(query_grid_sizes(0.05, 4, 4, 200, 100).is_empty());
        assert!((snap_to_ladder(0.05) - 0.05).abs() / 0.05 < 0.06);
    }
}
