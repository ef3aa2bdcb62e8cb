//! `pixdex region`: the images of a collection that contain a region of a query image (the whole
//! image, or `--box`), each with the box where it is; offline or through a running server (same
//! output either way).

use anyhow::Context;
use pixdex_core::{ImageId, ImageRecord, PixelBox, RegionQuery};
use pixdex_indexer::decode::{DecodeLimits, decode_path};
use pixdex_indexer::region_crop::{RegionCrop, search_region};
use pixdex_server::convert::{RegionMatch, RegionSearch, RegionSource};
use pixdex_server::pb;
use serde::Serialize;
use std::process::ExitCode;

use crate::args::RegionArgs;
use crate::cmd::print_results;
use crate::cmd::search::open_for_query;
use crate::remote;

/// A box as printed, in the file's stored pixels.
#[derive(Serialize)]
struct BoxJson {
    x: f32,
    y: f32,
    w: f32,
    h: f32,
}

/// One result as printed (`--json`: `{"results":[…]}`), the same offline and served.
#[derive(Serialize)]
struct RegionResult {
    id: u64,
    path: String,
    score: f32,
    #[serde(rename = "box")]
    bbox: BoxJson,
}

impl RegionResult {
    fn new(id: ImageId, record: &ImageRecord, score: f32, b: PixelBox) -> Self {
        let path = record.path.to_string_lossy().into_owned();
        Self { id: id.0, path, score, bbox: BoxJson { x: b.x, y: b.y, w: b.w, h: b.h } }
    }
}

pub fn run(args: RegionArgs) -> anyhow::Result<ExitCode> {
    let results = match args.collection.server.remote()? {
        Some(remote) => remote::runtime()?.block_on(search_served(&args, &remote))?,
        None => search_offline(&args)?,
    };
    print_results(&results, args.json, |r| {
        let b = &r.bbox;
        format!("{:.4}\t{}\t{:.0},{:.0},{:.0},{:.0}\t{}", r.score, r.id, b.x, b.y, b.w, b.h, r.path)
    })?;
    Ok(ExitCode::SUCCESS)
}

fn query(args: &RegionArgs) -> RegionQuery {
    RegionQuery { k: args.k, candidates: args.candidates, ..RegionQuery::default() }
}

fn search_offline(args: &RegionArgs) -> anyhow::Result<Vec<RegionResult>> {
    let (collection, encoder) = open_for_query(&args.collection.db, &args.collection.model)?;
    let image = decode_path(&args.image, DecodeLimits::default())?;
    let crop = RegionCrop::new(&image, args.region)
        .with_context(|| format!("cutting the region of {}", args.image.display()))?;
    drop(image);
    let hits = search_region(&collection, &encoder, &crop, &query(args))?;
    Ok(hits.into_iter().map(|h| RegionResult::new(h.id, &h.record, h.score, h.bbox)).collect())
}

/// Sends the file's bytes and the box; the server decodes, cuts and embeds them.
async fn search_served(args: &RegionArgs, remote: &remote::Remote) -> anyhow::Result<Vec<RegionResult>> {
    let bytes = std::fs::read(&args.image).with_context(|| format!("reading {}", args.image.display()))?;
    let mut client = remote::connect_ready(remote).await?;
    let query = RegionSearch {
        source: RegionSource::Image(bytes),
        region: args.region,
        k: args.k,
        candidates: args.candidates,
        min_score: None,
        path_prefix: None,
        exclude_self: false,
    };
    let response = client
        .search
        .region_search(pb::RegionSearchRequest::from(query))
        .await
        .map_err(|s| remote::call_failed(&format!("region search with {}", args.image.display()), s))?
        .into_inner();
    let hits = response.hits.into_iter().map(RegionMatch::try_from).collect::<Result<Vec<_>, _>>();
    let hits = hits.context("the server's answer")?;
    Ok(hits.into_iter().map(|h| RegionResult::new(h.id, &h.record, h.score, h.bbox)).collect())
}
