//! The arguments of `dedup`.

use clap::builder::RangedU64ValueParser;
use clap::{ArgGroup, Args};
use pixdex_core::{DEFAULT_MIN_GEOMETRY, DEFAULT_NEAR_THRESHOLD, DEFAULT_VERIFY_FROM, KeeperCriterion};
use std::path::PathBuf;

use super::{DbArgs, ServerArgs};

#[derive(Debug, Args)]
#[command(group(ArgGroup::new("report").args(["json", "csv", "html"])))]
pub struct DedupArgs {
    #[command(flatten)]
    pub db: DbArgs,
    #[command(flatten)]
    pub server: ServerArgs,
    /// Similarity (-1 to 1; the best cosine over the image, mirrored and grayscale views) at or
    /// above which two images are near duplicates without a patch check.
    #[arg(long, value_name = "T", default_value_t = DEFAULT_NEAR_THRESHOLD, value_parser = parse_threshold)]
    pub threshold: f32,
    /// Less similar neighbours, down to this cosine, are near duplicates if their patches match
    /// geometrically (see --min-geometry).
    #[arg(long, value_name = "T", default_value_t = DEFAULT_VERIFY_FROM, value_parser = parse_threshold)]
    pub verify_from: f32,
    /// Fraction of patches (0 to 1) that must reappear in the other image under one affine map.
    #[arg(long, value_name = "F", default_value_t = DEFAULT_MIN_GEOMETRY, value_parser = parse_fraction)]
    pub min_geometry: f32,
    /// No patch check: only --threshold decides.
    #[arg(long, conflicts_with = "min_geometry")]
    pub no_verify: bool,
    /// Nearest neighbours examined per image.
    #[arg(long, value_name = "N", default_value_t = 10, value_parser = RangedU64ValueParser::<usize>::new().range(1..=1000))]
    pub neighbours: usize,
    /// Which copy of a group to keep: criteria by importance, comma-separated. `pixels`: most
    /// pixels; `size`: largest file; `oldest`: modified first.
    #[arg(long, value_name = "RULE", value_delimiter = ',', default_value = "pixels,size,oldest", value_parser = parse_keeper)]
    pub keep: Vec<KeeperCriterion>,
    /// Only images whose path starts with this. An existing folder means the images inside it;
    /// anything else is matched as the start of the absolute path.
    #[arg(long, value_name = "PATH_PREFIX")]
    pub prefix: Option<String>,
    /// Print JSON: {"groups":[{"kind":"exact"|"near","keeper":…,"keeper_reason":…,"members":[{"path":…,"score":…,…}]}]}.
    #[arg(long)]
    pub json: bool,
    /// Write a CSV report (one row per member of a group; `-` for stdout).
    #[arg(long, value_name = "FILE")]
    pub csv: Option<PathBuf>,
    /// Write an HTML report with thumbnails (a single self-contained file).
    #[arg(long, value_name = "FILE")]
    pub html: Option<PathBuf>,
    /// Move every member that is not its group's keeper into DIR, keeping its absolute path
    /// below DIR. A dry run (nothing moves) unless --apply is given.
    #[arg(long, value_name = "DIR")]
    pub move_to: Option<PathBuf>,
    /// Really move (with --move-to), logging each move to DIR/pixdex-moves-<time>.jsonl.
    #[arg(long, requires = "move_to")]
    pub apply: bool,
    /// Move the files of a move log back to where they were (refusing to overwrite anything).
    #[arg(
        long,
        value_name = "LOG",
        conflicts_with_all = [
            "threshold", "verify_from", "min_geometry", "no_verify", "neighbours", "keep", "prefix", "json", "csv",
            "html", "move_to", "apply", "server"
        ]
    )]
    pub undo: Option<PathBuf>,
    /// No progress bar.
    #[arg(long, short)]
    pub quiet: bool,
}

fn parse_threshold(s: &str) -> Result<f32, String> {
    match s.parse::<f32>() {
        Ok(t) if (-1.0..=1.0).contains(&t) => Ok(t),
        Ok(t) => Err(format!("{t} is not within -1..=1")),
        Err(e) => Err(e.to_string()),
    }
}

fn parse_fraction(s: &str) -> Result<f32, String> {
    match s.parse::<f32>() {
        Ok(t) if (0.0..=1.0).contains(&t) => Ok(t),
        Ok(t) => Err(format!("{t} is not within 0..=1")),
        Err(e) => Err(e.to_string()),
    }
}

fn parse_keeper(s: &str) -> Result<KeeperCriterion, String> {
    s.trim().parse().map_err(|e: pixdex_core::Error| e.to_string())
}
