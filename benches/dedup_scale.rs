//! Duplicate grouping at scale: `find_duplicates` over N random clustered vectors with planted
//! near-duplicate families and exact copies, timed with its peak memory, next to a brute-force
//! all-pairs reference on a subset (the same threshold, star grouping left out) so that the
//! k-NN graph's recall of the planted pairs is visible.
//!
//! `cargo bench -p pixdex-benches --bench dedup_scale -- [--n 100000] [--dim 384] [--clusters 2000] [--reference 10000]`

use pixdex_benches::{arg, peak_rss_mib, random_unit};
use pixdex_core::{DedupOptions, DedupPhase, DuplicateKind, Embedding, ImageRecord, ImageStatus, NewImage, UnitVector};
use rand::{Rng, SeedableRng};
use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::atomic::AtomicBool;
use std::time::Instant;

fn mix(a: &UnitVector, b: &UnitVector, amount: f32) -> UnitVector {
    UnitVector::new(a.as_slice().iter().zip(b.as_slice()).map(|(x, y)| x + amount * y).collect()).expect("non-zero")
}

fn record(i: usize, hash: u64) -> ImageRecord {
    let mut blake3 = [0u8; 32];
    blake3[..8].copy_from_slice(&hash.to_le_bytes());
    ImageRecord {
        path: PathBuf::from(format!("/random/{i}.jpg")),
        size: 1000 + i as u64,
        mtime_ns: i as i64,
        blake3,
        width: 100,
        height: 100,
        status: ImageStatus::Embedded,
    }
}

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let (n, dim, clusters) = (arg(&args, "--n", 100_000), arg(&args, "--dim", 384), arg(&args, "--clusters", 2000));
    let reference_n = arg(&args, "--reference", 10_000).min(n);
    let (_dir, c) = pixdex_benches::synthetic_collection("random", dim)?;
    let mut rng = rand::rngs::StdRng::seed_from_u64(7);
    let centres: Vec<UnitVector> = (0..clusters).map(|_| random_unit(&mut rng, dim)).collect();
    // Every 50th image is an original with two near copies (cosine ≈ 0.99) right after it.
    let mut vectors: Vec<UnitVector> = Vec::with_capacity(n);
    let mut families: Vec<Vec<usize>> = Vec::new();
    while vectors.len() < n {
        let centre = &centres[rng.random_range(0..centres.len())];
        let v = mix(centre, &random_unit(&mut rng, dim), 1.0);
        let i = vectors.len();
        vectors.push(v.clone());
        if i.is_multiple_of(50) && i + 2 < n {
            for _ in 0..2 {
                vectors.push(mix(&v, &random_unit(&mut rng, dim), 0.1));
            }
            families.push(vec![i, i + 1, i + 2]);
        }
    }
    let t = Instant::now();
    for start in (0..n).step_by(2000) {
        let batch = (start..(start + 2000).min(n))
            .map(|i| NewImage {
                record: record(i, i as u64),
                embedding: Embedding::Computed { global: vectors[i].clone(), patches: None, views: None, region: None },
            })
            .collect();
        c.commit(batch, &[])?;
    }
    // 500 exact copies (same bytes, vectors copied).
    let mut copies = Vec::new();
    for j in 0..500 {
        let source = j * (n / 500);
        let source_id = c
            .id_by_path(&PathBuf::from(format!("/random/{source}.jpg")))?
            .ok_or_else(|| anyhow::anyhow!("source {source} missing"))?;
        // Same bytes: same size; newer, so the original stays the keeper.
        let copy = ImageRecord { size: 1000 + source as u64, ..record(n + j, source as u64) };
        copies.push(NewImage { record: copy, embedding: Embedding::CopyOf(source_id) });
    }
    c.commit(copies, &[])?;
    let build_s = t.elapsed().as_secs_f64();

    let before = peak_rss_mib(true);
    let (t, cpu0) = (Instant::now(), pixdex_benches::cpu_seconds());
    let last_progress = std::sync::Mutex::new((0usize, 0usize));
    let progress = |phase: DedupPhase, done: usize, total: usize| {
        if phase == DedupPhase::Searching {
            *last_progress.lock().unwrap_or_else(|e| e.into_inner()) = (done, total);
        }
    };
    let groups = c.find_duplicates(&DedupOptions::default(), &progress, &AtomicBool::new(false), &mut |_| {})?;
    let (wall, cpu) = (t.elapsed().as_secs_f64(), pixdex_benches::cpu_seconds() - cpu0);
    let peak = peak_rss_mib(false);

    // Planted pairs found together in one near group.
    let index_of = |path: &std::path::Path| -> Option<usize> { path.file_stem()?.to_str()?.parse().ok() };
    let mut group_of: HashMap<usize, usize> = HashMap::new();
    for (g, group) in groups.iter().enumerate().filter(|(_, g)| g.kind == DuplicateKind::Near) {
        for m in &group.members {
            if let Some(i) = index_of(&m.record.path) {
                group_of.insert(i, g);
            }
        }
    }
    let planted_pairs = families.len() * 3;
    let found_pairs: usize = families
        .iter()
        .map(|f| {
            [(f[0], f[1]), (f[0], f[2]), (f[1], f[2])]
                .iter()
                .filter(|(a, b)| group_of.get(a).is_some_and(|g| group_of.get(b) == Some(g)))
                .count()
        })
        .sum();
    let exact = groups.iter().filter(|g| g.kind == DuplicateKind::Exact).count();
    let near = groups.len() - exact;

    // Reference: brute force over all pairs of the first `reference_n` vectors at the same threshold.
    let threshold = DedupOptions::default().threshold;
    let t_ref = Instant::now();
    let mut brute_pairs = HashSet::new();
    for i in 0..reference_n {
        for j in i + 1..reference_n {
            if vectors[i].dot(vectors[j].as_slice()) >= threshold {
                brute_pairs.insert((i, j));
            }
        }
    }
    let ref_s = t_ref.elapsed().as_secs_f64();
    let graph_pairs_in_subset =
        brute_pairs.iter().filter(|(a, b)| group_of.get(a).is_some_and(|g| group_of.get(b) == Some(g))).count();
    let extrapolated = ref_s * (n as f64 / reference_n as f64).powi(2);

    println!(
        "# dedup at scale: {n} × {dim}-d clustered random vectors ({clusters} clusters), {} planted near families of 3, 500 exact copies",
        families.len()
    );
    println!(
        "machine: {} cores; collection built in {build_s:.1} s (not counted)",
        std::thread::available_parallelism().map_or(0, |p| p.get())
    );
    println!();
    println!("| what | value |");
    println!("|---|---|");
    println!("| find_duplicates wall | {wall:.1} s |");
    println!("| find_duplicates CPU | {cpu:.1} s |");
    println!(
        "| peak RSS during the run | {peak:.0} MiB (process was {before:.0} MiB before; vectors alone are {:.0} MiB) |",
        (n * dim * 4) as f64 / (1 << 20) as f64
    );
    println!("| progress events seen, last | {:?} |", *last_progress.lock().unwrap_or_else(|e| e.into_inner()));
    println!("| groups | {exact} exact, {near} near |");
    println!(
        "| planted near pairs grouped together | {found_pairs} / {planted_pairs} ({:.3}) |",
        found_pairs as f64 / planted_pairs as f64
    );
    println!(
        "| brute-force pairs ≥ {threshold} among the first {reference_n} | {} , of which grouped by pixdex: {graph_pairs_in_subset} |",
        brute_pairs.len()
    );
    println!(
        "| brute-force all-pairs time on {reference_n} | {ref_s:.1} s (extrapolated to {n}: {extrapolated:.0} s, {:.1}× pixdex) |",
        extrapolated / wall
    );
    Ok(())
}
