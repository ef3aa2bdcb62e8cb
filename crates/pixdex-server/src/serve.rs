//! Wiring: open the collection, load the model in the background, serve the services with
//! health and reflection, and shut down gracefully (jobs store their batch in flight, streams
//! end, the collection is flushed) within a bounded grace period.

use pixdex_core::{Collection, CollectionConfig};
use pixdex_indexer::encoder::Encoder;
use std::future::Future;
use std::sync::{Arc, OnceLock};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tonic_health::ServingStatus;

use crate::access::AccessLayer;
use crate::batcher::QueryBatcher;
use crate::config::{ServerConfig, TlsIdentity};
use crate::jobs::IndexJobs;
use crate::metrics::{Metrics, serve_metrics};
use crate::pb;
use crate::rpc::RpcLayer;
use crate::service::{
    collection::CollectionApi, dedup::DedupApi, images::ImageApi, index::IndexApi, search::SearchApi,
};
use crate::state::{AppState, DecodePermits, LoadedModel};
use crate::status::oversized_as_resource_exhausted;

/// Loads the encoder, given the config of the existing collection (if any), so that the caller
/// can default to the collection's model. Runs on a blocking thread after the server listens.
pub type ModelLoader = Box<dyn FnOnce(Option<&CollectionConfig>) -> Result<Arc<dyn Encoder>, String> + Send>;

/// Why the server could not start or stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// The collection could not be opened (locked by another process, corrupt, …).
    #[error(transparent)]
    Collection(#[from] pixdex_core::Error),
    /// The model failed to load or does not match the collection.
    #[error("model: {0}")]
    Model(String),
    /// An allowed root does not exist.
    #[error("allowed root {path}: {source}")]
    AllowedRoot {
        /// The folder.
        path: std::path::PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// The transport failed.
    #[error("gRPC transport: {0}")]
    Transport(#[from] tonic::transport::Error),
    /// Reflection could not be built.
    #[error("reflection: {0}")]
    Reflection(#[from] tonic_reflection::server::Error),
    /// The TLS certificate or key is unusable.
    #[error("TLS: {0}")]
    Tls(String),
    /// The metrics registry could not be built.
    #[error("metrics: {0}")]
    Metrics(String),
    /// The collection's location is not one the server can open.
    #[error("store: {0}")]
    Store(String),
}

/// A server that has opened (and locked) its collection, ready to [serve](Server::serve).
pub struct Server {
    config: ServerConfig,
    collection: Option<Collection>,
    metrics_listener: Option<TcpListener>,
}

impl Server {
    /// Resolves the allowed roots and opens the collection in `config.db` if it exists (taking
    /// its lock, so that a second server or an offline command fails now, not after listening).
    /// Blocking: sled and the HNSW graph load here.
    pub fn open(config: ServerConfig) -> Result<Self, ServeError> {
        let mut config = config;
        if let Some(tls) = &config.tls {
            // A bad certificate or key fails here, before the server listens.
            tls_config(tls)?;
        }
        for root in &mut config.allowed_roots {
            *root = std::fs::canonicalize(&*root)
                .map_err(|source| ServeError::AllowedRoot { path: root.clone(), source })?;
        }
        let location = config.location().map_err(ServeError::Store)?;
        let collection = location.open_existing()?;
        if let Some(c) = &collection {
            // A long-lived process: results come from records held in RAM.
            c.cache_records()?;
        }
        Ok(Self { config, collection, metrics_listener: None })
    }

    /// Also serves Prometheus metrics at `GET /metrics` on `listener` (plain HTTP/1), until
    /// shutdown.
    pub fn with_metrics_listener(mut self, listener: TcpListener) -> Self {
        self.metrics_listener = Some(listener);
        self
    }

    /// The collection's config, if it exists already.
    pub fn collection_config(&self) -> Option<&CollectionConfig> {
        self.collection.as_ref().map(Collection::config)
    }

    /// Serves on `listener` until `shutdown` completes.
    ///
    /// The model loads in the background; requests that need it get `UNAVAILABLE` until then.
    /// On shutdown: health turns `NOT_SERVING`, no new connections are accepted, running index
    /// jobs are cancelled (each stores the batch in flight), watch streams send their final
    /// state, and the collection is flushed; whatever is still open after
    /// `config.shutdown_grace` is dropped.
    pub async fn serve(
        self,
        listener: TcpListener,
        loader: ModelLoader,
        shutdown: impl Future<Output = ()> + Send,
    ) -> Result<(), ServeError> {
        run(self, listener, loader, shutdown).await
    }
}

/// [`Server::open`] then [`Server::serve`].
pub async fn serve(
    config: ServerConfig,
    listener: TcpListener,
    loader: ModelLoader,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), ServeError> {
    let server = tokio::task::spawn_blocking(move || Server::open(config))
        .await
        .map_err(|e| ServeError::Model(format!("opening task: {e}")))??;
    server.serve(listener, loader, shutdown).await
}

async fn run(
    server: Server,
    listener: TcpListener,
    loader: ModelLoader,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), ServeError> {
    let Server { config, collection: opened, metrics_listener } = server;
    let collection = OnceLock::new();
    if let Some(opened) = opened {
        let _ = collection.set(Arc::new(opened));
    }
    let token = CancellationToken::new();
    let metrics = Arc::new(Metrics::new().map_err(|e| ServeError::Metrics(e.to_string()))?);
    let state = Arc::new(AppState {
        config,
        collection,
        model: OnceLock::new(),
        jobs: IndexJobs::new(metrics.clone()),
        metrics: metrics.clone(),
        shutdown: token.clone(),
        decode_permits: Arc::new(DecodePermits::new(std::thread::available_parallelism().map_or(2, |n| n.get()))),
        dedup_run: Arc::new(tokio::sync::Semaphore::new(1)),
    });

    let (health, health_service) = tonic_health::server::health_reporter();
    health.set_service_status("", ServingStatus::NotServing).await;
    set_health(&health, ServingStatus::NotServing).await;

    let max = state.config.max_message_bytes;
    let reflection_v1 = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(pb::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1()?;
    let reflection_v1alpha = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(pb::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1alpha()?;
    let mut builder = tonic::transport::Server::builder();
    if let Some(tls) = &state.config.tls {
        builder = tls_config(tls)?;
    }
    // Bounds per connection and per call: a client cannot open streams without limit, hold a
    // dead connection open, or send headers without end.
    let builder = builder
        .max_concurrent_streams(Some(state.config.max_concurrent_streams))
        .timeout(state.config.request_timeout)
        .http2_keepalive_interval(Some(std::time::Duration::from_secs(30)))
        .http2_keepalive_timeout(Some(std::time::Duration::from_secs(20)))
        .http2_max_header_list_size(Some(64 << 10));
    if state.config.access.is_none() {
        tracing::warn!("no token file: every client that can connect may search, upload, delete and index");
    }
    // The RPC layer is outermost, so that it sees the codes as the client will (refusals
    // included); access is checked before any service reads the request.
    let router = builder
        .layer(RpcLayer::new(metrics))
        .layer(tower::util::MapResponseLayer::new(oversized_as_resource_exhausted))
        .layer(tower::util::option_layer(state.config.access.clone().map(AccessLayer::new)))
        .add_service(health_service)
        .add_service(reflection_v1)
        .add_service(reflection_v1alpha)
        .add_service(
            pb::search_service_server::SearchServiceServer::new(SearchApi { state: state.clone() })
                .max_decoding_message_size(max)
                .max_encoding_message_size(max),
        )
        .add_service(
            pb::image_service_server::ImageServiceServer::new(ImageApi { state: state.clone() })
                .max_decoding_message_size(max)
                .max_encoding_message_size(max),
        )
        .add_service(
            pb::index_service_server::IndexServiceServer::new(IndexApi { state: state.clone() })
                .max_decoding_message_size(max)
                .max_encoding_message_size(max),
        )
        .add_service(
            pb::collection_service_server::CollectionServiceServer::new(CollectionApi { state: state.clone() })
                .max_decoding_message_size(max)
                .max_encoding_message_size(max),
        )
        .add_service(
            pb::dedup_service_server::DedupServiceServer::new(DedupApi { state: state.clone() })
                .max_decoding_message_size(max)
                .max_encoding_message_size(max),
        );
    let stop_accepting = token.clone();
    let mut server = tokio::spawn(router.serve_with_incoming_shutdown(
        // The builder's tcp_nodelay does not reach an incoming stream we supply: set it here
        // (Nagle's algorithm cost 44 ms per small request in benches/grpc_latency.rs).
        crate::connections::limited(
            tonic::transport::server::TcpIncoming::from(listener).with_nodelay(Some(true)),
            state.config.max_connections,
        ),
        stop_accepting.cancelled_owned(),
    ));

    if let Some(listener) = metrics_listener {
        tokio::spawn(serve_metrics(listener, state.clone(), token.clone()));
    }

    // The model loads while the server already answers (UNAVAILABLE for what needs it).
    let load_state = state.clone();
    let mut loading = tokio::task::spawn_blocking(move || load_model(&load_state, loader));

    tokio::pin!(shutdown);
    let (mut loaded, mut server_done) = (false, false);
    let fatal: Option<ServeError> = loop {
        tokio::select! {
            () = &mut shutdown => break None,
            r = &mut loading, if !loaded => {
                loaded = true;
                match r {
                    Ok(Ok(())) => {
                        health.set_service_status("", ServingStatus::Serving).await;
                        set_health(&health, ServingStatus::Serving).await;
                        tracing::info!("model loaded; serving");
                        if let Some(model) = state.model.get() {
                            // Queries cannot be embedded once the encoder thread is gone: say so.
                            let (stopped, health) = (model.batcher.stopped(), health.clone());
                            tokio::spawn(async move {
                                stopped.await;
                                tracing::error!("the query encoder thread stopped; health is NOT_SERVING");
                                health.set_service_status("", ServingStatus::NotServing).await;
                                set_health(&health, ServingStatus::NotServing).await;
                            });
                        }
                    }
                    Ok(Err(e)) => break Some(e),
                    Err(e) => break Some(ServeError::Model(format!("loading task: {e}"))),
                }
            }
            r = &mut server => {
                server_done = true;
                break Some(match r {
                    Ok(Ok(())) => ServeError::Model("the server stopped unexpectedly".into()),
                    Ok(Err(e)) => e.into(),
                    Err(e) => ServeError::Model(format!("server task: {e}")),
                });
            }
        }
    };
    // Shutdown: whatever the reason.
    health.set_service_status("", ServingStatus::NotServing).await;
    set_health(&health, ServingStatus::NotServing).await;
    let grace = state.config.shutdown_grace;
    token.cancel(); // stop accepting connections
    state.jobs.cancel_all(grace).await;
    if !server_done {
        match tokio::time::timeout(grace, &mut server).await {
            Ok(Ok(Err(e))) => tracing::warn!(error = %e, "server stopped with an error"),
            Ok(_) => {}
            Err(_) => {
                tracing::warn!("open connections did not close within {grace:?}; closing them");
                server.abort();
            }
        }
    }
    if let Some(collection) = state.collection.get() {
        let c = collection.clone();
        if let Ok(Err(e)) = tokio::task::spawn_blocking(move || c.flush()).await {
            tracing::error!(error = %e, "flushing the collection failed");
        }
    }
    match fatal {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

/// A server builder that serves TLS with `identity` (handshakes bounded, so that a client that
/// connects and says nothing does not hold a task).
fn tls_config(identity: &TlsIdentity) -> Result<tonic::transport::Server, ServeError> {
    use tonic::transport::{Identity, ServerTlsConfig};
    let config = ServerTlsConfig::new()
        .identity(Identity::from_pem(&identity.cert_pem, &identity.key_pem))
        .timeout(std::time::Duration::from_secs(10));
    tonic::transport::Server::builder().tls_config(config).map_err(|e| ServeError::Tls(error_chain(&e)))
}

/// An error and its sources, one line.
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(&format!(": {s}"));
        source = s.source();
    }
    text
}

async fn set_health(health: &tonic_health::server::HealthReporter, status: ServingStatus) {
    use pb::{
        collection_service_server::CollectionServiceServer, dedup_service_server::DedupServiceServer,
        image_service_server::ImageServiceServer, index_service_server::IndexServiceServer,
        search_service_server::SearchServiceServer,
    };
    health.set_service_status(<SearchServiceServer<SearchApi> as tonic::server::NamedService>::NAME, status).await;
    health.set_service_status(<ImageServiceServer<ImageApi> as tonic::server::NamedService>::NAME, status).await;
    health.set_service_status(<IndexServiceServer<IndexApi> as tonic::server::NamedService>::NAME, status).await;
    health
        .set_service_status(<CollectionServiceServer<CollectionApi> as tonic::server::NamedService>::NAME, status)
        .await;
    health.set_service_status(<DedupServiceServer<DedupApi> as tonic::server::NamedService>::NAME, status).await;
}

/// Loads the encoder, checks it against the collection (or creates the collection pinned to
/// it), and starts the query batcher.
fn load_model(state: &AppState, loader: ModelLoader) -> Result<(), ServeError> {
    let existing = state.collection.get().map(|c| c.config().clone());
    let encoder = loader(existing.as_ref()).map_err(ServeError::Model)?;
    let wanted = encoder.collection_config();
    match &existing {
        Some(config) => config.ensure_compatible(&wanted)?,
        None => {
            let location = state.config.location().map_err(ServeError::Store)?;
            let created = location.open_or_create(&wanted)?;
            created.cache_records()?;
            let _ = state.collection.set(Arc::new(created));
        }
    }
    let batcher = QueryBatcher::start(encoder.clone(), state.config.batching)
        .map_err(|e| ServeError::Model(format!("starting the encoder thread: {e}")))?;
    state.metrics.register_batch_sizes(&batcher.counters.batch_sizes);
    let _ = state.model.set(LoadedModel { encoder, batcher });
    Ok(())
}
