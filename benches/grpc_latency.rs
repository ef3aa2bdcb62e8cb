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
use pixdex_benches::random_unit;
use pixdex_core::{
    Collection, EXACT_SCAN_BELOW, Embedding, ImageId, ImageRecord, ImageStatus, NewImage, SimilarQuery, UnitVector,
};
use pixdex_indexer::decode::{DecodeLimits, decode_bytes};
use pixdex_indexer::encoder::PixioEncoder;
use pixdex_server::{PixdexClient, ServerConfig, pb};
use pixio::{DType, Device, Tensor, WeightSource};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
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

/// p50, p99 (nearest rank) in seconds, and requests per second over `wall` seconds.
#[derive(Debug, Clone, Copy)]
struct Summary {
    n: usize,
    p50: f64,
    p99: f64,
    rps: f64,
}

fn summarize(mut latencies: Vec<f64>, wall: f64) -> Summary {
    latencies.sort_by(f64::total_cmp);
    let n = latencies.len();
    if n == 0 {
        return Summary { n, p50: f64::NAN, p99: f64::NAN, rps: f64::NAN };
    }
    let rank = |q: f64| latencies[((q * n as f64).ceil() as usize).clamp(1, n) - 1];
    Summary { n, p50: rank(0.50), p99: rank(0.99), rps: n as f64 / wall }
}

/// Requests of `total` that worker `i` of `workers` makes.
fn share(total: usize, workers: usize, i: usize) -> usize {
    total / workers + usize::from(i < total % workers)
}

/// `n` random vectors clustered around `clusters` centres (as in `hnsw_recall`), with fake paths.
fn build_collection(c: &Collection, n: usize, clusters: usize) -> anyhow::Result<Vec<ImageId>> {
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
fn search_by_id(c: &Collection, id: ImageId) -> anyhow::Result<usize> {
    c.get(id)?.context("record")?;
    let vector = c.global_vector(id)?.context("stored vector")?;
    Ok(c.search_similar(&vector, &SimilarQuery { k: K, ..Default::default() })?.len())
}

/// In-process search-by-id on `threads` threads, `total` requests in all (fewer if `cap` runs out).
fn direct_id_level(
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
                    let deadline = Instant::now() + cap;
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
                    Ok::<_, anyhow::Error>(lat)
                })
            })
            .collect();
        barrier.wait();
        let t0 = Instant::now();
        let lat: anyhow::Result<Vec<Vec<f64>>> = handles.into_iter().map(|h| h.join().expect("thread")).collect();
        lat.map(|l| (l.concat(), t0.elapsed().as_secs_f64()))
    })?;
    Ok(summarize(latencies, wall))
}

/// `clients` clients, each with its own connection, making `total` requests in all; `make` builds
/// request number `i` (client `c` makes `c`, `c + clients`, …). Clients stop early when `cap` has
/// passed since the start.
async fn grpc_level(
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
            let deadline = Instant::now() + cap;
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
            Ok::<_, anyhow::Error>(lat)
        }));
    }
    barrier.wait().await;
    let t0 = Instant::now();
    let mut latencies = Vec::with_capacity(total);
    for task in tasks {
        latencies.extend(task.await??);
    }
    Ok(summarize(latencies, t0.elapsed().as_secs_f64()))
}

fn id_request(id: u64) -> pb::SearchRequest {
    pb::SearchRequest {
        query: Some(pb::search_request::Query::Stored(pb::ImageRef { r#ref: Some(pb::image_ref::Ref::Id(id)) })),
        k: K as u32,
        ..Default::default()
    }
}

fn image_request(bytes: Vec<u8>) -> pb::SearchRequest {
    pb::SearchRequest { query: Some(pb::search_request::Query::Image(bytes)), k: K as u32, ..Default::default() }
}

/// Query images as JPEG bytes: up to 8 photos spread over the shared library, else generated pictures.
fn query_images(photos: &Path) -> anyhow::Result<(Vec<Vec<u8>>, String)> {
    let mut files = Vec::new();
    let mut dirs = vec![photos.to_path_buf()];
    while let Some(dir) = dirs.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else { continue };
        for entry in entries {
            let path = entry?.path();
            if path.is_dir() {
                dirs.push(path);
            } else if path.extension().is_some_and(|e| e.eq_ignore_ascii_case("jpg") || e.eq_ignore_ascii_case("jpeg"))
            {
                files.push(path);
            }
        }
    }
    files.sort();
    if !files.is_empty() {
        let step = files.len().div_ceil(8);
        let picked: Vec<&PathBuf> = files.iter().step_by(step).collect();
        let mut out = Vec::new();
        let mut sizes = Vec::new();
        for path in picked {
            let bytes = std::fs::read(path)?;
            let d = decode_bytes(&bytes, DecodeLimits::default())?;
            sizes.push(format!(
                "{} {}x{} {} KB",
                path.strip_prefix(photos).unwrap_or(path).display(),
                d.image.width(),
                d.image.height(),
                bytes.len() / 1024
            ));
            out.push(bytes);
        }
        let note = format!("{} photos from {}: {}", out.len(), photos.display(), sizes.join(", "));
        return Ok((out, note));
    }
    // No photo library: stripes of seed-dependent frequency and colour, 640x480, JPEG quality 90.
    let out = (0..8u32)
        .map(|seed| {
            let img = image::RgbImage::from_fn(640, 480, |x, y| {
                let s = seed as f32;
                let v = |k: f32| {
                    (((x as f32 * (0.05 + 0.01 * k) + y as f32 * 0.03 * (s + 1.0)).sin() * 0.5 + 0.5) * 255.0) as u8
                };
                image::Rgb([v(s), v(s + 1.0), v(2.0 * s)])
            });
            let mut bytes = Vec::new();
            image::codecs::jpeg::JpegEncoder::new_with_quality(&mut bytes, 90).encode_image(&img)?;
            Ok(bytes)
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    Ok((out, format!("NOTE: no photos in {}; 8 generated 640x480 JPEGs", photos.display())))
}

/// TCP_NODELAY on a listening socket (inherited by the sockets it accepts, on Linux).
fn set_nodelay(listener: &tokio::net::TcpListener) -> anyhow::Result<()> {
    use std::os::fd::AsRawFd;
    let one: libc::c_int = 1;
    // SAFETY: setsockopt reads `size_of::<c_int>()` bytes from a live c_int.
    let rc = unsafe {
        libc::setsockopt(
            listener.as_raw_fd(),
            libc::IPPROTO_TCP,
            libc::TCP_NODELAY,
            (&one as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    anyhow::ensure!(rc == 0, "setsockopt TCP_NODELAY: {}", std::io::Error::last_os_error());
    Ok(())
}

/// The whole machine's busy and stolen CPU seconds so far (all processes), from `/proc/stat`.
fn machine_cpu_seconds() -> Option<(f64, f64)> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    let j: Vec<u64> = stat.lines().next()?.split_whitespace().skip(1).filter_map(|v| v.parse().ok()).collect();
    // user nice system idle iowait irq softirq steal
    let (busy, steal) = (j.first()? + j.get(1)? + j.get(2)? + j.get(5)? + j.get(6)?, *j.get(7)?);
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    (hz > 0.0).then(|| (busy as f64 / hz, steal as f64 / hz))
}

fn cpu_model() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines().find(|l| l.starts_with("model name")).map(|l| l.split(':').nth(1).unwrap_or("").trim().into())
        })
        .unwrap_or_else(|| "unknown CPU".into())
}

fn ms(s: f64) -> String {
    format!("{:.2}", s * 1e3)
}

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
        Ok(encoder.prepare(&decode_bytes(bytes, DecodeLimits::default())?.image)?)
    };
    encoder.embed(&[one(&images[0])?])?; // warm-up
    let rounds = 2;
    let (mut full, mut forward) = (Vec::new(), Vec::new());
    let t = Instant::now();
    for i in 0..rounds * images.len() {
        let t0 = Instant::now();
        let input = one(&images[i % images.len()])?;
        let t1 = Instant::now();
        let (vector, _) = encoder.embed(&[input])?.pop().context("one result")??;
        forward.push(t1.elapsed().as_secs_f64());
        let hits = collection.search_similar(&vector, &SimilarQuery { k: K, ..Default::default() })?;
        full.push(t0.elapsed().as_secs_f64());
        anyhow::ensure!(hits.len() == K, "{} hits", hits.len());
    }
    let direct_image = summarize(full, t.elapsed().as_secs_f64());
    let direct_forward = summarize(forward.clone(), forward.iter().sum());
    let inputs: Vec<Tensor> = (0..16).map(|i| one(&images[i % images.len()])).collect::<anyhow::Result<_>>()?;
    let t = Instant::now();
    encoder.embed(&inputs)?;
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
    let loader: pixdex_server::ModelLoader = Box::new(move |_| Ok(encoder));
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
