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
}

/// Model selection shared by every command that runs the encoder.
#[derive(Debug, Args)]
pub struct ModelArgs {
    /// A Hugging Face repo id (`owner/name[@revision]`, downloaded and cached on first use;
    /// `HF_HUB_OFFLINE=1` uses the cache only) or a local model folder.
    #[arg(long, env = "PIXDEX_MODEL", default_value = pixio::DEFAULT_MODEL)]
    pub model: String,
    /// `cpu`, `cuda` or `cuda:N` (CUDA needs a build with `--features cuda`).
    #[arg(long, default_value = "cpu", value_parser = parse_device)]
    pub device: pixio::DeviceChoice,
    /// Compute dtype: f32, f16 or bf16 (default: f32 on CPU, bf16 on CUDA; use f16 on GPUs older
    /// than Ampere, which lack bf16).
    #[arg(long, value_parser = parse_dtype)]
    pub dtype: Option<pixio::DType>,
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
