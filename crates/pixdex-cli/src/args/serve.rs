//! The arguments of `serve`, and the server config they make.

use clap::Args;
use clap::builder::RangedU64ValueParser;
use pixdex_server::{BatchingConfig, ServerConfig};
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
    #[arg(long, default_value = "127.0.0.1:50051", value_name = "ADDR")]
    pub listen: String,
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
    /// The `--…` flags as the server's config (validated by clap's ranges).
    pub fn config(&self) -> anyhow::Result<ServerConfig> {
        let mut config = ServerConfig::new(self.db.dir()?);
        config.allowed_roots = self.allow_roots.clone();
        config.allow_follow_symlinks = self.allow_follow_symlinks;
        config.max_message_bytes = self.max_message_mb << 20;
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
