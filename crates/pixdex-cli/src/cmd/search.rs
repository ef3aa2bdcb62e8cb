//! `pixdex search`: the images of a collection most similar to a query image.

use anyhow::Context;
use pixdex_core::Collection;
use pixdex_indexer::decode::{DecodeLimits, decode_path};
use pixdex_indexer::encoder::PixioEncoder;
use serde::Serialize;
use std::process::ExitCode;

use crate::args::SearchArgs;

#[derive(Serialize)]
struct Result_ {
    id: u64,
    path: String,
    score: f32,
}

#[derive(Serialize)]
struct Output {
    results: Vec<Result_>,
}

pub fn run(args: SearchArgs) -> anyhow::Result<ExitCode> {
    let db = args.db.dir()?;
    let collection = Collection::open(&db).with_context(|| format!("opening collection {}", db.display()))?;
    let (device, dtype) = args.model.device()?;
    // The collection pins its model; that is the default query model.
    let source = args.model.source(&collection.config().model)?;
    let encoder = PixioEncoder::load(&source, &device, dtype).with_context(|| format!("loading model {source}"))?;
    let wanted = encoder.collection_config();
    let pinned = collection.config();
    if wanted.model_fingerprint != pinned.model_fingerprint || wanted.embedding != pinned.embedding {
        anyhow::bail!("collection {} was built with {}; query with that model (--model)", db.display(), pinned.model);
    }
    let image = decode_path(&args.image, DecodeLimits::default())?;
    let input = encoder.prepare(&image.image)?;
    let (global, _) = encoder.embed(&[input])?.pop().context("no embedding")??;
    let hits = collection.search(&global, args.k)?;
    let mut results = Vec::with_capacity(hits.len());
    for h in hits {
        let path = collection.get(h.id)?.map(|r| r.path.to_string_lossy().into_owned()).unwrap_or_default();
        results.push(Result_ { id: h.id.0, path, score: h.score });
    }
    if args.json {
        println!("{}", serde_json::to_string(&Output { results })?);
    } else {
        for r in &results {
            println!("{:.4}\t{}\t{}", r.score, r.id, r.path);
        }
    }
    Ok(ExitCode::SUCCESS)
}
