//! `pixdex dedup` end to end: a generated library with exact copies, near copies (the same
//! picture resized and re-encoded, which even the tiny random-weight model maps within 0.999) and
//! distinct pictures (whose scores under that model reach 0.99, hence `--threshold 0.999`, and
//! `--no-verify`: a random-weight model's patches mean nothing),
//! indexed by the real binary; the reports (JSON, CSV, text, and HTML rendered by headless
//! Chromium), the dry run, the moves, the log and the undo. Every wait is bounded.
#![cfg(unix)]

mod common;

use common::{arg, output_within, picture, pixdex_command, tiny_model};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, UNIX_EPOCH};

/// Generous for a debug build on a busy two-core machine; a hang still fails the test.
const COMMAND_LIMIT: Duration = Duration::from_secs(120);

/// The near copies score at least this with their original; distinct pictures stay below.
const THRESHOLD: &str = "0.999";

/// A file name that needs escaping everywhere: HTML, CSV, JSON.
const ODD_NAME: &str = "p3, <b>&\"it's\".jpg";

/// A generated, indexed library.
struct Library {
    _tmp: tempfile::TempDir,
    /// Its folder (canonical, as the collection stores paths).
    lib: PathBuf,
    db: PathBuf,
    /// Scratch space next to it.
    scratch: PathBuf,
}

impl Library {
    fn path(&self, relative: &str) -> PathBuf {
        self.lib.join(relative)
    }

    fn size(&self, relative: &str) -> u64 {
        std::fs::metadata(self.path(relative)).unwrap().len()
    }

    /// Runs `pixdex dedup --db DB --threshold 0.999 --no-verify -q ARGS`.
    fn dedup(&self, args: &[&str]) -> Output {
        run(pixdex_command()
            .args(["dedup", "--db", arg(&self.db), "--threshold", THRESHOLD, "--no-verify", "-q"])
            .args(args))
    }
}

fn run(cmd: &mut Command) -> Output {
    output_within(cmd, COMMAND_LIMIT)
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Stdout of a run that must succeed.
fn ok(out: Output) -> String {
    common::ok(out)
}

fn set_mtime(path: &Path, secs: u64) {
    let file = std::fs::File::options().write(true).open(path).unwrap();
    file.set_modified(UNIX_EPOCH + Duration::from_secs(secs)).unwrap();
}

fn save_jpeg(image: &image::DynamicImage, path: &Path) {
    image.to_rgb8().save_with_format(path, image::ImageFormat::Jpeg).unwrap();
}

/// `p1.png` with an exact copy (`copies/p1.png`, newer) and a smaller re-encoded near copy
/// (`p1-small.jpg`, older); `p3.png` with a same-size JPEG near copy under an odd name (a smaller
/// file); distinct `p2`, `p4`, `p5`. Indexed with the tiny model.
fn library() -> Library {
    let tmp = tempfile::tempdir().unwrap();
    let lib = tmp.path().join("lib");
    std::fs::create_dir_all(lib.join("copies")).unwrap();
    std::fs::create_dir_all(lib.join("more")).unwrap();
    let lib = std::fs::canonicalize(&lib).unwrap();
    let p1 = image::DynamicImage::ImageRgb8(picture(1, 160, 120));
    p1.save(lib.join("p1.png")).unwrap();
    std::fs::copy(lib.join("p1.png"), lib.join("copies/p1.png")).unwrap();
    save_jpeg(&p1.resize_exact(120, 90, image::imageops::FilterType::Triangle), &lib.join("p1-small.jpg"));
    let p3 = image::DynamicImage::ImageRgb8(picture(3, 160, 120));
    p3.save(lib.join("p3.png")).unwrap();
    save_jpeg(&p3, &lib.join("more").join(ODD_NAME));
    for seed in [2, 4, 5] {
        picture(seed, 160, 120).save(lib.join(format!("p{seed}.png"))).unwrap();
    }
    let base = 1_600_000_000;
    set_mtime(&lib.join("p1-small.jpg"), base);
    set_mtime(&lib.join("p1.png"), base + 10);
    set_mtime(&lib.join("copies/p1.png"), base + 20);
    let db = tmp.path().join("db");
    let model = tiny_model();
    ok(run(pixdex_command().args(["index", arg(&lib), "--db", arg(&db), "--model", arg(&model), "-q"])));
    let scratch = tmp.path().join("scratch");
    std::fs::create_dir_all(&scratch).unwrap();
    Library { _tmp: tmp, lib, db, scratch }
}

/// Every file under `dir` with its bytes.
fn snapshot(dir: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    let mut files = BTreeMap::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(d) = pending.pop() {
        for entry in std::fs::read_dir(&d).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                pending.push(path);
            } else {
                files.insert(path.clone(), std::fs::read(&path).unwrap());
            }
        }
    }
    files
}

/// Where `--move-to DIR` puts a file.
fn moved_path(dir: &Path, original: &Path) -> PathBuf {
    dir.join(original.strip_prefix("/").unwrap())
}

/// (kind, keeper, members) with paths relative to the library, members sorted.
fn group_shapes(lib: &Library, json: &serde_json::Value) -> Vec<(String, String, Vec<String>)> {
    let rel = |v: &serde_json::Value| {
        Path::new(v.as_str().unwrap()).strip_prefix(&lib.lib).unwrap().to_string_lossy().into_owned()
    };
    let mut shapes: Vec<_> = json["groups"]
        .as_array()
        .unwrap()
        .iter()
        .map(|g| {
            let mut members: Vec<String> = g["members"].as_array().unwrap().iter().map(|m| rel(&m["path"])).collect();
            members.sort();
            (g["kind"].as_str().unwrap().to_string(), rel(&g["keeper"]), members)
        })
        .collect();
    shapes.sort();
    shapes
}

fn odd() -> String {
    format!("more/{ODD_NAME}")
}

#[test]
fn json_csv_and_text_reports() {
    let lib = library();
    let out = ok(lib.dedup(&["--json"]));
    let json: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(json.as_object().unwrap().keys().collect::<Vec<_>>(), vec!["groups"], "{out}");
    // The PNG is the larger file of the p3 pair.
    assert!(lib.size("p3.png") > lib.size(&odd()));
    let s = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    assert_eq!(
        group_shapes(&lib, &json),
        vec![
            ("exact".to_string(), "p1.png".to_string(), s(&["copies/p1.png", "p1.png"])),
            ("near".to_string(), "p1.png".to_string(), s(&["p1-small.jpg", "p1.png"])),
            ("near".to_string(), "p3.png".to_string(), vec![odd(), "p3.png".to_string()]),
        ],
        "{out}"
    );
    let groups = json["groups"].as_array().unwrap();
    assert_eq!(groups[0]["kind"], "exact", "exact groups come first");
    for g in groups {
        let members = g["members"].as_array().unwrap();
        assert_eq!(members[0]["path"], g["keeper"], "the keeper is listed first");
        assert_eq!(members[0]["keeper"], true);
        for m in members {
            let score = m["score"].as_f64().unwrap();
            assert!((0.999..=1.0).contains(&score), "{m}");
            assert!(m["width"].as_u64().unwrap() > 0 && m["size"].as_u64().unwrap() > 0, "{m}");
        }
        let reason = g["keeper_reason"].as_str().unwrap();
        let keeper = g["keeper"].as_str().unwrap();
        let expected = match (g["kind"].as_str().unwrap(), keeper.ends_with("p3.png")) {
            ("exact", _) => "oldest",
            (_, false) => "largest pixel count (160×120)",
            (_, true) => "larger file",
        };
        assert!(reason.starts_with(expected), "{reason} for {keeper}");
    }

    // Another keeper rule: the oldest of the p1 pair is the small JPEG.
    let json: serde_json::Value = serde_json::from_str(&ok(lib.dedup(&["--json", "--keep", "oldest,pixels"]))).unwrap();
    let shapes = group_shapes(&lib, &json);
    assert!(shapes.contains(&("near".into(), "p1-small.jpg".into(), s(&["p1-small.jpg", "p1.png"]))), "{shapes:?}");

    // Scope: a folder means the images inside it.
    let json: serde_json::Value =
        serde_json::from_str(&ok(lib.dedup(&["--json", "--prefix", arg(&lib.path("copies"))]))).unwrap();
    assert_eq!(json, serde_json::json!({"groups": []}));
    let json: serde_json::Value = serde_json::from_str(&ok(lib.dedup(&["--json", "--prefix", arg(&lib.lib)]))).unwrap();
    assert_eq!(json["groups"].as_array().unwrap().len(), 3);

    // CSV: one row per member, with a header, quoting the odd name.
    let csv_path = lib.scratch.join("report.csv");
    let out = ok(lib.dedup(&["--csv", arg(&csv_path)]));
    assert!(out.contains("wrote") && out.contains("3 groups"), "{out}");
    let mut reader = csv::Reader::from_path(&csv_path).unwrap();
    assert_eq!(
        reader.headers().unwrap(),
        vec!["group", "kind", "keeper", "path", "score", "width", "height", "size_bytes", "keeper_reason"]
    );
    let rows: Vec<csv::StringRecord> = reader.records().map(|r| r.unwrap()).collect();
    assert_eq!(rows.len(), 6);
    let odd_path = lib.path(&odd());
    let odd_row = rows.iter().find(|r| &r[3] == arg(&odd_path)).expect("the odd name round-trips");
    assert_eq!((&odd_row[1], &odd_row[2], &odd_row[5], &odd_row[6]), ("near", "false", "160", "120"));
    assert_eq!(odd_row[7].parse::<u64>().unwrap(), lib.size(&odd()));
    assert_eq!(rows.iter().filter(|r| &r[2] == "true").count(), 3, "one keeper per group");
    // `--csv -` goes to stdout, messages to stderr.
    let out = lib.dedup(&["--csv", "-"]);
    let mut reader = csv::Reader::from_reader(out.stdout.as_slice());
    assert_eq!(reader.records().count(), 6);
    assert!(stderr(&out).contains("3 groups"), "{}", stderr(&out));

    // Text: groups with the keeper marked, and the summary.
    let text = ok(lib.dedup(&[]));
    assert_eq!(text.matches("group ").count(), 3, "{text}");
    assert_eq!(text.lines().filter(|l| l.trim_start().starts_with("keep ")).count(), 3, "{text}");
    let reclaimable = lib.size("copies/p1.png") + lib.size("p1-small.jpg") + lib.size(&odd());
    assert!(
        text.contains("3 groups (1 exact, 2 near), 6 images in groups;")
            && text.contains(&format!("({reclaimable} bytes in the 3 copies not kept)")),
        "{text}"
    );
    assert!(text.contains(ODD_NAME), "{text}");
}

#[test]
fn moves_are_a_dry_run_without_apply_then_logged_and_undone() {
    let lib = library();
    let before = snapshot(&lib.lib);
    let aside = lib.scratch.join("aside");
    let non_keepers = [lib.path("copies/p1.png"), lib.path("p1-small.jpg"), lib.path(&odd())];

    // Dry run: says what it would do, touches nothing.
    let out = ok(lib.dedup(&["--move-to", arg(&aside)]));
    assert_eq!(out.lines().filter(|l| l.starts_with("would move ")).count(), 3, "{out}");
    assert!(out.contains("dry run") && out.contains("--apply"), "{out}");
    for f in &non_keepers {
        assert!(out.contains(&format!("→ {}", moved_path(&aside, f).display())), "{out}");
    }
    assert_eq!(snapshot(&lib.lib), before);
    assert!(!aside.exists(), "a dry run creates nothing");

    // A name already taken in the destination gets a suffix; the file there stays as it was.
    let taken = moved_path(&aside, &lib.path("p1-small.jpg"));
    std::fs::create_dir_all(taken.parent().unwrap()).unwrap();
    std::fs::write(&taken, b"someone else's file").unwrap();

    let out = ok(lib.dedup(&["--move-to", arg(&aside), "--apply"]));
    assert_eq!(out.lines().filter(|l| l.starts_with("moved ")).count(), 4, "three moves and the total: {out}");
    assert!(out.contains("until the next `pixdex index`"), "{out}");
    let log = PathBuf::from(
        out.lines().find_map(|l| l.strip_prefix("move log: ")).unwrap_or_else(|| panic!("the log is named: {out}")),
    );
    assert_eq!(log.parent().unwrap(), std::fs::canonicalize(&aside).unwrap());
    let name = log.file_name().unwrap().to_str().unwrap();
    assert!(name.starts_with("pixdex-moves-") && name.ends_with(".jsonl"), "{name}");
    assert_eq!(std::fs::read(&taken).unwrap(), b"someone else's file");
    let suffixed = taken.with_file_name("p1-small-1.jpg");
    let expected_places = [
        (lib.path("copies/p1.png"), moved_path(&aside, &lib.path("copies/p1.png"))),
        (lib.path("p1-small.jpg"), suffixed),
        (lib.path(&odd()), moved_path(&aside, &lib.path(&odd()))),
    ];
    for (from, to) in &expected_places {
        assert!(!from.exists(), "{} moved", from.display());
        assert_eq!(&std::fs::read(to).unwrap(), &before[from], "{} holds {}", to.display(), from.display());
    }
    // The keepers and the distinct pictures stay.
    let now = snapshot(&lib.lib);
    let mut expected = before.clone();
    for f in &non_keepers {
        expected.remove(f);
    }
    assert_eq!(now, expected);

    // The log: a line before and after each move, with the file's size and blake3.
    let lines: Vec<serde_json::Value> =
        std::fs::read_to_string(&log).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(lines.len(), 6);
    for (from, to) in &expected_places {
        let states: Vec<&str> = lines
            .iter()
            .filter(|l| l["from"] == arg(from) && l["to"] == arg(to))
            .map(|l| l["state"].as_str().unwrap())
            .collect();
        assert_eq!(states, vec!["moving", "moved"], "{lines:?}");
        let line = lines.iter().find(|l| l["from"] == arg(from)).unwrap();
        let bytes = &before[from];
        assert_eq!(line["size"], bytes.len() as u64);
        assert_eq!(line["blake3"], blake3::hash(bytes).to_hex().as_str());
    }

    // Undo: everything back, byte for byte; the other file in the destination stays.
    let out = ok(run(pixdex_command().args(["dedup", "--undo", arg(&log)])));
    assert!(out.contains("3 restored, 0 already in place, 0 failed"), "{out}");
    assert_eq!(snapshot(&lib.lib), before);
    assert_eq!(std::fs::read(&taken).unwrap(), b"someone else's file");
    for (_, to) in &expected_places {
        assert!(!to.exists());
    }
    // The folders the moves made are gone where empty.
    assert!(!moved_path(&aside, &lib.path("more")).exists());
    // Again: nothing to do.
    let out = ok(run(pixdex_command().args(["dedup", "--undo", arg(&log)])));
    assert!(out.contains("0 restored, 3 already in place, 0 failed"), "{out}");
    assert_eq!(snapshot(&lib.lib), before);
}

#[test]
fn undo_never_overwrites_and_a_group_without_its_keeper_stays() {
    let lib = library();
    let before = snapshot(&lib.lib);
    let aside = lib.scratch.join("aside");
    // The p3 keeper is gone since indexing: its copy must stay.
    std::fs::rename(lib.path("p3.png"), lib.scratch.join("p3.png")).unwrap();
    let out = lib.dedup(&["--move-to", arg(&aside), "--apply"]);
    assert!(out.status.success(), "{}\n{}", stdout(&out), stderr(&out));
    assert!(stderr(&out).contains("skipped group") && stderr(&out).contains("p3.png is missing"), "{}", stderr(&out));
    assert!(lib.path(&odd()).exists(), "the copy of a missing keeper stays");
    assert!(!lib.path("copies/p1.png").exists() && !lib.path("p1-small.jpg").exists());
    let log = PathBuf::from(stdout(&out).lines().find_map(|l| l.strip_prefix("move log: ")).unwrap());

    // A file appears where one of the moved files was.
    std::fs::write(lib.path("p1-small.jpg"), b"a new file").unwrap();
    let out = run(pixdex_command().args(["dedup", "--undo", arg(&log)]));
    assert_eq!(out.status.code(), Some(1), "{}\n{}", stdout(&out), stderr(&out));
    assert!(stderr(&out).contains("not overwriting"), "{}", stderr(&out));
    assert!(stdout(&out).contains("1 restored, 0 already in place, 1 failed"), "{}", stdout(&out));
    assert_eq!(std::fs::read(lib.path("p1-small.jpg")).unwrap(), b"a new file");
    assert_eq!(std::fs::read(lib.path("copies/p1.png")).unwrap(), before[&lib.path("copies/p1.png")]);
    let still_aside = moved_path(&std::fs::canonicalize(&aside).unwrap(), &lib.path("p1-small.jpg"));
    assert_eq!(std::fs::read(&still_aside).unwrap(), before[&lib.path("p1-small.jpg")]);

    // A log that is not one.
    let bogus = lib.scratch.join("bogus.jsonl");
    std::fs::write(&bogus, "hello\n").unwrap();
    let out = run(pixdex_command().args(["dedup", "--undo", arg(&bogus)]));
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("lists no moves"), "{}", stderr(&out));
}

/// Moves to another filesystem (`/dev/shm` where it is a tmpfs apart from the temp folder) go by
/// copy, verify and remove, and come back the same way.
#[test]
fn moves_across_filesystems_copy_verify_and_come_back() {
    use std::os::unix::fs::MetadataExt;
    let lib = library();
    let shm = Path::new("/dev/shm");
    let other =
        std::fs::metadata(shm).ok().filter(|m| m.is_dir() && m.dev() != std::fs::metadata(&lib.lib).unwrap().dev());
    let Some(_) = other else {
        eprintln!("NOTE: skipping the cross-filesystem move test: no /dev/shm on another filesystem");
        return;
    };
    let aside = tempfile::tempdir_in(shm).unwrap();
    let before = snapshot(&lib.lib);
    let mtime = std::fs::metadata(lib.path("p1-small.jpg")).unwrap().modified().unwrap();
    let out = ok(lib.dedup(&["--move-to", arg(aside.path()), "--apply"]));
    let moved = moved_path(aside.path(), &lib.path("p1-small.jpg"));
    assert_eq!(std::fs::read(&moved).unwrap(), before[&lib.path("p1-small.jpg")], "{out}");
    assert_eq!(std::fs::metadata(&moved).unwrap().modified().unwrap(), mtime, "the copy keeps the mtime");
    assert!(!lib.path("p1-small.jpg").exists());
    let log = PathBuf::from(out.lines().find_map(|l| l.strip_prefix("move log: ")).unwrap());
    ok(run(pixdex_command().args(["dedup", "--undo", arg(&log)])));
    assert_eq!(snapshot(&lib.lib), before);
    assert_eq!(std::fs::metadata(lib.path("p1-small.jpg")).unwrap().modified().unwrap(), mtime);
    let left: Vec<_> = snapshot(aside.path()).into_keys().collect();
    assert_eq!(left, vec![log], "only the log is left");
}

#[test]
fn a_locked_collection_says_why() {
    let lib = library();
    let _held = pixdex_core::Collection::open(&lib.db).unwrap();
    let out = lib.dedup(&[]);
    assert_eq!(out.status.code(), Some(2));
    let err = stderr(&out);
    assert!(err.contains("hint:") && err.contains("pixdex dedup"), "{err}");
}

/// The first Chromium on PATH (or `$PIXDEX_CHROMIUM`).
fn chromium() -> Option<PathBuf> {
    if let Some(path) = std::env::var_os("PIXDEX_CHROMIUM") {
        return Some(PathBuf::from(path));
    }
    let path = std::env::var_os("PATH")?;
    ["chromium", "chromium-browser", "google-chrome", "google-chrome-stable"]
        .iter()
        .flat_map(|name| std::env::split_paths(&path).map(move |dir| dir.join(name)))
        .find(|candidate| candidate.is_file())
}

/// The report, loaded in headless Chromium: every group is there, every thumbnail decodes, the
/// missing file is a placeholder, and the odd name is text, not markup.
#[test]
fn html_report_renders_in_headless_chromium() {
    let Some(browser) = chromium() else {
        // CI (.ci/run) installs Chromium and sets this: there, a skip is a failure.
        assert!(
            !std::env::var("PIXDEX_REQUIRE_CHROMIUM").is_ok_and(|v| v == "1"),
            "PIXDEX_REQUIRE_CHROMIUM=1 but no chromium on PATH (apt-get install chromium, or set PIXDEX_CHROMIUM)"
        );
        eprintln!("NOTE: skipping the HTML report test: no chromium on PATH (apt-get install chromium)");
        return;
    };
    let lib = library();
    // A member gone since indexing: a placeholder, not a failure.
    std::fs::remove_file(lib.path("copies/p1.png")).unwrap();
    let report = lib.scratch.join("report.html");
    let out = ok(lib.dedup(&["--html", arg(&report)]));
    assert!(out.contains(&format!("wrote {}", report.display())) && out.contains("3 groups"), "{out}");
    let html = std::fs::read_to_string(&report).unwrap();
    assert!(!html.contains("http://") && !html.contains("https://"), "self-contained");
    assert_eq!(html.matches("src=\"data:image/jpeg;base64,").count(), 5);

    let profile = lib.scratch.join("chromium-profile");
    let url = format!("file://{}", report.display());
    let out = run(Command::new(&browser).args([
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--virtual-time-budget=5000",
        &format!("--user-data-dir={}", profile.display()),
        "--dump-dom",
        &url,
    ]));
    let dom = stdout(&out);
    assert!(out.status.success() && dom.contains("</html>"), "chromium failed ({}):\n{}", out.status, stderr(&out));
    assert_eq!(dom.matches("<section class=\"group ").count(), 3, "{dom}");
    assert_eq!(dom.matches("class=\"tag\">Keep<").count(), 3, "a keeper per group");
    let body = dom.find("<body").map(|i| &dom[i..dom[i..].find('>').unwrap() + i]).unwrap();
    for attribute in ["data-images=\"5\"", "data-images-decoded=\"5\"", "data-images-state=\"all-decoded\""] {
        assert!(body.contains(attribute), "{attribute} in {body}");
    }
    assert_eq!(dom.matches("file missing").count(), 1, "the removed copy is a placeholder");
    assert!(dom.contains("p3, &lt;b&gt;&amp;\"it's\".jpg"), "the odd name is text");
    assert!(!dom.contains("<b>&amp;"), "no markup from a file name");
    assert!(
        dom.contains("largest pixel count (160×120)") && dom.contains("Similarity <b>"),
        "keeper reasons and scores"
    );
}
