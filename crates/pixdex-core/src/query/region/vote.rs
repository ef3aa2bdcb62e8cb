//! Stage 1 of region search: the crop's tokens vote through the inverted file
//! ([`crate::index::patch_ivf`]) for (image, offset), once per scale group with the crop embedded
//! at that group's scale; the groups' rankings are merged and filtered into the candidates
//! stage 2 reranks. Also keeping the inverted file in step with the stored region grids.

use super::QueryGrids;
use super::scale::{cells_per_px, crop_cells, ladder_scale, scale_group};
use crate::collection::Collection;
use crate::error::{Error, Result};
use crate::index::patch_ivf::{IvfImage, PatchIvf, list_count};
use crate::query::region::RegionQuery;
use crate::records::{ImageId, ImageRecord};
use crate::region_grid::RegionFrame;
use crate::vectors::PatchGrid;
use std::collections::HashSet;

/// The query grid's short side for the candidate vote, at least.
const MIN_VOTE_CELLS: usize = 3;

/// The query grid's long side for the candidate vote, at most.
const MAX_VOTE_CELLS: usize = 48;

/// Inverted lists probed per query token.
const NPROBE: usize = 3;

/// Tokens sampled to train the inverted file's codebook on a rebuild.
const CODEBOOK_SAMPLE: usize = 60_000;

/// The region index's file in the collection folder.
const REGION_INDEX_FILE: &str = "region_index";

fn ivf_image(id: ImageId, frame: &RegionFrame, grid: &PatchGrid) -> IvfImage {
    let scale = cells_per_px(frame, grid.rows(), grid.cols());
    IvfImage { id: id.0, cols: grid.cols() as u16, cells_per_px: scale, group: scale_group(scale) }
}

/// Images whose tokens are assigned to lists together when the index is built or caught up.
const ADD_BATCH: usize = 64;

/// Indexes `grids` (in order) in batches of [`ADD_BATCH`] images.
fn add_region_grids(
    ivf: &mut PatchIvf,
    grids: impl Iterator<Item = Result<(ImageId, (RegionFrame, PatchGrid))>>,
) -> Result<()> {
    let mut batch: Vec<(IvfImage, PatchGrid)> = Vec::with_capacity(ADD_BATCH);
    let flush = |ivf: &mut PatchIvf, batch: &mut Vec<(IvfImage, PatchGrid)>| {
        ivf.add_all(batch.iter().map(|(image, grid)| (*image, grid)).collect());
        batch.clear();
    };
    for entry in grids {
        let (id, (frame, grid)) = entry?;
        batch.push((ivf_image(id, &frame, &grid), grid));
        if batch.len() == ADD_BATCH {
            flush(ivf, &mut batch);
        }
    }
    flush(ivf, &mut batch);
    Ok(())
}

/// The images the vote ranked, as slots into the inverted file's image list (a snapshot, so the
/// index lock is not held while reranking).
pub(super) struct Votes {
    /// `(slot, standing)`, best first: 1 minus the rank over the scale group's size.
    pub(super) ranked: Vec<(usize, f32)>,
    /// The indexed images the slots refer to.
    pub(super) images: Vec<IvfImage>,
}

/// An image to rerank.
pub(super) struct Candidate {
    pub(super) image: IvfImage,
    pub(super) record: ImageRecord,
    /// Its standing in the vote (0 without a vote).
    pub(super) votes: f32,
    /// Its place among the candidates.
    pub(super) vote_rank: usize,
}

impl Collection {
    /// The vote's ranking of the indexed images for a crop of `crop_w × crop_h` upright pixels;
    /// `None` when no image is indexed.
    pub(super) fn region_votes<E: From<Error>>(
        &self,
        (crop_w, crop_h): (u32, u32),
        grids: &mut QueryGrids<'_, E>,
    ) -> std::result::Result<Option<Votes>, E> {
        // The index lock is not held across the embeddings, so concurrent queries share batcher
        // passes.
        let vote_sizes: Vec<(i32, (usize, usize))> = {
            let mut guard = self.region_index.lock();
            let ivf = self.refreshed_region_index(&mut guard)?;
            if ivf.images.is_empty() {
                return Ok(None);
            }
            let (short, long) = (crop_w.min(crop_h) as f32, crop_w.max(crop_h) as f32);
            ivf.groups()
                .into_iter()
                .map(|group| {
                    // At least a few cells across, and at most MAX_VOTE_CELLS along (a thin strip
                    // must not ask for a grid of thousands of patches).
                    let f = ladder_scale(group).max(MIN_VOTE_CELLS as f32 / short).min(MAX_VOTE_CELLS as f32 / long);
                    (group, crop_cells(crop_w, crop_h, f))
                })
                .collect()
        };
        let mut vote_grids = Vec::with_capacity(vote_sizes.len());
        for &(group, size) in &vote_sizes {
            vote_grids.push((group, grids.get(size)?.clone()));
        }
        let mut guard = self.region_index.lock();
        let ivf = self.refreshed_region_index(&mut guard)?;
        // Votes cast with grids of different sizes do not compare, so the groups' rankings are
        // merged by rank over group size: every group gets its share of the candidates.
        let mut ranked: Vec<(usize, f32)> = Vec::new();
        for (group, grid) in &vote_grids {
            let size = ivf.images.iter().filter(|i| i.group == *group).count().max(1) as f32;
            let votes = ivf.vote(grid, *group, NPROBE);
            ranked.extend(
                votes.into_iter().enumerate().map(|(rank, (slot, _))| (slot, 1.0 - (rank as f32 + 0.5) / size)),
            );
        }
        ranked.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
        Ok(Some(Votes { ranked, images: ivf.images.clone() }))
    }

    /// Candidates that pass the query's filters, in vote order; images without a single vote
    /// follow (in id order), so that asking for as many candidates as images reranks them all.
    pub(super) fn region_candidates(&self, votes: Votes, query: &RegionQuery) -> Result<Vec<Candidate>> {
        let Votes { ranked, images } = votes;
        let prefix = query.path_prefix.as_deref().filter(|p| !p.is_empty());
        let wanted = query.candidates.max(query.k);
        let mut candidates: Vec<Candidate> = Vec::new();
        let mut voted = vec![false; images.len()];
        ranked.iter().for_each(|&(slot, _)| voted[slot] = true);
        let unvoted = (0..images.len()).filter(|&s| !voted[s]).map(|s| (s, 0.0));
        for (slot, votes) in ranked.into_iter().chain(unvoted) {
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
            let vote_rank = candidates.len();
            candidates.push(Candidate { image, record, votes, vote_rank });
        }
        Ok(candidates)
    }

    /// The region index brought up to date: loaded from its file the first time, caught up with
    /// the images added since (by id set), rebuilt when missing, damaged, or when images were
    /// removed or added far beyond what it was trained on.
    pub(crate) fn refreshed_region_index<'a>(&self, slot: &'a mut Option<PatchIvf>) -> Result<&'a PatchIvf> {
        if slot.is_none() {
            *slot = self.load_region_index();
        }
        self.refresh_graph()?;
        // The generation and the live ids are read together, so that a commit between them is
        // caught up next time rather than missed.
        let (generation, live, live_slots) = {
            let index = self.index.read();
            (self.generation()?, index.live_ids(), index.slots())
        };
        let current = (generation, live_slots);
        if slot.as_ref().is_some_and(|ivf| ivf.caught_up_to == Some(current)) {
            return Ok(slot.as_ref().expect("checked above"));
        }
        let rebuild = match slot.as_ref() {
            None => true,
            Some(ivf) => {
                let removed = ivf.images.iter().filter(|i| !live.contains(&i.id)).count();
                removed * 5 > ivf.images.len()
            }
        };
        if !rebuild && let Some(ivf) = slot.as_mut() {
            let fresh: Vec<u64> = live.iter().copied().filter(|id| !ivf.seen.contains(id)).collect();
            self.add_region_images(ivf, fresh)?;
        }
        if rebuild || slot.as_ref().is_some_and(|ivf| ivf.outgrown(ivf.tokens())) {
            *slot = Some(self.build_region_index(live)?);
        }
        let ivf = slot.as_mut().expect("built above when missing");
        if ivf.generation != generation || rebuild {
            ivf.unsaved = true;
        }
        ivf.generation = generation;
        ivf.caught_up_to = Some(current);
        tracing::debug!(images = ivf.images.len(), tokens = ivf.tokens(), bytes = ivf.posting_bytes(), "region index");
        Ok(ivf)
    }

    fn region_index_path(&self) -> std::path::PathBuf {
        self.dir().join(REGION_INDEX_FILE)
    }

    /// The persisted region index, if there is a readable one.
    fn load_region_index(&self) -> Option<PatchIvf> {
        let path = self.region_index_path();
        match PatchIvf::load(&path) {
            Ok(ivf) => ivf,
            Err(e) => {
                tracing::warn!(path = %path.display(), error = %e, "unreadable region index; rebuilding");
                None
            }
        }
    }

    /// Brings the region index up to date and writes it if it changed (the index job's flush):
    /// the first region query after a restart then only reads it.
    pub(crate) fn save_region_index(&self) -> Result<()> {
        if self.region_reduction().is_none() {
            return Ok(());
        }
        let mut guard = self.region_index.lock();
        self.refreshed_region_index(&mut guard)?;
        if let Some(ivf) = guard.as_mut()
            && ivf.unsaved
        {
            ivf.save(&self.region_index_path())?;
            ivf.unsaved = false;
        }
        Ok(())
    }

    /// A fresh inverted file over every stored region grid: a codebook trained on a sample of
    /// whole images, then every token.
    fn build_region_index(&self, live: HashSet<u64>) -> Result<PatchIvf> {
        // Pass 1: sizes, and a sample of whole images for the codebook.
        let mut tokens = 0usize;
        let mut grids = 0usize;
        for entry in self.region_grids(ImageId(0), 1) {
            let (_, (_, g)) = entry?;
            tokens += g.rows() * g.cols();
            grids += 1;
        }
        let per_image = tokens / grids.max(1);
        let step = (grids * per_image).div_ceil(CODEBOOK_SAMPLE).max(1);
        let mut sample = Vec::new();
        let mut dim = self.region_reduction().map(|r| r.dim_out()).unwrap_or(1);
        for entry in self.region_grids(ImageId(0), step) {
            let (_, (_, g)) = entry?;
            dim = g.dim();
            sample.extend_from_slice(g.values());
        }
        let mut ivf = PatchIvf::train(&sample, dim, list_count(tokens), tokens);
        add_region_grids(&mut ivf, self.region_grids(ImageId(0), 1))?;
        // Images without a region grid are examined once, not at every catch-up.
        ivf.seen.extend(live);
        Ok(ivf)
    }

    /// Indexes the stored region grids of `ids` (those without one are only marked seen).
    fn add_region_images(&self, ivf: &mut PatchIvf, mut ids: Vec<u64>) -> Result<()> {
        ids.sort_unstable();
        let mut without = Vec::new();
        let stored = ids.into_iter().filter_map(|id| match self.region_grid(ImageId(id)) {
            Ok(Some(grid)) => Some(Ok((ImageId(id), grid))),
            Ok(None) => {
                without.push(id);
                None
            }
            Err(e) => Some(Err(e)),
        });
        add_region_grids(ivf, stored)?;
        ivf.seen.extend(without);
        Ok(())
    }

    /// Bytes the region index holds in memory for its postings, and the images it covers
    /// (building it if needed).
    pub fn region_index_footprint(&self) -> Result<(usize, usize)> {
        let mut guard = self.region_index.lock();
        let ivf = self.refreshed_region_index(&mut guard)?;
        Ok((ivf.posting_bytes(), ivf.images.len()))
    }
}
