//! Fuzzing the decoders of what the collection stores (issue 17): image records, global and view
//! vectors, patch and region grids, the region reduction, and the HNSW state file. A store
//! damaged on disk must give `Error::Corrupt` (or, for the graph, a rebuild), never a panic, and
//! what does decode has its stated shape. Arbitrary bytes and mutations of valid encodings, on a
//! fixed budget (`PIXDEX_FUZZ_CASES` raises it).

use proptest::prelude::*;
use proptest::test_runner::{Config, RngAlgorithm, TestRng, TestRunner};

use crate::codec::{PatchCodec, decode_region, encode_region};
use crate::region_grid::RegionFrame;
use crate::token_reduction::TokenReduction;
use crate::vectors::{DedupViews, PatchGrid, UnitVector};

/// Cases per test: `PIXDEX_FUZZ_CASES`, else `default` (sized to take about a second here).
fn cases(default: u32) -> u32 {
    std::env::var("PIXDEX_FUZZ_CASES").ok().and_then(|s| s.parse().ok()).unwrap_or(default)
}

/// The cases to run: a fixed draw (CI checks the same cases every run), unless
/// `PIXDEX_FUZZ_SEED` names another seed or says `random` (exploring is a local choice).
fn runner(cases: u32) -> TestRunner {
    let config = Config { cases, failure_persistence: None, ..Config::default() };
    match std::env::var("PIXDEX_FUZZ_SEED").as_deref() {
        Ok("random") => TestRunner::new(config),
        other => {
            let seed: u64 = other.ok().and_then(|s| s.parse().ok()).unwrap_or(17);
            let mut bytes = [0u8; 32];
            bytes[..8].copy_from_slice(&seed.to_le_bytes());
            TestRunner::new_with_rng(config, TestRng::from_seed(RngAlgorithm::ChaCha, &bytes))
        }
    }
}

fn grid(rows: usize, cols: usize, dim: usize) -> PatchGrid {
    let values = (0..rows * cols * dim).map(|i| ((i * 37 % 101) as f32 - 50.0) / 50.0).collect();
    PatchGrid::new(rows, cols, dim, values).unwrap()
}

/// Valid encodings of every stored kind: the seeds that mutations start from.
fn seeds() -> Vec<(&'static str, Vec<u8>)> {
    let record = crate::ImageRecord {
        path: "/photos/a.jpg".into(),
        size: 1234,
        mtime_ns: 1_700_000_000_000_000_000,
        blake3: [7; 32],
        width: 640,
        height: 480,
        status: crate::ImageStatus::Embedded,
    };
    let v = UnitVector::new(vec![0.6, 0.8, 0.0, 0.0]).unwrap();
    let frame = RegionFrame { width: 640, height: 480, orientation: 6 };
    let reduction = TokenReduction::fit(&[&grid(4, 4, 8)], 3, None).unwrap();
    let quantised = quantised_reduction();
    let q = Some(quantised);
    vec![
        ("record", serde_json::to_vec(&record).unwrap()),
        ("vector", v.to_bytes()),
        ("views", [v.to_bytes(), v.to_bytes()].concat()),
        ("patches", PatchCodec { pool: 1, quantised: false }.encode(&grid(4, 3, 8), None).unwrap()),
        ("quantised patches", PatchCodec::quantised().encode(&grid(4, 3, 8), q).unwrap()),
        ("region", encode_region(&frame, &grid(3, 4, 8), None)),
        ("quantised region", encode_region(&frame, &quantised.reduce(&grid(3, 4, 8)).unwrap(), quantised.quantizer())),
        ("reduction", reduction.to_bytes()),
        ("quantised reduction", quantised.to_bytes()),
    ]
}

/// The reduction quantised seeds are made and decoded with: 8-d tokens to 4-d, 2 code bytes.
fn quantised_reduction() -> &'static TokenReduction {
    static REDUCTION: std::sync::OnceLock<TokenReduction> = std::sync::OnceLock::new();
    REDUCTION.get_or_init(|| TokenReduction::fit(&[&grid(4, 4, 8)], 4, Some(2)).unwrap())
}

/// Runs every decoder on `bytes`; what decodes must be whole.
fn decode_everything(bytes: &[u8]) -> usize {
    let mut decoded = 0;
    if serde_json::from_slice::<crate::ImageRecord>(bytes).is_ok() {
        decoded += 1;
    }
    if let Ok(v) = UnitVector::from_bytes(bytes, 4) {
        assert_eq!(v.dim(), 4);
        assert!(v.as_slice().iter().all(|x| x.is_finite()), "a decoded vector holds non-finite values");
        decoded += 1;
    }
    if let Ok((a, b)) = DedupViews::decode_vectors(bytes, 4) {
        assert_eq!((a.dim(), b.dim()), (4, 4));
        decoded += 1;
    }
    let quantised = quantised_reduction();
    for reduction in [None, Some(quantised)] {
        if let Ok(g) = PatchCodec::decode(bytes, reduction) {
            assert_eq!(g.values().len(), g.rows() * g.cols() * g.dim());
            assert!(g.values().iter().all(|x| x.is_finite()), "a decoded patch grid holds non-finite values");
            decoded += 1;
        }
        if let Ok((_, g)) = decode_region(bytes, reduction) {
            assert_eq!(g.values().len(), g.rows() * g.cols() * g.dim());
            assert!(g.values().iter().all(|x| x.is_finite()), "a decoded region grid holds non-finite values");
            decoded += 1;
        }
    }
    if let Ok(r) = TokenReduction::from_bytes(bytes) {
        // A reduction that decodes can reduce a grid of its input dimension (or refuses another).
        let _ = r.reduce(&grid(1, 1, 8));
        decoded += 1;
    }
    decoded
}

#[test]
fn arbitrary_bytes_never_panic_a_stored_value_decoder() {
    let decoded = std::cell::Cell::new(0);
    let bytes = prop_oneof![
        prop::collection::vec(any::<u8>(), 0..64),
        prop::collection::vec(any::<u8>(), 0..4096),
        // A valid header byte followed by anything.
        (1u8..=2, prop::collection::vec(any::<u8>(), 0..512)).prop_map(|(h, mut v)| {
            v.insert(0, h);
            v
        }),
    ];
    let cases = cases(20_000);
    runner(cases)
        .run(&bytes, |bytes| {
            decoded.set(decoded.get() + decode_everything(&bytes));
            Ok(())
        })
        .unwrap_or_else(|e| panic!("{e}"));
    eprintln!("fuzz_tests: {cases} arbitrary byte strings, {} decodes", decoded.get());
}

#[test]
fn mutated_stored_values_decode_whole_or_are_corrupt() {
    let seeds = seeds();
    for (what, bytes) in &seeds {
        assert!(decode_everything(bytes) >= 1, "the {what} seed does not decode");
    }
    let edits = prop::collection::vec((any::<prop::sample::Index>(), any::<u8>(), 0u8..4), 1..6);
    let decoded = std::cell::Cell::new(0);
    let cases = cases(20_000);
    runner(cases)
        .run(&(0..seeds.len(), edits), |(seed, edits)| {
            let mut bytes = seeds[seed].1.clone();
            for (at, value, kind) in edits {
                let len = bytes.len();
                match kind {
                    0 if len > 0 => bytes[at.index(len)] = value,
                    1 if len > 0 => bytes[at.index(len.min(16))] ^= 1 << (value % 8),
                    2 => bytes.truncate(at.index(len + 1)),
                    _ => bytes.insert(at.index(len + 1), value),
                }
            }
            decoded.set(decoded.get() + decode_everything(&bytes));
            Ok(())
        })
        .unwrap_or_else(|e| panic!("{e}"));
    eprintln!("fuzz_tests: {cases} mutated stored values, {} decodes", decoded.get());
}

#[test]
fn a_mutated_graph_state_file_loads_consistent_or_is_rebuilt() {
    use crate::index::hnsw::HnswIndex;
    let dir = tempfile::tempdir().unwrap();
    let dim = 8;
    let vectors: Vec<(u64, Vec<f32>)> = (0..60u64)
        .map(|id| {
            let v: Vec<f32> = (0..dim).map(|i| ((id as usize * 31 + i * 17) % 23) as f32 - 11.0).collect();
            (id + 100, UnitVector::new(v).unwrap().as_slice().to_vec())
        })
        .collect();
    let mut index = HnswIndex::new(dim, 0);
    index.insert(&vectors);
    index.remove(105);
    index.freeze();
    index.save(dir.path(), 9).unwrap();
    let state_path = dir.path().join("hnsw/state.json");
    let state = std::fs::read(&state_path).unwrap();
    let cases = cases(300);
    let loaded = std::cell::Cell::new(0);
    let edits = prop::collection::vec((any::<prop::sample::Index>(), any::<u8>(), any::<bool>()), 1..4);
    runner(cases)
        .run(&edits, |edits| {
            let mut bytes = state.clone();
            for (at, value, cut) in edits {
                match cut {
                    true => bytes.truncate(at.index(bytes.len() + 1)),
                    false if !bytes.is_empty() => {
                        let i = at.index(bytes.len());
                        // Digits for digits mostly, so that the JSON often still parses.
                        bytes[i] = if bytes[i].is_ascii_digit() { b'0' + value % 10 } else { value };
                    }
                    false => {}
                }
            }
            std::fs::write(&state_path, &bytes).unwrap();
            if let Some((ix, generation)) = HnswIndex::load(dir.path()) {
                // Only a state that says what was saved loads (a mutation may change nothing it
                // says: a digit for itself, an unknown key where an absent one meant the same).
                prop_assert_eq!(generation, 9);
                prop_assert_eq!(ix.live_ids(), index.live_ids(), "a changed state file loaded");
                prop_assert_eq!((ix.tombstone_count(), ix.search_ef()), (index.tombstone_count(), index.search_ef()));
                for id in ix.live_ids() {
                    let v = ix.vector(id).expect("a live member has its vector").to_vec();
                    let top = ix.search_where(&v, 1, ix.slots(), None);
                    prop_assert!(top.first().is_some_and(|h| h.1 > 0.9999), "{id}: {top:?}");
                }
                loaded.set(loaded.get() + 1);
            }
            Ok(())
        })
        .unwrap_or_else(|e| panic!("{e}"));
    eprintln!(
        "fuzz_tests: {cases} mutated graph state files, {} loaded saying what was saved, the rest rebuilt",
        loaded.get()
    );
}
