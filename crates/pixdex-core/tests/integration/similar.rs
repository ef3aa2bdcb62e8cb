//! Filtered similarity search (`search_similar`) against brute force, on both the exact-scan
//! and the graph paths.

use pixdex_core::{Collection, Error, ImageId, SimilarQuery, UnitVector};
use std::collections::HashSet;

use crate::fixtures::{config, image, random_unit, rng};

/// 5000 images under `/a/`, 1000 under `/b/`: `/a/` is large enough for the graph path, `/b/`
/// is scanned exactly.
fn collection(dir: &std::path::Path, dim: usize) -> Collection {
    let c = Collection::open_or_create(dir, &config(dim)).unwrap();
    let mut r = rng(11);
    for batch in 0..6 {
        let folder = if batch < 5 { "a" } else { "b" };
        let items = (0..1000)
            .map(|i| image(&format!("/{folder}/{batch}-{i}.jpg"), 0, Some(random_unit(&mut r, dim))))
            .collect();
        c.commit(items, &[]).unwrap();
    }
    c
}

/// Brute-force answer: every stored vector that passes `keep`, best first.
fn brute_force(c: &Collection, q: &UnitVector, k: usize, keep: impl Fn(ImageId, &str) -> bool) -> Vec<ImageId> {
    let mut all: Vec<(f32, ImageId)> = c
        .records()
        .map(|r| r.unwrap())
        .filter(|(id, rec)| keep(*id, &rec.path.display().to_string()))
        .map(|(id, _)| (q.dot(c.global_vector(id).unwrap().unwrap().as_slice()), id))
        .collect();
    all.sort_by(|a, b| b.0.total_cmp(&a.0));
    all.into_iter().take(k).map(|(_, id)| id).collect()
}

#[test]
fn path_prefix_exclusions_and_min_score_match_brute_force() {
    let dir = tempfile::tempdir().unwrap();
    let dim = 16;
    let c = collection(dir.path(), dim);
    let mut r = rng(12);
    let (mut found_a, mut total_a) = (0, 0);
    for _ in 0..30 {
        let q = random_unit(&mut r, dim);
        // Narrow prefix (exact path): identical to brute force.
        let b = c
            .search_similar(&q, &SimilarQuery { k: 10, path_prefix: Some("/b/".into()), ..Default::default() })
            .unwrap();
        let ids: Vec<ImageId> = b.iter().map(|h| h.hit.id).collect();
        assert_eq!(ids, brute_force(&c, &q, 10, |_, p| p.starts_with("/b/")));
        // Wide prefix (graph path with a membership filter): all under /a/, high recall.
        let a = c
            .search_similar(&q, &SimilarQuery { k: 10, path_prefix: Some("/a/".into()), ..Default::default() })
            .unwrap();
        assert_eq!(a.len(), 10);
        assert!(a.iter().all(|h| h.record.path.starts_with("/a/")));
        let truth: HashSet<ImageId> = brute_force(&c, &q, 10, |_, p| p.starts_with("/a/")).into_iter().collect();
        found_a += a.iter().filter(|h| truth.contains(&h.hit.id)).count();
        total_a += 10;
        // Exclusions: the unfiltered top 3 are left out and k results still come back.
        let top = c.search_similar(&q, &SimilarQuery { k: 3, ..Default::default() }).unwrap();
        let exclude: Vec<ImageId> = top.iter().map(|h| h.hit.id).collect();
        let rest =
            c.search_similar(&q, &SimilarQuery { k: 10, exclude: exclude.clone(), ..Default::default() }).unwrap();
        assert_eq!(rest.len(), 10);
        assert!(rest.iter().all(|h| !exclude.contains(&h.hit.id)));
        // min_score keeps a prefix of the ranking.
        let min = rest[4].hit.score;
        let above =
            c.search_similar(&q, &SimilarQuery { k: 10, min_score: Some(min), exclude, ..Default::default() }).unwrap();
        assert!(above.len() >= 5 && above.iter().all(|h| h.hit.score >= min));
    }
    let recall = found_a as f64 / total_a as f64;
    eprintln!("recall@10 with a 5000-of-6000 path filter on the graph: {recall:.3}");
    assert!(recall >= 0.95, "{recall}");
}

#[test]
fn prefixes_are_plain_string_prefixes_and_bad_queries_are_errors() {
    let dir = tempfile::tempdir().unwrap();
    let c = Collection::open_or_create(dir.path(), &config(4)).unwrap();
    let mut r = rng(13);
    let items = ["/photos/2019/a.jpg", "/photos/2019-old/b.jpg", "/photos/2020/c.jpg"]
        .iter()
        .map(|p| image(p, 0, Some(random_unit(&mut r, 4))))
        .collect();
    c.commit(items, &[]).unwrap();
    let q = random_unit(&mut r, 4);
    let paths = |prefix: &str| -> Vec<String> {
        let mut p: Vec<String> = c
            .search_similar(&q, &SimilarQuery { k: 10, path_prefix: Some(prefix.into()), ..Default::default() })
            .unwrap()
            .into_iter()
            .map(|h| h.record.path.display().to_string())
            .collect();
        p.sort();
        p
    };
    assert_eq!(paths("/photos/2019/"), vec!["/photos/2019/a.jpg"]);
    assert_eq!(paths("/photos/2019"), vec!["/photos/2019-old/b.jpg", "/photos/2019/a.jpg"]);
    assert_eq!(paths("/nowhere/"), Vec::<String>::new());
    assert_eq!(paths("").len(), 3, "an empty prefix filters nothing");
    let bad = |query: SimilarQuery, v: &UnitVector| c.search_similar(v, &query).unwrap_err();
    assert!(matches!(bad(SimilarQuery { k: 0, ..Default::default() }, &q), Error::InvalidQuery(_)));
    assert!(matches!(bad(SimilarQuery { k: 1001, ..Default::default() }, &q), Error::InvalidQuery(_)));
    assert!(matches!(
        bad(SimilarQuery { k: 1, min_score: Some(f32::NAN), ..Default::default() }, &q),
        Error::InvalidQuery(_)
    ));
    let wrong_dim = random_unit(&mut r, 5);
    assert!(matches!(bad(SimilarQuery { k: 1, ..Default::default() }, &wrong_dim), Error::InvalidVector(_)));
}
