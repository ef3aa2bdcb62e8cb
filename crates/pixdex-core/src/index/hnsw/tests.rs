//! The graph wrapper's tests: search, freeze, persistence and the damaged-dump checks.

use super::*;

/// `n` pseudo-random unit vectors of `dim`, ids from `first`.
fn vectors(first: u64, n: usize, dim: usize) -> Vec<(u64, Vec<f32>)> {
    let mut s = first.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    (0..n)
        .map(|i| {
            let mut v: Vec<f32> = (0..dim)
                .map(|_| {
                    s ^= s << 13;
                    s ^= s >> 7;
                    s ^= s << 17;
                    (s >> 40) as f32 / (1u64 << 24) as f32 - 0.5
                })
                .collect();
            let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
            v.iter_mut().for_each(|x| *x /= norm);
            (first + i as u64, v)
        })
        .collect()
}

#[test]
fn a_search_avoiding_a_point_never_returns_it_and_finds_the_next_nearest() {
    let dim = 16;
    let mut index = HnswIndex::new(dim, 0);
    index.insert(&vectors(1, 2000, dim));
    index.freeze();
    let (table, frozen) = (&index.table, index.frozen.as_ref().unwrap());
    for q in (0..2000u32).step_by(250) {
        let v = table.vector(q).to_vec();
        let hits = frozen.search_avoiding(table, &v, 64, &|_| true, Some(q));
        assert!(!hits.is_empty() && hits.iter().all(|(s, _)| *s != q), "{hits:?}");
        // The rest is what an exact scan without the point finds first.
        let own = table.id(q);
        let keep = move |id: u64| id != own;
        let exact = table.scan(&v, 1, 0..frozen.covered(), Some(&keep));
        assert_eq!(table.id(hits[0].0), exact[0].0);
    }
}

#[test]
fn points_inserted_after_a_freeze_are_found_and_removed_ones_are_not() {
    let dim = 16;
    let mut index = HnswIndex::new(dim, 0);
    index.insert(&vectors(1, 3000, dim));
    index.freeze();
    let covered = index.frozen.as_ref().unwrap().covered();
    // Fewer than a refreeze's worth: these are scanned exactly beside the frozen graph.
    let late = vectors(10_000, 40, dim);
    index.insert(&late);
    assert_eq!(index.frozen.as_ref().unwrap().covered(), covered);
    for (id, v) in late.iter().take(5).chain(vectors(1, 3000, dim).iter().step_by(600)) {
        let top = index.search_where(v, 3, 32, None);
        assert_eq!(top[0].0, *id);
        assert!((top[0].1 - 1.0).abs() < 1e-5, "{top:?}");
        let without = |other: u64| other != *id;
        assert!(index.search_where(v, 3, 32, Some(&without)).iter().all(|(o, _)| o != id));
    }
    let (gone, v) = &late[0];
    index.remove(*gone);
    assert!(index.search_where(v, 10, 32, None).iter().all(|(o, _)| o != gone));
    assert_eq!(index.live_len(), 3039);
    assert!(index.vector(*gone).is_none());
}

/// Every live point is its own nearest neighbour through the frozen graph.
fn assert_each_point_finds_itself(index: &HnswIndex, what: &str) {
    for (id, _) in index.table.entries().filter(|(_, live)| *live) {
        let v = index.vector(id).unwrap().to_vec();
        // A beam as wide as the graph: every reachable point is seen.
        let top = index.search_where(&v, 1, index.slots(), None);
        assert_eq!(top.first().map(|h| h.0), Some(id), "{what}: {id} not found itself: {top:?}");
    }
}

/// Vectors close together (cosine about 0.75 between any two), like a small model's.
fn clustered(first: u64, n: usize, dim: usize) -> Vec<(u64, Vec<f32>)> {
    vectors(first, n, dim)
        .into_iter()
        .map(|(id, v)| {
            let mut v: Vec<f32> = v.iter().enumerate().map(|(i, x)| x * 0.6 + if i == 0 { 1.0 } else { 0.0 }).collect();
            let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
            v.iter_mut().for_each(|x| *x /= norm);
            (id, v)
        })
        .collect()
}

#[test]
fn close_points_inserted_in_small_batches_are_found() {
    let dim = 64;
    for seed in 0..20u64 {
        let mut whole = HnswIndex::new(dim, 0);
        whole.insert(&clustered(seed * 100_000, 42, dim));
        whole.freeze();
        assert_each_point_finds_itself(&whole, &format!("seed {seed}, one batch"));
        let mut index = HnswIndex::new(dim, 0);
        for batch in 0..30u64 {
            index.insert(&clustered(seed * 100_000 + batch * 100, 4, dim));
            index.freeze();
            assert_each_point_finds_itself(&index, &format!("seed {seed} batch {batch}"));
        }
    }
}

#[test]
fn points_inserted_into_a_loaded_graph_are_found() {
    let dim = 16;
    let dir = tempfile::tempdir().unwrap();
    let mut index = HnswIndex::new(dim, 0);
    index.insert(&vectors(1, 40, dim));
    index.freeze();
    index.save(dir.path(), 1).unwrap();
    for round in 0..6u64 {
        let (mut loaded, _) = HnswIndex::load(dir.path()).expect("loads");
        assert_each_point_finds_itself(&loaded, &format!("round {round}, as loaded"));
        loaded.remove(round * 3 + 2);
        loaded.insert(&vectors(1000 * (round + 1), 5, dim));
        loaded.freeze();
        assert_each_point_finds_itself(&loaded, &format!("round {round}, after inserting"));
        loaded.save(dir.path(), round + 2).unwrap();
    }
}

#[test]
fn the_beam_width_is_measured_saved_and_loaded() {
    let dim = 16;
    let mut index = HnswIndex::new(dim, 0);
    index.insert(&vectors(1, EXACT_SCAN_BELOW + 100, dim));
    index.freeze();
    let ef = index.search_ef();
    assert!(EF_LADDER.contains(&ef), "{ef}");
    index.remove(3);
    let dir = tempfile::tempdir().unwrap();
    index.save(dir.path(), 9).unwrap();
    let (back, generation) = HnswIndex::load(dir.path()).unwrap();
    assert_eq!((generation, back.search_ef(), back.live_len(), back.contains(3)), (9, ef, index.live_len(), false));
    let (id, v) = &vectors(1, 500, dim)[499];
    assert_eq!(back.search_where(v, 1, ef, None)[0].0, *id);
}

#[test]
fn a_truncated_or_altered_dump_is_refused_before_hnsw_rs_reads_it() {
    let dim = 16;
    let mut index = HnswIndex::new(dim, 0);
    index.insert(&vectors(1, 300, dim));
    index.freeze();
    let dir = tempfile::tempdir().unwrap();
    index.save(dir.path(), 4).unwrap();
    assert!(HnswIndex::load(dir.path()).is_some());
    let hnsw = dir.path().join("hnsw");
    let mut dumps: Vec<std::path::PathBuf> =
        std::fs::read_dir(&hnsw).unwrap().map(|e| e.unwrap().path()).filter(|p| !p.ends_with("state.json")).collect();
    dumps.sort();
    assert_eq!(dumps.len(), 2, "{dumps:?}");
    for dump in &dumps {
        let whole = std::fs::read(dump).unwrap();
        // Cut to a third (hnsw_rs would panic on it), then one byte flipped at the same size.
        std::fs::write(dump, &whole[..whole.len() / 3]).unwrap();
        assert!(HnswIndex::load(dir.path()).is_none(), "{}", dump.display());
        let mut flipped = whole.clone();
        let at = whole.len() / 2;
        flipped[at] ^= 0x40;
        std::fs::write(dump, &flipped).unwrap();
        assert!(HnswIndex::load(dir.path()).is_none(), "{}", dump.display());
        std::fs::write(dump, &whole).unwrap();
        assert!(HnswIndex::load(dir.path()).is_some());
    }
}
