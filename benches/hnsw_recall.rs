//! Similarity search at scale: recall@k against the exact answer and queries per second, through
//! the path `pixdex search` takes for a vector query ([`Collection::search_similar`]), one query
//! at a time on one thread; the graph alone ([`Collection::search_hnsw`]) as extra fields; and
//! faiss `IndexHNSWFlat` (M 16, efConstruction 200) on the same vectors in the same run
//! (`benches/faiss_hnsw.py`, skipped with a note when Python or faiss-cpu is missing).
//!
//! Vectors come from `.fvecs` files (`--base`, `--query`; the ANN-benchmarks format) or are
//! generated: uniform on the sphere (`--clusters 0`, the worst case for any graph index) or
//! clustered around `--clusters C` random centres the way embeddings of photos are. Generated
//! vectors are written as `.fvecs` for the reference (`--fvecs-dir`, else a temporary folder).
//!
//! `cargo bench -p pixdex-benches --bench hnsw_recall -- [--base B.fvecs --query Q.fvecs]
//!  [--n 100000] [--dim 384] [--queries 1000] [--clusters 2000] [--ef 16,32,64,128,256] [--k 10]
//!  [--json OUT.json] [--fvecs-dir DIR] [--no-faiss] [--no-rebuild]`
//!
//! `--no-rebuild` skips timing a rebuild of the graph alone from the stored vectors.

use pixdex_benches::{arg, arg_str, clustered_vectors as generate, random_unit, vector_image as image};
use pixdex_core::{ImageId, SimilarQuery, UnitVector};
use rand::SeedableRng;
use serde_json::json;
use std::collections::HashSet;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::time::Instant;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Vectors from an `.fvecs` file: per vector a little-endian i32 dimension, then its f32s.
fn read_fvecs(path: &Path) -> anyhow::Result<Vec<Vec<f32>>> {
    let mut bytes = Vec::new();
    std::fs::File::open(path)?.read_to_end(&mut bytes)?;
    let mut out = Vec::new();
    let mut rest = bytes.as_slice();
    while !rest.is_empty() {
        anyhow::ensure!(rest.len() >= 4, "{}: truncated dimension", path.display());
        let dim = i32::from_le_bytes(rest[..4].try_into()?);
        anyhow::ensure!(dim > 0, "{}: dimension {dim}", path.display());
        let end = 4 + 4 * dim as usize;
        anyhow::ensure!(rest.len() >= end, "{}: truncated vector", path.display());
        out.push(rest[4..end].chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect());
        rest = &rest[end..];
    }
    Ok(out)
}

fn write_fvecs(path: &Path, vectors: &[UnitVector]) -> anyhow::Result<()> {
    let mut w = std::io::BufWriter::new(std::fs::File::create(path)?);
    for v in vectors {
        w.write_all(&(v.dim() as i32).to_le_bytes())?;
        for x in v.as_slice() {
            w.write_all(&x.to_le_bytes())?;
        }
    }
    w.flush()?;
    Ok(())
}

/// Recall@k and queries per second of `search` over `queries`, one at a time.
fn measure(
    queries: &[UnitVector],
    exact: &[HashSet<ImageId>],
    k: usize,
    mut search: impl FnMut(&UnitVector) -> anyhow::Result<Vec<ImageId>>,
) -> anyhow::Result<(f64, f64)> {
    // One untimed pass warms caches and the per-thread visited list.
    for q in queries.iter().take(20) {
        search(q)?;
    }
    let t = Instant::now();
    let mut found = 0;
    for (q, e) in queries.iter().zip(exact) {
        found += search(q)?.iter().filter(|id| e.contains(id)).count();
    }
    let qps = queries.len() as f64 / t.elapsed().as_secs_f64();
    Ok((found as f64 / (k * queries.len()) as f64, qps))
}

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let k = arg(&args, "--k", 10);
    let efs: Vec<usize> = arg_str(&args, "--ef")
        .unwrap_or_else(|| "16,32,48,64,96,128,256".into())
        .split(',')
        .map(|s| s.trim().parse())
        .collect::<Result<_, _>>()?;
    let scratch = tempfile::tempdir()?;
    let (base, queries, base_path, query_path, kind) = match (arg_str(&args, "--base"), arg_str(&args, "--query")) {
        (Some(b), Some(q)) => {
            let norm = |v: Vec<Vec<f32>>| v.into_iter().map(UnitVector::new).collect::<Result<Vec<_>, _>>();
            let (base, queries) = (norm(read_fvecs(Path::new(&b))?)?, norm(read_fvecs(Path::new(&q))?)?);
            (base, queries, PathBuf::from(b), PathBuf::from(q), "from files".to_string())
        }
        (None, None) => {
            let (n, dim, nq) = (arg(&args, "--n", 100_000), arg(&args, "--dim", 384), arg(&args, "--queries", 1000));
            let clusters = arg(&args, "--clusters", 2000);
            let mut rng = rand::rngs::StdRng::seed_from_u64(42);
            let centres: Vec<UnitVector> = (0..clusters).map(|_| random_unit(&mut rng, dim)).collect();
            let base = generate(&mut rng, &centres, dim, n);
            let queries = generate(&mut rng, &centres, dim, nq);
            let dir = arg_str(&args, "--fvecs-dir").map(PathBuf::from).unwrap_or_else(|| scratch.path().to_path_buf());
            std::fs::create_dir_all(&dir)?;
            let (bp, qp) = (dir.join("base.fvecs"), dir.join("query.fvecs"));
            write_fvecs(&bp, &base)?;
            write_fvecs(&qp, &queries)?;
            let kind = if clusters == 0 { "uniform".to_string() } else { format!("{clusters}-cluster") };
            (base, queries, bp, qp, kind)
        }
        _ => anyhow::bail!("give both --base and --query, or neither"),
    };
    anyhow::ensure!(!base.is_empty() && !queries.is_empty(), "no vectors");
    let (n, dim) = (base.len(), base[0].dim());

    let (_dir, c) = pixdex_benches::synthetic_collection("vectors", dim)?;
    let t = Instant::now();
    let mut base = base.into_iter().enumerate().peekable();
    while base.peek().is_some() {
        c.commit(base.by_ref().take(2000).map(|(i, v)| image(i, v)).collect(), &[])?;
    }
    c.flush()?;
    let build_s = t.elapsed().as_secs_f64();
    // As `pixdex serve` does: results read their records from RAM.
    c.cache_records()?;
    let t = Instant::now();
    if !args.iter().any(|a| a == "--no-rebuild") {
        c.compact()?;
    }
    let graph_build_s = t.elapsed().as_secs_f64();
    let rss = pixdex_benches::peak_rss_mib(false);

    let t = Instant::now();
    let exact: Vec<HashSet<ImageId>> = queries
        .iter()
        .map(|q| c.search_exact(q, k).map(|h| h.into_iter().map(|h| h.id).collect()))
        .collect::<Result<_, _>>()?;
    let exact_qps = queries.len() as f64 / t.elapsed().as_secs_f64();
    println!(
        "{n} {kind} {dim}-d unit vectors, {} queries, k {k}: insert through the collection (sled + HNSW) {build_s:.1} s, \
         graph alone {graph_build_s:.1} s, peak RSS {rss:.0} MiB; exact scan {exact_qps:.0} queries/s",
        queries.len()
    );
    let ids = |hits: Vec<pixdex_core::SimilarHit>| hits.into_iter().map(|h| h.hit.id).collect();
    let mut rows = Vec::new();
    println!("{:>5}  {:>10} {:>9}  {:>12} {:>9}", "ef", "recall@k", "q/s", "graph recall", "graph q/s");
    for &ef in &efs {
        let query = SimilarQuery { k, ef: Some(ef), ..Default::default() };
        let (recall, qps) = measure(&queries, &exact, k, |q| Ok(ids(c.search_similar(q, &query)?)))?;
        let (g_recall, g_qps) =
            measure(&queries, &exact, k, |q| Ok(c.search_hnsw(q, k, ef)?.into_iter().map(|h| h.id).collect()))?;
        println!("{ef:>5}  {recall:>10.4} {qps:>9.0}  {g_recall:>12.4} {g_qps:>9.0}");
        rows.push(json!({"ef": ef, "recall_at_10": recall, "qps": qps, "hnsw_only_recall_at_10": g_recall, "hnsw_only_qps": g_qps}));
    }
    let query = SimilarQuery { k, ..Default::default() };
    let (d_recall, d_qps) = measure(&queries, &exact, k, |q| Ok(ids(c.search_similar(q, &query)?)))?;
    let default_ef = c.search_ef();
    println!("default (ef {default_ef}, calibrated on the graph): recall@k {d_recall:.4}, {d_qps:.0} queries/s");
    let report = json!({
        "n": n, "dim": dim, "queries": queries.len(), "k": k, "data": kind,
        "build_seconds": build_s, "graph_build_seconds": graph_build_s, "peak_rss_mib": rss,
        "default_ef": default_ef, "default_recall_at_10": d_recall, "default_qps": d_qps,
        "exact_qps": exact_qps, "rows": rows,
    });
    if let Some(out) = arg_str(&args, "--json") {
        std::fs::write(&out, serde_json::to_vec_pretty(&report)?)?;
        println!("wrote {out}");
    }
    if !args.iter().any(|a| a == "--no-faiss") {
        faiss_side_by_side(&base_path, &query_path, &efs, k, &report, scratch.path())?;
    }
    Ok(())
}

/// Runs `benches/faiss_hnsw.py` on the same files and prints both, with q/s ratios.
fn faiss_side_by_side(
    base: &Path,
    query: &Path,
    efs: &[usize],
    k: usize,
    ours: &serde_json::Value,
    scratch: &Path,
) -> anyhow::Result<()> {
    let python = std::env::var("PIXDEX_REF_PYTHON").unwrap_or_else(|_| "python3".into());
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("faiss_hnsw.py");
    let out = scratch.join("faiss.json");
    let efs_arg = efs.iter().map(|e| e.to_string()).collect::<Vec<_>>().join(",");
    let status = std::process::Command::new(&python)
        .arg(&script)
        .args(["--base".as_ref(), base.as_os_str(), "--query".as_ref(), query.as_os_str()])
        .args(["--ef", &efs_arg, "--k", &k.to_string(), "--json"])
        .arg(&out)
        .status();
    match status {
        Ok(s) if s.success() => {}
        Ok(s) => {
            println!(
                "NOTE: faiss reference skipped ({python} {} exited with {s}; pip install faiss-cpu)",
                script.display()
            );
            return Ok(());
        }
        Err(e) => {
            println!("NOTE: faiss reference skipped ({python}: {e})");
            return Ok(());
        }
    }
    let faiss: serde_json::Value = serde_json::from_slice(&std::fs::read(&out)?)?;
    let num = |v: &serde_json::Value, key: &str| v[key].as_f64().unwrap_or(f64::NAN);
    println!(
        "faiss IndexHNSWFlat (M 16, efConstruction 200): build {:.1} s on {} threads; exact (IndexFlatIP) {:.0} queries/s",
        num(&faiss, "build_seconds"),
        faiss["build_threads"],
        num(&faiss, "exact_qps")
    );
    println!("{:>5}  {:>14} {:>9}  {:>14} {:>9}  {:>8}", "ef", "pixdex recall", "q/s", "faiss recall", "q/s", "q/s ×");
    let empty = Vec::new();
    let (our_rows, their_rows) =
        (ours["rows"].as_array().unwrap_or(&empty), faiss["rows"].as_array().unwrap_or(&empty));
    for (a, b) in our_rows.iter().zip(their_rows) {
        println!(
            "{:>5}  {:>14.4} {:>9.0}  {:>14.4} {:>9.0}  {:>8.2}",
            a["ef"].as_u64().unwrap_or(0),
            num(a, "recall_at_10"),
            num(a, "qps"),
            num(b, "recall_at_10"),
            num(b, "qps"),
            num(a, "qps") / num(b, "qps")
        );
    }
    // At equal recall: faiss's fastest row reaching pixdex's default recall (or faiss's best).
    let best_recall = their_rows.iter().map(|r| num(r, "recall_at_10")).fold(0.0, f64::max);
    let target = num(ours, "default_recall_at_10").min(best_recall);
    let best =
        their_rows.iter().filter(|r| num(r, "recall_at_10") >= target).map(|r| num(r, "qps")).fold(f64::NAN, f64::max);
    println!(
        "at pixdex's default (ef {}, recall {:.4}): pixdex {:.0} q/s; faiss's fastest ef reaching {target:.4}: {best:.0} q/s; ratio {:.2}",
        ours["default_ef"].as_u64().unwrap_or(0),
        num(ours, "default_recall_at_10"),
        num(ours, "default_qps"),
        num(ours, "default_qps") / best
    );
    Ok(())
}
