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
