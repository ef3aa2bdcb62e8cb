//! Region search through the collection: grids committed, reduced and stored; the vote and the
//! rerank find the image holding a block of tokens and report its box in stored pixels.

use pixdex_core::{Collection, Embedding, Error, ImageId, PatchGrid, PixelBox, RegionFrame, RegionGrid, RegionQuery};

use crate::fixtures::{config, image, random_unit, rng};

const DIM: usize = 24;

/// A 12×16 grid (a 320×240 upright image, 0.05 cells per pixel) of random tokens.
fn noise(seed: u64, rows: usize, cols: usize) -> PatchGrid {
    let mut r = rng(seed);
    let values = (0..rows * cols).flat_map(|_| random_unit(&mut r, DIM).as_slice().to_vec()).collect();
    PatchGrid::new(rows, cols, DIM, values).unwrap()
}

fn paste(into: &mut PatchGrid, block: &PatchGrid, r0: usize, c0: usize) {
    for r in 0..block.rows() {
        let dst = ((r0 + r) * into.cols() + c0) * DIM;
        let src = r * block.cols() * DIM;
        into.values_mut()[dst..dst + block.cols() * DIM]
            .copy_from_slice(&block.values()[src..src + block.cols() * DIM]);
    }
}

fn with_region(path: &str, n: u8, tokens: PatchGrid, frame: RegionFrame) -> pixdex_core::NewImage {
    let mut img = image(path, n, Some(random_unit(&mut rng(n as u64), DIM)));
    if let Embedding::Computed { region, .. } = &mut img.embedding {
        *region = Some(RegionGrid { frame, tokens });
    }
    img
}

/// The query: the block when asked for its size, noise otherwise (as an encoder would give
/// unrelated tokens at a wrong scale).
fn query_for(block: &PatchGrid) -> impl FnMut(usize, usize) -> Result<PatchGrid, Error> + '_ {
    move |rows, cols| {
        Ok(if (rows, cols) == (block.rows(), block.cols()) { block.clone() } else { noise(99, rows, cols) })
    }
}

#[test]
fn a_block_of_tokens_is_found_with_its_box_in_stored_pixels() {
    let dir = tempfile::tempdir().unwrap();
    let c = Collection::open_or_create(dir.path(), &config(DIM)).unwrap();
    let upright = RegionFrame { width: 320, height: 240, orientation: 1 };
    // The holder is stored rotated: EXIF 6, stored pixels 240 wide and 320 high.
    let rotated = RegionFrame { width: 320, height: 240, orientation: 6 };
    let block = noise(7, 3, 5);
    let mut holder = noise(100, 12, 16);
    paste(&mut holder, &block, 4, 9);
    let mut images: Vec<_> = (0..8)
        .map(|i| with_region(&format!("/lib/other{i}.jpg"), i as u8 + 1, noise(200 + i, 12, 16), upright))
        .collect();
    images.push(with_region("/lib/holder.jpg", 50, holder, rotated));
    let ids = c.commit(images, &[]).unwrap();
    let holder_id = ids[8];

    // A 100×60 px crop: 5×3 cells at 0.05 cells per pixel.
    let hits = c.search_region((100, 60), &mut query_for(&block), &RegionQuery { k: 3, ..Default::default() }).unwrap();
    assert_eq!(hits[0].id, holder_id, "{hits:?}");
    assert!(hits[0].score > 0.95, "{}", hits[0].score);
    assert!(hits.len() > 1 && hits[1].score < 0.5, "{hits:?}");
    // Upright, the block covers x 180..280, y 80..140; EXIF 6 stores that as x 80..140,
    // y 320-280..320-180 = 40..140.
    let want = PixelBox { x: 80.0, y: 40.0, w: 60.0, h: 100.0 };
    assert!(hits[0].bbox.iou(&want) > 0.9, "{:?}", hits[0].bbox);

    // Excluded, filtered out by prefix, or removed: gone from the results.
    let exclude = RegionQuery { exclude: vec![holder_id], ..Default::default() };
    assert!(c.search_region((100, 60), &mut query_for(&block), &exclude).unwrap().iter().all(|h| h.id != holder_id));
    let prefix = RegionQuery { path_prefix: Some("/lib/other".into()), ..Default::default() };
    assert!(c.search_region((100, 60), &mut query_for(&block), &prefix).unwrap().iter().all(|h| h.id != holder_id));
    c.commit(Vec::new(), &[holder_id]).unwrap();
    let after = c.search_region((100, 60), &mut query_for(&block), &RegionQuery::default()).unwrap();
    assert!(after.iter().all(|h| h.id != holder_id));
    assert!(!c.has_region_grid(holder_id).unwrap());

    // Added later: the index catches up.
    let mut again = noise(300, 12, 16);
    paste(&mut again, &block, 0, 0);
    let new_id = c.commit(vec![with_region("/lib/again.jpg", 60, again, upright)], &[]).unwrap()[0];
    let hits = c.search_region((100, 60), &mut query_for(&block), &RegionQuery::default()).unwrap();
    assert_eq!(hits[0].id, new_id);
    assert!(hits[0].bbox.iou(&PixelBox { x: 0.0, y: 0.0, w: 100.0, h: 60.0 }) > 0.9, "{:?}", hits[0].bbox);
}

#[test]
fn the_reduction_is_pinned_and_survives_reopening() {
    let dir = tempfile::tempdir().unwrap();
    let frame = RegionFrame { width: 320, height: 240, orientation: 1 };
    let block = noise(7, 3, 5);
    let mut holder = noise(100, 12, 16);
    paste(&mut holder, &block, 2, 2);
    let reduction = {
        let c = Collection::open_or_create(dir.path(), &config(DIM)).unwrap();
        c.commit(vec![with_region("/a.jpg", 1, holder, frame)], &[]).unwrap();
        c.region_reduction().unwrap()
    };
    let c = Collection::open(dir.path()).unwrap();
    assert_eq!(*c.region_reduction().unwrap(), *reduction);
    let id = c.commit(vec![with_region("/b.jpg", 2, noise(5, 12, 16), frame)], &[]).unwrap()[0];
    assert_eq!(*c.region_reduction().unwrap(), *reduction, "fitted once");
    let (grid_frame, grid) = c.region_grid(id).unwrap().unwrap();
    assert_eq!((grid_frame, grid.rows(), grid.cols(), grid.dim()), (frame, 12, 16, DIM.min(pixdex_core::REGION_DIM)));
    let a: ImageId = c.id_by_path("/a.jpg".as_ref()).unwrap().unwrap();
    assert_eq!(c.search_region((100, 60), &mut query_for(&block), &RegionQuery::default()).unwrap()[0].id, a);
}

#[test]
fn bad_queries_and_collections_without_grids_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let c = Collection::open_or_create(dir.path(), &config(DIM)).unwrap();
    c.commit(vec![image("/plain.jpg", 1, Some(random_unit(&mut rng(1), DIM)))], &[]).unwrap();
    let block = noise(7, 3, 5);
    let err = c.search_region((100, 60), &mut query_for(&block), &RegionQuery::default()).unwrap_err();
    assert!(matches!(err, Error::NoRegionGrids), "{err}");
    for q in [
        RegionQuery { k: 0, ..Default::default() },
        RegionQuery { k: 5000, ..Default::default() },
        RegionQuery { candidates: 0, ..Default::default() },
        RegionQuery { min_score: Some(2.0), ..Default::default() },
    ] {
        let err = c.search_region((100, 60), &mut query_for(&block), &q).unwrap_err();
        assert!(matches!(err, Error::InvalidQuery(_)), "{err}");
    }
    assert!(matches!(
        c.search_region((0, 60), &mut query_for(&block), &RegionQuery::default()).unwrap_err(),
        Error::InvalidQuery(_)
    ));
}

/// Unit tokens `normalise(base_i + noise · e_i)`, with `e_i` random.
fn blend(base: &PatchGrid, noise_weight: f32, seed: u64) -> PatchGrid {
    let e = noise(seed, base.rows(), base.cols());
    let mut values: Vec<f32> = base.values().iter().zip(e.values()).map(|(b, n)| b + noise_weight * n).collect();
    for t in values.chunks_exact_mut(DIM) {
        let norm = t.iter().map(|v| v * v).sum::<f32>().sqrt();
        t.iter_mut().for_each(|v| *v /= norm);
    }
    PatchGrid::new(base.rows(), base.cols(), base.dim(), values).unwrap()
}

#[test]
fn an_image_that_looks_like_the_crop_everywhere_ranks_below_the_one_that_holds_it() {
    // The crop is mostly one generic token (think sky) with some detail of its own. One image is
    // that generic token everywhere; another holds a worn copy of the crop in unrelated
    // surroundings. The peak alone prefers the first; the default ranking, which takes a quarter
    // of each image's background off its peak, prefers the second.
    let dir = tempfile::tempdir().unwrap();
    let c = Collection::open_or_create(dir.path(), &config(DIM)).unwrap();
    let frame = RegionFrame { width: 320, height: 240, orientation: 1 };
    let generic = noise(1, 1, 1).into_values();
    let flat = PatchGrid::new(12, 16, DIM, generic.repeat(12 * 16)).unwrap();
    let block = blend(&PatchGrid::new(3, 5, DIM, generic.repeat(15)).unwrap(), 0.6, 2);
    let mut holder = noise(100, 12, 16);
    paste(&mut holder, &blend(&block, 0.7, 3), 5, 6);
    let mut images: Vec<_> = (0..6)
        .map(|i| with_region(&format!("/lib/other{i}.jpg"), i as u8 + 1, noise(200 + i, 12, 16), frame))
        .collect();
    images.push(with_region("/lib/flat.jpg", 40, flat, frame));
    images.push(with_region("/lib/holder.jpg", 50, holder, frame));
    let ids = c.commit(images, &[]).unwrap();
    let (flat_id, holder_id) = (ids[6], ids[7]);

    let peak = RegionQuery { ranking: pixdex_core::RegionRanking::Match, ..Default::default() };
    let by_peak = c.search_region((100, 60), &mut query_for(&block), &peak).unwrap();
    assert_eq!(by_peak[0].id, flat_id, "the premise: {by_peak:?}");
    let hits = c.search_region((100, 60), &mut query_for(&block), &RegionQuery::default()).unwrap();
    assert_eq!(hits[0].id, holder_id, "{hits:?}");
    assert!(hits[0].bbox.iou(&PixelBox { x: 120.0, y: 100.0, w: 100.0, h: 60.0 }) > 0.8, "{:?}", hits[0].bbox);
    // The score is the peak less a quarter of the background, and orders the results.
    for h in &hits {
        assert!((h.score - (h.similarity - pixdex_core::BACKGROUND_WEIGHT * h.background)).abs() < 1e-6, "{h:?}");
    }
    assert!(hits.windows(2).all(|w| w[0].score >= w[1].score));
}

#[test]
fn the_region_index_is_built_by_flush_read_after_a_restart_and_rebuilt_when_damaged() {
    use std::os::unix::fs::MetadataExt;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("region_index");
    let inode = || std::fs::metadata(&file).unwrap().ino();
    let frame = RegionFrame { width: 320, height: 240, orientation: 1 };
    let block = noise(7, 3, 5);
    let mut holder = noise(100, 12, 16);
    paste(&mut holder, &block, 4, 9);
    let holder_id = {
        let c = Collection::open_or_create(dir.path(), &config(DIM)).unwrap();
        let mut images: Vec<_> =
            (0..6).map(|i| with_region(&format!("/o{i}.jpg"), i as u8 + 1, noise(200 + i, 12, 16), frame)).collect();
        images.push(with_region("/holder.jpg", 50, holder, frame));
        let id = c.commit(images, &[]).unwrap()[6];
        assert!(!file.exists(), "no region query yet, no flush yet");
        c.flush().unwrap();
        id
    };
    assert!(file.exists(), "the index job's flush builds and writes the index");
    let written = inode();

    // After a restart the first query reads the file: nothing changed, so flushing keeps it.
    let c = Collection::open(dir.path()).unwrap();
    assert_eq!(c.search_region((100, 60), &mut query_for(&block), &RegionQuery::default()).unwrap()[0].id, holder_id);
    c.flush().unwrap();
    assert_eq!(inode(), written, "an unchanged index is not rewritten");

    // Images added since are caught up (by id, not by the largest id), and the file follows.
    let mut again = noise(300, 12, 16);
    paste(&mut again, &block, 0, 0);
    let new_id = c.commit(vec![with_region("/again.jpg", 60, again, frame)], &[holder_id]).unwrap()[0];
    assert_eq!(c.search_region((100, 60), &mut query_for(&block), &RegionQuery::default()).unwrap()[0].id, new_id);
    c.flush().unwrap();
    assert_ne!(inode(), written);
    drop(c);

    // A damaged file is rebuilt from the stored grids, not half-read.
    let bytes = std::fs::read(&file).unwrap();
    std::fs::write(&file, &bytes[..bytes.len() / 2]).unwrap();
    for rewritten in [true, false] {
        let before = inode();
        let c = Collection::open(dir.path()).unwrap();
        assert_eq!(c.search_region((100, 60), &mut query_for(&block), &RegionQuery::default()).unwrap()[0].id, new_id);
        c.flush().unwrap();
        // First the rebuilt index is written; after the next restart it is read as it is.
        assert_eq!(inode() != before, rewritten);
    }
}
