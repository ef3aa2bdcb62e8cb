//! How a candidate pair is scored and decided: the best cosine over the stored views, and where
//! that alone does not decide, patch-level geometric verification (`query::verify`) on the
//! region grids, then the square patch grids and the mirrored view's.

use crate::collection::Collection;
use crate::error::Result;
use crate::query::verify::{UnitGrid, geometric_score};
use crate::records::ImageId;
use crate::vectors::UnitVector;

use super::DedupOptions;

/// What pair scoring needs of one image, loaded once per use.
pub(super) struct ImageViews {
    id: ImageId,
    plain: UnitVector,
    /// Mirrored and grayscale global vectors, if stored.
    views: Option<(UnitVector, UnitVector)>,
    /// The image's own patch grid, normalised, decoded on first use.
    grid: Option<Option<UnitGrid>>,
    /// The image's region grid, normalised, decoded on first use.
    region: Option<Option<UnitGrid>>,
}

/// The similarity of two images: the best cosine over their views (the plain vectors; either
/// image mirrored against the other; both in grayscale), or the plain cosine when either has no
/// stored views.
pub(super) fn similarity(a: &ImageViews, b: &ImageViews) -> f32 {
    let mut s = a.plain.dot(b.plain.as_slice());
    if let (Some((af, ag)), Some((bf, bg))) = (&a.views, &b.views) {
        s = s.max(a.plain.dot(bf.as_slice())).max(af.dot(b.plain.as_slice())).max(ag.dot(bg.as_slice()));
    }
    s.min(1.0)
}

/// Decides candidate pairs by [`DedupOptions`].
pub(super) struct PairScorer<'a> {
    collection: &'a Collection,
    options: &'a DedupOptions,
}

impl<'a> PairScorer<'a> {
    pub(super) fn new(collection: &'a Collection, options: &'a DedupOptions) -> Self {
        Self { collection, options }
    }

    /// What scoring needs of `id` (`None` without a global vector); grids load on first use.
    pub(super) fn load(&self, id: ImageId) -> Result<Option<ImageViews>> {
        let Some(plain) = self.collection.global_vector(id)? else { return Ok(None) };
        Ok(Some(ImageViews { id, plain, views: self.collection.view_vectors(id)?, grid: None, region: None }))
    }

    /// The pair's similarity if the pair is a near duplicate: similar enough outright, or similar
    /// enough to check and verified patch by patch (against `b` and its mirrored view).
    pub(super) fn accept(&self, a: &mut ImageViews, b: &ImageViews) -> Result<Option<f32>> {
        let s = similarity(a, b);
        if s >= self.options.threshold {
            return Ok(Some(s));
        }
        let Some(min_geometry) = self.options.min_geometry else { return Ok(None) };
        if s < self.options.verify_from {
            return Ok(None);
        }
        let verified = self.geometry(a, b, Some(min_geometry))?.is_some_and(|g| g >= min_geometry);
        Ok(verified.then_some(s))
    }

    /// The best geometric match of `a`'s patches in `b`'s: region grid against region grid,
    /// then square grid against `b`'s square grid and its mirrored view (`None` without stored
    /// patches); stops early once `enough` is reached.
    fn geometry(&self, a: &mut ImageViews, b: &ImageViews, enough: Option<f32>) -> Result<Option<f32>> {
        // The same pair always gets the same RANSAC draws.
        let seed = a.id.0.rotate_left(32) ^ b.id.0;
        let mut best: Option<f32> = None;
        let mut note = |g: f32| {
            best = Some(best.map_or(g, |b| b.max(g)));
            enough.is_some_and(|e| g >= e)
        };
        if a.region.is_none() {
            a.region = Some(self.collection.region_grid(a.id)?.map(|(_, g)| UnitGrid::from(&g)));
        }
        if let Some(Some(region)) = &a.region
            && let Some((_, other)) = self.collection.region_grid(b.id)?
            && note(geometric_score(region, &UnitGrid::from(&other), seed))
        {
            return Ok(best);
        }
        if a.grid.is_none() {
            a.grid = Some(self.collection.patch_grid(a.id)?.as_ref().map(UnitGrid::from));
        }
        let Some(Some(grid)) = &a.grid else { return Ok(best) };
        for other in
            [self.collection.patch_grid(b.id)?, self.collection.flipped_patch_grid(b.id)?].into_iter().flatten()
        {
            if note(geometric_score(grid, &UnitGrid::from(&other), seed)) {
                break;
            }
        }
        Ok(best)
    }
}

/// How two stored images compare in duplicate detection.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PairComparison {
    /// The best cosine over the views (plain, mirrored, grayscale); the plain cosine if either
    /// image has no stored views.
    pub similarity: f32,
    /// Fraction of the first image's patches (the smaller id's) that reappear in the other, or in
    /// its mirrored view, under one affine map; `None` without stored patches.
    pub geometry: Option<f32>,
}

impl Collection {
    /// The scores [`Collection::find_duplicates`] decides a pair by (`None` if either image has
    /// no vector). Symmetric: the pair is taken in id order.
    pub fn compare_images(&self, a: ImageId, b: ImageId) -> Result<Option<PairComparison>> {
        let options = DedupOptions::default();
        let scorer = PairScorer::new(self, &options);
        let (a, b) = (a.min(b), a.max(b));
        let (Some(mut x), Some(y)) = (scorer.load(a)?, scorer.load(b)?) else { return Ok(None) };
        Ok(Some(PairComparison { similarity: similarity(&x, &y), geometry: scorer.geometry(&mut x, &y, None)? }))
    }
}
