//! Command-line arguments (clap).

use clap::builder::RangedU64ValueParser;
use clap::error::ErrorKind;
use clap::parser::ValueSource;
use clap::{ArgGroup, Args, CommandFactory, FromArgMatches, Parser, Subcommand};
use pixdex_core::{
    DEFAULT_MIN_GEOMETRY, DEFAULT_NEAR_THRESHOLD, DEFAULT_REGION_CANDIDATES, DEFAULT_VERIFY_FROM, KeeperCriterion,
    MAX_K, MAX_REGION_CANDIDATES, PixelBox,
};
use pixdex_server::ServerConfig;
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
    /// Find the images that contain a region of an image (an object, a detail), and where.
    Region(RegionArgs),
    /// Counts, model and disk use of a collection.
    Stats(StatsArgs),
    /// Serve a collection over gRPC (search, index jobs, stats) until Ctrl-C or SIGTERM.
    Serve(ServeArgs),
    /// Find exact and near-duplicate images, report them (text, JSON, CSV, HTML) and optionally
    /// move the copies that are not keepers aside (never deleting; undoable).
    Dedup(DedupArgs),
}

/// Options that only make sense when a command opens the collection itself (arg ids).
const OFFLINE_ONLY: [&str; 5] = ["db", "model", "device", "dtype", "batch_size"];

impl Cli {
    /// Parses the command line (exiting with usage on error). With `--server` (or
    /// `PIXDEX_SERVER`), an offline-only option given on the command line is a usage error rather
    /// than silently ignored; one that comes from the environment (`PIXDEX_DB`, `PIXDEX_MODEL`) is
    /// ignored.
    pub fn parse_checked() -> Self {
        Self::try_parse_checked_from(std::env::args_os()).unwrap_or_else(|e| e.exit())
    }

    fn try_parse_checked_from<I, T>(args: I) -> Result<Self, clap::Error>
    where
        I: IntoIterator<Item = T>,
        T: Into<std::ffi::OsString> + Clone,
    {
        let mut command = Self::command();
        let matches = command.try_get_matches_from_mut(args)?;
        let cli = Self::from_arg_matches(&matches).map_err(|e| e.format(&mut command))?;
        let Some((name, sub)) = matches.subcommand() else { return Ok(cli) };
        let Ok(Some(_)) = sub.try_get_one::<String>("server") else { return Ok(cli) };
        let given = sub
            .ids()
            .map(|id| id.as_str())
            .find(|id| OFFLINE_ONLY.contains(id) && sub.value_source(id) == Some(ValueSource::CommandLine));
        let Some(id) = given else { return Ok(cli) };
        let from_env = sub.value_source("server") == Some(ValueSource::EnvVariable);
        let message = format!(
            "--{} only applies when pixdex opens the collection itself; with --server{} the server's collection \
             and model are used{}",
            id.replace('_', "-"),
            if from_env { " (set by PIXDEX_SERVER)" } else { "" },
            if from_env { ": unset PIXDEX_SERVER to work offline" } else { "" },
        );
        let sub_command = command.find_subcommand_mut(name).expect("the parsed subcommand exists");
        Err(sub_command.error(ErrorKind::ArgumentConflict, message))
    }
}

/// Model selection shared by every command that runs the encoder.
#[derive(Debug, Args)]
pub struct ModelArgs {
    /// A Hugging Face repo id (`owner/name[@revision]`, downloaded and cached on first use;
    /// `HF_HUB_OFFLINE=1` uses the cache only) or a local model folder.
    /// [default: facebook/pixio-vith16; for `search` and `serve`, the collection's model]
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

/// Going through a running `pixdex serve` instead of opening the collection.
#[derive(Debug, Args)]
pub struct ServerArgs {
    /// Go through the `pixdex serve` at this URL (e.g. `http://127.0.0.1:50051`) instead of opening
    /// the collection: the way to use a collection that a server holds. Index roots are then
    /// folders on the server's machine (inside its `--allow-root` folders).
    #[arg(long, env = "PIXDEX_SERVER", value_name = "URL")]
    pub server: Option<String>,
}

impl ServerArgs {
    /// The server URL, with `http://` added when no scheme is given.
    pub fn url(&self) -> Option<String> {
        self.server.as_deref().map(|s| if s.contains("://") { s.to_string() } else { format!("http://{s}") })
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
    #[command(flatten)]
    pub server: ServerArgs,
    /// Images per forward pass (and per write).
    #[arg(long, default_value_t = 8, value_parser = clap::value_parser!(u16).range(1..=1024))]
    pub batch_size: u16,
    /// Remove records of missing files even if a root is missing or suddenly empty.
    #[arg(long)]
    pub prune: bool,
    /// Skip the mirrored and grayscale views (3× fewer forward passes); `pixdex dedup` then
    /// misses more mirrored, desaturated and heavily edited copies.
    #[arg(long)]
    pub no_dedup_views: bool,
    /// Skip the region grids (one larger forward pass per image); `pixdex region` then cannot
    /// find the images this run embeds.
    #[arg(long)]
    pub no_region_grids: bool,
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
    #[command(flatten)]
    pub server: ServerArgs,
    /// Number of results.
    #[arg(short, default_value_t = 10)]
    pub k: usize,
    /// Print JSON: {"results":[{"id":…,"path":…,"score":…}]}.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct RegionArgs {
    /// The image the query region is cut from.
    pub image: PathBuf,
    /// The query region `x,y,w,h` in the image file's pixels as stored (before EXIF orientation),
    /// as the results report boxes. Default: the whole image.
    // Hyphen values allowed so that a negative X gets the box's own message, not "unknown flag".
    #[arg(long = "box", value_name = "X,Y,W,H", allow_hyphen_values = true, value_parser = parse_box)]
    pub region: Option<PixelBox>,
    #[command(flatten)]
    pub db: DbArgs,
    #[command(flatten)]
    pub model: ModelArgs,
    #[command(flatten)]
    pub server: ServerArgs,
    /// Number of results.
    #[arg(short, default_value_t = 10, value_parser = RangedU64ValueParser::<usize>::new().range(1..=MAX_K as u64))]
    pub k: usize,
    /// Candidate images (from a vote of the region's patches) compared in detail; more finds
    /// more, slower.
    #[arg(
        long,
        value_name = "N",
        default_value_t = DEFAULT_REGION_CANDIDATES,
        value_parser = RangedU64ValueParser::<usize>::new().range(1..=MAX_REGION_CANDIDATES as u64)
    )]
    pub candidates: usize,
    /// Print JSON: {"results":[{"id":…,"path":…,"score":…,"box":{"x":…,"y":…,"w":…,"h":…}}]}.
    #[arg(long)]
    pub json: bool,
}

/// `x,y,w,h`: four finite numbers, a positive width and height. Whether the box lies inside the
/// image is checked once the image is decoded.
fn parse_box(s: &str) -> Result<PixelBox, String> {
    let usage = "expected X,Y,W,H: left, top, width and height in pixels, e.g. 120,80,200,150";
    let parts: Vec<&str> = s.split(',').map(str::trim).collect();
    let [x, y, w, h] = parts[..] else {
        return Err(format!("{} numbers; {usage}", parts.len()));
    };
    let mut v = [0f32; 4];
    for (slot, part) in v.iter_mut().zip([x, y, w, h]) {
        *slot = part
            .parse::<f32>()
            .ok()
            .filter(|n| n.is_finite())
            .ok_or_else(|| format!("`{part}` is not a number; {usage}"))?;
    }
    let [x, y, w, h] = v;
    if w <= 0.0 || h <= 0.0 {
        return Err(format!("the box has no area ({w}×{h}); {usage}"));
    }
    if x < 0.0 || y < 0.0 {
        return Err(format!("the box starts outside the image ({x},{y}); {usage}"));
    }
    Ok(PixelBox { x, y, w, h })
}

#[derive(Debug, Args)]
pub struct StatsArgs {
    #[command(flatten)]
    pub db: DbArgs,
    #[command(flatten)]
    pub server: ServerArgs,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

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

/// The server defaults, shown by `pixdex serve --help`.
fn server_defaults() -> ServerConfig {
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

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<Cli, clap::Error> {
        Cli::try_parse_checked_from(std::iter::once("pixdex").chain(args.iter().copied()))
    }

    #[test]
    fn offline_only_options_conflict_with_server() {
        for (command, option) in [
            (&["search", "x.png"][..], &["--db", "d"][..]),
            (&["search", "x.png"], &["--model", "m"]),
            (&["search", "x.png"], &["--device", "cpu"]),
            (&["index", "lib"], &["--batch-size", "4"]),
            (&["index", "lib"], &["--dtype", "f16"]),
            (&["stats"], &["--db", "d"]),
        ] {
            let args: Vec<&str> = command.iter().chain(option).copied().collect();
            if std::env::var_os("PIXDEX_SERVER").is_none() {
                assert!(parse(&args).is_ok(), "{args:?} alone");
            }
            let with_server: Vec<&str> = args.iter().copied().chain(["--server", "http://h:1"]).collect();
            let err = parse(&with_server).expect_err("conflict");
            assert_eq!(err.kind(), ErrorKind::ArgumentConflict);
            assert!(err.to_string().contains(option[0]), "{err}");
        }
        // What a server does take.
        assert!(parse(&["index", "lib", "--server", "h:1", "--prune", "--include", "*.jpg", "-q"]).is_ok());
        assert!(parse(&["search", "x.png", "--server", "h:1", "-k", "3", "--json"]).is_ok());
    }

    #[test]
    fn region_box_parses_or_says_what_it_wants() {
        let Command::Region(args) = parse(&["region", "x.png", "--box", "10,20.5, 30,40"]).unwrap().command else {
            panic!("region")
        };
        assert_eq!(args.region, Some(PixelBox { x: 10.0, y: 20.5, w: 30.0, h: 40.0 }));
        assert_eq!((args.k, args.candidates), (10, DEFAULT_REGION_CANDIDATES));
        let Command::Region(args) = parse(&["region", "x.png"]).unwrap().command else { panic!("region") };
        assert_eq!(args.region, None);
        for (bad, says) in [
            ("10,20,30", "3 numbers"),
            ("10,20,30,40,50", "5 numbers"),
            ("a,20,30,40", "`a` is not a number"),
            ("10,20,NaN,40", "`NaN` is not a number"),
            ("10,20,0,40", "no area"),
            ("10,20,30,-4", "no area"),
            ("-1,20,30,40", "outside"),
        ] {
            let err = parse(&["region", "x.png", "--box", bad]).expect_err(bad);
            assert_eq!(err.kind(), ErrorKind::ValueValidation, "{bad}");
            let text = err.to_string();
            assert!(text.contains(says) && text.contains("X,Y,W,H"), "{bad}: {text}");
        }
        for bad in [&["region", "x.png", "-k", "0"][..], &["region", "x.png", "--candidates", "2001"]] {
            assert!(parse(bad).is_err(), "{bad:?}");
        }
        assert!(parse(&["region", "x.png", "--server", "h:1", "--box", "1,2,3,4", "-k", "3", "--json"]).is_ok());
        assert!(parse(&["region", "x.png", "--server", "h:1", "--db", "d"]).is_err());
    }

    #[test]
    fn dedup_options_parse_and_conflict() {
        let Command::Dedup(args) = parse(&["dedup"]).unwrap().command else { panic!("dedup") };
        assert_eq!(args.threshold, DEFAULT_NEAR_THRESHOLD);
        assert_eq!(args.keep, pixdex_core::DEFAULT_KEEPER_RULE.to_vec());
        let Command::Dedup(args) = parse(&["dedup", "--keep", "oldest,size", "--threshold", "0.9"]).unwrap().command
        else {
            panic!("dedup")
        };
        assert_eq!(args.keep, vec![KeeperCriterion::Oldest, KeeperCriterion::FileSize]);
        assert_eq!(args.threshold, 0.9);
        for bad in [
            &["dedup", "--keep", "biggest"][..],
            &["dedup", "--threshold", "1.5"],
            &["dedup", "--apply"],
            &["dedup", "--json", "--html", "r.html"],
            &["dedup", "--csv", "r.csv", "--html", "r.html"],
            &["dedup", "--undo", "log.jsonl", "--move-to", "d"],
            &["dedup", "--undo", "log.jsonl", "--threshold", "0.5"],
        ] {
            assert!(parse(bad).is_err(), "{bad:?}");
        }
        assert!(parse(&["dedup", "--undo", "log.jsonl", "-q"]).is_ok());
        assert!(parse(&["dedup", "--html", "r.html", "--move-to", "d", "--apply", "--prefix", "/p"]).is_ok());
    }

    #[test]
    fn server_url_gets_a_scheme_when_it_has_none() {
        let url = |s: &str| ServerArgs { server: Some(s.into()) }.url();
        assert_eq!(url("127.0.0.1:50051").as_deref(), Some("http://127.0.0.1:50051"));
        assert_eq!(url("https://pixdex.example:443").as_deref(), Some("https://pixdex.example:443"));
        assert_eq!(ServerArgs { server: None }.url(), None);
    }

    #[test]
    fn serve_defaults_come_from_the_server_config() {
        let Command::Serve(args) = parse(&["serve"]).unwrap().command else { panic!("serve") };
        let defaults = server_defaults();
        assert_eq!(args.max_message_mb << 20, defaults.max_message_bytes);
        assert_eq!(args.batch_max, defaults.batching.max_batch);
        assert_eq!(args.index_batch_size, defaults.index_batch_size);
        assert_eq!(args.listen, "127.0.0.1:50051");
    }
}
