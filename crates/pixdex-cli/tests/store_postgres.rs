//! `pixdex` with `--store postgres://…`: index, search, stats and dedup offline and through
//! `pixdex serve`, on a real PostgreSQL + pgvector server (skipped with a note where none is
//! configured; required in CI), each checked against the same commands on sled.

mod common;

use common::server::Server;
use common::{arg, ok, picture, pixdex, pixdex_command, tiny_model};
use pixdex_core::ImageStatus;
use pixdex_store_postgres::CollectionLocation;
use pixdex_store_postgres::testing::TestPostgres;
use std::path::{Path, PathBuf};

fn make_library(root: &Path) {
    std::fs::create_dir_all(root.join("a")).unwrap();
    for (i, (w, h)) in [(64, 48), (80, 60), (50, 70), (40, 40), (64, 32)].into_iter().enumerate() {
        picture(i as u32 + 1, w, h).save(root.join(format!("p{i}.png"))).unwrap();
    }
    picture(9, 60, 60).save(root.join("a/nine.jpg")).unwrap();
    std::fs::copy(root.join("p0.png"), root.join("a/p0-copy.png")).unwrap();
    std::fs::write(root.join("a/corrupt.jpg"), b"\xFF\xD8\xFF\xE0 not really a jpeg").unwrap();
}

/// `--db DIR` or `--store URL --db INDEX_DIR`.
fn location_args(store: Option<&str>, dir: &Path) -> Vec<String> {
    let mut args = vec!["--db".to_string(), dir.display().to_string()];
    if let Some(url) = store {
        args.extend(["--store".to_string(), url.to_string()]);
    }
    args
}

fn run(args: &[&str], location: &[String]) -> String {
    let mut all: Vec<&str> = args.to_vec();
    all.extend(location.iter().map(String::as_str));
    ok(pixdex(&all))
}

fn records(location: &CollectionLocation) -> Vec<(PathBuf, bool)> {
    let c = location.open().unwrap();
    let mut v: Vec<(PathBuf, bool)> =
        c.records().map(|r| r.unwrap().1).map(|r| (r.path, r.status == ImageStatus::Embedded)).collect();
    v.sort();
    v
}

fn results(json: &str) -> Vec<(String, f64)> {
    let v: serde_json::Value = serde_json::from_str(json).unwrap_or_else(|e| panic!("{e}: {json}"));
    v["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| (r["path"].as_str().unwrap().to_string(), r["score"].as_f64().unwrap()))
        .collect()
}

#[test]
fn index_search_stats_and_dedup_on_postgres_answer_as_on_sled() {
    let Some(pg) = TestPostgres::start("index_search_stats_and_dedup_on_postgres_answer_as_on_sled") else { return };
    let tmp = tempfile::tempdir().unwrap();
    let lib = tmp.path().join("lib");
    make_library(&lib);
    let lib = std::fs::canonicalize(&lib).unwrap();
    let model = tiny_model();
    let url = pg.url();
    let sled = location_args(None, &tmp.path().join("sled"));
    let post = location_args(Some(&url), &tmp.path().join("pg-index"));
    for location in [&sled, &post] {
        let summary = run(&["index", arg(&lib), "--model", arg(&model), "-q"], location);
        assert!(summary.contains("8 images"), "{summary}");
    }
    let sled_at = CollectionLocation::Folder(tmp.path().join("sled"));
    let post_at = CollectionLocation::new(Some(&url), &tmp.path().join("pg-index")).unwrap();
    assert_eq!(records(&post_at), records(&sled_at));
    assert_eq!(records(&post_at).iter().filter(|r| !r.1).count(), 1, "the corrupt file is recorded as failed");

    let query = lib.join("p3.png");
    let search = |location: &[String]| results(&run(&["search", arg(&query), "-k", "4", "--json"], location));
    let (on_sled, on_post) = (search(&sled), search(&post));
    assert_eq!(on_post.len(), 4);
    assert_eq!(on_post[0].0, query.display().to_string(), "{on_post:?}");
    for (s, p) in on_sled.iter().zip(&on_post) {
        assert_eq!(s.0, p.0);
        assert!((s.1 - p.1).abs() < 1e-4, "{on_sled:?} / {on_post:?}");
    }

    let stats = |location: &[String]| -> serde_json::Value {
        serde_json::from_str(&run(&["stats", "--json"], location)).unwrap()
    };
    let (s, p) = (stats(&sled), stats(&post));
    for key in ["images", "embedded", "failed", "model_fingerprint", "dim"] {
        assert_eq!(s[key], p[key], "{key}: {s} / {p}");
    }
    assert!(p["collection"].as_str().unwrap().starts_with("postgresql://"), "{p}");

    // The exact copy is found as a duplicate group on both.
    let dedup = |location: &[String]| run(&["dedup", "--threshold", "0.999", "--no-verify", "-q"], location);
    let (ds, dp) = (dedup(&sled), dedup(&post));
    assert!(dp.contains("p0-copy.png") && ds.contains("p0-copy.png"), "{dp}\n{ds}");

    // Indexing again finds everything unchanged; PIXDEX_STORE works as --store does.
    let again = ok(pixdex_command()
        .args(["index", arg(&lib), "--model", arg(&model), "-q", "--db", arg(&tmp.path().join("pg-index"))])
        .env("PIXDEX_STORE", &url)
        .output()
        .unwrap());
    assert!(again.contains("8 unchanged") || again.contains("unchanged: 8"), "{again}");
    assert_eq!(records(&post_at), records(&sled_at));
}

#[test]
fn serve_on_postgres_indexes_and_answers_and_offline_commands_see_it() {
    let Some(pg) = TestPostgres::start("serve_on_postgres_indexes_and_answers_and_offline_commands_see_it") else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let lib = tmp.path().join("lib");
    make_library(&lib);
    let lib = std::fs::canonicalize(&lib).unwrap();
    let url = pg.url();
    let index_dir = tmp.path().join("served-index");
    let server = Server::start(&index_dir, &lib, &["--store", &url]);
    ok(pixdex(&["index", arg(&lib), "--server", &server.url, "-q"]));
    let query = lib.join("a/nine.jpg");
    let served = results(&ok(pixdex(&["search", arg(&query), "--server", &server.url, "-k", "3", "--json"])));
    assert_eq!(served[0].0, query.display().to_string());
    // While the server runs, another process reads the same database (no lock, unlike sled).
    let offline = location_args(Some(&url), &tmp.path().join("offline-index"));
    let model = tiny_model();
    let direct = results(&run(&["search", arg(&query), "-k", "3", "--json", "--model", arg(&model)], &offline));
    assert_eq!(direct.iter().map(|r| &r.0).collect::<Vec<_>>(), served.iter().map(|r| &r.0).collect::<Vec<_>>());
    let stats: serde_json::Value = serde_json::from_str(&run(&["stats", "--json"], &offline)).unwrap();
    assert_eq!(stats["images"], 8, "{stats}");
    assert!(server.terminate().success());
}

/// `N images: E embedded, R reused …` of an index summary.
fn counts(summary: &str) -> (usize, usize, usize) {
    let line = summary.lines().find(|l| l.contains(" images: ")).unwrap_or_else(|| panic!("no summary: {summary}"));
    let numbers: Vec<usize> = line
        .split(|c: char| !c.is_ascii_digit())
        .filter(|s| !s.is_empty())
        .take(3)
        .map(|s| s.parse().unwrap())
        .collect();
    (numbers[0], numbers[1], numbers[2])
}

/// A library of `n` distinct pictures (no copies: each must be embedded).
fn distinct_library(root: &Path, n: u32) {
    std::fs::create_dir_all(root.join("sub")).unwrap();
    for i in 0..n {
        let dir = if i % 2 == 0 { root.to_path_buf() } else { root.join("sub") };
        picture(100 + i, 40 + i % 7, 30 + i % 5).save(dir.join(format!("img{i:03}.png"))).unwrap();
    }
}

fn index_command(lib: &Path, url: &str, index_dir: &Path, extra: &[&str]) -> std::process::Command {
    let model = tiny_model();
    let mut cmd = pixdex_command();
    cmd.args(["index", arg(lib), "--store", url, "--db", arg(index_dir), "--model", arg(&model), "-q"]).args(extra);
    cmd
}

/// Every path stored once, every record embedded.
fn assert_each_image_once(url: &str, index_dir: &Path, n: usize) {
    let c = CollectionLocation::new(Some(url), index_dir).unwrap().open().unwrap();
    let paths: Vec<PathBuf> = c.records().map(|r| r.unwrap().1).map(|r| r.path).collect();
    let unique: std::collections::HashSet<&PathBuf> = paths.iter().collect();
    assert_eq!((paths.len(), unique.len()), (n, n));
    assert_eq!(c.vector_count(), n);
    assert_eq!(c.work_queue().unwrap().progress(&[PathBuf::from("/")]).unwrap().waiting, 0);
}

/// Two workers index one library at once: each file is embedded by exactly one of them.
#[test]
fn two_workers_index_one_library_each_image_exactly_once() {
    let Some(pg) = TestPostgres::start("two_workers_index_one_library_each_image_exactly_once") else { return };
    let tmp = tempfile::tempdir().unwrap();
    let lib = tmp.path().join("lib");
    let n = 48;
    distinct_library(&lib, n);
    let lib = std::fs::canonicalize(&lib).unwrap();
    let url = pg.url();
    let workers: Vec<_> = (0..2)
        .map(|w| {
            let mut cmd = index_command(&lib, &url, &tmp.path().join(format!("worker{w}")), &["--batch-size", "2"]);
            std::thread::spawn(move || ok(cmd.output().unwrap()))
        })
        .collect();
    let summaries: Vec<String> = workers.into_iter().map(|w| w.join().unwrap()).collect();
    let embedded: Vec<usize> = summaries.iter().map(|s| counts(s).1).collect();
    eprintln!("embedded per worker: {embedded:?}");
    for s in &summaries {
        assert!(s.contains("shared work: "), "{s}");
    }
    // Each file embedded by one worker; the other may only have found it stored already.
    assert_eq!(embedded.iter().sum::<usize>(), n as usize, "{summaries:?}");
    assert_each_image_once(&url, &tmp.path().join("worker0"), n as usize);
}

/// A worker killed mid-job keeps the images it stored; its claimed files go to the next worker
/// once its lease runs out, and nothing is embedded twice.
#[cfg(unix)]
#[test]
fn a_killed_workers_claims_pass_to_the_next_worker() {
    let Some(pg) = TestPostgres::start("a_killed_workers_claims_pass_to_the_next_worker") else { return };
    let tmp = tempfile::tempdir().unwrap();
    let lib = tmp.path().join("lib");
    let n = 60;
    distinct_library(&lib, n);
    let lib = std::fs::canonicalize(&lib).unwrap();
    let url = pg.url();
    let index_dir = tmp.path().join("index");
    let lease = ["--claim-lease-s", "2", "--batch-size", "1"];
    let mut first = common::ChildGuard(
        index_command(&lib, &url, &index_dir, &lease)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap(),
    );
    // Killed once it has stored something (and holds claims beyond it).
    let probe = pixdex_store_postgres::PostgresStore::connect(&url).unwrap();
    let started = std::time::Instant::now();
    loop {
        use pixdex_core::Store;
        if probe.record_count().map(|n| n >= 2).unwrap_or(false) {
            break;
        }
        assert!(started.elapsed() < std::time::Duration::from_secs(120), "the first worker never stored anything");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    common::send_signal(&first.0, "KILL");
    let _ = first.0.wait();
    let stored_before = {
        use pixdex_core::Store;
        probe.record_count().unwrap()
    };
    assert!(stored_before < n as usize, "killed before the end ({stored_before} stored)");
    // After the lease, a second worker takes everything that is left.
    std::thread::sleep(std::time::Duration::from_millis(2500));
    let summary = ok(index_command(&lib, &url, &index_dir, &lease).output().unwrap());
    let (found, embedded, reused) = counts(&summary);
    eprintln!("killed after {stored_before} stored; the second worker: {summary}");
    assert_eq!(found, n as usize);
    assert_eq!(embedded, n as usize - stored_before, "nothing embedded twice: {summary}");
    assert_eq!(reused, 0, "{summary}");
    assert_each_image_once(&url, &index_dir, n as usize);
}
