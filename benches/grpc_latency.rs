//! gRPC latency and throughput of `SearchService.Search` at 1, 8 and 32 concurrent clients, each
//! client on its own HTTP/2 connection to an in-process server on loopback, over a collection of
//! random vectors (10k by default) in the real model's dimension:
//! * search-by-id: a random stored image's vector as the query, k 10;
//! * search-by-image: JPEG bytes of real photos (`$PIXDEX_SHARED_DIR/data/photos`, else generated
//!   pictures), decoded and embedded by the server (forward passes shared by its query batcher), k 10.
//!
//! The reference, in the same run and before the server starts, is the same work in-process
//! without gRPC: record + stored vector + `Collection::search_similar` on 1, 8 and 32 threads, and
//! decode + preprocess + forward pass + search for one image at a time (plus a batch-16 forward
//! pass, the ceiling batching can reach). The tables give p50/p99 latency, requests/s, and the
//! ratios gRPC/reference. Clients and server share the machine's cores, as the reference threads do;
//! the last line says how much CPU other processes took meanwhile.
//!
//! `cargo bench -p pixdex-benches --bench grpc_latency -- [--model DIR] [--n 10000]
//! [--concurrency 1,8,32] [--id-requests 3000] [--image-requests N] [--max-seconds 20]
//! [--clusters 500] [--listener-nodelay]`
//! * `--image-requests` defaults to max(2 × clients, 16) per level;
//! * a level (gRPC or reference) stops issuing requests after `--max-seconds`, so `requests` can
//!   be fewer than asked;
//! * `--listener-nodelay` sets TCP_NODELAY on the server's listening socket (see `set_nodelay`);
//! * with `RUST_LOG` set (e.g. `RUST_LOG=pixdex_server=debug`) the server logs to stderr, each
//!   query forward pass with its batch size and time.

use anyhow::Context;
use pixdex_benches::cpu_seconds;
use pixdex_core::{Collection, EXACT_SCAN_BELOW, SimilarQuery};
use pixdex_indexer::decode::{DecodeLimits, decode_bytes};
use pixdex_indexer::encoder::{Encoder, PixioEncoder};
use pixdex_indexer::inputs::{InputKinds, ModelInputs};
use pixdex_server::{PixdexClient, ServerConfig, pb};
use pixio::{DType, Device, Tensor, WeightSource};
use rand::Rng;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Results per query.
const K: usize = 10;

/// Untimed search-by-id requests per client before its level starts (connection warm-up).
const ID_WARMUP: usize = 3;

fn arg(args: &[String], flag: &str) -> Option<String> {
    args.iter().position(|a| a == flag).and_then(|i| args.get(i + 1)).cloned()
}

fn arg_usize(args: &[String], flag: &str) -> anyhow::Result<Option<usize>> {
    arg(args, flag).map(|s| s.parse().with_context(|| format!("{flag} {s}"))).transpose()
}

#[path = "grpc_latency/levels.rs"]
mod levels;
#[path = "grpc_latency/machine.rs"]
mod machine;

use levels::{build_collection, direct_id_level, grpc_level, id_request, image_request, summarize};
use machine::{cpu_model, machine_cpu_seconds, ms, query_images, set_nodelay};

fn main() -> anyhow::Result<()> {
    let (run_started, own_start, machine_start) = (Instant::now(), cpu_seconds(), machine_cpu_seconds());
    if std::env::var_os("RUST_LOG").is_some() {
        // e.g. RUST_LOG=pixdex_server=debug: the server's log, with each query forward pass.
        tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
            .with_writer(std::io::stderr)
            .init();
    }
    let args: Vec<String> = std::env::args().collect();
    let n = arg_usize(&args, "--n")?.unwrap_or(10_000);
    let clusters = arg_usize(&args, "--clusters")?.unwrap_or(500);
    let id_requests = arg_usize(&args, "--id-requests")?.unwrap_or(3000);
    let image_requests = arg_usize(&args, "--image-requests")?;
    let levels: Vec<usize> = arg(&args, "--concurrency")
        .unwrap_or_else(|| "1,8,32".into())
        .split(',')
        .map(|s| s.trim().parse().with_context(|| format!("--concurrency {s}")))
        .collect::<anyhow::Result<_>>()?;
    anyhow::ensure!(levels.iter().all(|&c| c > 0), "--concurrency levels must be positive");
    let cap = Duration::from_secs_f64(arg(&args, "--max-seconds").map(|s| s.parse()).transpose()?.unwrap_or(20.0));
    // A/B switch for the server's Nagle setting: `serve` takes a `TcpListener` and wraps it in a
    // `TcpListenerStream`, and tonic ignores its `tcp_nodelay(true)` for such incoming streams, so
    // accepted connections keep Nagle's algorithm. Linux copies TCP_NODELAY from the listening
    // socket to accepted ones, so setting it here turns Nagle off without touching the server.
    let listener_nodelay = args.iter().any(|a| a == "--listener-nodelay");
    let images_at = |clients: usize| image_requests.unwrap_or((2 * clients).max(16));

    let shared = pixdex_benches::shared_dir();
    let model = match arg(&args, "--model") {
        Some(m) => PathBuf::from(m),
        None => {
            let real = shared.join("data/models/pixio-s14-real");
            if real.is_dir() {
                real
            } else {
                let tiny = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/pixio/models/a-hub");
                println!("NOTE: no {}; using the tiny fixture model {}", real.display(), tiny.display());
                tiny
            }
        }
    };
    let encoder = PixioEncoder::load(&WeightSource::parse(&model.display().to_string())?, &Device::Cpu, DType::F32)?;
    let config = encoder.collection_config();
    let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
    let (images, images_note) = query_images(&shared.join("data/photos"))?;

    // The collection, built once, closed before the server opens it.
    let dir = tempfile::tempdir()?;
    let db = dir.path().join("db");
    let collection = Collection::open_or_create(&db, &config)?;
    let t = Instant::now();
    let ids = build_collection(&collection, n, clusters)?;
    let build_s = t.elapsed().as_secs_f64();
    let index = if collection.vector_count() < EXACT_SCAN_BELOW { "exact scan" } else { "HNSW" };

    println!("machine: {} × {cores} cores; model {} ({}-d, f32 CPU)", cpu_model(), model.display(), config.dim);
    println!(
        "server sockets: {}",
        if listener_nodelay {
            "TCP_NODELAY set on the listener (--listener-nodelay)"
        } else {
            "as `serve` leaves them (TCP_NODELAY on accepted connections)"
        }
    );
    println!(
        "collection: {n} random {}-d vectors ({clusters} clusters), built in {build_s:.1} s; searches use {index}; k {K}",
        config.dim
    );
    println!("query images: {images_note}");
    println!();

    // Reference 1: search-by-id in-process, same thread counts.
    for &threads in &levels {
        direct_id_level(&collection, &ids, threads, 200.min(id_requests), cap)?; // warm-up
    }
    let mut direct_id = Vec::new();
    for &threads in &levels {
        direct_id.push(direct_id_level(&collection, &ids, threads, id_requests, cap)?);
    }
    // Part of every search: `Collection::vector_count` (sled's `Tree::len`, a full scan of the tree).
    let mut count_lat = Vec::new();
    let t = Instant::now();
    for _ in 0..100 {
        let t0 = Instant::now();
        std::hint::black_box(collection.vector_count());
        count_lat.push(t0.elapsed().as_secs_f64());
    }
    let vector_count = summarize(count_lat, t.elapsed().as_secs_f64());

    // Reference 2: image queries in-process, one at a time: decode + preprocess + forward pass +
    // search (what the server does for one image query), the forward pass alone,
    // the forward pass alone, and a batch-16 forward pass.
    let one = |bytes: &[u8]| -> anyhow::Result<Tensor> {
        let decoded = decode_bytes(bytes, DecodeLimits::default())?;
        Ok(ModelInputs::of(&encoder, &decoded, InputKinds::QUERY)?.square.remove(0))
    };
    encoder.embed_global(&[one(&images[0])?])?; // warm-up
    let rounds = 2;
    let (mut full, mut forward) = (Vec::new(), Vec::new());
    let t = Instant::now();
    for i in 0..rounds * images.len() {
        let t0 = Instant::now();
        let input = one(&images[i % images.len()])?;
        let t1 = Instant::now();
        let (vector, _) = encoder.embed_global(&[input])?.pop().context("one result")??;
        forward.push(t1.elapsed().as_secs_f64());
        let hits = collection.search_similar(&vector, &SimilarQuery { k: K, ..Default::default() })?;
        full.push(t0.elapsed().as_secs_f64());
        anyhow::ensure!(hits.len() == K, "{} hits", hits.len());
    }
    let direct_image = summarize(full, t.elapsed().as_secs_f64());
    let direct_forward = summarize(forward.clone(), forward.iter().sum());
    let inputs: Vec<Tensor> = (0..16).map(|i| one(&images[i % images.len()])).collect::<anyhow::Result<_>>()?;
    let t = Instant::now();
    encoder.embed_global(&inputs)?;
    let batch16_ips = 16.0 / t.elapsed().as_secs_f64();
    drop(collection);

    println!("### Reference: in-process, no gRPC\n");
    println!("| work | threads | requests | p50 ms | p99 ms | req/s |");
    println!("|---|---:|---:|---:|---:|---:|");
    for (&threads, s) in levels.iter().zip(&direct_id).filter(|(_, s)| s.n > 0) {
        println!(
            "| record + stored vector + search_similar | {threads} | {} | {} | {} | {:.0} |",
            s.n,
            ms(s.p50),
            ms(s.p99),
            s.rps
        );
    }
    let c = vector_count;
    println!(
        "| of which `vector_count()` (O(1): the graph's live count) | 1 | {} | {} | {} | {:.0} |",
        c.n,
        ms(c.p50),
        ms(c.p99),
        c.rps
    );
    let d = direct_image;
    println!(
        "| decode + preprocess + forward + search_similar, batch 1 | 1 | {} | {} | {} | {:.2} |",
        d.n,
        ms(d.p50),
        ms(d.p99),
        d.rps
    );
    let f = direct_forward;
    println!("| forward alone, batch 1 | 1 | {} | {} | {} | {:.2} |", f.n, ms(f.p50), ms(f.p99), f.rps);
    println!("| forward alone, batch 16 | 1 | 16 | | | {batch16_ips:.2} |");
    println!();

    // The server, in its own runtime (as a separate process would be), over the same collection.
    let server_rt = tokio::runtime::Builder::new_multi_thread().enable_all().thread_name("server").build()?;
    let client_rt = tokio::runtime::Builder::new_multi_thread().enable_all().thread_name("client").build()?;
    let listener = server_rt.block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))?;
    if listener_nodelay {
        set_nodelay(&listener)?;
    }
    let url = format!("http://{}", listener.local_addr()?);
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let loader: pixdex_server::ModelLoader =
        Box::new(move |_| Ok(std::sync::Arc::new(encoder) as std::sync::Arc<dyn Encoder>));
    let server = server_rt.spawn(pixdex_server::serve(ServerConfig::new(&db), listener, loader, async {
        stopped.await.ok();
    }));

    let rows = client_rt.block_on(async {
        let mut admin = PixdexClient::connect(&url).await?;
        admin.wait_ready(Duration::from_secs(300)).await?;
        let stats = admin.collection.get_stats(pb::GetStatsRequest {}).await?.into_inner();
        anyhow::ensure!(stats.vectors as usize == n, "the server sees {} vectors, not {n}", stats.vectors);
        // Warm-up: the server's first image queries (allocations, the batcher thread).
        for bytes in images.iter().take(2) {
            admin.search.search(image_request(bytes.clone())).await?;
        }
        let ids: Arc<Vec<u64>> = Arc::new(ids.iter().map(|id| id.0).collect());
        let images = Arc::new(images);
        let mut rows = Vec::new();
        for (&clients, direct) in levels.iter().zip(&direct_id).filter(|_| id_requests > 0) {
            let ids = ids.clone();
            let s = grpc_level(&url, clients, id_requests, cap, ID_WARMUP, move |rng, _| {
                id_request(ids[rng.random_range(0..ids.len())])
            })
            .await?;
            rows.push(("search-by-id", clients, s, *direct, None));
        }
        for &clients in levels.iter().filter(|&&c| images_at(c) > 0) {
            let before = admin.collection.get_stats(pb::GetStatsRequest {}).await?.into_inner();
            let images = images.clone();
            let s = grpc_level(&url, clients, images_at(clients), cap, 0, move |_, i| {
                image_request(images[i % images.len()].clone())
            })
            .await?;
            let after = admin.collection.get_stats(pb::GetStatsRequest {}).await?.into_inner();
            let embeddings = after.query_embeddings - before.query_embeddings;
            let passes = after.query_forward_passes - before.query_forward_passes;
            rows.push(("search-by-image", clients, s, direct_image, Some((embeddings, passes))));
        }
        Ok(rows)
    })?;
    stop.send(()).ok();
    server_rt.block_on(async { tokio::time::timeout(Duration::from_secs(60), server).await })???;

    println!("### gRPC `Search` on loopback, each client on its own connection\n");
    println!(
        "Reference: search-by-id = the in-process search at the same thread count; search-by-image = \
         in-process decode + preprocess + forward + search, one image at a time. Ratios are gRPC / reference.\n"
    );
    println!(
        "| kind | clients | requests | p50 ms | p99 ms | req/s | ref p50 ms | ref req/s | p50 ratio | req/s ratio | embeddings / passes |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|");
    for (kind, clients, s, r, batching) in &rows {
        let batching = match batching {
            Some((e, p)) => format!("{e} / {p} = {:.1} per pass", *e as f64 / (*p).max(1) as f64),
            None => String::new(),
        };
        let rps = |v: f64| if v >= 100.0 { format!("{v:.0}") } else { format!("{v:.2}") };
        println!(
            "| {kind} | {clients} | {} | {} | {} | {} | {} | {} | {:.2}× | {:.2}× | {batching} |",
            s.n,
            ms(s.p50),
            ms(s.p99),
            rps(s.rps),
            ms(r.p50),
            rps(r.rps),
            s.p50 / r.p50,
            s.rps / r.rps
        );
    }
    if let Some((_, clients, s, _, _)) = rows.iter().filter(|r| r.0 == "search-by-image").max_by_key(|r| r.1) {
        println!(
            "\nsearch-by-image at {clients} clients: {:.2} req/s = {:.2}× sequential in-process decode + forward + search \
             ({:.2}/s), {:.2}× the in-process batch-16 forward pass alone ({batch16_ips:.2}/s)",
            s.rps,
            s.rps / direct_image.rps,
            direct_image.rps,
            s.rps / batch16_ips
        );
    }
    if let (Some((busy0, steal0)), Some((busy1, steal1))) = (machine_start, machine_cpu_seconds()) {
        let capacity = run_started.elapsed().as_secs_f64() * cores as f64;
        let others = (busy1 - busy0) - (cpu_seconds() - own_start);
        println!(
            "\nduring the run, other processes used {:.0}% of the machine's CPU time and the hypervisor stole {:.0}% \
             (both skew every number above; rerun on a quiet machine if either is large)",
            100.0 * others.max(0.0) / capacity,
            100.0 * (steal1 - steal0) / capacity
        );
    }
    Ok(())
}
