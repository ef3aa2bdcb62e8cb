//! Duplicate grouping on constructed vectors: planted families, chains, exact copies, scopes;
//! on both the exact-scan and the HNSW paths.

use pixdex_core::{
    Collection, DedupOptions, DedupPhase, DedupViews, DuplicateGroup, DuplicateKind, Embedding, NewImage, PatchGrid,
    UnitVector,
};
use rand::Rng;
use std::sync::atomic::AtomicBool;

use crate::fixtures::{config, image, random_unit, rng};

const DIM: usize = 32;

fn nudge(r: &mut impl Rng, v: &UnitVector, amount: f32) -> UnitVector {
    let noise = random_unit(r, DIM);
    UnitVector::new(v.as_slice().iter().zip(noise.as_slice()).map(|(a, b)| a + amount * b).collect()).unwrap()
}

fn cos(a: &UnitVector, b: &UnitVector) -> f32 {
    a.dot(b.as_slice())
}

struct Planted {
    families: Vec<Vec<String>>,
    chain: Vec<String>,
}

/// `background` random images under `/bg/`, 20 families (an original and 3 light edits) under
/// `/fam/`, a 7-image chain where neighbours are similar but the ends are not, and one exact copy.
fn build(c: &Collection, background: usize) -> Planted {
    let mut r = rng(21);
    let mut items: Vec<NewImage> = Vec::new();
    for i in 0..background {
        items.push(image(&format!("/bg/{i}.jpg"), 0, Some(random_unit(&mut r, DIM))));
    }
    let mut families = Vec::new();
    for f in 0..20 {
        let original = random_unit(&mut r, DIM);
        let mut paths = Vec::new();
        for e in 0..4 {
            let v = if e == 0 { original.clone() } else { nudge(&mut r, &original, 0.12) };
            let path = format!("/fam/{f}/{e}.jpg");
            let mut img = image(&path, 0, Some(v));
            img.record.width = if e == 0 { 4000 } else { 1000 }; // the original is the keeper
            items.push(img);
            paths.push(path);
        }
        families.push(paths);
    }
    // A chain: each step keeps cosine ≈ 0.97 with the previous, the ends drift far apart.
    let mut chain = Vec::new();
    let mut v = random_unit(&mut r, DIM);
    for i in 0..7 {
        if i > 0 {
            v = nudge(&mut r, &v, 0.25);
        }
        let path = format!("/chain/{i}.jpg");
        items.push(image(&path, 0, Some(v.clone())));
        chain.push(path);
    }
    for (i, item) in items.iter_mut().enumerate() {
        item.record.blake3 = blake(i as u64);
    }
    c.commit(items, &[]).unwrap();
    // An exact copy of family 0's original (same bytes, vectors copied).
    let source = c.id_by_path("/fam/0/0.jpg".as_ref()).unwrap().unwrap();
    let mut copy = image("/copies/a.jpg", 0, None);
    copy.record = c.get(source).unwrap().unwrap();
    copy.record.path = "/copies/a.jpg".into();
    copy.record.mtime_ns += 1; // newer: the original stays the keeper
    copy.embedding = Embedding::CopyOf(source);
    c.commit(vec![copy], &[]).unwrap();
    Planted { families, chain }
}

/// Grouping by the global cosine alone (the fixtures' patch grids are all alike), at the
/// threshold these vectors were planted for.
fn cosine_only() -> DedupOptions {
    DedupOptions { threshold: 0.9675, min_geometry: None, ..Default::default() }
}

fn blake(i: u64) -> [u8; 32] {
    let mut h = [0u8; 32];
    h[..8].copy_from_slice(&i.to_le_bytes());
    h
}

fn paths(g: &DuplicateGroup) -> Vec<String> {
    g.members.iter().map(|m| m.record.path.display().to_string()).collect()
}

fn check(c: &Collection, planted: &Planted, groups: &[DuplicateGroup]) {
    let exact: Vec<_> = groups.iter().filter(|g| g.kind == DuplicateKind::Exact).collect();
    assert_eq!(exact.len(), 1);
    assert_eq!(paths(exact[0]), vec!["/fam/0/0.jpg", "/copies/a.jpg"]);
    assert_eq!(exact[0].keeper_reason, "oldest (modified first)");
    // Each family is exactly one near group, keeper first (largest pixel count).
    for family in &planted.families {
        let g: Vec<_> =
            groups.iter().filter(|g| g.kind == DuplicateKind::Near && paths(g).contains(&family[1])).collect();
        assert_eq!(g.len(), 1, "{family:?}");
        let mut got = paths(g[0]);
        assert_eq!(got[0], family[0], "the original is the keeper");
        got.sort();
        assert_eq!(&got, family, "{:?}", g[0]);
        assert!(g[0].keeper_reason.starts_with("largest pixel count"));
        assert!(g[0].members.windows(2).skip(1).all(|w| w[0].score >= w[1].score));
    }
    // The chain never becomes one group: every chain group is a star, all members close to a centre.
    let vec_of = |p: &str| c.global_vector(c.id_by_path(p.as_ref()).unwrap().unwrap()).unwrap().unwrap();
    for g in groups.iter().filter(|g| paths(g).iter().any(|p| p.starts_with("/chain/"))) {
        assert!(g.members.len() <= 3, "{:?}", paths(g));
        let vs: Vec<_> = paths(g).iter().map(|p| vec_of(p)).collect();
        assert!(vs.iter().any(|centre| vs.iter().all(|v| cos(centre, v) >= 0.96 - 1e-6)), "{:?}", paths(g));
    }
    let chain_members: usize =
        groups.iter().map(|g| paths(g).iter().filter(|p| planted.chain.contains(p)).count()).sum();
    assert!(chain_members >= 4, "neighbouring chain images are still grouped");
    // Nothing else: the background is unrelated noise.
    assert!(groups.iter().all(|g| paths(g).iter().all(|p| !p.starts_with("/bg/"))));
}

#[test]
fn groups_families_not_chains_on_the_exact_scan() {
    let dir = tempfile::tempdir().unwrap();
    let c = Collection::open_or_create(dir.path(), &config(DIM)).unwrap();
    let planted = build(&c, 300);
    let mut streamed = Vec::new();
    let groups = c
        .find_duplicates(&cosine_only(), &|_: DedupPhase, _: usize, _: usize| {}, &AtomicBool::new(false), &mut |g| {
            streamed.push(g.clone())
        })
        .unwrap();
    assert_eq!(streamed, groups, "every group is streamed as found");
    check(&c, &planted, &groups);
    // Scoped to a prefix: only family 3.
    let scoped = DedupOptions { path_prefix: Some("/fam/3/".into()), ..cosine_only() };
    let g = c
        .find_duplicates(&scoped, &|_: DedupPhase, _: usize, _: usize| {}, &AtomicBool::new(false), &mut |_| {})
        .unwrap();
    assert_eq!(g.len(), 1);
    assert_eq!(paths(&g[0]).len(), 4);
}

#[test]
fn groups_families_not_chains_through_the_graph() {
    let dir = tempfile::tempdir().unwrap();
    let c = Collection::open_or_create(dir.path(), &config(DIM)).unwrap();
    let planted = build(&c, 5000);
    assert!(c.vector_count() >= pixdex_core::EXACT_SCAN_BELOW);
    let seen = std::sync::Mutex::new(0);
    let progress = |phase: DedupPhase, done: usize, total: usize| {
        assert!(done <= total);
        if phase == DedupPhase::Searching {
            *seen.lock().unwrap() = done;
        }
    };
    let groups = c.find_duplicates(&cosine_only(), &progress, &AtomicBool::new(false), &mut |_| {}).unwrap();
    check(&c, &planted, &groups);
    assert_eq!(*seen.lock().unwrap(), c.vector_count() - 1, "progress reaches the end (the copy is not searched)");
}

/// A patch grid seeing a random "scene" through an 8×8 window moved by (`dr`, `dc`) patches.
fn scene(seed: u64, dr: usize, dc: usize) -> PatchGrid {
    const DIMS: usize = 16;
    let mut values = Vec::new();
    for r in 0..8 {
        for c in 0..8 {
            let mut cell = rng(seed * 10_007 + ((r + dr) * 100 + c + dc) as u64);
            values.extend((0..DIMS).map(|_| cell.random_range(-1.0f32..1.0)));
        }
    }
    PatchGrid::new(8, 8, DIMS, values).unwrap()
}

/// The grid mirrored left to right.
fn mirrored(g: &PatchGrid) -> PatchGrid {
    let mut out = g.clone();
    for r in 0..g.rows() {
        for c in 0..g.cols() {
            let to = (r * g.cols() + c) * g.dim();
            out.values_mut()[to..to + g.dim()].copy_from_slice(g.patch(r, g.cols() - 1 - c));
        }
    }
    out
}

/// A unit vector at cosine `cos` from `v`.
fn at_cosine(r: &mut impl Rng, v: &UnitVector, cos: f32) -> UnitVector {
    let u = random_unit(r, DIM);
    let along = u.dot(v.as_slice());
    let orth = UnitVector::new(u.as_slice().iter().zip(v.as_slice()).map(|(x, y)| x - along * y).collect()).unwrap();
    let sin = (1.0 - cos * cos).sqrt();
    UnitVector::new(v.as_slice().iter().zip(orth.as_slice()).map(|(a, b)| cos * a + sin * b).collect()).unwrap()
}

fn with_views(path: &str, global: UnitVector, patches: PatchGrid, views: Option<DedupViews>) -> NewImage {
    let mut img = image(path, 0, Some(global.clone()));
    img.embedding = Embedding::Computed { global, patches: Some(patches), views, region: None };
    img
}

#[test]
fn views_and_patch_verification_decide_pairs_the_global_cosine_cannot() {
    views_and_patch_verification(false);
}

#[test]
fn views_and_patch_verification_decide_pairs_on_quantised_patch_grids() {
    views_and_patch_verification(true);
}

fn views_and_patch_verification(quantised: bool) {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(DIM);
    cfg.patch_codec.quantised = quantised;
    let c = Collection::open_or_create(dir.path(), &cfg).unwrap();
    let mut r = rng(5);
    let g = random_unit(&mut r, DIM);
    let (gf, gg) = (random_unit(&mut r, DIM), random_unit(&mut r, DIM)); // the original's other views
    let original = scene(1, 0, 0);
    let views = |flipped: UnitVector, gray: UnitVector, flipped_patches: PatchGrid| {
        Some(DedupViews { flipped, gray, flipped_patches: Some(flipped_patches) })
    };
    let mut items = vec![
        with_views("/a/original.jpg", g.clone(), original.clone(), views(gf.clone(), gg.clone(), mirrored(&original))),
        // A crop: the same scene moved by a patch, globally only 0.9 alike.
        with_views("/a/crop.jpg", at_cosine(&mut r, &g, 0.9), scene(1, 1, 1), None),
        // A look-alike: as close globally, another scene.
        with_views("/a/lookalike.jpg", at_cosine(&mut r, &g, 0.9), scene(2, 0, 0), None),
        // A mirrored copy: its mirrored view is the original's plain one (a mirror's plain vector
        // stays close, which makes it a candidate).
        with_views(
            "/a/mirror.jpg",
            at_cosine(&mut r, &g, 0.93),
            mirrored(&original),
            views(g.clone(), gg.clone(), original.clone()),
        ),
        // A mirrored crop: matches geometrically only through its stored mirrored grid.
        with_views(
            "/a/mirror-crop.jpg",
            at_cosine(&mut r, &g, 0.85),
            mirrored(&scene(1, 1, 0)),
            views(at_cosine(&mut r, &g, 0.9), random_unit(&mut r, DIM), scene(1, 1, 0)),
        ),
    ];
    for (i, item) in items.iter_mut().enumerate() {
        item.record.blake3 = blake(100 + i as u64);
        item.record.width = if i == 0 { 4000 } else { 1000 };
    }
    c.commit(items, &[]).unwrap();

    let groups = c
        .find_duplicates(
            &DedupOptions::default(),
            &|_: DedupPhase, _: usize, _: usize| {},
            &AtomicBool::new(false),
            &mut |_| {},
        )
        .unwrap();
    assert_eq!(groups.len(), 1, "{groups:?}");
    let mut got = paths(&groups[0]);
    assert_eq!(got[0], "/a/original.jpg");
    got.sort();
    assert_eq!(got, ["/a/crop.jpg", "/a/mirror-crop.jpg", "/a/mirror.jpg", "/a/original.jpg"]);
    let score_of = |p: &str| groups[0].members.iter().find(|m| m.record.path.to_str() == Some(p)).unwrap().score;
    assert!((score_of("/a/mirror.jpg") - 1.0).abs() < 1e-5, "the mirrored view matches exactly");
    assert!((score_of("/a/crop.jpg") - 0.9).abs() < 1e-4);

    // Without verification only the mirrored copy remains; the scoped variant agrees.
    let cosine = DedupOptions { min_geometry: None, ..Default::default() };
    let groups = c
        .find_duplicates(&cosine, &|_: DedupPhase, _: usize, _: usize| {}, &AtomicBool::new(false), &mut |_| {})
        .unwrap();
    assert_eq!(groups.len(), 1);
    assert_eq!(paths(&groups[0]).len(), 2);
    let id = c.id_by_path("/a/original.jpg".as_ref()).unwrap().unwrap();
    let of = c.duplicates_of(id, &DedupOptions::default()).unwrap();
    let mut near: Vec<_> = of.near.iter().map(|m| m.record.path.display().to_string()).collect();
    near.sort();
    assert_eq!(near, ["/a/crop.jpg", "/a/mirror-crop.jpg", "/a/mirror.jpg"]);
    assert!(of.near.windows(2).all(|w| w[0].score >= w[1].score));

    // Quantised grids are stored as codes of one pinned reduction, which reopening reads back.
    let grid = c.patch_grid(id).unwrap().unwrap();
    assert_eq!((grid.rows(), grid.cols(), grid.dim()), (8, 8, 16));
    let reduction = c.patch_reduction();
    assert_eq!(reduction.is_some(), quantised);
    drop(c);
    let c = Collection::open(dir.path()).unwrap();
    assert_eq!(c.patch_reduction(), reduction);
    assert_eq!(c.patch_grid(id).unwrap().unwrap(), grid);
}

#[test]
fn views_are_stored_copied_and_removed_with_their_image() {
    let dir = tempfile::tempdir().unwrap();
    let c = Collection::open_or_create(dir.path(), &config(DIM)).unwrap();
    let mut r = rng(9);
    let (g, gf, gg) = (random_unit(&mut r, DIM), random_unit(&mut r, DIM), random_unit(&mut r, DIM));
    let grid = scene(3, 0, 0);
    let views = DedupViews { flipped: gf.clone(), gray: gg.clone(), flipped_patches: Some(mirrored(&grid)) };
    let ids = c.commit(vec![with_views("/v/a.jpg", g, grid.clone(), Some(views))], &[]).unwrap();
    let mut copy = image("/v/copy.jpg", 0, None);
    copy.embedding = Embedding::CopyOf(ids[0]);
    let copy_id = c.commit(vec![copy], &[]).unwrap()[0];
    for id in [ids[0], copy_id] {
        let (f, gray) = c.view_vectors(id).unwrap().unwrap();
        assert_eq!((f, gray), (gf.clone(), gg.clone()));
        let back = c.flipped_patch_grid(id).unwrap().unwrap();
        assert_eq!((back.rows(), back.cols(), back.dim()), (8, 8, 16));
        assert!(back.values().iter().zip(mirrored(&grid).values()).all(|(a, b)| (a - b).abs() < 0.01));
    }
    c.commit(vec![], &[ids[0]]).unwrap();
    assert!(c.view_vectors(ids[0]).unwrap().is_none());
    assert!(c.flipped_patch_grid(ids[0]).unwrap().is_none());
    assert!(c.view_vectors(copy_id).unwrap().is_some(), "the copy keeps its own");
}
