//! The kill harness (issue 17): the real `pixdex` binary is killed with SIGKILL at random moments
//! while it indexes offline, and while `pixdex serve` runs an index job with uploads and deletes
//! arriving over gRPC (which covers opening and catching the graph up, commits, the HNSW and
//! region-index saves at the end of each job, and the graph rebuilds that deletions trigger).
//! After each kill the collection must open; every acknowledged write must be there (an
//! acknowledged upload with its bytes' hash, an acknowledged delete gone, an indexed file seen
//! after an earlier kill and unchanged since still there with the same hash); every record must
//! have all of its vectors and be found by the HNSW graph as its own nearest neighbour; and no
//! record may hold bytes its path never had. At the end a run completes and the collection
//! matches the library exactly.
//!
//! The points are random (the seed is printed; `PIXDEX_KILL_SEED` replays one) and their number
//! fixed, so CI time is bounded by count.
#![cfg(unix)]

mod common;

use common::server::{COMMAND_LIMIT, Server};
use common::{ChildGuard, arg, output_within, picture, pixdex_command, tiny_model};
use pixdex_core::{Collection, ImageStatus, SimilarQuery};
use pixdex_server::{PixdexClient, pb};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Kills that land on a running offline `pixdex index`.
const OFFLINE_KILLS: usize = 26;
/// Kills that land on a running `pixdex serve`.
const SERVER_KILLS: usize = 26;
/// Tries allowed per scenario (a try whose process finished before the kill is not a kill).
const MAX_TRIES: usize = 80;

type Hash = [u8; 32];

/// A small seeded generator (xorshift64*): the kill points and the library's changes.
struct Rng(u64);

impl Rng {
    fn from_env(scenario: &str) -> Self {
        let seed = std::env::var("PIXDEX_KILL_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or_else(|| {
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos() as u64
        });
        eprintln!("{scenario}: PIXDEX_KILL_SEED={seed}");
        Self(seed | 1)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d) % n.max(1)
    }
}

/// The library on disk and every hash each path has had.
struct Library {
    dir: PathBuf,
    next_seed: u32,
    files: BTreeMap<PathBuf, Hash>,
    history: HashMap<PathBuf, HashSet<Hash>>,
}

impl Library {
    fn new(dir: PathBuf, n: u32) -> Self {
        std::fs::create_dir_all(&dir).unwrap();
        let dir = std::fs::canonicalize(dir).unwrap();
        let mut lib = Self { dir, next_seed: 0, files: BTreeMap::new(), history: HashMap::new() };
        (0..n).for_each(|_| lib.write_new(None));
        lib
    }

    /// A new picture at a new path, or at `at` (a rewrite with other content).
    fn write_new(&mut self, at: Option<PathBuf>) {
        let seed = self.next_seed;
        self.next_seed += 1;
        let path = at.unwrap_or_else(|| self.dir.join(format!("{seed:05}.png")));
        let bytes = png(seed);
        std::fs::write(&path, &bytes).unwrap();
        let hash = *blake3::hash(&bytes).as_bytes();
        self.files.insert(path.clone(), hash);
        self.history.entry(path).or_default().insert(hash);
    }

    /// Adds, removes and rewrites a few files (sometimes many added).
    fn change(&mut self, rng: &mut Rng) {
        let mut touched = HashSet::new();
        let added = if rng.below(4) == 0 { 16 } else { 3 };
        for _ in 0..added {
            self.write_new(None);
        }
        let paths: Vec<PathBuf> = self.files.keys().cloned().collect();
        for _ in 0..2 {
            let p = &paths[rng.below(paths.len() as u64) as usize];
            if touched.insert(p.clone()) {
                std::fs::remove_file(p).unwrap();
                self.files.remove(p);
            }
        }
        let p = paths[rng.below(paths.len() as u64) as usize].clone();
        if touched.insert(p.clone()) {
            self.write_new(Some(p));
        }
    }
}

fn png(seed: u32) -> Vec<u8> {
    let mut bytes = Vec::new();
    picture(seed, 64, 48).write_to(&mut std::io::Cursor::new(&mut bytes), image::ImageFormat::Png).unwrap();
    bytes
}

/// What a client was told about uploads and deletes.
#[derive(Default)]
struct Acknowledged {
    /// Uploaded and acknowledged, not deleted since: key → hash.
    uploads: HashMap<String, Hash>,
    /// Deletes acknowledged.
    deleted: HashSet<String>,
    /// Calls cut by the kill: either outcome is right (resolved by the next check).
    uncertain: HashMap<String, Option<Hash>>,
    calls: usize,
}

/// Checks the collection after a kill and returns path → hash as stored (now durable).
fn check_after_kill(
    db: &Path,
    lib: &Library,
    before: &HashMap<PathBuf, Hash>,
    acks: &mut Acknowledged,
    context: &str,
) -> HashMap<PathBuf, Hash> {
    let c = Collection::open(db).unwrap_or_else(|e| panic!("{context}: the collection does not open: {e}"));
    let mut stored = HashMap::new();
    for r in c.records() {
        let (id, rec) = r.unwrap_or_else(|e| panic!("{context}: unreadable record: {e}"));
        assert_eq!(rec.status, ImageStatus::Embedded, "{context}: {}", rec.path.display());
        let global = c.global_vector(id).unwrap().unwrap_or_else(|| panic!("{context}: {id:?} has no vector"));
        assert!(c.patch_grid(id).unwrap().is_some(), "{context}: {id:?} has no patch grid");
        assert!(c.has_view_vectors(id).unwrap(), "{context}: {id:?} has no view vectors");
        assert!(c.has_region_grid(id).unwrap(), "{context}: {id:?} has no region grid");
        // In the graph and reachable: a beam as wide as the graph finds it (the approximate
        // search's recall is the recall bench's business, not a kill's).
        let hits = c.search_hnsw(&global, 1, c.vector_count() + c.hnsw_tombstones()).unwrap();
        assert!(
            hits.first().is_some_and(|h| h.id == id || h.score > 0.99999),
            "{context}: the graph does not find {} ({id:?}) itself: {hits:?} (exact: {:?})",
            rec.path.display(),
            c.search_exact(&global, 2).unwrap(),
        );
        let query = SimilarQuery { k: 1, min_score: None, path_prefix: None, exclude: Vec::new(), ef: None };
        let found = c.search_similar(&global, &query).unwrap();
        assert!(found.first().is_some_and(|h| h.hit.id == id || h.hit.score > 0.99999), "{context}: {found:?}");
        assert!(stored.insert(rec.path.clone(), rec.blake3).is_none(), "{context}: two records for a path");
    }
    assert_eq!(c.vector_count(), c.len().unwrap(), "{context}: vectors without records or records without vectors");
    for (path, hash) in &stored {
        if path.is_absolute() {
            let had = lib.history.get(path).is_some_and(|h| h.contains(hash));
            assert!(had, "{context}: {} stored with bytes it never had", path.display());
        }
    }
    for (path, hash) in before {
        // Stored and the file unchanged since: nothing may take it away.
        if lib.files.get(path) == Some(hash) {
            assert_eq!(
                stored.get(path),
                Some(hash),
                "{context}: {} was stored and unchanged, now lost",
                path.display()
            );
        }
    }
    for (key, hash) in &acks.uploads {
        let got = stored.get(Path::new(key));
        assert_eq!(got, Some(hash), "{context}: the acknowledged upload {key} is lost");
    }
    for key in &acks.deleted {
        assert!(!stored.contains_key(Path::new(key)), "{context}: the acknowledged delete of {key} is undone");
    }
    for (key, expected) in std::mem::take(&mut acks.uncertain) {
        match stored.get(Path::new(&key)) {
            Some(h) => {
                assert!(expected.is_none_or(|e| e == *h), "{context}: {key} stored with other bytes");
                acks.uploads.insert(key, *h);
            }
            None => {
                acks.uploads.remove(&key);
            }
        }
    }
    stored
}

/// The last check: after a completed run the collection is the library plus the uploads.
fn check_complete(db: &Path, lib: &Library, acks: &Acknowledged) {
    let mut acks_copy =
        Acknowledged { uploads: acks.uploads.clone(), deleted: acks.deleted.clone(), ..Default::default() };
    let stored = check_after_kill(db, lib, &HashMap::new(), &mut acks_copy, "after the final run");
    let files: HashMap<PathBuf, Hash> = stored.into_iter().filter(|(p, _)| p.is_absolute()).collect();
    let expected: HashMap<PathBuf, Hash> = lib.files.clone().into_iter().collect();
    assert_eq!(files, expected, "the completed run does not match the library");
}

/// Kills `child` (SIGKILL) unless it has finished; its exit status and whether the kill landed.
fn kill(child: &mut ChildGuard) -> (ExitStatus, bool) {
    let _ = child.0.kill();
    let status = child.0.wait().unwrap();
    (status, status.signal() == Some(9))
}

fn offline_index(lib: &Library, db: &Path) -> ChildGuard {
    ChildGuard(
        pixdex_command()
            .args(["index", arg(&lib.dir), "--db", arg(db), "--model", arg(&tiny_model()), "-q"])
            .args(["--batch-size", "4"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("pixdex index starts"),
    )
}

#[test]
fn offline_indexing_survives_sigkill_at_random_points() {
    let mut rng = Rng::from_env("offline");
    let tmp = tempfile::tempdir().unwrap();
    let mut lib = Library::new(tmp.path().join("lib"), 40);
    let db = tmp.path().join("db");
    let mut acks = Acknowledged::default();
    let mut stored = HashMap::new();
    // How long a whole run takes (from the last one that finished): kills fall within it.
    let mut run_ms = 3000;
    let (mut kills, mut tries) = (0, 0);
    while kills < OFFLINE_KILLS {
        tries += 1;
        assert!(tries <= MAX_TRIES, "only {kills} of {tries} tries killed a running pixdex");
        lib.change(&mut rng);
        let started = Instant::now();
        let mut child = offline_index(&lib, &db);
        std::thread::sleep(Duration::from_millis(rng.below(run_ms * 11 / 10)));
        let (status, killed) = kill(&mut child);
        if killed {
            kills += 1;
        } else {
            assert!(status.success(), "pixdex index failed: {status}");
            run_ms = started.elapsed().as_millis() as u64;
        }
        let context = format!("offline try {tries} ({})", if killed { "killed" } else { "finished" });
        stored = check_after_kill(&db, &lib, &stored, &mut acks, &context);
    }
    let out = output_within(
        pixdex_command().args(["index", arg(&lib.dir), "--db", arg(&db), "--model", arg(&tiny_model()), "-q"]),
        COMMAND_LIMIT,
    );
    assert!(out.status.success(), "the run after the kills failed: {}", String::from_utf8_lossy(&out.stderr));
    check_complete(&db, &lib, &acks);
    eprintln!("offline: {kills} kills in {tries} runs; {} files checked at the end", lib.files.len());
}

/// Uploads (and every third call a delete of an earlier upload) until the connection fails.
async fn upload_and_delete(mut client: PixdexClient, acks: Arc<Mutex<Acknowledged>>, round: usize) {
    for i in 0.. {
        let key = format!("up/r{round}-{i}.png");
        let bytes = png(1_000_000 + (round * 1000 + i) as u32);
        let hash = *blake3::hash(&bytes).as_bytes();
        let request = pb::UpsertImageRequest { key: key.clone(), image: bytes };
        let done = tokio::time::timeout(COMMAND_LIMIT, client.images.upsert_image(request)).await;
        let victim = {
            let mut acks = acks.lock().unwrap();
            acks.calls += 1;
            if !matches!(done, Ok(Ok(_))) {
                acks.uncertain.insert(key, Some(hash));
                return;
            }
            acks.uploads.insert(key, hash);
            if i % 3 != 2 {
                continue;
            }
            let mut keys: Vec<&String> = acks.uploads.keys().collect();
            keys.sort();
            keys[(round * 7 + i) % keys.len()].clone()
        };
        let request = pb::DeleteImageRequest {
            image: Some(pb::ImageRef { r#ref: Some(pb::image_ref::Ref::Path(victim.clone())) }),
        };
        let done = tokio::time::timeout(COMMAND_LIMIT, client.images.delete_image(request)).await;
        let mut acks = acks.lock().unwrap();
        acks.calls += 1;
        let hash = acks.uploads.remove(&victim);
        if !matches!(done, Ok(Ok(_))) {
            acks.uncertain.insert(victim, hash);
            return;
        }
        acks.deleted.insert(victim);
    }
}

#[test]
fn the_server_survives_sigkill_during_jobs_uploads_and_deletes() {
    let mut rng = Rng::from_env("server");
    let tmp = tempfile::tempdir().unwrap();
    let mut lib = Library::new(tmp.path().join("lib"), 40);
    let db = tmp.path().join("db");
    let acks = Arc::new(Mutex::new(Acknowledged::default()));
    let mut stored = HashMap::new();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let (mut kills, mut tries) = (0, 0);
    let mut phases: BTreeMap<&str, usize> = BTreeMap::new();
    let mut startup_ms = 1000;
    while kills < SERVER_KILLS {
        tries += 1;
        assert!(tries <= MAX_TRIES, "only {kills} of {tries} tries killed a running server");
        lib.change(&mut rng);
        let started = Instant::now();
        let mut server = Server::spawn(&db, &lib.dir, "127.0.0.1:0", &["--index-batch-size", "4"]);
        let (phase, writer) = if rng.below(5) == 0 {
            // While it opens the collection and catches the graph up.
            std::thread::sleep(Duration::from_millis(rng.below(startup_ms)));
            ("starting", None)
        } else {
            server.wait_listening();
            server.wait_log_line("model loaded; serving");
            startup_ms = started.elapsed().as_millis() as u64;
            let delay = Duration::from_millis(rng.below(2500));
            let (url, acks, root) = (server.url.clone(), acks.clone(), arg(&lib.dir).to_string());
            let client = runtime.block_on(async move {
                let mut client = PixdexClient::connect(&url).await.expect("connects");
                let job = pb::StartIndexJobRequest { roots: vec![root], ..Default::default() };
                client.index.start_index_job(job).await.expect("the index job starts");
                client
            });
            let writer = runtime.spawn(upload_and_delete(client, acks, tries));
            std::thread::sleep(delay);
            ("serving", Some(writer))
        };
        let (status, killed) = kill(&mut server.child);
        let log = server.log();
        assert!(killed || status.success(), "pixdex serve exited with {status}:\n{log}");
        if killed {
            kills += 1;
            let phase = match phase {
                "serving" if log.contains("index job finished") => "serving, job finished",
                "serving" => "serving, job running",
                other => other,
            };
            *phases.entry(phase).or_default() += 1;
        }
        // The writer's call in flight fails with the server gone: wait until it has said so.
        if let Some(writer) = writer {
            let stopped = runtime.block_on(async { tokio::time::timeout(COMMAND_LIMIT, writer).await });
            stopped.expect("the writer stops").unwrap();
        }
        let mut acks_now = acks.lock().unwrap();
        stored = check_after_kill(&db, &lib, &stored, &mut acks_now, &format!("server try {tries}"));
    }
    drop(runtime);
    // The next run completes: an offline index, then a server that stops cleanly.
    let out = output_within(
        pixdex_command().args(["index", arg(&lib.dir), "--db", arg(&db), "--model", arg(&tiny_model()), "-q"]),
        COMMAND_LIMIT,
    );
    assert!(out.status.success(), "the run after the kills failed: {}", String::from_utf8_lossy(&out.stderr));
    let acks = acks.lock().unwrap();
    check_complete(&db, &lib, &acks);
    Server::start(&db, &lib.dir, &[]).terminate();
    eprintln!(
        "server: {kills} kills in {tries} starts ({phases:?}); {} calls, {} uploads and {} deletes acknowledged",
        acks.calls,
        acks.uploads.len(),
        acks.deleted.len()
    );
}
