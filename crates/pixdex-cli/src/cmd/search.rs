//! `pixdex search`: the images of a collection most similar to a query image, offline or
//! through a running server (same output either way).

use anyhow::Context;
use pixdex_core::{Collection, SimilarQuery};
use pixdex_indexer::batch::embed_images;
use pixdex_indexer::decode::{DecodeLimits, decode_path};
use pixdex_indexer::encoder::PixioEncoder;
use pixdex_indexer::inputs::{InputKinds, ModelInputs};
use pixdex_server::pb;
use serde::Serialize;
use std::process::ExitCode;

use crate::args::{DbArgs, ModelArgs, SearchArgs};
use crate::cmd::embed::load_encoder;
use crate::cmd::print_results;
use crate::remote;

#[derive(Serialize)]
struct Result_ {
    id: u64,
    path: String,
    score: f32,
}

pub fn run(args: SearchArgs) -> anyhow::Result<ExitCode> {
    let results = match args.server.url() {
        Some(url) => remote::runtime()?.block_on(search_served(&args, &url))?,
        None => search_offline(&args)?,
    };
    print_results(&results, args.json, |r| format!("{:.4}\t{}\t{}", r.score, r.id, r.path))?;
    Ok(ExitCode::SUCCESS)
}

/// Opens the collection and loads the model to query it with: the collection's own unless
/// `--model` names another (which must be the same model: same weights, embedding and
/// dimension, as the server checks it).
pub fn open_for_query(db: &DbArgs, model: &ModelArgs) -> anyhow::Result<(Collection, PixioEncoder)> {
    let db = db.dir()?;
    let collection = Collection::open(&db).with_context(|| format!("opening collection {}", db.display()))?;
    // The collection pins its model; that is the default query model.
    let encoder = load_encoder(model, &collection.config().model)?;
    collection.config().ensure_compatible(&encoder.collection_config()).with_context(|| {
        format!("collection {} was built with another model; query with that model (--model)", db.display())
    })?;
    Ok((collection, encoder))
}

fn search_offline(args: &SearchArgs) -> anyhow::Result<Vec<Result_>> {
    let (collection, encoder) = open_for_query(&args.db, &args.model)?;
    let image = decode_path(&args.image, DecodeLimits::default())?;
    let inputs = ModelInputs::of(&encoder, &image, InputKinds::QUERY)?;
    let global = embed_images(&encoder, &[&inputs.square])?.pop().context("no embedding")??.global;
    let hits = collection.search_similar(&global, &SimilarQuery { k: args.k, ..Default::default() })?;
    Ok(hits
        .into_iter()
        .map(|h| Result_ { id: h.hit.id.0, path: h.record.path.to_string_lossy().into_owned(), score: h.hit.score })
        .collect())
}

/// Sends the file's bytes; the server decodes and embeds them with the collection's model.
async fn search_served(args: &SearchArgs, url: &str) -> anyhow::Result<Vec<Result_>> {
    let k = u32::try_from(args.k).ok().filter(|&k| k > 0).context("-k must be at least 1 (and fit in 32 bits)")?;
    let bytes = std::fs::read(&args.image).with_context(|| format!("reading {}", args.image.display()))?;
    let mut client = remote::connect_ready(url).await?;
    let request = pb::SearchRequest {
        query: Some(pb::search_request::Query::Image(bytes)),
        k,
        min_score: None,
        path_prefix: String::new(),
        exclude_self: false,
    };
    let response = client
        .search
        .search(request)
        .await
        .map_err(|s| remote::call_failed(&format!("searching with {}", args.image.display()), s))?
        .into_inner();
    Ok(response
        .hits
        .into_iter()
        .map(|hit| {
            let image = hit.image.unwrap_or_default();
            Result_ { id: image.id, path: image.path, score: hit.score }
        })
        .collect())
}
