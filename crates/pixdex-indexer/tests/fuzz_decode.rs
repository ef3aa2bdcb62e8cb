//! Fuzzing image decoding and the model inputs made from it (issue 17), on a fixed budget so that
//! it runs in every `cargo test` (`PIXDEX_FUZZ_CASES` raises it): the committed malformed corpus
//! (`tests/fixtures/malformed`, made by `tests/reference/make_malformed_corpus.py`) must give
//! exactly the outcome its manifest states, and mutations of it (bits flipped, bytes set, cut,
//! spliced, repeated, most of them in the header) must give an error or an upright image whose
//! model inputs have the model's shapes and finite values: never a panic, never a partial image.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use pixdex_indexer::decode::{DecodeLimits, DecodedImage, decode_bytes, decode_bytes_at_least};
use pixdex_indexer::encoder::{Encoder, PixioEncoder};
use pixdex_indexer::inputs::{InputKinds, ModelInputs};
use proptest::prelude::*;
use proptest::test_runner::{Config, RngAlgorithm, TestRng, TestRunner};

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures")
}

/// The corpus: name, bytes, and the manifest's expectation.
fn corpus() -> Vec<(String, Vec<u8>, String)> {
    let dir = fixtures().join("malformed");
    let manifest = std::fs::read_to_string(dir.join("expected.tsv")).expect("the corpus manifest");
    let cases: Vec<_> = manifest
        .lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .map(|l| {
            let (name, expected) = l.split_once('\t').expect("name<TAB>expectation");
            (name.to_string(), std::fs::read(dir.join(name)).expect("a corpus file"), expected.to_string())
        })
        .collect();
    assert!(cases.len() >= 20, "the corpus has {} files", cases.len());
    cases
}

/// The tiny fixture model's encoder (64×64 squares, patch 8): only its preprocessing is used.
fn encoder() -> &'static PixioEncoder {
    static ENCODER: OnceLock<PixioEncoder> = OnceLock::new();
    ENCODER.get_or_init(|| {
        let source = pixio::WeightSource::Dir(fixtures().join("pixio/models/a-hub"));
        PixioEncoder::load(&source, &pixio::Device::Cpu, pixio::DType::F32).expect("the tiny model loads")
    })
}

/// The inputs an indexed image gets have the model's shapes and finite values.
fn check_inputs(decoded: &DecodedImage, what: &str) {
    let (w, h) = (decoded.image.width(), decoded.image.height());
    assert!(w > 0 && h > 0, "{what}: an empty image came back");
    let encoder = encoder();
    let inputs = ModelInputs::of(encoder, decoded, InputKinds::STORED).unwrap_or_else(|e| panic!("{what}: {e}"));
    assert_eq!(inputs.square.len(), 3, "{what}");
    let side = encoder.square_side();
    for t in inputs.square.iter().chain(inputs.region.as_ref().map(|r| &r.input)) {
        let dims = t.dims().to_vec();
        assert!(dims.len() == 3 && dims[0] == 3 && dims[1] % encoder.patch_size() == 0, "{what}: {dims:?}");
        let values = t.flatten_all().unwrap().to_vec1::<f32>().unwrap();
        assert!(values.iter().all(|v| v.is_finite()), "{what}: non-finite input values");
    }
    assert_eq!(inputs.square[0].dims(), &[3, side, side], "{what}");
}

#[test]
fn the_malformed_corpus_gives_the_outcomes_its_manifest_states() {
    let limits = DecodeLimits::default();
    let min = InputKinds::STORED.min_decoded_size(encoder());
    for (name, bytes, expected) in corpus() {
        for (how, got) in
            [("whole", decode_bytes(&bytes, limits)), ("scaled", decode_bytes_at_least(&bytes, limits, min))]
        {
            let what = format!("{name} ({how})");
            match (expected.split_once(' '), got) {
                (Some(("ok", size)), Ok(decoded)) => {
                    let (w, h) = size.split_once('x').expect("WxH");
                    let size = (w.parse::<u32>().unwrap(), h.parse::<u32>().unwrap());
                    assert_eq!(decoded.full_size, size, "{what}");
                    check_inputs(&decoded, &what);
                }
                (Some(("error", text)), Err(e)) => {
                    assert!(e.to_string().contains(text), "{what}: {e:?} does not say {text:?}");
                }
                (_, got) => panic!("{what}: expected {expected}, got {:?}", got.map(|d| d.full_size)),
            }
        }
    }
}

/// One change to a file's bytes; positions are fractions of its length, most in the header.
#[derive(Debug, Clone)]
enum Edit {
    FlipBit(prop::sample::Index, u8, bool),
    SetByte(prop::sample::Index, u8, bool),
    /// A 16-bit big- or little-endian size field set to a value that is often huge.
    SetSize(prop::sample::Index, u16, bool),
    Cut(prop::sample::Index),
    Insert(prop::sample::Index, Vec<u8>),
    Repeat(prop::sample::Index, prop::sample::Index),
}

fn edit() -> impl Strategy<Value = Edit> {
    let at = any::<prop::sample::Index>();
    prop_oneof![
        3 => (at.clone(), 0u8..8, any::<bool>()).prop_map(|(i, b, h)| Edit::FlipBit(i, b, h)),
        2 => (at.clone(), any::<u8>(), any::<bool>()).prop_map(|(i, v, h)| Edit::SetByte(i, v, h)),
        2 => (at.clone(), prop_oneof![Just(0u16), Just(1), Just(0xffff), Just(0x8000), any::<u16>()], any::<bool>())
            .prop_map(|(i, v, h)| Edit::SetSize(i, v, h)),
        1 => at.clone().prop_map(Edit::Cut),
        1 => (at.clone(), prop::collection::vec(any::<u8>(), 1..64)).prop_map(|(i, v)| Edit::Insert(i, v)),
        1 => (at.clone(), at).prop_map(|(a, b)| Edit::Repeat(a, b)),
    ]
}

/// A position: within the first 64 bytes (the header) when `header`, else anywhere.
fn position(i: &prop::sample::Index, len: usize, header: bool) -> usize {
    if len == 0 { 0 } else { i.index(if header { len.min(64) } else { len }) }
}

fn apply(bytes: &mut Vec<u8>, edit: &Edit) {
    let len = bytes.len();
    match edit {
        Edit::FlipBit(i, bit, h) if len > 0 => bytes[position(i, len, *h)] ^= 1 << bit,
        Edit::SetByte(i, v, h) if len > 0 => bytes[position(i, len, *h)] = *v,
        Edit::SetSize(i, v, h) if len > 1 => {
            let p = position(i, len - 1, *h);
            let v = if p.is_multiple_of(2) { v.to_be_bytes() } else { v.to_le_bytes() };
            bytes[p..p + 2].copy_from_slice(&v);
        }
        Edit::Cut(i) => bytes.truncate(position(i, len, false)),
        Edit::Insert(i, v) => {
            let p = position(i, len + 1, false);
            bytes.splice(p..p, v.iter().copied());
        }
        Edit::Repeat(a, b) if len > 0 => {
            let (a, b) = (position(a, len, false), position(b, len, false));
            let piece = bytes[a.min(b)..a.max(b)].to_vec();
            bytes.splice(a.max(b)..a.max(b), piece);
        }
        _ => {}
    }
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

fn cases() -> u32 {
    std::env::var("PIXDEX_FUZZ_CASES").ok().and_then(|s| s.parse().ok()).unwrap_or(4000)
}

#[test]
fn mutated_images_decode_to_an_error_or_to_sane_model_inputs() {
    // The corpus files that decode are the seeds, with the fixtures' photos-like images.
    let mut seeds: Vec<(String, Vec<u8>)> =
        corpus().into_iter().filter(|(_, _, e)| e.starts_with("ok")).map(|(n, b, _)| (n, b)).collect();
    for entry in std::fs::read_dir(fixtures().join("pixio/images")).unwrap() {
        let path = entry.unwrap().path();
        if path.metadata().unwrap().len() < 200_000 {
            seeds.push((path.display().to_string(), std::fs::read(&path).unwrap()));
        }
    }
    // Small limits keep a case fast whatever a mutated header claims.
    let limits = DecodeLimits { max_pixels: 4_000_000, max_alloc_bytes: 256 << 20, ..DecodeLimits::default() };
    let min = InputKinds::STORED.min_decoded_size(encoder());
    let mut runner = runner(cases());
    let (decoded, refused) = (std::cell::Cell::new(0usize), std::cell::Cell::new(0usize));
    let strategy = (0..seeds.len(), prop::collection::vec(edit(), 1..6), any::<bool>());
    runner
        .run(&strategy, |(seed, edits, scaled)| {
            let (name, bytes) = &seeds[seed];
            let mut bytes = bytes.clone();
            edits.iter().for_each(|e| apply(&mut bytes, e));
            let got = if scaled { decode_bytes_at_least(&bytes, limits, min) } else { decode_bytes(&bytes, limits) };
            match got {
                Ok(image) => {
                    let (w, h) = image.full_size;
                    prop_assert!(u64::from(w) * u64::from(h) <= limits.max_pixels, "{name}: {w}x{h} past the limit");
                    check_inputs(&image, name);
                    decoded.set(decoded.get() + 1);
                }
                Err(e) => {
                    prop_assert!(!e.to_string().is_empty());
                    refused.set(refused.get() + 1);
                }
            }
            Ok(())
        })
        .unwrap_or_else(|e| panic!("{e}"));
    eprintln!(
        "fuzz_decode: {} mutated images from {} seeds: {} decoded with sane inputs, {} refused",
        decoded.get() + refused.get(),
        seeds.len(),
        decoded.get(),
        refused.get()
    );
}
