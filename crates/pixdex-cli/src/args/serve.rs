//! The arguments of `serve`, and the server config they make.

use anyhow::Context;
use clap::Args;
use clap::builder::RangedU64ValueParser;
use pixdex_server::{AccessTokens, BatchingConfig, ServerConfig, TlsIdentity};
use std::path::PathBuf;
use std::time::Duration;

use super::{DbArgs, ModelArgs};

/// The server defaults, shown by `pixdex serve --help`.
pub(super) fn server_defaults() -> ServerConfig {
    ServerConfig::new(PathBuf::new())
}

#[derive(Debug, Args)]
pub struct ServeArgs {
    #[command(flatten)]
    pub db: DbArgs,
    #[command(flatten)]
    pub model: ModelArgs,
    /// Address to listen on; `127.0.0.1:0` picks a free port (the address is printed once bound).
    /// An address other clients can reach needs `--token-file`.
    #[arg(long, default_value = "127.0.0.1:50051", value_name = "ADDR")]
    pub listen: String,
    /// Require a token on every call but health checks: a file of `read TOKEN` and
    /// `write TOKEN` lines (`#` starts a comment; write also allows reading; make a token with
    /// `openssl rand -hex 24`). Clients pass it with `--token` or `PIXDEX_TOKEN`.
    #[arg(long, value_name = "FILE")]
    pub token_file: Option<PathBuf>,
    /// Listen on a non-loopback address without `--token-file`: anyone who can connect may then
    /// search, upload, delete and run index jobs.
    #[arg(long)]
    pub insecure_no_auth: bool,
    /// Serve TLS with this certificate chain (PEM, leaf first); clients then use `https://`.
    #[arg(long, value_name = "PEM", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// The private key of `--tls-cert` (PEM).
    #[arg(long, value_name = "PEM", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// Also serve Prometheus metrics at `http://ADDR/metrics` (requests by method and status,
    /// latencies, query-encoder batches, index jobs, collection size); off by default. Port 0
    /// picks a free port (the address is printed once bound).
    #[arg(long, value_name = "ADDR")]
    pub metrics_listen: Option<String>,
    /// A folder that index jobs may crawl (repeatable). Without one, the server runs no index jobs.
    #[arg(long = "allow-root", value_name = "DIR")]
    pub allow_roots: Vec<PathBuf>,
    /// Let index jobs follow symbolic links (which can lead outside the allowed folders).
    #[arg(long)]
    pub allow_follow_symlinks: bool,
    /// Largest request or response message, in MiB.
    #[arg(
        long,
        value_name = "N",
        default_value_t = server_defaults().max_message_bytes >> 20,
        value_parser = RangedU64ValueParser::<usize>::new().range(1..=2047)
    )]
    pub max_message_mb: usize,
    /// Client connections open at once; past it a new connection is closed at once.
    #[arg(
        long,
        value_name = "N",
        default_value_t = server_defaults().max_connections,
        value_parser = RangedU64ValueParser::<usize>::new().range(1..=1_000_000)
    )]
    pub max_connections: usize,
    /// Most query images per forward pass (concurrent queries share passes).
    #[arg(
        long,
        value_name = "N",
        default_value_t = server_defaults().batching.max_batch,
        value_parser = RangedU64ValueParser::<usize>::new().range(1..=1024)
    )]
    pub batch_max: usize,
    /// How long a query waits for others to share its forward pass, in milliseconds.
    #[arg(
        long,
        value_name = "N",
        default_value_t = server_defaults().batching.max_wait.as_millis() as u64,
        value_parser = clap::value_parser!(u64).range(0..=10_000)
    )]
    pub batch_wait_ms: u64,
    /// Images per forward pass in index jobs.
    #[arg(
        long,
        value_name = "N",
        default_value_t = server_defaults().index_batch_size,
        value_parser = RangedU64ValueParser::<usize>::new().range(1..=1024)
    )]
    pub index_batch_size: usize,
    /// How long shutdown waits for running index jobs (which store their batch in flight) and open
    /// streams, in seconds.
    #[arg(
        long,
        value_name = "N",
        default_value_t = server_defaults().shutdown_grace.as_secs(),
        value_parser = clap::value_parser!(u64).range(0..=3600)
    )]
    pub shutdown_grace_s: u64,
}

impl ServeArgs {
    /// The `--…` flags as the server's config (validated by clap's ranges). Refuses to serve a
    /// non-loopback address without tokens unless `--insecure-no-auth` says so.
    pub fn config(&self) -> anyhow::Result<ServerConfig> {
        let location = self.db.location()?;
        let mut config = ServerConfig::new(location.index_dir());
        config.store = self.db.store.clone();
        if let Some(path) = &self.token_file {
            warn_if_others_can_read(path);
            config.access = Some(AccessTokens::load(path)?);
        }
        if let (Some(cert), Some(key)) = (&self.tls_cert, &self.tls_key) {
            let read = |path: &PathBuf, flag: &str| {
                std::fs::read(path).with_context(|| format!("reading {flag} {}", path.display()))
            };
            config.tls = Some(TlsIdentity { cert_pem: read(cert, "--tls-cert")?, key_pem: read(key, "--tls-key")? });
        }
        let exposed = !listens_on_loopback_only(&self.listen)?;
        if exposed && config.access.is_none() {
            anyhow::ensure!(
                self.insecure_no_auth,
                "refusing to listen on {} without --token-file: anyone who could connect could search, upload, \
                 delete and index. Give a token file (lines `read TOKEN` / `write TOKEN`), listen on 127.0.0.1, \
                 or pass --insecure-no-auth to serve without tokens anyway",
                self.listen
            );
            tracing::warn!(listen = %self.listen, "--insecure-no-auth: serving a non-loopback address without tokens");
        }
        if exposed && config.access.is_some() && config.tls.is_none() {
            tracing::warn!(
                listen = %self.listen,
                "tokens and photos travel in clear text on a non-loopback address without --tls-cert/--tls-key"
            );
        }
        config.allowed_roots = self.allow_roots.clone();
        config.allow_follow_symlinks = self.allow_follow_symlinks;
        config.max_message_bytes = self.max_message_mb << 20;
        config.max_connections = self.max_connections;
        config.batching = BatchingConfig {
            max_batch: self.batch_max,
            max_wait: Duration::from_millis(self.batch_wait_ms),
            ..config.batching
        };
        config.index_batch_size = self.index_batch_size;
        config.shutdown_grace = Duration::from_secs(self.shutdown_grace_s);
        Ok(config)
    }
}

/// Whether every address `listen` resolves to is a loopback address (only this machine can
/// connect).
pub(super) fn listens_on_loopback_only(listen: &str) -> anyhow::Result<bool> {
    use std::net::ToSocketAddrs;
    let addrs: Vec<_> = listen.to_socket_addrs().with_context(|| format!("--listen {listen}"))?.collect();
    Ok(!addrs.is_empty() && addrs.iter().all(|a| a.ip().is_loopback()))
}

/// A token file others can read gives their tokens away.
fn warn_if_others_can_read(path: &std::path::Path) {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        if let Ok(meta) = std::fs::metadata(path)
            && meta.permissions().mode() & 0o077 != 0
        {
            tracing::warn!(
                path = %path.display(),
                "the token file can be read by other users (chmod 600 it)"
            );
        }
    }
    #[cfg(not(unix))]
    let _ = path;
}
