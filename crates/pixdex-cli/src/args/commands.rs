//! The arguments of `embed`, `index`, `search`, `region` and `stats`.

use clap::Args;
use clap::builder::RangedU64ValueParser;
use pixdex_core::{DEFAULT_REGION_CANDIDATES, MAX_EF, MAX_K, MAX_REGION_CANDIDATES, PixelBox};
use pixdex_indexer::crawl::CrawlOptions;
use pixdex_indexer::pipeline::IndexOptions;
use std::path::PathBuf;

use super::{CollectionArgs, DbArgs, ModelArgs, ServerArgs};

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

#[derive(Debug, Args)]
pub struct IndexArgs {
    /// Folders to index (several allowed).
    #[arg(required = true)]
    pub roots: Vec<PathBuf>,
    #[command(flatten)]
    pub collection: CollectionArgs,
    /// Images per forward pass (and per write).
    #[arg(long, default_value_t = 8, value_parser = clap::value_parser!(u16).range(1..=1024))]
    pub batch_size: u16,
    /// Remove records of missing files even if a root is missing or suddenly empty.
    #[arg(long)]
    pub prune: bool,
    /// With --store (several workers may index one collection at once, each embedding only the
    /// files it claims): how long a claimed file stays this worker's if it stops renewing its
    /// claims (killed, or its machine lost); then another worker takes it.
    #[arg(long, value_name = "SECONDS", default_value_t = 600, value_parser = clap::value_parser!(u64).range(1..=86_400))]
    pub claim_lease_s: u64,
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

impl IndexArgs {
    /// What the job crawls and stores, offline or in a server (which then picks its own batch
    /// size and decode threads).
    pub fn options(&self) -> IndexOptions {
        IndexOptions {
            crawl: CrawlOptions {
                roots: self.roots.clone(),
                include_hidden: self.hidden,
                follow_links: self.follow_links,
                include: self.include.clone(),
                exclude: self.exclude.clone(),
            },
            batch_size: self.batch_size as usize,
            prune: self.prune,
            dedup_views: !self.no_dedup_views,
            region_grids: !self.no_region_grids,
            claim_lease: std::time::Duration::from_secs(self.claim_lease_s),
            ..IndexOptions::default()
        }
    }
}

#[derive(Debug, Args)]
pub struct SearchArgs {
    /// The query image.
    pub image: PathBuf,
    #[command(flatten)]
    pub collection: CollectionArgs,
    /// Number of results.
    #[arg(short, default_value_t = 10)]
    pub k: usize,
    /// HNSW beam width (wider: slower, nearer the exact answer). Default: the collection's own,
    /// measured to reach recall@10 0.995 on its own vectors.
    #[arg(long, value_parser = RangedU64ValueParser::<usize>::new().range(1..=MAX_EF as u64))]
    pub ef: Option<usize>,
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
    pub collection: CollectionArgs,
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

/// `pixdex stats`; see `Command::Stats` for what the counts mean.
#[derive(Debug, Args)]
pub struct StatsArgs {
    #[command(flatten)]
    pub db: DbArgs,
    #[command(flatten)]
    pub server: ServerArgs,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
    /// Also the bytes stored per kind of value (global vectors, patch grids, views, region grids)
    /// and per image, offline only: it reads every stored value, which takes a while on a large
    /// collection.
    #[arg(long, conflicts_with = "server")]
    pub by_kind: bool,
}
