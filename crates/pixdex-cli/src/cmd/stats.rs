//! `pixdex stats`: what a collection holds.

use anyhow::Context;
use pixdex_core::{Collection, ImageStatus};
use std::process::ExitCode;

use crate::args::StatsArgs;

pub fn run(args: StatsArgs) -> anyhow::Result<ExitCode> {
    let db = args.db.dir()?;
    let c = Collection::open(&db).with_context(|| format!("opening collection {}", db.display()))?;
    let mut failed = 0usize;
    for r in c.records() {
        if matches!(r?.1.status, ImageStatus::Failed { .. }) {
            failed += 1;
        }
    }
    let cfg = c.config();
    let stats = serde_json::json!({
        "collection": db,
        "images": c.len(),
        "embedded": c.vector_count(),
        "failed": failed,
        "model": cfg.model,
        "model_fingerprint": cfg.model_fingerprint,
        "embedding": cfg.embedding,
        "dim": cfg.dim,
        "patch_pool": cfg.patch_codec.pool,
        "generation": c.generation()?,
        "disk_bytes": c.disk_bytes(),
    });
    if args.json {
        println!("{stats}");
    } else {
        for (k, v) in stats.as_object().context("stats object")? {
            println!("{k:>18}: {v}");
        }
    }
    Ok(ExitCode::SUCCESS)
}
