//! Duplicate grouping on constructed vectors: planted families, chains, exact copies, scopes;
//! on both the exact-scan and the HNSW paths.

use pixdex_core::{Collection, DedupOptions, DuplicateGroup, DuplicateKind, Embedding, NewImage, UnitVector};
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
        .find_duplicates(&DedupOptions::default(), &|_: usize, _: usize| {}, &AtomicBool::new(false), &mut |g| {
            streamed.push(g.clone())
        })
        .unwrap();
    assert_eq!(streamed, groups, "every group is streamed as found");
    check(&c, &planted, &groups);
    // Scoped to a prefix: only family 3.
    let scoped = DedupOptions { path_prefix: Some("/fam/3/".into()), ..Default::default() };
    let g = c.find_duplicates(&scoped, &|_: usize, _: usize| {}, &AtomicBool::new(false), &mut |_| {}).unwrap();
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
    let progress = |done: usize, total: usize| {
        assert!(done <= total);
        *seen.lock().unwrap() = done;
    };
    let groups = c.find_duplicates(&DedupOptions::default(), &progress, &AtomicBool::new(false), &mut |_| {}).unwrap();
    check(&c, &planted, &groups);
    assert_eq!(*seen.lock().unwrap(), c.vector_count() - 1, "progress reaches the end (the copy is not searched)");
}
