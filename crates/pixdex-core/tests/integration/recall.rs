//! HNSW recall against the exact scan, on random unit vectors.

use pixdex_core::{Collection, SimilarQuery};

use crate::fixtures::{config, image, random_unit, rng};

#[test]
fn hnsw_recall_at_10_on_20k_random_vectors() {
    let dir = tempfile::tempdir().unwrap();
    let dim = 64;
    let c = Collection::open_or_create(dir.path(), &config(dim)).unwrap();
    let mut r = rng(7);
    for batch in 0..20 {
        let items = (0..1000)
            .map(|i| image(&format!("/p/{batch}/{i}.jpg"), (i % 251) as u8, Some(random_unit(&mut r, dim))))
            .collect();
        c.commit(items, &[]).unwrap();
    }
    assert_eq!(c.vector_count(), 20_000);
    let queries: Vec<_> = (0..100).map(|_| random_unit(&mut r, dim)).collect();
    let exact: Vec<Vec<_>> =
        queries.iter().map(|q| c.search_exact(q, 10).unwrap().into_iter().map(|h| h.id).collect()).collect();
    let recall = |hits: &dyn Fn(&pixdex_core::UnitVector) -> Vec<pixdex_core::ImageId>| {
        let found: usize =
            queries.iter().zip(&exact).map(|(q, e)| hits(q).iter().filter(|id| e.contains(id)).count()).sum();
        found as f64 / (10 * queries.len()) as f64
    };
    for ef in [64, 128] {
        let r = recall(&|q| c.search_hnsw(q, 10, ef).unwrap().into_iter().map(|h| h.id).collect());
        eprintln!("recall@10 at ef={ef}: {r:.3}");
    }
    // What `search_similar` uses above the exact-scan threshold.
    let query = SimilarQuery { k: 10, ..Default::default() };
    let r = recall(&|q| c.search_similar(q, &query).unwrap().into_iter().map(|h| h.hit.id).collect());
    eprintln!("recall@10 of search_similar() at ef {}: {r:.3}", c.search_ef());
    assert!(r >= 0.98, "recall@10 of search_similar(): {r}");
    // A caller's ef overrides it: narrow misses neighbours on this worst-case data, wide does not.
    let at = |ef| {
        let query = SimilarQuery { k: 10, ef: Some(ef), ..Default::default() };
        recall(&|q| c.search_similar(q, &query).unwrap().into_iter().map(|h| h.hit.id).collect())
    };
    let (narrow, wide) = (at(16), at(1024));
    eprintln!("recall@10 of search_similar() at ef 16: {narrow:.3}, at ef 1024: {wide:.3}");
    assert!(narrow < 0.9 && wide > r.min(0.995), "ef 16: {narrow}, ef 1024: {wide}");
}
