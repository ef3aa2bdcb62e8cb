//! The options several commands share: where the collection is (`--db`, or `--server`), and the
//! model that embeds queries (`--model`, `--device`, `--dtype`).

use clap::Args;
use pixdex_store_postgres::CollectionLocation;
use std::path::PathBuf;

/// Model selection shared by every command that runs the encoder.
#[derive(Debug, Args)]
pub struct ModelArgs {
    /// A Hugging Face repo id (`owner/name[@revision]`, downloaded and cached on first use;
    /// `HF_HUB_OFFLINE=1` uses the cache only) or a local model folder.
    /// [default: facebook/pixio-vith16; for `search` and `serve`, the collection's model]
    ///
    /// On a CPU, pick by size: indexing with every feature costs per photo, on 2 cores
    /// (f32, measured by `benches/model_sizes`), facebook/pixio-vitb16 1.1 s (10k photos: 3 h),
    /// pixio-vitl16 3.9 s (11 h), pixio-vith16 7.5 s (21 h); more cores scale it down. The
    /// default pixio-vith16 is meant for a GPU.
    #[arg(long, env = "PIXDEX_MODEL")]
    pub model: Option<String>,
    /// `cpu`, `cuda` or `cuda:N` (CUDA needs a CUDA build: deploy/build-cuda.sh).
    #[arg(long, default_value = "cpu", value_parser = parse_device)]
    pub device: pixio::DeviceChoice,
    /// Compute dtype: f32, f16 or bf16 (default: f32 on CPU, bf16 on CUDA; use f16 on GPUs older
    /// than Ampere, which lack bf16).
    #[arg(long, value_parser = parse_dtype)]
    pub dtype: Option<pixio::DType>,
}

impl ModelArgs {
    /// The model to load: `--model`, else `fallback`.
    pub fn source(&self, fallback: &str) -> anyhow::Result<pixio::WeightSource> {
        Ok(pixio::WeightSource::parse(self.model.as_deref().unwrap_or(fallback))?)
    }

    /// Opens the device and picks the dtype.
    pub fn device(&self) -> anyhow::Result<(pixio::Device, pixio::DType)> {
        let device = self.device.open()?;
        let dtype = self.dtype.unwrap_or_else(|| pixio::default_dtype(&device));
        Ok((device, dtype))
    }

    /// Loads the encoder `--model` names, else `fallback`. The device opens first: a typo or a
    /// missing GPU fails before a multi-GB download.
    pub fn load_encoder(&self, fallback: &str) -> anyhow::Result<pixdex_indexer::encoder::PixioEncoder> {
        use anyhow::Context;
        let (device, dtype) = self.device()?;
        let source = self.source(fallback)?;
        pixdex_indexer::encoder::PixioEncoder::load(&source, &device, dtype)
            .with_context(|| format!("loading model {source}"))
    }
}

fn parse_device(s: &str) -> Result<pixio::DeviceChoice, String> {
    s.parse().map_err(|e: pixio::Error| e.to_string())
}

fn parse_dtype(s: &str) -> Result<pixio::DType, String> {
    pixio::parse_dtype(s).map_err(|e| e.to_string())
}

/// Where the collection is: a folder, or a PostgreSQL database.
#[derive(Debug, Args)]
pub struct DbArgs {
    /// Collection folder (default: the per-user data folder, e.g. ~/.local/share/pixdex/default).
    /// With --store, this machine's folder for the indexes derived from the database.
    #[arg(long, env = "PIXDEX_DB")]
    pub db: Option<PathBuf>,
    /// Keep the collection in PostgreSQL + pgvector instead of a folder:
    /// `postgres://user@host:port/db` (any libpq URL; several processes and machines may share
    /// it). The indexes derived from it stay on this machine, in --db (default: the per-user data
    /// folder's pixdex/postgres-HASH).
    #[arg(long, env = "PIXDEX_STORE", value_name = "URL", hide_env_values = true)]
    pub store: Option<String>,
}

impl DbArgs {
    /// Where the collection lives.
    pub fn location(&self) -> anyhow::Result<CollectionLocation> {
        let dir = match (&self.store, &self.db) {
            (Some(url), None) => {
                // One folder per database, named without the password.
                let hash = blake3::hash(pixdex_store_postgres::redact(url).as_bytes()).to_hex();
                data_dir()?.join(format!("postgres-{}", &hash[..16]))
            }
            _ => self.dir()?,
        };
        CollectionLocation::new(self.store.as_deref(), &dir).map_err(anyhow::Error::msg)
    }

    pub fn dir(&self) -> anyhow::Result<PathBuf> {
        match &self.db {
            Some(d) => Ok(d.clone()),
            None => Ok(data_dir()?.join("default")),
        }
    }
}

/// The per-user data folder's `pixdex`.
fn data_dir() -> anyhow::Result<PathBuf> {
    Ok(dirs::data_dir()
        .ok_or_else(|| anyhow::anyhow!("no per-user data folder on this system: pass --db DIR"))?
        .join("pixdex"))
}

/// Going through a running `pixdex serve` instead of opening the collection.
#[derive(Debug, Args)]
pub struct ServerArgs {
    /// Go through the `pixdex serve` at this URL (e.g. `http://127.0.0.1:50051`) instead of opening
    /// the collection: the way to use a collection that a server holds. Index roots are then
    /// folders on the server's machine (inside its `--allow-root` folders).
    #[arg(long, env = "PIXDEX_SERVER", value_name = "URL")]
    pub server: Option<String>,
    /// The token for a server started with `--token-file` (sent as `authorization: Bearer`).
    /// Prefer the environment variable: a command line is visible to other users.
    #[arg(long, env = "PIXDEX_TOKEN", hide_env_values = true, value_name = "TOKEN")]
    pub token: Option<String>,
    /// For an `https://` server whose certificate a private CA signed (or a self-signed one):
    /// trust only this CA certificate (PEM) instead of the system's roots.
    #[arg(long, env = "PIXDEX_CA", value_name = "PEM")]
    pub ca: Option<PathBuf>,
}

impl ServerArgs {
    /// The server to go through and how to reach it, if `--server` is given.
    pub fn remote(&self) -> anyhow::Result<Option<crate::remote::Remote>> {
        use anyhow::Context;
        let Some(url) = self.url() else { return Ok(None) };
        let ca_pem = match &self.ca {
            Some(path) => Some(std::fs::read(path).with_context(|| format!("reading --ca {}", path.display()))?),
            None => None,
        };
        let options = pixdex_server::ClientOptions { token: self.token.clone(), ca_pem };
        Ok(Some(crate::remote::Remote { url, options }))
    }

    /// The server URL, with `http://` added when no scheme is given.
    pub fn url(&self) -> Option<String> {
        self.server.as_deref().map(|s| if s.contains("://") { s.to_string() } else { format!("http://{s}") })
    }
}

/// Where a query or index command works: a collection it opens itself (`--db`, with the model of
/// `--model`), or the one a running server holds (`--server`).
#[derive(Debug, Args)]
pub struct CollectionArgs {
    #[command(flatten)]
    pub db: DbArgs,
    #[command(flatten)]
    pub model: ModelArgs,
    #[command(flatten)]
    pub server: ServerArgs,
}
