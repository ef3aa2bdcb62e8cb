//! The test server and generated image libraries.

use pixdex_indexer::encoder::{Encoder, PixioEncoder};
use pixdex_server::{ClientOptions, ModelLoader, PixdexClient, ServeError, Server, ServerConfig, pb};
use pixdex_store_postgres::testing::TestPostgres;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// Upper bound for anything a test waits for.
pub const PATIENCE: Duration = Duration::from_secs(120);

pub fn tiny_model() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/pixio/models/a-hub")
}

pub fn load_tiny_model() -> PixioEncoder {
    let source = pixio::WeightSource::parse(&tiny_model().display().to_string()).expect("model path");
    PixioEncoder::load(&source, &pixio::Device::Cpu, pixio::DType::F32).expect("tiny model loads")
}

pub fn tiny_loader() -> ModelLoader {
    Box::new(|_| Ok(Arc::new(load_tiny_model()) as Arc<dyn Encoder>))
}

/// `../shared` next to the repository (or `$PIXDEX_SHARED_DIR`) when it holds the real-weights
/// ViT-S/14; otherwise a visible skip note (or a failure where `PIXDEX_REQUIRE_SHARED_DATA=1`).
pub fn shared_dir() -> Option<PathBuf> {
    let dir = std::env::var_os("PIXDEX_SHARED_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared"));
    if real_model_in(&dir).join("model.safetensors").is_file() {
        return Some(dir);
    }
    if std::env::var("PIXDEX_REQUIRE_SHARED_DATA").is_ok_and(|v| v == "1") {
        panic!("PIXDEX_REQUIRE_SHARED_DATA=1 but {} has no data/models/pixio-s14-real", dir.display());
    }
    eprintln!("NOTE: skipping real-weights test: no shared data at {} (set PIXDEX_SHARED_DIR)", dir.display());
    None
}

/// The real-weights model folder inside a shared folder.
pub fn real_model_in(shared: &Path) -> PathBuf {
    shared.join("data/models/pixio-s14-real")
}

/// Loads the real-weights model from `shared` (on the server's loading thread).
pub fn real_loader(shared: &Path) -> ModelLoader {
    let dir = real_model_in(shared);
    Box::new(move |_| {
        let source = pixio::WeightSource::parse(&dir.display().to_string()).map_err(|e| e.to_string())?;
        let encoder = PixioEncoder::load(&source, &pixio::Device::Cpu, pixio::DType::F32).map_err(|e| e.to_string())?;
        Ok(Arc::new(encoder) as Arc<dyn Encoder>)
    })
}

/// A distinct picture per seed (stripes of seed-dependent frequency, angle and colour).
pub fn picture(seed: u32, w: u32, h: u32) -> image::RgbImage {
    image::RgbImage::from_fn(w, h, |x, y| {
        let s = seed as f32;
        let v =
            |k: f32| (((x as f32 * (0.05 + 0.01 * k) + y as f32 * 0.03 * (s + 1.0)).sin() * 0.5 + 0.5) * 255.0) as u8;
        image::Rgb([v(s), v(s + 1.0), v(2.0 * s)])
    })
}

pub fn png_bytes(img: &image::RgbImage) -> Vec<u8> {
    let mut out = std::io::Cursor::new(Vec::new());
    img.write_to(&mut out, image::ImageFormat::Png).expect("png encodes");
    out.into_inner()
}

/// `n` PNGs: `top/p{i}.png` for even i, `top/sub/p{i}.png` for odd i; plus a corrupt `top/bad.jpg`.
pub fn make_library(root: &Path, n: u32) -> Vec<PathBuf> {
    std::fs::create_dir_all(root.join("sub")).unwrap();
    let mut paths = Vec::new();
    for i in 0..n {
        let path = if i % 2 == 0 { root.join(format!("p{i}.png")) } else { root.join(format!("sub/p{i}.png")) };
        picture(i, 80 + i % 7, 72).save(&path).unwrap();
        paths.push(path.canonicalize().unwrap());
    }
    std::fs::write(root.join("bad.jpg"), b"\xff\xd8\xff\xe0 this is not really a JPEG").unwrap();
    paths
}

/// Held by the tests that load the CPU heavily and by those whose outcome depends on timing
/// (a batching window, a cancelled call), so that the two never overlap on a two-core machine.
pub static CPU_HEAVY: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

pub struct TestServer {
    pub url: String,
    pub client: PixdexClient,
    pub dir: tempfile::TempDir,
    stop: Option<oneshot::Sender<()>>,
    handle: Option<JoinHandle<Result<(), ServeError>>>,
    /// The database the collection is in, when the suite runs on PostgreSQL (dropped last).
    pub postgres: Option<TestPostgres>,
}

/// Whether this run of the suite keeps its collections in PostgreSQL (`PIXDEX_E2E_STORE=postgres`,
/// as `.ci/run`'s second pass does) instead of sled folders.
pub fn on_postgres() -> bool {
    std::env::var("PIXDEX_E2E_STORE").is_ok_and(|v| v == "postgres")
}

impl TestServer {
    /// A server over a fresh collection in a temp folder, with `library/` as its allowed root.
    pub async fn start(configure: impl FnOnce(&mut ServerConfig)) -> Self {
        Self::start_with(configure, tiny_loader(), true).await
    }

    pub async fn start_with(configure: impl FnOnce(&mut ServerConfig), loader: ModelLoader, wait: bool) -> Self {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("library")).unwrap();
        let mut config = ServerConfig::new(dir.path().join("db"));
        config.allowed_roots = vec![dir.path().join("library")];
        config.shutdown_grace = Duration::from_secs(20);
        configure(&mut config);
        Self::start_in(dir, config, loader, wait).await
    }

    pub async fn start_in(dir: tempfile::TempDir, config: ServerConfig, loader: ModelLoader, wait: bool) -> Self {
        Self::start_serving(dir, config, loader, wait, None, ClientOptions::default()).await
    }

    /// [`Self::start`] with `configure` setting tokens or TLS, and a client that connects with
    /// `options` (to `https://127.0.0.1:…` when the config has TLS).
    pub async fn start_secured(configure: impl FnOnce(&mut ServerConfig), options: ClientOptions) -> Self {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("library")).unwrap();
        let mut config = ServerConfig::new(dir.path().join("db"));
        config.allowed_roots = vec![dir.path().join("library")];
        configure(&mut config);
        Self::start_serving(dir, config, tiny_loader(), true, None, options).await
    }

    /// [`Self::start`], also serving `/metrics` on a free loopback port (`pixdex serve
    /// --metrics-listen 127.0.0.1:0`); returns that port's address too.
    pub async fn start_with_metrics() -> (Self, std::net::SocketAddr) {
        let metrics = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = metrics.local_addr().unwrap();
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("library")).unwrap();
        let mut config = ServerConfig::new(dir.path().join("db"));
        config.allowed_roots = vec![dir.path().join("library")];
        (Self::start_serving(dir, config, tiny_loader(), true, Some(metrics), ClientOptions::default()).await, addr)
    }

    async fn start_serving(
        dir: tempfile::TempDir,
        config: ServerConfig,
        loader: ModelLoader,
        wait: bool,
        metrics: Option<TcpListener>,
        options: ClientOptions,
    ) -> Self {
        let mut config = config;
        let postgres = if on_postgres() && config.store.is_none() {
            let pg = TestPostgres::start("the e2e suite on PostgreSQL")
                .expect("PIXDEX_E2E_STORE=postgres needs PIXDEX_PG_BIN");
            config.store = Some(pg.url());
            Some(pg)
        } else {
            None
        };
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let scheme = if config.tls.is_some() { "https" } else { "http" };
        let url = format!("{scheme}://{}", listener.local_addr().unwrap());
        let (stop, stopped) = oneshot::channel::<()>();
        let shutdown = async {
            stopped.await.ok();
        };
        let handle = tokio::spawn(async move {
            let server = tokio::task::spawn_blocking(move || Server::open(config)).await.expect("opening task")?;
            let server = match metrics {
                Some(metrics) => server.with_metrics_listener(metrics),
                None => server,
            };
            server.serve(listener, loader, shutdown).await
        });
        let mut client = PixdexClient::connect_with(&url, &options).await.expect("server reachable");
        if wait {
            client.wait_ready(PATIENCE).await.expect("server ready");
        }
        Self { url, client, dir, stop: Some(stop), handle: Some(handle), postgres }
    }

    /// Where its collection lives (the sled folder, or the database with that folder for the
    /// derived indexes), to open it offline.
    pub fn location(&self) -> pixdex_store_postgres::CollectionLocation {
        let url = self.postgres.as_ref().map(TestPostgres::url);
        pixdex_store_postgres::CollectionLocation::new(url.as_deref(), &self.dir.path().join("db")).expect("a location")
    }

    pub fn library(&self) -> PathBuf {
        self.dir.path().join("library")
    }

    /// Signals shutdown and waits (bounded) for `serve` to return.
    pub async fn stop(&mut self) -> Result<(), ServeError> {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        let handle = self.handle.take().expect("stopped once");
        tokio::time::timeout(PATIENCE, handle).await.expect("serve returns after shutdown").expect("serve task")
    }

    /// Waits (bounded) for `serve` to return on its own (e.g. after a fatal error).
    pub async fn stop_when_done(&mut self) -> Result<(), ServeError> {
        let handle = self.handle.take().expect("stopped once");
        tokio::time::timeout(PATIENCE, handle).await.expect("serve returns").expect("serve task")
    }

    /// Starts an index job over the library (without waiting for it).
    pub async fn start_library_job(&mut self) -> pb::IndexJob {
        let root = self.library().canonicalize().unwrap().display().to_string();
        let request = pb::StartIndexJobRequest { roots: vec![root], ..Default::default() };
        self.client.index.start_index_job(request).await.expect("job starts").into_inner()
    }

    /// Runs an index job over the library and returns every snapshot the watch stream sent.
    pub async fn index_library(&mut self) -> Vec<pb::IndexJob> {
        let job = self.start_library_job().await;
        watch(&mut self.client, &job.job_id).await
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

/// Every snapshot of a job until its final state.
pub async fn watch(client: &mut PixdexClient, job_id: &str) -> Vec<pb::IndexJob> {
    let mut stream = client
        .index
        .watch_index_job(pb::WatchIndexJobRequest { job_id: job_id.to_string() })
        .await
        .expect("watch starts")
        .into_inner();
    let mut seen = Vec::new();
    let collect = async {
        while let Some(update) = stream.message().await.expect("watch stream") {
            seen.push(update);
        }
    };
    tokio::time::timeout(PATIENCE, collect).await.expect("job finishes in time");
    seen
}

pub fn image_query(bytes: Vec<u8>, k: u32) -> pb::SearchRequest {
    pb::SearchRequest { query: Some(pb::search_request::Query::Image(bytes)), k, ..Default::default() }
}

pub fn id_query(id: u64, k: u32) -> pb::SearchRequest {
    pb::SearchRequest {
        query: Some(pb::search_request::Query::Stored(pb::ImageRef { r#ref: Some(pb::image_ref::Ref::Id(id)) })),
        k,
        ..Default::default()
    }
}

pub fn path_ref(path: &str) -> Option<pb::ImageRef> {
    Some(pb::ImageRef { r#ref: Some(pb::image_ref::Ref::Path(path.to_string())) })
}

pub fn id_ref(id: u64) -> Option<pb::ImageRef> {
    Some(pb::ImageRef { r#ref: Some(pb::image_ref::Ref::Id(id)) })
}

pub fn hit_paths(response: &pb::SearchResponse) -> Vec<String> {
    response.hits.iter().map(|h| h.image.as_ref().expect("hit has its record").path.clone()).collect()
}
