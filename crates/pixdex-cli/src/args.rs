//! Command-line arguments (clap).

use clap::{Args, Parser, Subcommand};
use std::path::PathBuf;

/// Make image collections searchable by what they look like.
#[derive(Debug, Parser)]
#[command(name = "pixdex", version, about)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Print the Pixio embedding of each image.
    Embed(EmbedArgs),
    /// Index folders of images into a collection (incremental: unchanged files are skipped).
    Index(IndexArgs),
    /// Find the images most similar to an image.
    Search(SearchArgs),
    /// Counts, model and disk use of a collection.
    Stats(StatsArgs),
}

/// Model selection shared by every command that runs the encoder.
#[derive(Debug, Args)]
pub struct ModelArgs {
    /// A Hugging Face repo id (`owner/name[@revision]`, downloaded and cached on first use;
    /// `HF_HUB_OFFLINE=1` uses the cache only) or a local model folder.
    /// [default: facebook/pixio-vith16; for `search`, the collection's model]
    #[arg(long, env = "PIXDEX_MODEL")]
    pub model: Option<String>,
    /// `cpu`, `cuda` or `cuda:N` (CUDA needs a build with `--features cuda`).
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
}

fn parse_device(s: &str) -> Result<pixio::DeviceChoice, String> {
    s.parse().map_err(|e: pixio::Error| e.to_string())
}

fn parse_dtype(s: &str) -> Result<pixio::DType, String> {
    pixio::parse_dtype(s).map_err(|e| e.to_string())
}

#[derive(Debug, Args)]
pub struct EmbedArgs {
    /// Image files (JPEG, PNG, WebP, GIF, BMP, TIFF); EXIF orientation is applied.
    #[arg(required = true)]
    pub images: Vec<PathBuf>,
    #[command(flatten)]
    pub model: ModelArgs,
    /// Print JSON: {"embeddings":[{"path":…,"global":[…]}]}.
    #[arg(long)]
    pub json: bool,
    /// Also print the patch grid (shape [gh, gw, H] and the values, row-major).
    #[arg(long)]
    pub patches: bool,
    /// Images per forward pass.
    #[arg(long, default_value_t = 8, value_parser = clap::value_parser!(u16).range(1..=1024))]
    pub batch_size: u16,
}

/// The collection folder.
#[derive(Debug, Args)]
pub struct DbArgs {
    /// Collection folder (default: the per-user data folder, e.g. ~/.local/share/pixdex/default).
    #[arg(long, env = "PIXDEX_DB")]
    pub db: Option<PathBuf>,
}

impl DbArgs {
    pub fn dir(&self) -> anyhow::Result<PathBuf> {
        match &self.db {
            Some(d) => Ok(d.clone()),
            None => Ok(dirs::data_dir()
                .ok_or_else(|| anyhow::anyhow!("no per-user data folder on this system: pass --db DIR"))?
                .join("pixdex")
                .join("default")),
        }
    }
}

#[derive(Debug, Args)]
pub struct IndexArgs {
    /// Folders to index (several allowed).
    #[arg(required = true)]
    pub roots: Vec<PathBuf>,
    #[command(flatten)]
    pub db: DbArgs,
    #[command(flatten)]
    pub model: ModelArgs,
    /// Images per forward pass (and per write).
    #[arg(long, default_value_t = 8, value_parser = clap::value_parser!(u16).range(1..=1024))]
    pub batch_size: u16,
    /// Remove records of missing files even if a root is missing or suddenly empty.
    #[arg(long)]
    pub prune: bool,
    /// Also index hidden files and folders.
    #[arg(long)]
    pub hidden: bool,
    /// Follow symbolic links.
    #[arg(long)]
    pub follow_links: bool,
    /// Only paths matching this glob (repeatable).
    #[arg(long)]
    pub include: Vec<String>,
    /// Skip paths matching this glob (repeatable).
    #[arg(long)]
    pub exclude: Vec<String>,
    /// No progress bar.
    #[arg(long, short)]
    pub quiet: bool,
}

#[derive(Debug, Args)]
pub struct SearchArgs {
    /// The query image.
    pub image: PathBuf,
    #[command(flatten)]
    pub db: DbArgs,
    #[command(flatten)]
    pub model: ModelArgs,
    /// Number of results.
    #[arg(short, default_value_t = 10)]
    pub k: usize,
    /// Print JSON: {"results":[{"id":…,"path":…,"score":…}]}.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct StatsArgs {
    #[command(flatten)]
    pub db: DbArgs,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}
