//! `pixdex region`: the real model finds a pasted object and its box (offline, JSON and text);
//! bad boxes and collections without region grids fail with messages that say what to do.

mod common;

use common::{arg, ok, picture, pixdex, shared_dir, tiny_model};
use std::path::{Path, PathBuf};

/// The cat's eye and nose in `skimage/chelsea.png` (not in the library): left, top, width, height.
const OBJECT: (u32, u32, u32, u32) = (125, 75, 150, 120);

/// Where the object is pasted, half a region-grid cell off on both axes.
const PASTED: (u32, u32) = (231, 131);

/// The same library as the server's e2e region test.
const OTHERS: [&str; 7] = [
    "kde/path_640x480.jpg",
    "skimage/coffee.jpg",
    "kde/colorfulcups_640x480.jpg",
    "gcompris/explore_monuments_india_goldentemple.jpg",
    "gcompris/categorization_renewable_windmill3.jpg",
    "skimage/rocket.jpg",
    "gcompris/erase_giraffe.jpg",
];

fn json(out: &str) -> serde_json::Value {
    serde_json::from_str(out).unwrap_or_else(|e| panic!("not JSON ({e}): {out}"))
}

fn stderr(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// `[x, y, w, h]` of a result's box, which must have exactly those four keys.
fn result_box(result: &serde_json::Value) -> [f64; 4] {
    let b = result["box"].as_object().unwrap_or_else(|| panic!("no box: {result}"));
    assert_eq!(b.len(), 4, "{result}");
    ["x", "y", "w", "h"].map(|k| b[k].as_f64().unwrap_or_else(|| panic!("box.{k}: {result}")))
}

fn iou(a: [f64; 4], b: [f64; 4]) -> f64 {
    let ix = ((a[0] + a[2]).min(b[0] + b[2]) - a[0].max(b[0])).max(0.0);
    let iy = ((a[1] + a[3]).min(b[1] + b[3]) - a[1].max(b[1])).max(0.0);
    ix * iy / (a[2] * a[3] + b[2] * b[3] - ix * iy)
}

/// The library (a few photos and the host with the object pasted in), the object as a file of
/// its own, and the host's path.
fn pasted_library(shared: &Path, dir: &Path) -> (PathBuf, PathBuf, PathBuf) {
    let lib = dir.join("lib");
    std::fs::create_dir_all(&lib).unwrap();
    let photo = |name: &str| image::open(shared.join("data/photos").join(name)).unwrap().to_rgb8();
    for name in OTHERS {
        photo(name).save(lib.join(Path::new(name).file_name().unwrap()).with_extension("png")).unwrap();
    }
    let (ox, oy, ow, oh) = OBJECT;
    let object = image::imageops::crop_imm(&photo("skimage/chelsea.png"), ox, oy, ow, oh).to_image();
    let mut host = photo("gcompris/explore_monuments_usa_navajo.jpg");
    image::imageops::replace(&mut host, &object, PASTED.0 as i64, PASTED.1 as i64);
    host.save(lib.join("host.png")).unwrap();
    let query = dir.join("object.png");
    object.save(&query).unwrap();
    (lib.canonicalize().unwrap(), query, lib.join("host.png").canonicalize().unwrap())
}

#[test]
fn real_weights_region_finds_a_pasted_object_and_its_box() {
    let shared = shared_dir();
    let model = shared.join("data/models/pixio-s14-real");
    if !model.join("model.safetensors").is_file() {
        assert!(std::env::var("PIXDEX_REQUIRE_SHARED_DATA").is_err(), "shared data required but missing");
        eprintln!("NOTE: skipping real-weights region test: no {}", model.display());
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let (lib, query, host) = pasted_library(&shared, tmp.path());
    let db = tmp.path().join("db");
    // No dedup views: region search does not use them, and they triple the forward passes.
    ok(pixdex(&["index", arg(&lib), "--db", arg(&db), "--model", arg(&model), "--no-dedup-views", "-q"]));
    let (ow, oh) = (OBJECT.2 as f64, OBJECT.3 as f64);
    let pasted = [PASTED.0 as f64, PASTED.1 as f64, ow, oh];

    // The object's own pixels, offline (the collection's model is the default).
    let out = ok(pixdex(&["region", arg(&query), "--db", arg(&db), "-k", "3", "--json"]));
    let v = json(&out);
    assert_eq!(v.as_object().unwrap().len(), 1, "only `results`: {out}");
    let results = v["results"].as_array().expect("results");
    assert_eq!(results.len(), 3, "{out}");
    for r in results {
        let keys: Vec<&str> = r.as_object().unwrap().keys().map(String::as_str).collect();
        assert_eq!(keys.len(), 4, "id, path, score, box: {r}");
        assert!(r["id"].is_u64() && r["path"].is_string() && r["score"].is_f64(), "{r}");
        result_box(r);
    }
    assert_eq!(results[0]["path"].as_str().unwrap(), arg(&host), "{out}");
    let found = result_box(&results[0]);
    assert!(iou(found, pasted) >= 0.5, "box {found:?} against the pasted {pasted:?}");

    // The host with --box around the object: the same pixels, so the same answer; text output
    // is score, id, box, path.
    let region = format!("{},{},{ow},{oh}", PASTED.0, PASTED.1);
    let boxed = json(&ok(pixdex(&["region", arg(&host), "--box", &region, "--db", arg(&db), "-k", "3", "--json"])));
    assert_eq!(boxed, v);
    let text = ok(pixdex(&["region", arg(&host), "--box", &region, "--db", arg(&db), "-k", "1"]));
    let fields: Vec<&str> = text.trim_end().split('\t').collect();
    assert_eq!(fields.len(), 4, "{text}");
    assert_eq!(fields[1], results[0]["id"].to_string(), "{text}");
    assert_eq!(fields[2].split(',').count(), 4, "{text}");
    assert_eq!(fields[3], arg(&host), "{text}");
}

/// A tiny collection of generated pictures (the fixture model: fast, meaningless patches).
fn tiny_collection(dir: &Path, extra: &[&str]) -> (PathBuf, PathBuf) {
    let lib = dir.join("lib");
    std::fs::create_dir_all(&lib).unwrap();
    for i in 0..3 {
        picture(i, 48, 40).save(lib.join(format!("{i}.png"))).unwrap();
    }
    let (db, model) = (dir.join("db"), tiny_model());
    let args = [&["index", arg(&lib), "--db", arg(&db), "--model", arg(&model), "-q"], extra].concat();
    ok(pixdex(&args));
    (lib, db)
}

#[test]
fn bad_boxes_fail_with_a_clear_message() {
    // Malformed: a usage error before anything is opened.
    for (bad, says) in [("1,2,3", "3 numbers"), ("1,2,x,4", "`x` is not a number"), ("1,2,0,4", "no area")] {
        let out = pixdex(&["region", "nowhere.png", "--box", bad]);
        assert_eq!(out.status.code(), Some(2), "{bad}");
        let message = stderr(&out);
        assert!(message.contains(says) && message.contains("X,Y,W,H") && message.contains("--box"), "{message}");
    }
    // Well-formed but outside the image: said once the image is decoded.
    let tmp = tempfile::tempdir().unwrap();
    let (lib, db) = tiny_collection(tmp.path(), &[]);
    let out = pixdex(&["region", arg(&lib.join("1.png")), "--box", "40,10,20,20", "--db", arg(&db)]);
    assert_eq!(out.status.code(), Some(2));
    let message = stderr(&out);
    assert!(message.contains("not inside the 48×40 image") && message.contains("1.png"), "{message}");
    // A box inside it works.
    let v = json(&ok(pixdex(&["region", arg(&lib.join("1.png")), "--box", "8.5,4,30,20", "--db", arg(&db), "--json"])));
    assert_eq!(v["results"].as_array().map(Vec::len), Some(3), "{v}");
}

#[test]
fn a_collection_indexed_without_region_grids_says_how_to_get_them() {
    let tmp = tempfile::tempdir().unwrap();
    let (lib, db) = tiny_collection(tmp.path(), &["--no-region-grids"]);
    let out = pixdex(&["region", arg(&lib.join("0.png")), "--db", arg(&db)]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("index it without --no-region-grids"), "{}", stderr(&out));
    // Indexing again without the flag adds them, and region search works.
    ok(pixdex(&["index", arg(&lib), "--db", arg(&db), "--model", arg(&tiny_model()), "-q"]));
    let v = json(&ok(pixdex(&["region", arg(&lib.join("0.png")), "--db", arg(&db), "--json"])));
    assert_eq!(v["results"].as_array().map(Vec::len), Some(3), "{v}");
}
