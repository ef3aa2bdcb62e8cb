//! What `serve` needs to know: where the collection is, where to listen, which folders index
//! jobs may crawl, and the limits.

use std::path::PathBuf;

use pixdex_store_postgres::CollectionLocation;

use crate::access::AccessTokens;
use std::time::Duration;

/// The server's settings (the CLI builds them from `pixdex serve` flags).
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// The collection folder (created on first start, pinned to the loaded model); with
    /// [`ServerConfig::store`], the folder of the derived indexes only.
    pub db: PathBuf,
    /// A PostgreSQL URL holding the collection instead of the folder (`--store`).
    pub store: Option<String>,
    /// Folders index jobs may crawl (a job's roots must lie inside one). Empty: no index jobs.
    pub allowed_roots: Vec<PathBuf>,
    /// Whether index jobs may follow symbolic links (which can lead outside the allowed roots).
    pub allow_follow_symlinks: bool,
    /// Largest request or response message, in bytes; larger requests get `RESOURCE_EXHAUSTED`.
    pub max_message_bytes: usize,
    /// Query embedding batching.
    pub batching: BatchingConfig,
    /// How long shutdown waits for running jobs (which store their batch in flight) and open
    /// streams before it stops anyway.
    pub shutdown_grace: Duration,
    /// Images per forward pass in index jobs.
    pub index_batch_size: usize,
    /// Client connections open at once; past it a new connection is closed at once.
    pub max_connections: usize,
    /// Concurrent calls one connection may have open (HTTP/2 streams); more wait.
    pub max_concurrent_streams: u32,
    /// The longest a call may take to answer (a client's own `grpc-timeout` may be shorter);
    /// then it gets `CANCELLED`. Streams (job watches, duplicate runs) only need their first
    /// message within it.
    pub request_timeout: Duration,
    /// How long a duplicate search waits for its client to read the next message before it
    /// gives up (a client that stops reading must not hold the one run allowed at a time).
    pub dedup_send_timeout: Duration,
    /// The tokens calls must carry ([`crate::access`]); `None` serves everyone (for loopback).
    pub access: Option<AccessTokens>,
    /// The certificate and key to serve TLS with; `None` is plaintext HTTP/2.
    pub tls: Option<TlsIdentity>,
}

/// A PEM certificate chain and its private key.
#[derive(Clone)]
pub struct TlsIdentity {
    /// The certificate chain, leaf first (PEM).
    pub cert_pem: Vec<u8>,
    /// The private key (PEM).
    pub key_pem: Vec<u8>,
}

impl std::fmt::Debug for TlsIdentity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the key.
        write!(f, "TlsIdentity {{ cert: {} bytes, key: redacted }}", self.cert_pem.len())
    }
}

/// How concurrent query embeddings share forward passes.
#[derive(Debug, Clone, Copy)]
pub struct BatchingConfig {
    /// Most images in one forward pass.
    pub max_batch: usize,
    /// How long the first request of a batch waits for others to join it.
    pub max_wait: Duration,
    /// Requests that may wait for the encoder; beyond this a query gets `UNAVAILABLE`.
    pub max_queue: usize,
}

impl Default for BatchingConfig {
    fn default() -> Self {
        Self { max_batch: 16, max_wait: Duration::from_millis(5), max_queue: 1024 }
    }
}

/// 64 MiB: a 30 MB photo plus protobuf framing fits with room to spare.
pub const DEFAULT_MAX_MESSAGE_BYTES: usize = 64 << 20;

impl ServerConfig {
    /// Where the collection lives: the folder, or the database with the folder for its indexes.
    pub fn location(&self) -> Result<CollectionLocation, String> {
        CollectionLocation::new(self.store.as_deref(), &self.db)
    }

    /// Defaults for a collection folder: no index roots, 64 MiB messages, 10 s grace, no tokens,
    /// no TLS.
    pub fn new(db: impl Into<PathBuf>) -> Self {
        Self {
            db: db.into(),
            store: None,
            allowed_roots: Vec::new(),
            allow_follow_symlinks: false,
            max_message_bytes: DEFAULT_MAX_MESSAGE_BYTES,
            batching: BatchingConfig::default(),
            shutdown_grace: Duration::from_secs(10),
            index_batch_size: 8,
            max_connections: 1024,
            max_concurrent_streams: 128,
            request_timeout: Duration::from_secs(600),
            dedup_send_timeout: Duration::from_secs(60),
            access: None,
            tls: None,
        }
    }
}
