//! `pixdex index`, `search` and `stats` end to end on generated libraries: real files, real
//! sled, the tiny fixture model (and the real-weights model where present).

mod common;

use common::{fixtures, ok, picture, pixdex, pixdex_command, shared_dir, tiny_model};
use pixdex_core::{Collection, ImageStatus};
use std::path::{Path, PathBuf};
use std::process::Output;

/// `pixdex index ROOT --db DB` with the tiny model.
fn run_index(root: &Path, db: &Path, extra: &[&str]) -> Output {
    let model = tiny_model();
    let mut args =
        vec!["index", root.to_str().unwrap(), "--db", db.to_str().unwrap(), "--model", model.to_str().unwrap(), "-q"];
    args.extend_from_slice(extra);
    pixdex(&args)
}

fn index(root: &Path, db: &Path, extra: &[&str]) -> String {
    ok(run_index(root, db, extra))
}

/// Nested folders, several formats, a duplicate, corrupt, truncated and empty files, an
/// EXIF-rotated JPEG, a non-image and a symlink loop.
fn make_library(root: &Path) {
    std::fs::create_dir_all(root.join("a/b")).unwrap();
    std::fs::create_dir_all(root.join(".hidden")).unwrap();
    picture(1, 64, 48).save(root.join("one.png")).unwrap();
    picture(2, 80, 60).save(root.join("a/two.jpg")).unwrap();
    picture(3, 50, 70).save(root.join("a/b/three.bmp")).unwrap();
    picture(4, 40, 40).save(root.join("a/b/four.gif")).unwrap();
    picture(5, 30, 60).save(root.join("a/five.webp")).unwrap();
    picture(6, 64, 32).save(root.join("a/b/six.tiff")).unwrap();
    picture(7, 20, 20).save(root.join(".hidden/seven.png")).unwrap();
    std::fs::copy(root.join("one.png"), root.join("a/one-copy.png")).unwrap();
    std::fs::copy(fixtures().join("images/exif_rot6.jpg"), root.join("a/rotated.jpg")).unwrap();
    std::fs::write(root.join("a/corrupt.jpg"), b"\xFF\xD8\xFF\xE0 this is not really a jpeg").unwrap();
    let jpg = std::fs::read(root.join("a/two.jpg")).unwrap();
    std::fs::write(root.join("a/b/truncated.jpg"), &jpg[..jpg.len() / 3]).unwrap();
    std::fs::write(root.join("empty.png"), b"").unwrap();
    std::fs::write(root.join("notes.txt"), b"not an image").unwrap();
    #[cfg(unix)]
    std::os::unix::fs::symlink(root, root.join("a/b/loop")).unwrap();
}

fn state(db: &Path) -> Vec<(String, bool)> {
    let c = Collection::open(db).unwrap();
    let mut v: Vec<(String, bool)> = c
        .records()
        .map(|r| r.unwrap().1)
        .map(|r| (r.path.to_string_lossy().into_owned(), r.status == ImageStatus::Embedded))
        .collect();
    v.sort();
    v
}

#[test]
fn index_modify_reindex_exact_state() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("lib");
    let db = tmp.path().join("db");
    make_library(&root);
    let root = std::fs::canonicalize(&root).unwrap();
    let summary = index(&root, &db, &["--follow-links"]);
    assert!(summary.contains("11 images"), "{summary}");
    let p = |s: &str| root.join(s).to_string_lossy().into_owned();
    let want: Vec<(String, bool)> = {
        let mut w = vec![
            (p("one.png"), true),
            (p("a/two.jpg"), true),
            (p("a/b/three.bmp"), true),
            (p("a/b/four.gif"), true),
            (p("a/five.webp"), true),
            (p("a/b/six.tiff"), true),
            (p("a/one-copy.png"), true),
            (p("a/rotated.jpg"), true),
            (p("a/corrupt.jpg"), false),
            (p("a/b/truncated.jpg"), false),
            (p("empty.png"), false),
        ];
        w.sort();
        w
    };
    // The symlink loop is reported, not followed forever; hidden files and notes.txt are skipped.
    assert_eq!(state(&db), want);
    {
        let c = Collection::open(&db).unwrap();
        let rotated = c.get(c.id_by_path(&root.join("a/rotated.jpg")).unwrap().unwrap()).unwrap().unwrap();
        assert_eq!((rotated.width, rotated.height), (24, 40), "EXIF orientation applied");
        let one = c.id_by_path(&root.join("one.png")).unwrap().unwrap();
        let copy = c.id_by_path(&root.join("a/one-copy.png")).unwrap().unwrap();
        assert_eq!(c.global_vector(one).unwrap(), c.global_vector(copy).unwrap());
        let failed = c.get(c.id_by_path(&root.join("empty.png")).unwrap().unwrap()).unwrap().unwrap();
        assert!(matches!(failed.status, ImageStatus::Failed { .. }));
    }

    // Unchanged: nothing is read again.
    let again = index(&root, &db, &[]);
    assert!(again.contains("0 embedded") && again.contains("11 unchanged"), "{again}");

    // Add, change, delete, move.
    picture(8, 50, 50).save(root.join("a/new.png")).unwrap();
    picture(9, 80, 60).save(root.join("a/two.jpg")).unwrap();
    std::fs::remove_file(root.join("a/b/three.bmp")).unwrap();
    std::fs::rename(root.join("a/b/six.tiff"), root.join("six-moved.tiff")).unwrap();
    let old_six = {
        let c = Collection::open(&db).unwrap();
        c.global_vector(c.id_by_path(&root.join("a/b/six.tiff")).unwrap().unwrap()).unwrap().unwrap()
    };
    let out = index(&root, &db, &[]);
    assert!(out.contains("2 embedded") && out.contains("1 reused") && out.contains("2 removed"), "{out}");
    let mut want2: Vec<(String, bool)> = want
        .into_iter()
        .filter(|(path, _)| *path != p("a/b/three.bmp") && *path != p("a/b/six.tiff"))
        .chain([(p("a/new.png"), true), (p("six-moved.tiff"), true)])
        .collect();
    want2.sort();
    assert_eq!(state(&db), want2);
    let c = Collection::open(&db).unwrap();
    let moved = c.global_vector(c.id_by_path(&root.join("six-moved.tiff")).unwrap().unwrap()).unwrap().unwrap();
    assert_eq!(moved, old_six, "a moved file reuses its embedding");
}

#[test]
fn missing_or_emptied_root_removes_nothing_without_prune() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("drive");
    let db = tmp.path().join("db");
    std::fs::create_dir_all(&root).unwrap();
    for i in 0..3 {
        picture(i, 40, 40).save(root.join(format!("{i}.png"))).unwrap();
    }
    index(&root, &db, &[]);
    assert_eq!(state(&db).len(), 3);
    // The drive is unplugged.
    std::fs::rename(&root, tmp.path().join("elsewhere")).unwrap();
    let out = run_index(&root, &db, &[]);
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("missing"), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(state(&db).len(), 3);
    // Mounted but empty.
    std::fs::create_dir_all(&root).unwrap();
    let out = run_index(&root, &db, &[]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("--prune"));
    assert_eq!(state(&db).len(), 3);
    // Explicit prune.
    index(&root, &db, &["--prune"]);
    assert_eq!(state(&db).len(), 0);
}

#[test]
fn another_model_on_the_same_collection_is_an_error() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("lib");
    std::fs::create_dir_all(&root).unwrap();
    picture(1, 40, 40).save(root.join("x.png")).unwrap();
    let db = tmp.path().join("db");
    index(&root, &db, &[]);
    let other = fixtures().join("models/b-hub");
    let out = pixdex(&[
        "index",
        root.to_str().unwrap(),
        "--db",
        db.to_str().unwrap(),
        "--model",
        other.to_str().unwrap(),
        "-q",
    ]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("built with"), "{}", String::from_utf8_lossy(&out.stderr));
}

/// Starts `pixdex index` on 300 generated pictures in batches of 4 and returns once some batches
/// are committed (the sled log grows) or a time bound passes.
fn start_long_index(tmp: &Path, n: u32) -> (PathBuf, PathBuf, std::process::Child) {
    let root = tmp.join("lib");
    let db = tmp.join("db");
    std::fs::create_dir_all(&root).unwrap();
    for i in 0..n {
        picture(i, 96, 72).save(root.join(format!("{i:04}.png"))).unwrap();
    }
    let model = tiny_model();
    let mut child = pixdex_command()
        .args(["index", root.to_str().unwrap(), "--db", db.to_str().unwrap(), "--model", model.to_str().unwrap(), "-q"])
        .args(["--batch-size", "4"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let started = std::time::Instant::now();
    while started.elapsed() < std::time::Duration::from_secs(20) {
        std::thread::sleep(std::time::Duration::from_millis(100));
        let committed = std::fs::metadata(db.join("db/db")).map(|m| m.len()).unwrap_or(0);
        if committed > 200_000 || child.try_wait().unwrap().is_some() {
            break;
        }
    }
    (root, db, child)
}

#[test]
fn kill_9_mid_job_leaves_a_collection_that_opens_and_resumes() {
    let tmp = tempfile::tempdir().unwrap();
    let n = 300;
    let (root, db, mut child) = start_long_index(tmp.path(), n);
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    {
        let c = Collection::open(&db).expect("the collection opens after kill -9");
        let done = c.len().unwrap();
        eprintln!("{done} of {n} images were committed before the kill");
        for r in c.records() {
            let (id, rec) = r.unwrap();
            assert_eq!(rec.status, ImageStatus::Embedded);
            assert!(c.global_vector(id).unwrap().is_some(), "record without its vector");
        }
    }
    let out = index(&root, &db, &[]);
    assert!(out.contains(&format!("{n} images")), "{out}");
    let c = Collection::open(&db).unwrap();
    assert_eq!(c.len().unwrap(), n as usize);
    assert_eq!(c.vector_count(), n as usize);
}

/// The real ViT-S/14 finds the original of an edited copy (resized, re-encoded, brightened) at rank 1.
#[test]
fn real_weights_search_finds_the_original_of_an_edited_copy() {
    let shared = shared_dir();
    let model = shared.join("data/models/pixio-s14-real");
    if !model.join("model.safetensors").is_file() {
        assert!(std::env::var("PIXDEX_REQUIRE_SHARED_DATA").is_err(), "shared data required but missing");
        eprintln!("NOTE: skipping real-weights search test: no {}", model.display());
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let lib = tmp.path().join("lib");
    std::fs::create_dir_all(&lib).unwrap();
    let photos = shared.join("data/photos/gcompris");
    let mut names: Vec<PathBuf> = std::fs::read_dir(&photos).unwrap().map(|e| e.unwrap().path()).collect();
    names.sort();
    for p in names.iter().take(30) {
        std::fs::copy(p, lib.join(p.file_name().unwrap())).unwrap();
    }
    let original = lib.join(names[7].file_name().unwrap());
    let edited = tmp.path().join("edited.jpg");
    let img = image::open(&original).unwrap();
    let small =
        img.resize(img.width() * 3 / 4, img.height() * 3 / 4, image::imageops::FilterType::Triangle).brighten(25);
    small.to_rgb8().save_with_format(&edited, image::ImageFormat::Jpeg).unwrap();
    let db = tmp.path().join("db");
    ok(pixdex(&[
        "index",
        lib.to_str().unwrap(),
        "--db",
        db.to_str().unwrap(),
        "--model",
        model.to_str().unwrap(),
        "-q",
    ]));
    let out = ok(pixdex(&["search", edited.to_str().unwrap(), "--db", db.to_str().unwrap(), "-k", "5", "--json"]));
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(
        v["results"][0]["path"].as_str().unwrap(),
        std::fs::canonicalize(&original).unwrap().to_str().unwrap(),
        "{out}"
    );
    let stats: serde_json::Value =
        serde_json::from_str(&ok(pixdex(&["stats", "--db", db.to_str().unwrap(), "--json", "--by-kind"]))).unwrap();
    assert_eq!(stats["embedded"], 30);
    // Every kind of value is stored once per image; quantised, a 16×16 patch grid is its
    // 7-byte header and 32 code bytes per patch.
    let kinds = &stats["stored_bytes"];
    for kind in ["global", "patches", "views", "flipped_patches", "regions"] {
        assert_eq!(kinds[kind]["values"], 30, "{kind}: {stats}");
    }
    assert_eq!(kinds["patches"]["per_value"], 7 + 16 * 16 * 32, "{stats}");
    assert_eq!(kinds["global"]["per_value"], 384 * 4, "{stats}");
    assert!(stats["patch_codec"].as_str().unwrap().contains("product-quantised"), "{stats}");
}

/// Ctrl-C (SIGINT) finishes the batch in flight, writes it, says so, and the next run resumes.
#[cfg(unix)]
#[test]
fn ctrl_c_stops_cleanly_after_the_current_batch() {
    let tmp = tempfile::tempdir().unwrap();
    let n = 300;
    let (root, db, child) = start_long_index(tmp.path(), n);
    let interrupted =
        std::process::Command::new("kill").args(["-INT", &child.id().to_string()]).status().unwrap().success();
    let out = child.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    if interrupted && out.status.code() == Some(130) {
        assert!(stdout.contains("cancelled"), "{stdout}");
    } else {
        // The job won the race and finished first.
        assert!(out.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    }
    let done = Collection::open(&db).unwrap().len().unwrap();
    eprintln!("{done} of {n} images written before Ctrl-C");
    let resumed = index(&root, &db, &[]);
    assert!(resumed.contains(&format!("{done} unchanged")), "{resumed}");
    assert_eq!(Collection::open(&db).unwrap().len().unwrap(), n as usize);
}

/// Files the crawl leaves out but that still exist (excluded by a glob, hidden) keep their records.
#[test]
fn excluded_files_are_not_removed() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("lib");
    let db = tmp.path().join("db");
    std::fs::create_dir_all(&root).unwrap();
    picture(1, 40, 40).save(root.join("a.png")).unwrap();
    picture(2, 40, 40).save(root.join("b.jpg")).unwrap();
    index(&root, &db, &[]);
    assert_eq!(state(&db).len(), 2);
    let out = index(&root, &db, &["--exclude", "**/*.jpg"]);
    assert!(out.contains("0 removed"), "{out}");
    assert_eq!(state(&db).len(), 2);
    std::fs::remove_file(root.join("b.jpg")).unwrap();
    let out = index(&root, &db, &[]);
    assert!(out.contains("1 removed"), "{out}");
    assert_eq!(state(&db).len(), 1);
}

/// `--no-dedup-views` stores only the image itself; a later run with views (the default) embeds
/// those images again, so that a collection from before the views gains them; then nothing
/// changes.
#[test]
fn views_are_stored_by_default_and_backfilled() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("lib");
    let db = tmp.path().join("db");
    std::fs::create_dir_all(&root).unwrap();
    picture(1, 40, 40).save(root.join("a.png")).unwrap();
    picture(2, 48, 40).save(root.join("b.png")).unwrap();
    std::fs::copy(root.join("a.png"), root.join("a-copy.png")).unwrap();
    let with_views = |db: &Path| -> Vec<bool> {
        let c = Collection::open(db).unwrap();
        let mut ids: Vec<_> = c.records().map(|r| r.unwrap().0).collect();
        ids.sort();
        ids.iter().map(|&id| c.has_view_vectors(id).unwrap() && c.flipped_patch_grid(id).unwrap().is_some()).collect()
    };
    let out = index(&root, &db, &["--no-dedup-views"]);
    assert!(out.contains("3 images: 3 embedded"), "{out}");
    assert_eq!(with_views(&db), [false; 3]);
    let out = index(&root, &db, &["--no-dedup-views"]);
    assert!(out.contains("3 unchanged"), "{out}");
    let out = index(&root, &db, &[]);
    assert!(out.contains("3 embedded") && out.contains("0 unchanged"), "the views are backfilled: {out}");
    assert_eq!(with_views(&db), [true; 3]);
    let out = index(&root, &db, &[]);
    assert!(out.contains("0 embedded") && out.contains("3 unchanged"), "{out}");
    // The mirrored view of a mirrored copy is the original.
    let c = Collection::open(&db).unwrap();
    let a = c.id_by_path(&root.canonicalize().unwrap().join("a.png")).unwrap().unwrap();
    let (flipped, _) = c.view_vectors(a).unwrap().unwrap();
    drop(c);
    image::open(root.join("a.png")).unwrap().fliph().save(root.join("a-mirror.png")).unwrap();
    index(&root, &db, &[]);
    let c = Collection::open(&db).unwrap();
    let m = c.id_by_path(&root.canonicalize().unwrap().join("a-mirror.png")).unwrap().unwrap();
    let plain = c.global_vector(m).unwrap().unwrap();
    assert!(plain.dot(flipped.as_slice()) > 0.999, "{}", plain.dot(flipped.as_slice()));
}

/// `--config FILE`: the file's settings apply, an environment variable overrides them, and
/// `pixdex config check` names a bad setting.
#[test]
fn a_config_file_is_read_and_the_environment_overrides_it() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("lib");
    std::fs::create_dir_all(&root).unwrap();
    picture(1, 64, 48).save(root.join("one.png")).unwrap();
    let (from_file, from_env) = (tmp.path().join("file-db"), tmp.path().join("env-db"));
    let config = tmp.path().join("pixdex.toml");
    let text = format!(
        "db = {:?}\nmodel = {:?}\n[index]\nroots = [{:?}]\nquiet = true\n",
        from_file.display().to_string(),
        tiny_model().display().to_string(),
        root.display().to_string()
    );
    std::fs::write(&config, text).unwrap();
    let summary = ok(pixdex(&["index", "--config", config.to_str().unwrap()]));
    assert!(summary.contains("1 images"), "{summary}");
    assert!(from_file.join("db").exists());
    let out = ok(pixdex_command()
        .args(["index", "--config", config.to_str().unwrap()])
        .env("PIXDEX_DB", &from_env)
        .output()
        .unwrap());
    assert!(out.contains("1 embedded"), "{out}");
    assert!(from_env.join("db").exists(), "PIXDEX_DB overrides the file's db");
    assert!(ok(pixdex(&["config", "check", config.to_str().unwrap()])).contains(": ok"));
    std::fs::write(&config, "[index]\nbatch-sise = 3\n").unwrap();
    let bad = pixdex(&["config", "check", config.to_str().unwrap()]);
    assert!(!bad.status.success() && String::from_utf8_lossy(&bad.stderr).contains("batch-sise"));
}
