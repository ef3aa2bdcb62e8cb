//! Create, write, replace, delete, reopen, catch up.

use pixdex_core::{Collection, Error, ImageId, ImageStatus, SimilarQuery};
use std::path::Path;

use crate::fixtures::{config, image, random_unit, rng};

#[test]
fn records_vectors_and_lookups_survive_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let mut r = rng(1);
    let (a, b) = (random_unit(&mut r, 8), random_unit(&mut r, 8));
    let ids = {
        let c = Collection::open_or_create(dir.path(), &config(8)).unwrap();
        let ids = c
            .commit(
                vec![
                    image("/p/a.jpg", 1, Some(a.clone())),
                    image("/p/b.jpg", 1, Some(b.clone())),
                    image("/p/bad.jpg", 2, None),
                ],
                &[],
            )
            .unwrap();
        c.flush().unwrap();
        ids
    };
    let c = Collection::open(dir.path()).unwrap();
    assert_eq!(c.len().unwrap(), 3);
    assert_eq!(c.vector_count(), 2);
    assert_eq!(c.id_by_path(Path::new("/p/b.jpg")).unwrap(), Some(ids[1]));
    assert_eq!(c.ids_by_hash(&[1; 32]).unwrap(), vec![ids[0], ids[1]]);
    assert_eq!(c.global_vector(ids[0]).unwrap().unwrap(), a);
    assert!(matches!(c.get(ids[2]).unwrap().unwrap().status, ImageStatus::Failed { .. }));
    assert_eq!(c.patch_grid(ids[0]).unwrap().unwrap().rows(), 2);
    let hits = c.search_similar(&a, &SimilarQuery { k: 2, ..Default::default() }).unwrap();
    assert_eq!(hits[0].hit.id, ids[0]);
    assert!((hits[0].hit.score - 1.0).abs() < 1e-5);
}

#[test]
fn another_model_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    drop(Collection::open_or_create(dir.path(), &config(8)).unwrap());
    let mut other = config(8);
    other.model_fingerprint = "fp-2".into();
    let err = Collection::open_or_create(dir.path(), &other).err().unwrap();
    assert!(matches!(err, Error::ModelMismatch { .. }), "{err}");
    assert!(Collection::open_or_create(dir.path(), &config(16)).is_err());
}

#[test]
fn second_process_gets_locked_error() {
    let dir = tempfile::tempdir().unwrap();
    let _c = Collection::open_or_create(dir.path(), &config(8)).unwrap();
    // sled's lock is per process (flock); a second handle in-process shares it, so only check
    // that opening twice does not corrupt anything.
    assert!(Collection::open(dir.path()).is_ok() || matches!(Collection::open(dir.path()), Err(Error::Locked { .. })));
}

#[test]
fn replace_delete_and_hnsw_catch_up_after_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let mut r = rng(2);
    let vs: Vec<_> = (0..6).map(|_| random_unit(&mut r, 8)).collect();
    let (first, replaced) = {
        let c = Collection::open_or_create(dir.path(), &config(8)).unwrap();
        let first = c
            .commit((0..5).map(|i| image(&format!("/p/{i}.jpg"), i as u8, Some(vs[i].clone()))).collect(), &[])
            .unwrap();
        c.flush().unwrap(); // HNSW saved at this generation
        // After the save: replace /p/0.jpg, delete /p/1.jpg; no flush of the graph.
        let replaced = c.commit(vec![image("/p/0.jpg", 9, Some(vs[5].clone()))], &[first[1]]).unwrap();
        (first, replaced)
    };
    let c = Collection::open(dir.path()).unwrap();
    assert_eq!(c.len().unwrap(), 4);
    assert_eq!(c.id_by_path(Path::new("/p/0.jpg")).unwrap(), Some(replaced[0]));
    assert_eq!(c.get(first[0]).unwrap(), None);
    assert_eq!(c.get(first[1]).unwrap(), None);
    assert!(c.ids_by_hash(&[0; 32]).unwrap().is_empty());
    // The graph caught up: the deleted and replaced ids are gone, the new one is found.
    let found: Vec<ImageId> = c.search_hnsw(&vs[5], 10, 64).unwrap().into_iter().map(|h| h.id).collect();
    assert_eq!(found[0], replaced[0]);
    assert!(!found.contains(&first[0]) && !found.contains(&first[1]));
    assert_eq!(found.len(), 4);
    // Compaction keeps the same answers.
    c.compact().unwrap();
    let again: Vec<ImageId> = c.search_hnsw(&vs[5], 10, 64).unwrap().into_iter().map(|h| h.id).collect();
    assert_eq!(again, found);
}

#[test]
fn wrong_dimension_is_rejected() {
    let dir = tempfile::tempdir().unwrap();
    let c = Collection::open_or_create(dir.path(), &config(8)).unwrap();
    let mut r = rng(3);
    assert!(matches!(
        c.commit(vec![image("/p/x.jpg", 1, Some(random_unit(&mut r, 4)))], &[]),
        Err(Error::InvalidVector(_))
    ));
    assert!(matches!(
        c.search_similar(&random_unit(&mut r, 4), &SimilarQuery { k: 3, ..Default::default() }),
        Err(Error::InvalidVector(_))
    ));
}

#[test]
fn a_collection_whose_hnsw_dump_was_cut_short_opens_and_rebuilds_it() {
    let dir = tempfile::tempdir().unwrap();
    let mut r = rng(7);
    let vectors: Vec<_> = (0..40).map(|_| random_unit(&mut r, 8)).collect();
    let ids = {
        let c = Collection::open_or_create(dir.path(), &config(8)).unwrap();
        let images = vectors.iter().enumerate().map(|(i, v)| image(&format!("/p/{i}.jpg"), i as u8, Some(v.clone())));
        let ids = c.commit(images.collect(), &[]).unwrap();
        c.flush().unwrap();
        ids
    };
    // A crash or a full disk left the graph's dump half-written.
    for entry in std::fs::read_dir(dir.path().join("hnsw")).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "data") {
            let bytes = std::fs::read(&path).unwrap();
            std::fs::write(&path, &bytes[..bytes.len() / 2]).unwrap();
        }
    }
    let c = Collection::open(dir.path()).expect("opens: the damaged dump is rebuilt from sled");
    for (id, v) in ids.iter().zip(&vectors) {
        let hits = c.search_similar(v, &SimilarQuery { k: 1, ..Default::default() }).unwrap();
        assert_eq!(hits[0].hit.id, *id);
    }
}

#[test]
fn the_layout_version_is_recorded_and_a_newer_one_refused() {
    let dir = tempfile::tempdir().unwrap();
    drop(Collection::open_or_create(dir.path(), &config(8)).unwrap());
    // Another process wrote a newer layout (sled itself is opened directly, as a newer pixdex
    // would, with the segment size pixdex creates databases with: sled refuses another).
    {
        let db = sled::Config::new().path(dir.path().join("db")).segment_size(256 << 10).open().unwrap();
        let meta = db.open_tree("meta").unwrap();
        let recorded = meta.get("schema_version").unwrap().expect("recorded at creation");
        assert_eq!(recorded.as_ref(), pixdex_core::SCHEMA_VERSION.to_be_bytes());
        meta.insert("schema_version", &(pixdex_core::SCHEMA_VERSION + 1).to_be_bytes()).unwrap();
        db.flush().unwrap();
    }
    let e = Collection::open(dir.path()).err().expect("refused");
    assert!(matches!(e, Error::NewerSchema { .. }), "{e}");
    assert!(e.to_string().contains("newer pixdex"), "{e}");
}

#[test]
fn temporaries_of_an_interrupted_save_are_removed_at_open() {
    let dir = tempfile::tempdir().unwrap();
    drop(Collection::open_or_create(dir.path(), &config(8)).unwrap());
    let stale = [dir.path().join("hnsw.tmp-999999999"), dir.path().join("hnsw.old-999999999")];
    for d in &stale {
        std::fs::create_dir_all(d).unwrap();
        std::fs::write(d.join("x.hnsw.data"), b"half").unwrap();
    }
    std::fs::write(dir.path().join("region_index.tmp-999999999"), b"half").unwrap();
    drop(Collection::open(dir.path()).unwrap());
    assert!(stale.iter().all(|d| !d.exists()));
    assert!(!dir.path().join("region_index.tmp-999999999").exists());
}

#[test]
fn commits_racing_flushes_and_compaction_leave_a_graph_that_finds_every_image_after_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let mut r = rng(11);
    let vectors: Vec<_> = (0..160).map(|_| random_unit(&mut r, 8)).collect();
    let ids = {
        let c = Collection::open_or_create(dir.path(), &config(8)).unwrap();
        let done = std::sync::atomic::AtomicBool::new(false);
        let ids = std::thread::scope(|s| {
            let flusher = s.spawn(|| {
                let mut rounds = 0;
                while !done.load(std::sync::atomic::Ordering::SeqCst) {
                    if rounds % 5 == 4 {
                        c.compact().unwrap()
                    } else {
                        c.flush().unwrap()
                    }
                    rounds += 1;
                }
                rounds
            });
            let writers: Vec<_> = vectors
                .chunks(40)
                .enumerate()
                .map(|(w, chunk)| {
                    let c = &c;
                    s.spawn(move || {
                        let mut ids = Vec::new();
                        for (i, v) in chunk.iter().enumerate() {
                            let path = format!("/w{w}/{i}.jpg");
                            ids.extend(c.commit(vec![image(&path, (w * 40 + i) as u8, Some(v.clone()))], &[]).unwrap());
                        }
                        ids
                    })
                })
                .collect();
            let ids: Vec<_> = writers.into_iter().flat_map(|w| w.join().unwrap()).collect();
            done.store(true, std::sync::atomic::Ordering::SeqCst);
            assert!(flusher.join().unwrap() > 0);
            ids
        });
        // Every commit bumped the generation once.
        assert_eq!(c.generation().unwrap(), 160);
        ids
    };
    // Reopened without a final flush: whatever graph was saved last must agree with its label.
    let c = Collection::open(dir.path()).unwrap();
    assert_eq!(ids.len(), 160);
    for (w, chunk) in vectors.chunks(40).enumerate() {
        for (i, v) in chunk.iter().enumerate() {
            let hits = c.search_similar(v, &SimilarQuery { k: 1, ..Default::default() }).unwrap();
            let id = c.id_by_path(Path::new(&format!("/w{w}/{i}.jpg"))).unwrap().unwrap();
            assert_eq!(hits[0].hit.id, id, "/w{w}/{i}.jpg");
        }
    }
}
