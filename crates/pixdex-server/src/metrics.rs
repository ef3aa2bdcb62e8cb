//! Prometheus metrics, and the `/metrics` endpoint that serves them as text exposition
//! (`pixdex serve --metrics-listen ADDR`).
//!
//! Counted as things happen: requests by method and status code and their latency (by the RPC
//! layer in `rpc.rs`), index jobs and the files they handled (`jobs.rs`), query-encoder batch
//! sizes (by the batcher). Read at scrape time: the collection's size, and the batcher's counts of
//! embeddings and forward passes. Each server has its own registry, so that servers in one process
//! (the tests) do not add up.

use hyper::body::Incoming;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use prometheus::{
    Encoder, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, Opts, Registry, TextEncoder,
};
use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tonic::Code;
use tonic::codegen::Bytes;

use crate::state::AppState;

type Body = http_body_util::Full<Bytes>;

/// Every metric of one server.
pub(crate) struct Metrics {
    registry: Registry,
    requests: IntCounterVec,
    latency: HistogramVec,
    forward_passes: IntCounter,
    embeddings: IntCounter,
    jobs_started: IntCounter,
    jobs_finished: IntCounterVec,
    files: IntCounterVec,
    images: IntGauge,
    vectors: IntGauge,
    disk_bytes: IntGauge,
    /// Serialises scrapes: the batcher's counts are copied into the counters as a difference.
    scrape: tokio::sync::Mutex<()>,
}

/// Query-encoder batch sizes: a histogram the batcher observes once per forward pass (so its
/// `_count` is the forward passes and its `_sum` the embeddings). It lives in the batcher's
/// counters and joins the registry when the model has loaded.
#[derive(Clone, Debug)]
pub(crate) struct BatchSizes(Histogram);

impl Default for BatchSizes {
    fn default() -> Self {
        let opts = HistogramOpts::new("pixdex_query_batch_size", "Query images per query-encoder forward pass")
            .buckets(vec![1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0]);
        // Constant, valid options: this cannot fail.
        Self(Histogram::with_opts(opts).expect("valid histogram options"))
    }
}

impl BatchSizes {
    /// One forward pass over `n` inputs.
    pub(crate) fn observe(&self, n: usize) {
        self.0.observe(n as f64);
    }
}

impl Metrics {
    pub(crate) fn new() -> Result<Self, prometheus::Error> {
        let registry = Registry::new();
        let requests = IntCounterVec::new(
            Opts::new("pixdex_rpc_requests_total", "gRPC requests by method and status code"),
            &["method", "code"],
        )?;
        let latency = HistogramVec::new(
            HistogramOpts::new("pixdex_rpc_duration_seconds", "gRPC request latency (to the last message) by method"),
            &["method"],
        )?;
        let forward_passes =
            IntCounter::new("pixdex_query_forward_passes_total", "Forward passes of the query encoder")?;
        let embeddings = IntCounter::new("pixdex_query_embeddings_total", "Query images embedded")?;
        let jobs_started = IntCounter::new("pixdex_index_jobs_started_total", "Index jobs started")?;
        let jobs_finished = IntCounterVec::new(
            Opts::new("pixdex_index_jobs_finished_total", "Index jobs finished, by final state"),
            &["state"],
        )?;
        let files = IntCounterVec::new(
            Opts::new("pixdex_index_files_total", "Files handled by index jobs, by outcome"),
            &["outcome"],
        )?;
        let images = IntGauge::new("pixdex_collection_images", "Image records in the collection")?;
        let vectors = IntGauge::new("pixdex_collection_vectors", "Images with a stored global vector")?;
        let disk_bytes = IntGauge::new("pixdex_collection_disk_bytes", "Bytes the collection takes on disk")?;
        registry.register(Box::new(requests.clone()))?;
        registry.register(Box::new(latency.clone()))?;
        registry.register(Box::new(forward_passes.clone()))?;
        registry.register(Box::new(embeddings.clone()))?;
        registry.register(Box::new(jobs_started.clone()))?;
        registry.register(Box::new(jobs_finished.clone()))?;
        registry.register(Box::new(files.clone()))?;
        registry.register(Box::new(images.clone()))?;
        registry.register(Box::new(vectors.clone()))?;
        registry.register(Box::new(disk_bytes.clone()))?;
        Ok(Self {
            registry,
            requests,
            latency,
            forward_passes,
            embeddings,
            jobs_started,
            jobs_finished,
            files,
            images,
            vectors,
            disk_bytes,
            scrape: tokio::sync::Mutex::new(()),
        })
    }

    #[cfg(test)]
    pub(crate) fn registry(&self) -> &Registry {
        &self.registry
    }

    /// One finished request.
    pub(crate) fn rpc(&self, method: &str, code: Code, elapsed: Duration) {
        self.requests.with_label_values(&[method, code_name(code)]).inc();
        self.latency.with_label_values(&[method]).observe(elapsed.as_secs_f64());
    }

    /// The batcher's batch-size histogram joins the registry (once, when the model has loaded).
    pub(crate) fn register_batch_sizes(&self, sizes: &BatchSizes) {
        if let Err(e) = self.registry.register(Box::new(sizes.0.clone())) {
            tracing::warn!(error = %e, "query batch sizes are not exported");
        }
    }

    pub(crate) fn job_started(&self) {
        self.jobs_started.inc();
    }

    /// A job ended in `state` (`succeeded`, `cancelled` or `failed`).
    pub(crate) fn job_finished(&self, state: &str) {
        self.jobs_finished.with_label_values(&[state]).inc();
    }

    /// A file of an index job ended with `outcome` (`embedded`, `copied`, `touched`, `failed`).
    pub(crate) fn file(&self, outcome: &str) {
        self.files.with_label_values(&[outcome]).inc();
    }

    /// The text exposition, with what is read at scrape time brought up to date first.
    pub(crate) async fn render(&self, state: &Arc<AppState>) -> Result<String, String> {
        let _scrape = self.scrape.lock().await;
        if let Some(model) = state.model.get() {
            let counters = &model.batcher.counters;
            catch_up(&self.forward_passes, counters.forward_passes.load(Ordering::Relaxed));
            catch_up(&self.embeddings, counters.embeddings.load(Ordering::Relaxed));
        }
        if let Some(collection) = state.collection.get().cloned() {
            // The disk use walks the collection folder: off the async threads.
            let (images, vectors, disk) = tokio::task::spawn_blocking(move || {
                (collection.len(), collection.vector_count(), collection.disk_bytes())
            })
            .await
            .map_err(|e| format!("reading the collection size: {e}"))?;
            let images = images.map_err(|e| format!("counting the collection's images: {e}"))?;
            self.images.set(gauge(images as u64));
            self.vectors.set(gauge(vectors as u64));
            self.disk_bytes.set(gauge(disk));
        }
        let mut text = Vec::new();
        TextEncoder::new().encode(&self.registry.gather(), &mut text).map_err(|e| e.to_string())?;
        String::from_utf8(text).map_err(|e| e.to_string())
    }
}

/// Brings a counter up to a total counted elsewhere (only scrapes add to it, one at a time).
fn catch_up(counter: &IntCounter, total: u64) {
    counter.inc_by(total.saturating_sub(counter.get()));
}

fn gauge(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

/// The gRPC name of a status code, as the `code` label shows it.
pub(crate) fn code_name(code: Code) -> &'static str {
    match code {
        Code::Ok => "OK",
        Code::Cancelled => "CANCELLED",
        Code::Unknown => "UNKNOWN",
        Code::InvalidArgument => "INVALID_ARGUMENT",
        Code::DeadlineExceeded => "DEADLINE_EXCEEDED",
        Code::NotFound => "NOT_FOUND",
        Code::AlreadyExists => "ALREADY_EXISTS",
        Code::PermissionDenied => "PERMISSION_DENIED",
        Code::ResourceExhausted => "RESOURCE_EXHAUSTED",
        Code::FailedPrecondition => "FAILED_PRECONDITION",
        Code::Aborted => "ABORTED",
        Code::OutOfRange => "OUT_OF_RANGE",
        Code::Unimplemented => "UNIMPLEMENTED",
        Code::Internal => "INTERNAL",
        Code::Unavailable => "UNAVAILABLE",
        Code::DataLoss => "DATA_LOSS",
        Code::Unauthenticated => "UNAUTHENTICATED",
    }
}

/// Serves `GET /metrics` on `listener` until `shutdown`.
pub(crate) async fn serve_metrics(listener: TcpListener, state: Arc<AppState>, shutdown: CancellationToken) {
    loop {
        let stream = tokio::select! {
            () = shutdown.cancelled() => return,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(e) => {
                    // Out of file descriptors and the like: wait rather than spin.
                    tracing::warn!(error = %e, "metrics endpoint: accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        let state = state.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |request| {
                let state = state.clone();
                async move { Ok::<_, Infallible>(respond(&state, request).await) }
            });
            let connection = hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(stream), service);
            if let Err(e) = connection.await {
                tracing::debug!(error = %e, "metrics connection ended with an error");
            }
        });
    }
}

async fn respond(state: &Arc<AppState>, request: Request<Incoming>) -> Response<Body> {
    let reply = |status: StatusCode, content_type: &'static str, text: String| {
        let mut response = Response::new(Body::new(Bytes::from(text)));
        *response.status_mut() = status;
        response
            .headers_mut()
            .insert(hyper::header::CONTENT_TYPE, hyper::header::HeaderValue::from_static(content_type));
        response
    };
    if request.uri().path() != "/metrics" {
        return reply(StatusCode::NOT_FOUND, "text/plain", "not found: the metrics are at /metrics\n".into());
    }
    if request.method() != Method::GET && request.method() != Method::HEAD {
        return reply(StatusCode::METHOD_NOT_ALLOWED, "text/plain", "GET /metrics\n".into());
    }
    match state.metrics.render(state).await {
        Ok(text) => reply(StatusCode::OK, prometheus::TEXT_FORMAT, text),
        Err(e) => {
            tracing::error!(error = %e, "rendering the metrics failed");
            reply(StatusCode::INTERNAL_SERVER_ERROR, "text/plain", format!("{e}\n"))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_show_in_the_exposition() {
        let metrics = Metrics::new().unwrap();
        metrics.rpc("/pixdex.v1.SearchService/Search", Code::InvalidArgument, Duration::from_millis(3));
        metrics.rpc("/pixdex.v1.SearchService/Search", Code::Ok, Duration::from_millis(3));
        metrics.rpc("/pixdex.v1.SearchService/Search", Code::Ok, Duration::from_millis(30));
        metrics.job_started();
        metrics.file("embedded");
        let sizes = BatchSizes::default();
        sizes.observe(3);
        metrics.register_batch_sizes(&sizes);
        catch_up(&metrics.forward_passes, 5);
        catch_up(&metrics.forward_passes, 7);
        let mut text = Vec::new();
        TextEncoder::new().encode(&metrics.registry.gather(), &mut text).unwrap();
        let text = String::from_utf8(text).unwrap();
        for line in [
            r#"pixdex_rpc_requests_total{code="INVALID_ARGUMENT",method="/pixdex.v1.SearchService/Search"} 1"#,
            r#"pixdex_rpc_requests_total{code="OK",method="/pixdex.v1.SearchService/Search"} 2"#,
            r#"pixdex_rpc_duration_seconds_count{method="/pixdex.v1.SearchService/Search"} 3"#,
            r#"pixdex_index_files_total{outcome="embedded"} 1"#,
            "pixdex_index_jobs_started_total 1",
            r#"pixdex_query_batch_size_bucket{le="4"} 1"#,
            "pixdex_query_batch_size_sum 3",
            "pixdex_query_forward_passes_total 7",
        ] {
            assert!(text.lines().any(|l| l == line), "no `{line}` in\n{text}");
        }
    }
}
