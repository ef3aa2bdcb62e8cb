//! Fuzzing the protobuf → domain conversions (issue 17): every request the server converts, built
//! from absurd values (NaN, infinities, huge counts, empty and odd strings, unknown enum values,
//! bad globs) and from arbitrary bytes decoded as the message. A request converts and then passes
//! the core's own checks, or it is refused with a reason (INVALID_ARGUMENT): never a panic.
//! What converts survives the way back (domain → protobuf → domain) unchanged, since the CLI's
//! `--server` mode builds its requests through the same conversions. Fixed budget per run
//! (`PIXDEX_FUZZ_CASES` raises it).

use pixdex_core::{DedupOptions, RegionFrame};
use pixdex_server::convert::{DuplicatesOfQuery, IndexJobRequest, RegionSearch, SearchQuery};
use pixdex_server::pb;
use pixdex_server::pb::search_request::Query;
use proptest::prelude::*;
use proptest::test_runner::{Config, RngAlgorithm, TestRng, TestRunner};
use prost::Message;

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

fn run<S: Strategy>(name: &str, default: u32, strategy: S, test: impl Fn(S::Value) -> Result<bool, TestCaseError>)
where
    S::Value: std::fmt::Debug,
{
    let cases = cases(default);
    let mut runner = runner(cases);
    let accepted = std::cell::Cell::new(0usize);
    runner
        .run(&strategy, |v| {
            if test(v)? {
                accepted.set(accepted.get() + 1);
            }
            Ok(())
        })
        .unwrap_or_else(|e| panic!("{name}: {e}"));
    eprintln!("fuzz_convert: {name}: {cases} cases, {} accepted, the rest refused with a reason", accepted.get());
}

fn float() -> impl Strategy<Value = f32> {
    prop_oneof![
        Just(f32::NAN),
        Just(f32::INFINITY),
        Just(f32::NEG_INFINITY),
        Just(0.0),
        Just(-0.0),
        Just(1.0),
        Just(-1.0),
        Just(f32::MAX),
        Just(f32::MIN_POSITIVE),
        Just(1e-45),
        -2.0f32..2.0,
        -1e6f32..1e6,
        any::<f32>(),
    ]
}

fn count() -> impl Strategy<Value = u32> {
    prop_oneof![Just(0u32), Just(1), Just(1000), Just(1001), Just(100_000), Just(u32::MAX), any::<u32>(), 0u32..64]
}

fn text() -> impl Strategy<Value = String> {
    prop_oneof![Just(String::new()), Just("/".to_string()), "[a-z/]{0,12}", "\\PC{0,40}", ".{0,8}[\\[{*?\\\\].{0,8}"]
}

fn image_ref() -> impl Strategy<Value = Option<pb::ImageRef>> {
    let r = prop_oneof![any::<u64>().prop_map(pb::image_ref::Ref::Id), text().prop_map(pb::image_ref::Ref::Path),];
    prop::option::of(prop::option::of(r).prop_map(|r| pb::ImageRef { r#ref: r }))
}

fn search_request() -> impl Strategy<Value = pb::SearchRequest> {
    let query = prop::option::of(prop_oneof![
        prop::collection::vec(any::<u8>(), 0..16).prop_map(pb::search_request::Query::Image),
        image_ref().prop_map(|r| pb::search_request::Query::Stored(r.unwrap_or_default())),
        prop::collection::vec(float(), 0..70)
            .prop_map(|values| pb::search_request::Query::Vector(pb::Vector { values })),
    ]);
    (query, count(), prop::option::of(float()), text(), any::<bool>(), count()).prop_map(
        |(query, k, min_score, path_prefix, exclude_self, ef)| pb::SearchRequest {
            query,
            k,
            min_score,
            path_prefix,
            exclude_self,
            ef,
        },
    )
}

fn region_request() -> impl Strategy<Value = pb::RegionSearchRequest> {
    let query = prop::option::of(prop_oneof![
        prop::collection::vec(any::<u8>(), 0..16).prop_map(pb::region_search_request::Query::Image),
        image_ref().prop_map(|r| pb::region_search_request::Query::Stored(r.unwrap_or_default())),
    ]);
    let pixel_box =
        prop::option::of((float(), float(), float(), float()).prop_map(|(x, y, w, h)| pb::PixelBox { x, y, w, h }));
    (query, pixel_box, count(), count(), prop::option::of(float()), text(), any::<bool>()).prop_map(
        |(query, r#box, k, candidates, min_score, path_prefix, exclude_self)| pb::RegionSearchRequest {
            query,
            r#box,
            k,
            candidates,
            min_score,
            path_prefix,
            exclude_self,
        },
    )
}

fn keeper_rule() -> impl Strategy<Value = Vec<i32>> {
    prop::collection::vec(prop_oneof![0i32..5, any::<i32>()], 0..5)
}

fn dedup_request() -> impl Strategy<Value = pb::FindDuplicatesRequest> {
    let floats = (prop::option::of(float()), prop::option::of(float()), prop::option::of(float()));
    (floats, text(), keeper_rule(), count(), any::<bool>()).prop_map(
        |((threshold, verify_from, min_geometry), path_prefix, keeper_rule, neighbours, no_verify)| {
            pb::FindDuplicatesRequest {
                threshold,
                path_prefix,
                keeper_rule,
                neighbours,
                verify_from,
                min_geometry,
                no_verify,
            }
        },
    )
}

fn index_request() -> impl Strategy<Value = pb::StartIndexJobRequest> {
    let strings = || prop::collection::vec(text(), 0..4);
    (strings(), strings(), strings(), any::<[bool; 5]>()).prop_map(|(roots, include, exclude, b)| {
        pb::StartIndexJobRequest {
            roots,
            include,
            exclude,
            include_hidden: b[0],
            follow_symlinks: b[1],
            prune: b[2],
            skip_dedup_views: b[3],
            skip_region_grids: b[4],
        }
    })
}

/// A converted search passes the core's checks or is refused by them, and survives the way back.
fn check_search(request: pb::SearchRequest) -> Result<bool, TestCaseError> {
    let Ok(query) = SearchQuery::try_from(request) else { return Ok(false) };
    prop_assert!((1..=pixdex_core::MAX_K).contains(&query.k));
    let back = pb::SearchRequest::from(query.clone());
    let again = SearchQuery::try_from(back.clone()).map_err(|e| TestCaseError::fail(format!("way back: {e}")))?;
    let mut again = pb::SearchRequest::from(again);
    // A vector is normalised on the way in: normalising a unit vector again may move its last
    // bit, so vectors compare within float rounding and the rest exactly.
    if let (Some(Query::Vector(a)), Some(Query::Vector(b))) = (&mut again.query, &back.query) {
        let close =
            a.values.len() == b.values.len() && a.values.iter().zip(&b.values).all(|(x, y)| (x - y).abs() <= 1e-6);
        prop_assert!(close, "{:?} came back as {:?}", b.values, a.values);
        a.values.clone_from(&b.values);
    }
    prop_assert_eq!(again.encode_to_vec(), back.encode_to_vec());
    Ok(query.similar(Vec::new()).validate().is_ok())
}

fn check_region(request: pb::RegionSearchRequest) -> Result<bool, TestCaseError> {
    let Ok(search) = RegionSearch::try_from(request) else { return Ok(false) };
    let back = pb::RegionSearchRequest::from(search.clone());
    let again = RegionSearch::try_from(back.clone()).map_err(|e| TestCaseError::fail(format!("way back: {e}")))?;
    prop_assert_eq!(pb::RegionSearchRequest::from(again).encode_to_vec(), back.encode_to_vec());
    if search.query(Vec::new()).validate().is_err() {
        return Ok(false);
    }
    // The box is checked against the query image once decoded: here a 640×480 one.
    let frame = RegionFrame { width: 640, height: 480, orientation: 1 };
    match search.region {
        Some(b) if frame.check_box(b).is_ok() => {
            prop_assert!(b.x.is_finite() && b.y.is_finite() && b.w > 0.0 && b.h > 0.0, "{b:?} accepted");
            prop_assert!(b.x >= 0.0 && b.y >= 0.0 && b.x + b.w <= 640.5 && b.y + b.h <= 480.5, "{b:?} accepted");
            Ok(true)
        }
        Some(_) => Ok(false),
        None => Ok(true),
    }
}

fn check_dedup(request: pb::FindDuplicatesRequest) -> Result<bool, TestCaseError> {
    let Ok(options) = DedupOptions::try_from(request) else { return Ok(false) };
    prop_assert!(options.validate().is_ok(), "converted options fail the core's check");
    prop_assert!(options.threshold.is_finite() && options.verify_from.is_finite());
    let back = pb::FindDuplicatesRequest::from(&options);
    let again = DedupOptions::try_from(back.clone()).map_err(|e| TestCaseError::fail(format!("way back: {e}")))?;
    prop_assert_eq!(pb::FindDuplicatesRequest::from(&again).encode_to_vec(), back.encode_to_vec());
    Ok(true)
}

fn check_index(request: pb::StartIndexJobRequest) -> Result<bool, TestCaseError> {
    let Ok(job) = IndexJobRequest::try_from(request) else { return Ok(false) };
    prop_assert!(!job.roots.is_empty());
    let back = pb::StartIndexJobRequest::from(job.clone());
    let again = IndexJobRequest::try_from(back.clone()).map_err(|e| TestCaseError::fail(format!("way back: {e}")))?;
    prop_assert_eq!(pb::StartIndexJobRequest::from(again).encode_to_vec(), back.encode_to_vec());
    Ok(true)
}

#[test]
fn absurd_search_requests_convert_checked_or_are_refused() {
    run("SearchRequest", 20_000, search_request(), check_search);
}

#[test]
fn absurd_region_requests_convert_checked_or_are_refused() {
    run("RegionSearchRequest", 20_000, region_request(), check_region);
}

#[test]
fn absurd_dedup_requests_convert_checked_or_are_refused() {
    run("FindDuplicatesRequest", 20_000, dedup_request(), check_dedup);
    let of = (image_ref(), prop::option::of(float()), keeper_rule(), count(), any::<bool>()).prop_map(
        |(image, threshold, keeper_rule, limit, no_verify)| pb::DuplicatesOfRequest {
            image,
            threshold,
            keeper_rule,
            limit,
            verify_from: None,
            min_geometry: None,
            no_verify,
        },
    );
    run("DuplicatesOfRequest", 10_000, of, |request| Ok(DuplicatesOfQuery::try_from(request).is_ok()));
}

#[test]
fn absurd_index_requests_convert_checked_or_are_refused() {
    run("StartIndexJobRequest", 10_000, index_request(), check_index);
}

#[test]
fn arbitrary_bytes_decode_as_requests_and_convert_or_are_refused() {
    let bytes = prop::collection::vec(any::<u8>(), 0..256);
    run("bytes as requests", 50_000, bytes, |bytes| {
        let mut accepted = false;
        if let Ok(r) = pb::SearchRequest::decode(bytes.as_slice()) {
            accepted |= check_search(r)?;
        }
        if let Ok(r) = pb::RegionSearchRequest::decode(bytes.as_slice()) {
            accepted |= check_region(r)?;
        }
        if let Ok(r) = pb::FindDuplicatesRequest::decode(bytes.as_slice()) {
            accepted |= check_dedup(r)?;
        }
        if let Ok(r) = pb::StartIndexJobRequest::decode(bytes.as_slice()) {
            accepted |= check_index(r)?;
        }
        if let Ok(r) = pb::DuplicatesOfRequest::decode(bytes.as_slice()) {
            accepted |= DuplicatesOfQuery::try_from(r).is_ok();
        }
        Ok(accepted)
    });
}
