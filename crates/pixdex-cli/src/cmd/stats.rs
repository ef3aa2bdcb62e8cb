//! `pixdex stats`: what a collection holds, read offline or from a running server. `images` is
//! every record, `embedded` the images with a stored vector, `failed` the records whose status is
//! failed: the same counts either way (both read them through `CollectionStats`).

use anyhow::Context;
use pixdex_server::convert::CollectionStats;
use pixdex_server::pb;
use std::process::ExitCode;

use crate::args::StatsArgs;
use crate::remote;

pub fn run(args: StatsArgs) -> anyhow::Result<ExitCode> {
    let stats = match args.server.remote()? {
        Some(remote) => remote::runtime()?.block_on(served_stats(&remote))?,
        None => offline_stats(&args)?,
    };
    if args.json {
        println!("{stats}");
    } else {
        let stats = stats.as_object().context("stats object")?;
        let width = stats.keys().map(|k| k.len()).max().unwrap_or(0);
        for (k, v) in stats {
            println!("{k:>width$}: {v}");
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// The counts as the server reads them too ([`CollectionStats`]), so that each means the same.
fn offline_stats(args: &StatsArgs) -> anyhow::Result<serde_json::Value> {
    let db = args.db.location()?;
    let c = db.open().with_context(|| format!("opening collection {}", db.describe()))?;
    let stats = CollectionStats::read(&c)?;
    let mut out = serde_json::json!({
        "collection": db.describe(),
        "images": stats.images,
        "embedded": stats.vectors,
        "failed": stats.failed,
        "model": stats.model,
        "model_fingerprint": stats.model_fingerprint,
        "embedding": stats.embedding,
        "dim": stats.dim,
        "patch_pool": stats.patch_pool,
        "patch_codec": stats.patch_codec(),
        "generation": stats.generation,
        "disk_bytes": stats.disk_bytes,
        "disk_bytes_per_image": stats.disk_bytes.checked_div(stats.images).unwrap_or(0),
    });
    if args.by_kind {
        out["stored_bytes"] = stored_bytes(&c)?;
    }
    Ok(out)
}

/// Bytes of every kind of stored value (before the store's own overhead), in all and per value.
fn stored_bytes(c: &pixdex_core::Collection) -> anyhow::Result<serde_json::Value> {
    let mut kinds = serde_json::Map::new();
    for kind in pixdex_core::ValueKind::ALL {
        let (bytes, values) = c.stored_bytes(kind)?;
        kinds.insert(
            kind.name().to_string(),
            serde_json::json!({ "bytes": bytes, "values": values, "per_value": bytes.checked_div(values as u64).unwrap_or(0) }),
        );
    }
    Ok(serde_json::Value::Object(kinds))
}

/// The offline keys where the server reports the same thing, then what only a server knows.
async fn served_stats(remote: &remote::Remote) -> anyhow::Result<serde_json::Value> {
    let mut client = remote::connect(remote).await?;
    let stats = client
        .collection
        .get_stats(pb::GetStatsRequest {})
        .await
        .map_err(|s| remote::call_failed("getting the stats", s))?
        .into_inner();
    let pb::Stats {
        images,
        vectors,
        failed,
        model,
        model_fingerprint,
        embedding,
        dim,
        patch_codec,
        search_index,
        exact_scan_below,
        hnsw_tombstones,
        generation,
        disk_bytes,
        model_loaded,
        query_embeddings,
        query_forward_passes,
        running_job_id,
    } = stats;
    Ok(serde_json::json!({
        "server": remote.url,
        "images": images,
        "embedded": vectors,
        "failed": failed,
        "model": model,
        "model_fingerprint": model_fingerprint,
        "embedding": embedding,
        "dim": dim,
        "patch_codec": patch_codec,
        "generation": generation,
        "disk_bytes": disk_bytes,
        "search_index": search_index,
        "exact_scan_below": exact_scan_below,
        "hnsw_tombstones": hnsw_tombstones,
        "model_loaded": model_loaded,
        "query_embeddings": query_embeddings,
        "query_forward_passes": query_forward_passes,
        "running_job": Some(running_job_id).filter(|id| !id.is_empty()),
    }))
}
