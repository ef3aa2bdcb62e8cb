//! `pixdex search`: the images of a collection most similar to a query image, offline or
//! through a running server (same output either way).

use anyhow::Context;
use pixdex_core::{Collection, SimilarHit, SimilarQuery};
use pixdex_indexer::batch::embed_images;
use pixdex_indexer::decode::{DecodeLimits, decode_path};
use pixdex_indexer::encoder::PixioEncoder;
use pixdex_indexer::inputs::{InputKinds, ModelInputs};
use pixdex_server::convert::{SearchQuery, SearchSource};
use pixdex_server::pb;
use serde::Serialize;
use std::process::ExitCode;

use crate::args::{DbArgs, ModelArgs, SearchArgs};
use crate::cmd::print_results;
use crate::remote;

/// One result as printed (`--json`: `{"results":[…]}`), the same offline and served.
#[derive(Serialize)]
struct SearchResult {
    id: u64,
    path: String,
    score: f32,
}

impl From<SimilarHit> for SearchResult {
    fn from(h: SimilarHit) -> Self {
        Self { id: h.hit.id.0, path: h.record.path.to_string_lossy().into_owned(), score: h.hit.score }
    }
}

pub fn run(args: SearchArgs) -> anyhow::Result<ExitCode> {
    let results = match args.collection.server.remote()? {
        Some(remote) => remote::runtime()?.block_on(search_served(&args, &remote))?,
        None => search_offline(&args)?,
    };
    print_results(&results, args.json, |r| format!("{:.4}\t{}\t{}", r.score, r.id, r.path))?;
    Ok(ExitCode::SUCCESS)
}

/// Opens the collection and loads the model to query it with: the collection's own unless
/// `--model` names another (which must be the same model: same weights, embedding and
/// dimension, as the server checks it).
pub fn open_for_query(db: &DbArgs, model: &ModelArgs) -> anyhow::Result<(Collection, PixioEncoder)> {
    let db = db.location()?;
    let collection = db.open().with_context(|| format!("opening collection {}", db.describe()))?;
    // The collection pins its model; that is the default query model.
    let encoder = model.load_encoder(&collection.config().model)?;
    collection.config().ensure_compatible(&encoder.collection_config()).with_context(|| {
        format!("collection {} was built with another model; query with that model (--model)", db.describe())
    })?;
    Ok((collection, encoder))
}

fn search_offline(args: &SearchArgs) -> anyhow::Result<Vec<SearchResult>> {
    let (collection, encoder) = open_for_query(&args.collection.db, &args.collection.model)?;
    let image = decode_path(&args.image, DecodeLimits::default())?;
    let inputs = ModelInputs::of(&encoder, &image, InputKinds::QUERY)?;
    let global = embed_images(&encoder, &[&inputs.square])?.pop().context("no embedding")??.global;
    let hits = collection.search_similar(&global, &SimilarQuery { k: args.k, ef: args.ef, ..Default::default() })?;
    Ok(hits.into_iter().map(SearchResult::from).collect())
}

/// Sends the file's bytes; the server decodes and embeds them with the collection's model.
async fn search_served(args: &SearchArgs, remote: &remote::Remote) -> anyhow::Result<Vec<SearchResult>> {
    // The server bounds k from above; 0 would mean its default.
    anyhow::ensure!(args.k > 0, "-k must be at least 1");
    let bytes = std::fs::read(&args.image).with_context(|| format!("reading {}", args.image.display()))?;
    let mut client = remote::connect_ready(remote).await?;
    let query = SearchQuery {
        source: SearchSource::Image(bytes),
        k: args.k,
        min_score: None,
        path_prefix: None,
        exclude_self: false,
        ef: args.ef,
    };
    let response = client
        .search
        .search(pb::SearchRequest::from(query))
        .await
        .map_err(|s| remote::call_failed(&format!("searching with {}", args.image.display()), s))?
        .into_inner();
    let hits = response.hits.into_iter().map(SimilarHit::try_from).collect::<Result<Vec<_>, _>>();
    let hits = hits.context("the server's answer")?;
    Ok(hits.into_iter().map(SearchResult::from).collect())
}
