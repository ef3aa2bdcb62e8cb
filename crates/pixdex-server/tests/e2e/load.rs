//! Many parallel clients: every answer right, and query embeddings shared forward passes.

use pixdex_server::{PixdexClient, pb};
use std::time::Duration;

use crate::common::*;

const CLIENTS: usize = 24;
const QUERIES_PER_CLIENT: usize = 4;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn parallel_clients_get_right_answers_and_share_forward_passes() {
    let _alone = CPU_HEAVY.lock().await;
    let mut server = TestServer::start(|c| {
        c.batching = pixdex_server::BatchingConfig { max_wait: Duration::from_millis(20), ..c.batching }
    })
    .await;
    let paths = make_library(&server.library(), 16);
    server.index_library().await;
    let before = server.client.collection.get_stats(pb::GetStatsRequest {}).await.unwrap().into_inner();

    let mut tasks = Vec::new();
    for client_no in 0..CLIENTS {
        // Each client has its own connection, like separate processes would.
        let mut client = PixdexClient::connect(&server.url).await.unwrap();
        let paths = paths.clone();
        tasks.push(tokio::spawn(async move {
            for q in 0..QUERIES_PER_CLIENT {
                let target = &paths[(client_no * QUERIES_PER_CLIENT + q) % paths.len()];
                let bytes = std::fs::read(target).unwrap();
                let r = client.search.search(image_query(bytes, 3)).await.expect("search answers").into_inner();
                assert_eq!(hit_paths(&r)[0], target.display().to_string(), "client {client_no} query {q}");
                assert!(r.hits[0].score > 0.9999);
            }
        }));
    }
    let all = futures::future::join_all(tasks);
    for result in tokio::time::timeout(PATIENCE, all).await.expect("all clients finish in time") {
        result.expect("client task");
    }
    let after = server.client.collection.get_stats(pb::GetStatsRequest {}).await.unwrap().into_inner();
    let embeddings = after.query_embeddings - before.query_embeddings;
    let passes = after.query_forward_passes - before.query_forward_passes;
    assert_eq!(embeddings, (CLIENTS * QUERIES_PER_CLIENT) as u64);
    assert!(passes < embeddings, "{embeddings} query embeddings took {passes} forward passes: no batching");
    eprintln!("{embeddings} query embeddings in {passes} forward passes");
    server.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_cancelled_by_its_client_costs_no_forward_pass() {
    let _alone = CPU_HEAVY.lock().await;
    // A long batching window: the cancelled query sits in the batcher until its caller is gone.
    let batching = |c: &mut pixdex_server::ServerConfig| {
        c.batching = pixdex_server::BatchingConfig { max_wait: Duration::from_millis(1500), ..c.batching }
    };
    let mut server = TestServer::start(batching).await;
    let stats =
        |mut c: PixdexClient| async move { c.collection.get_stats(pb::GetStatsRequest {}).await.unwrap().into_inner() };
    let before = stats(server.client.clone()).await;
    let mut client = server.client.clone();
    let query = image_query(png_bytes(&picture(5, 64, 64)), 1);
    let gave_up = tokio::time::timeout(Duration::from_millis(300), client.search.search(query)).await;
    assert!(gave_up.is_err(), "the call should still be waiting for its batch");
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let after = stats(server.client.clone()).await;
    assert_eq!(after.query_embeddings, before.query_embeddings, "the cancelled query was embedded anyway");
    assert_eq!(after.query_forward_passes, before.query_forward_passes);
    // The server is fine and answers the next query.
    let png = png_bytes(&picture(6, 64, 64));
    server
        .client
        .images
        .upsert_image(pb::UpsertImageRequest { key: "six.png".into(), image: png.clone() })
        .await
        .unwrap();
    // An upload takes two embeddings: the image with its views, then its region grid.
    assert_eq!(after.query_embeddings + 2, stats(server.client.clone()).await.query_embeddings);
    server.stop().await.unwrap();
}

/// Peak resident memory of this process (the server runs in it), from `/proc/self/status`.
fn peak_rss_kib() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    status.lines().find_map(|l| l.strip_prefix("VmHWM:")).and_then(|v| v.trim().trim_end_matches(" kB").parse().ok())
}

/// Latency at quantile `q` of sorted durations.
fn quantile(sorted: &[Duration], q: f64) -> Duration {
    sorted[((sorted.len() as f64 * q).ceil() as usize).clamp(1, sorted.len()) - 1]
}

/// The issue-17 load test, bounded by count: clients mixing similarity search, region search,
/// uploads and stats while an index job embeds a library. No call may fail; every upload and
/// every indexed file is searchable afterwards. Latencies (p50, p99) and the process's peak
/// memory are printed for the record, not asserted.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn mixed_clients_while_an_index_job_runs_all_succeed() {
    let _alone = CPU_HEAVY.lock().await;
    const CLIENTS: usize = 16;
    const CALLS_PER_CLIENT: usize = 24;
    let mut server = TestServer::start(|c| {
        c.batching = pixdex_server::BatchingConfig { max_wait: Duration::from_millis(5), ..c.batching }
    })
    .await;
    // Something stored for region queries to find before the job brings the rest.
    let seed_png = png_bytes(&picture(500, 96, 72));
    let upload = pb::UpsertImageRequest { key: "seed.png".into(), image: seed_png.clone() };
    let seed = server.client.images.upsert_image(upload).await.unwrap().into_inner().record.unwrap();
    let paths = make_library(&server.library(), 160);
    let region_query = pb::RegionSearchRequest {
        query: Some(pb::region_search_request::Query::Image(seed_png.clone())),
        r#box: Some(pb::PixelBox { x: 8.0, y: 8.0, w: 48.0, h: 40.0 }),
        k: 3,
        ..Default::default()
    };
    // For comparison: a region search with nothing else running.
    let t = std::time::Instant::now();
    server.client.search.region_search(region_query.clone()).await.unwrap();
    let alone = t.elapsed();
    let rss_before = peak_rss_kib();
    let job = server.start_library_job().await;

    let started = std::time::Instant::now();
    let mut tasks = Vec::new();
    for client_no in 0..CLIENTS {
        let mut client = PixdexClient::connect(&server.url).await.unwrap();
        let (paths, region_query) = (paths.clone(), region_query.clone());
        tasks.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            let mut uploaded = Vec::new();
            for call in 0..CALLS_PER_CLIENT {
                let t = std::time::Instant::now();
                let what = match (client_no + call) % 4 {
                    0 => {
                        let bytes = std::fs::read(&paths[(client_no * 7 + call) % paths.len()]).unwrap();
                        client.search.search(image_query(bytes, 5)).await.map(|r| r.into_inner().hits.len()).map(|_| ())
                    }
                    1 => client.search.region_search(region_query.clone()).await.map(|_| ()),
                    2 => {
                        let key = format!("load/{client_no}-{call}.png");
                        let image = png_bytes(&picture(10_000 + (client_no * 100 + call) as u32, 64, 48));
                        let r = client.images.upsert_image(pb::UpsertImageRequest { key: key.clone(), image }).await;
                        r.map(|_| uploaded.push(key))
                    }
                    _ => client.search.search(id_query(seed.id, 3)).await.map(|_| ()),
                };
                if let Err(e) = what {
                    panic!("client {client_no} call {call} failed under load: {e:?}");
                }
                latencies.push(((client_no + call) % 4, t.elapsed()));
            }
            (latencies, uploaded)
        }));
    }
    let mut latencies = Vec::new();
    let mut uploaded = Vec::new();
    let all = futures::future::join_all(tasks);
    for result in tokio::time::timeout(PATIENCE, all).await.expect("all clients finish in time") {
        let (l, u) = result.expect("client task");
        latencies.extend(l);
        uploaded.extend(u);
    }
    let load_time = started.elapsed();
    let snapshots = watch(&mut server.client, &job.job_id).await;
    let last = snapshots.last().expect("job snapshots");
    assert_eq!(last.state(), pb::JobState::Succeeded, "{last:?}");

    // Everything is searchable afterwards: every upload and every indexed file finds itself.
    let c = &mut server.client;
    for key in &uploaded {
        let r = c.search.search(pb::SearchRequest {
            query: Some(pb::search_request::Query::Stored(path_ref(key).unwrap())),
            k: 1,
            ..Default::default()
        });
        let hits = r.await.unwrap().into_inner();
        assert_eq!(hit_paths(&hits), vec![key.clone()]);
    }
    for path in paths.iter().step_by(9) {
        let hits = c.search.search(image_query(std::fs::read(path).unwrap(), 1)).await.unwrap().into_inner();
        assert_eq!(hit_paths(&hits), vec![path.display().to_string()]);
    }
    let mut all: Vec<Duration> = latencies.iter().map(|(_, d)| *d).collect();
    all.sort();
    eprintln!(
        "load: {CLIENTS} clients, {} calls ({} uploads) in {load_time:.1?} beside an index job of {} files: 0 failed; p50 {:.1?}, p99 {:.1?}; peak RSS {} KiB (before the job: {} KiB)",
        all.len(),
        uploaded.len(),
        paths.len(),
        quantile(&all, 0.5),
        quantile(&all, 0.99),
        peak_rss_kib().unwrap_or(0),
        rss_before.unwrap_or(0)
    );
    for (kind, name) in ["image search", "region search", "upload", "stored search"].iter().enumerate() {
        let mut these: Vec<Duration> = latencies.iter().filter(|(k, _)| *k == kind).map(|(_, d)| *d).collect();
        these.sort();
        eprintln!(
            "load: {name}: {} calls, p50 {:.1?}, p99 {:.1?}",
            these.len(),
            quantile(&these, 0.5),
            quantile(&these, 0.99)
        );
    }
    eprintln!("load: one region search with nothing else running: {alone:.1?}");
    server.stop().await.unwrap();
}
