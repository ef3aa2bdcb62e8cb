//! The measured levels of `grpc_latency`: the collection it searches, the in-process reference
//! and the gRPC clients, and the latency summary they report.

use anyhow::Context;
use pixdex_benches::random_unit;
use pixdex_core::{Collection, Embedding, ImageId, ImageRecord, ImageStatus, NewImage, SimilarQuery, UnitVector};
use pixdex_server::{PixdexClient, pb};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::K;

/// p50, p99 (nearest rank) in seconds, and requests per second over `wall` seconds.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Summary {
    pub(crate) n: usize,
    pub(crate) p50: f64,
    pub(crate) p99: f64,
    pub(crate) rps: f64,
}

pub(crate) fn summarize(mut latencies: Vec<f64>, wall: f64) -> Summary {
    latencies.sort_by(f64::total_cmp);
    let n = latencies.len();
    if n == 0 {
        return Summary { n, p50: f64::NAN, p99: f64::NAN, rps: f64::NAN };
    }
    let rank = |q: f64| latencies[((q * n as f64).ceil() as usize).clamp(1, n) - 1];
    Summary { n, p50: rank(0.50), p99: rank(0.99), rps: n as f64 / wall }
}

/// One worker's requests: when it started and ended, and each latency.
pub(crate) struct Span {
    start: Instant,
    end: Instant,
    lat: Vec<f64>,
}

impl Span {
    /// All latencies, and the wall time from the first worker's start to the last one's end
    /// (measured by the workers: a coordinating thread that wakes late would shorten it).
    fn merge(spans: Vec<Span>) -> (Vec<f64>, f64) {
        let start = spans.iter().map(|s| s.start).min();
        let end = spans.iter().map(|s| s.end).max();
        let wall = start.zip(end).map_or(0.0, |(a, b)| (b - a).as_secs_f64());
        (spans.into_iter().flat_map(|s| s.lat).collect(), wall)
    }
}

/// Requests of `total` that worker `i` of `workers` makes.
pub(crate) fn share(total: usize, workers: usize, i: usize) -> usize {
    total / workers + usize::from(i < total % workers)
}

/// `n` random vectors clustered around `clusters` centres (as in `hnsw_recall`), with fake paths.
pub(crate) fn build_collection(c: &Collection, n: usize, clusters: usize) -> anyhow::Result<Vec<ImageId>> {
    let dim = c.config().dim;
    let mut rng = StdRng::seed_from_u64(42);
    let centres: Vec<UnitVector> = (0..clusters).map(|_| random_unit(&mut rng, dim)).collect();
    let mut ids = Vec::with_capacity(n);
    for start in (0..n).step_by(500) {
        let batch = (start..(start + 500).min(n))
            .map(|i| {
                let global = if centres.is_empty() {
                    random_unit(&mut rng, dim)
                } else {
                    let centre = &centres[rng.random_range(0..centres.len())];
                    let noise = random_unit(&mut rng, dim);
                    UnitVector::new(centre.as_slice().iter().zip(noise.as_slice()).map(|(a, b)| a + b).collect())
                        .expect("non-zero")
                };
                let mut blake3 = [0u8; 32];
                blake3[..8].copy_from_slice(&(i as u64).to_le_bytes());
                NewImage {
                    record: ImageRecord {
                        path: PathBuf::from(format!("/bench/img{i}.jpg")),
                        size: 0,
                        mtime_ns: 0,
                        blake3,
                        width: 1,
                        height: 1,
                        status: ImageStatus::Embedded,
                    },
                    embedding: Embedding::Computed { global, patches: None, views: None, region: None },
                }
            })
            .collect();
        ids.extend(c.commit(batch, &[])?);
    }
    Ok(ids)
}

/// What the server does for a search-by-id, without gRPC: the record, the stored vector, the search.
pub(crate) fn search_by_id(c: &Collection, id: ImageId) -> anyhow::Result<usize> {
    c.get(id)?.context("record")?;
    let vector = c.global_vector(id)?.context("stored vector")?;
    Ok(c.search_similar(&vector, &SimilarQuery { k: K, ..Default::default() })?.len())
}

/// In-process search-by-id on `threads` threads, `total` requests in all (fewer if `cap` runs out).
pub(crate) fn direct_id_level(
    c: &Collection,
    ids: &[ImageId],
    threads: usize,
    total: usize,
    cap: Duration,
) -> anyhow::Result<Summary> {
    let barrier = std::sync::Barrier::new(threads + 1);
    let (latencies, wall) = std::thread::scope(|s| {
        let handles: Vec<_> = (0..threads)
            .map(|t| {
                let barrier = &barrier;
                s.spawn(move || {
                    let mut rng = StdRng::seed_from_u64(7000 + t as u64);
                    let mut lat = Vec::with_capacity(share(total, threads, t));
                    barrier.wait();
                    let start = Instant::now();
                    let deadline = start + cap;
                    for _ in 0..share(total, threads, t) {
                        if Instant::now() >= deadline {
                            break;
                        }
                        let id = ids[rng.random_range(0..ids.len())];
                        let t0 = Instant::now();
                        let hits = search_by_id(c, id)?;
                        lat.push(t0.elapsed().as_secs_f64());
                        anyhow::ensure!(hits == K, "{hits} hits");
                    }
                    Ok::<_, anyhow::Error>(Span { start, end: Instant::now(), lat })
                })
            })
            .collect();
        barrier.wait();
        let spans: anyhow::Result<Vec<Span>> = handles.into_iter().map(|h| h.join().expect("thread")).collect();
        spans.map(Span::merge)
    })?;
    Ok(summarize(latencies, wall))
}

/// `clients` clients, each with its own connection, making `total` requests in all; `make` builds
/// request number `i` (client `c` makes `c`, `c + clients`, …). Clients stop early when `cap` has
/// passed since the start.
pub(crate) async fn grpc_level(
    url: &str,
    clients: usize,
    total: usize,
    cap: Duration,
    warmup: usize,
    make: impl Fn(&mut StdRng, usize) -> pb::SearchRequest + Clone + Send + 'static,
) -> anyhow::Result<Summary> {
    let barrier = Arc::new(tokio::sync::Barrier::new(clients + 1));
    let mut tasks = Vec::with_capacity(clients);
    for c in 0..clients {
        let mut client = PixdexClient::connect(url).await?;
        let (barrier, make) = (barrier.clone(), make.clone());
        let n = share(total, clients, c);
        tasks.push(tokio::spawn(async move {
            let mut rng = StdRng::seed_from_u64(1000 + c as u64);
            let mut warm = Ok(());
            for w in 0..warmup {
                if let Err(e) = client.search.search(make(&mut rng, c + w * clients)).await {
                    warm = Err(e);
                    break;
                }
            }
            barrier.wait().await;
            warm?;
            let mut lat = Vec::with_capacity(n);
            let start = Instant::now();
            let deadline = start + cap;
            for j in 0..n {
                if Instant::now() >= deadline {
                    break;
                }
                let request = make(&mut rng, c + j * clients);
                let t0 = Instant::now();
                let response = client.search.search(request).await?.into_inner();
                lat.push(t0.elapsed().as_secs_f64());
                anyhow::ensure!(response.hits.len() == K, "{} hits", response.hits.len());
            }
            Ok::<_, anyhow::Error>(Span { start, end: Instant::now(), lat })
        }));
    }
    barrier.wait().await;
    let mut spans = Vec::with_capacity(clients);
    for task in tasks {
        spans.push(task.await??);
    }
    let (latencies, wall) = Span::merge(spans);
    Ok(summarize(latencies, wall))
}

pub(crate) fn id_request(id: u64) -> pb::SearchRequest {
    pb::SearchRequest {
        query: Some(pb::search_request::Query::Stored(pb::ImageRef { r#ref: Some(pb::image_ref::Ref::Id(id)) })),
        k: K as u32,
        ..Default::default()
    }
}

pub(crate) fn image_request(bytes: Vec<u8>) -> pb::SearchRequest {
    pb::SearchRequest { query: Some(pb::search_request::Query::Image(bytes)), k: K as u32, ..Default::default() }
}
