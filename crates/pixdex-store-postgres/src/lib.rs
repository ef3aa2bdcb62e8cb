//! A pixdex collection on PostgreSQL + pgvector: [`PostgresStore`] implements
//! [`pixdex_core::Store`], so that search, region search, dedup, uploads and index jobs run
//! unchanged on a database that several processes and machines share. The schema and its
//! migrations are in [`schema`]; [`CollectionLocation`] is where a collection lives as the CLI
//! and the server are told (a folder, or a database URL); [`testing`] starts a real server for
//! tests.
//!
//! The store's methods are synchronous like the core's: each runs its queries on the store's
//! own small tokio runtime (which also drives the connections) and waits for the answer, so a
//! caller on any thread — a plain one, a blocking task, or a runtime's worker — can use it.
//! Similarity queries are answered by pgvector's HNSW index, one `ORDER BY embedding <#> $1
//! LIMIT k` per query vector: the shape a Citus coordinator pushes to every shard.

mod location;
mod queue;
pub mod schema;
mod store;
pub mod testing;
mod tls;
mod transactions;

use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod};
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::AtomicUsize;
use std::time::Duration;

pub use location::CollectionLocation;
use pixdex_core::{Error, Result};

/// Connections the store opens at most (each query holds one while it runs).
const POOL_SIZE: usize = 16;

/// The collection's truth in a PostgreSQL database with pgvector.
pub struct PostgresStore {
    inner: Arc<Inner>,
    /// Runs the queries and drives the connections; shut down without blocking on drop (the
    /// store may be dropped on an async thread).
    runtime: Option<tokio::runtime::Runtime>,
}

pub(crate) struct Inner {
    pool: Pool,
    location: String,
    /// The global vectors' dimension once pinned (0 until then).
    dim: AtomicUsize,
}

/// Whether `url` names a PostgreSQL database (`postgres://…` or `postgresql://…`) rather than
/// a collection folder.
pub fn is_postgres_url(url: &str) -> bool {
    url.starts_with("postgres://") || url.starts_with("postgresql://")
}

/// `url` without its password, for messages and logs.
pub fn redact(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else { return url.to_string() };
    match rest.split_once('@') {
        Some((user_info, host)) if user_info.contains(':') => {
            let user = user_info.split(':').next().unwrap_or_default();
            format!("{scheme}://{user}:***@{host}")
        }
        _ => url.to_string(),
    }
}

pub(crate) fn backend(location: &str, what: &str, e: impl std::fmt::Display) -> Error {
    Error::Backend { location: location.to_string(), reason: format!("{what}: {e}") }
}

/// A database error with its SQLSTATE and server message where there is one.
pub(crate) fn pg_error(location: &str, what: &str, e: tokio_postgres::Error) -> Error {
    match e.as_db_error() {
        Some(db) => backend(location, what, format!("{} ({})", db.message(), db.code().code())),
        None => match std::error::Error::source(&e) {
            Some(cause) => backend(location, what, format!("{e}: {cause}")),
            None => backend(location, what, e),
        },
    }
}

impl PostgresStore {
    /// Connects to the database at `url` (any libpq URL), creating or migrating pixdex's tables
    /// there. Fails clearly if the server is unreachable, lacks pgvector, or holds a newer
    /// schema than this build reads.
    pub fn connect(url: &str) -> Result<Self> {
        let location = redact(url);
        let (url, root_cert) = tls::take_root_cert(url);
        let mut config: tokio_postgres::Config =
            url.parse().map_err(|e| backend(&location, "not a PostgreSQL URL", e))?;
        // `sslmode` decides whether TLS is used (prefer, the default: if the server offers it);
        // the certificate is always verified, against the system's roots or `sslrootcert`.
        let tls = tls::connector(root_cert.as_deref()).map_err(|e| backend(&location, "TLS", e))?;
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(Duration::from_secs(10));
        }
        if config.get_application_name().is_none() {
            config.application_name("pixdex");
        }
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("pixdex-postgres")
            .enable_all()
            .build()
            .map_err(|e| backend(&location, "starting the database runtime", e))?;
        let manager = Manager::from_config(config, tls, ManagerConfig { recycling_method: RecyclingMethod::Fast });
        let pool = Pool::builder(manager)
            .max_size(POOL_SIZE)
            .runtime(deadpool_postgres::Runtime::Tokio1)
            .wait_timeout(Some(Duration::from_secs(60)))
            .create_timeout(Some(Duration::from_secs(15)))
            .build()
            .map_err(|e| backend(&location, "creating the connection pool", e))?;
        let inner = Arc::new(Inner { pool, location, dim: AtomicUsize::new(0) });
        let store = Self { inner, runtime: Some(runtime) };
        store.run(|inner| async move { inner.migrate().await })?;
        Ok(store)
    }

    /// Whether this store's connections to the server are encrypted (TLS).
    pub fn connection_encrypted(&self) -> Result<bool> {
        self.run(|inner| async move {
            let client = inner.client().await?;
            let row = client
                .query_one("SELECT coalesce((SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()), false)", &[])
                .await
                .map_err(inner.err("reading the connection's state"))?;
            Ok(row.get(0))
        })
    }

    /// Runs `f` on the store's runtime and waits for its result (from any thread).
    pub(crate) fn run<T, F, Fut>(&self, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(Arc<Inner>) -> Fut,
        Fut: Future<Output = Result<T>> + Send + 'static,
    {
        let (tx, rx) = std::sync::mpsc::sync_channel(1);
        let fut = f(self.inner.clone());
        self.runtime.as_ref().expect("the runtime lives until drop").spawn(async move {
            let _ = tx.send(fut.await);
        });
        rx.recv().map_err(|_| backend(&self.inner.location, "query", "the database task stopped"))?
    }
}

impl Drop for PostgresStore {
    fn drop(&mut self) {
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

impl Inner {
    /// A pooled connection.
    pub(crate) async fn client(&self) -> Result<deadpool_postgres::Object> {
        self.pool.get().await.map_err(|e| backend(&self.location, "connecting", e))
    }

    pub(crate) fn err(&self, what: &'static str) -> impl Fn(tokio_postgres::Error) -> Error + '_ {
        move |e| pg_error(&self.location, what, e)
    }

    /// Applies the migrations this database lacks, under an advisory lock.
    async fn migrate(&self) -> Result<()> {
        let mut client = self.client().await?;
        let err = self.err("migrating the schema");
        let standby: bool = client.query_one("SELECT pg_is_in_recovery()", &[]).await.map_err(&err)?.get(0);
        if standby {
            // A read replica: its schema is the primary's; it only has to be one this build reads.
            let current: i32 = client
                .query_one("SELECT coalesce(max(version), 0) FROM pixdex_migrations", &[])
                .await
                .map_err(&err)?
                .get(0);
            return self.check_version(current, true);
        }
        let tx = client.transaction().await.map_err(&err)?;
        // One migrator at a time: workers starting together wait here, then find nothing to do.
        tx.execute("SELECT pg_advisory_xact_lock(7101386642)", &[]).await.map_err(&err)?;
        tx.batch_execute(
            "CREATE TABLE IF NOT EXISTS pixdex_migrations (version integer PRIMARY KEY, \
             applied_at timestamptz NOT NULL DEFAULT now())",
        )
        .await
        .map_err(&err)?;
        let current: i32 =
            tx.query_one("SELECT coalesce(max(version), 0) FROM pixdex_migrations", &[]).await.map_err(&err)?.get(0);
        self.check_version(current, false)?;
        for (version, sql) in schema::MIGRATIONS.iter().filter(|(v, _)| *v > current) {
            tx.batch_execute(sql).await.map_err(&err)?;
            tx.execute("INSERT INTO pixdex_migrations (version) VALUES ($1)", &[version]).await.map_err(&err)?;
            tracing::info!(version, location = %self.location, "applied a schema migration");
        }
        tx.commit().await.map_err(&err)
    }

    /// Refuses a schema newer than this build's (and, on a replica, one not yet created).
    fn check_version(&self, current: i32, standby: bool) -> Result<()> {
        if current > schema::SCHEMA_VERSION {
            return Err(backend(
                &self.location,
                "opening",
                format!(
                    "the database holds pixdex schema version {current}, this build reads up to {}: upgrade pixdex",
                    schema::SCHEMA_VERSION
                ),
            ));
        }
        if standby && current < schema::SCHEMA_VERSION {
            return Err(backend(
                &self.location,
                "opening",
                format!(
                    "this read replica holds pixdex schema version {current}, not {}: open the primary once first",
                    schema::SCHEMA_VERSION
                ),
            ));
        }
        Ok(())
    }
}
