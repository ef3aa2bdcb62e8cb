//! HNSW recall@10 against the exact scan, and queries per second for both, on a collection of
//! random unit vectors: uniform on the sphere (`--clusters 0`, the worst case for any graph index:
//! no structure at all), or clustered around `--clusters C` random centres the way embeddings of
//! photos are (near-duplicates, bursts, similar scenes).
//!
//! `cargo bench -p pixdex-benches --bench hnsw_recall -- [--n 100000] [--dim 384] [--queries 200] [--clusters 2000]`

use pixdex_benches::{arg, random_unit};
use pixdex_core::{Embedding, ImageRecord, ImageStatus, NewImage, UnitVector};
use rand::{Rng, SeedableRng};
use std::path::PathBuf;
use std::time::Instant;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let (n, dim, queries) = (arg(&args, "--n", 100_000), arg(&args, "--dim", 384), arg(&args, "--queries", 200));
    let clusters = arg(&args, "--clusters", 2000);
    let (_dir, c) = pixdex_benches::synthetic_collection("random", dim)?;
    let mut rng = rand::rngs::StdRng::seed_from_u64(42);
    let centres: Vec<UnitVector> = (0..clusters).map(|_| random_unit(&mut rng, dim)).collect();
    // A point: its centre plus isotropic noise with about the centre's norm (cosine to the centre ≈ 0.7).
    let sample = |rng: &mut rand::rngs::StdRng| {
        if centres.is_empty() {
            return random_unit(rng, dim);
        }
        let c = &centres[rng.random_range(0..centres.len())];
        let noise = random_unit(rng, dim);
        UnitVector::new(c.as_slice().iter().zip(noise.as_slice()).map(|(a, b)| a + b).collect()).expect("non-zero")
    };
    let t = Instant::now();
    for start in (0..n).step_by(2000) {
        let batch = (start..(start + 2000).min(n))
            .map(|i| NewImage {
                record: ImageRecord {
                    path: PathBuf::from(format!("/random/{i}")),
                    size: 0,
                    mtime_ns: 0,
                    blake3: [0; 32],
                    width: 1,
                    height: 1,
                    status: ImageStatus::Embedded,
                },
                embedding: Embedding::Computed { global: sample(&mut rng), patches: None, views: None, region: None },
            })
            .collect();
        c.commit(batch, &[])?;
    }
    let build_s = t.elapsed().as_secs_f64();
    let qs: Vec<UnitVector> = (0..queries).map(|_| sample(&mut rng)).collect();
    let t = Instant::now();
    let exact: Vec<Vec<_>> = qs
        .iter()
        .map(|q| c.search_exact(q, 10).map(|h| h.into_iter().map(|h| h.id).collect()))
        .collect::<Result<_, _>>()?;
    let exact_qps = queries as f64 / t.elapsed().as_secs_f64();
    let kind = if clusters == 0 { "uniform".to_string() } else { format!("{clusters}-cluster") };
    println!(
        "{n} {kind} random {dim}-d unit vectors: insert (sled + HNSW) {build_s:.1} s; exact scan {exact_qps:.1} queries/s"
    );
    for ef in [64, 128, pixdex_core::SEARCH_EF, 512] {
        let t = Instant::now();
        let mut found = 0;
        for (q, e) in qs.iter().zip(&exact) {
            found += c.search_hnsw(q, 10, ef)?.iter().filter(|h| e.contains(&h.id)).count();
        }
        let qps = queries as f64 / t.elapsed().as_secs_f64();
        println!("HNSW ef {ef:>3}: recall@10 {:.3}, {qps:.0} queries/s", found as f64 / (10 * queries) as f64);
    }
    Ok(())
}
