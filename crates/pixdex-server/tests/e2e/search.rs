//! Search by bytes, id, path and vector; filters; batch search; upsert, get and delete.

use pixdex_server::pb;

use crate::common::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn index_then_search_upsert_and_delete() {
    let mut server = TestServer::start(|_| {}).await;
    let paths = make_library(&server.library(), 12);
    let updates = server.index_library().await;
    let last = updates.last().expect("a final state");
    assert_eq!(last.state(), pb::JobState::Succeeded, "{last:?}");
    assert_eq!((last.found, last.embedded, last.failed), (13, 12, 1), "{last:?}");
    let sub = format!("{}/", server.library().canonicalize().unwrap().join("sub").display());
    let c = &mut server.client;

    // By bytes: the identical file comes first with cosine ≈ 1.
    let bytes = std::fs::read(&paths[3]).unwrap();
    let r = c.search.search(image_query(bytes.clone(), 5)).await.unwrap().into_inner();
    assert_eq!(r.hits.len(), 5);
    assert_eq!(hit_paths(&r)[0], paths[3].display().to_string());
    assert!(r.hits[0].score > 0.9999, "{}", r.hits[0].score);
    assert!(r.hits.windows(2).all(|w| w[0].score >= w[1].score), "best first");
    let self_id = r.hits[0].image.as_ref().unwrap().id;

    // exclude_self with bytes drops the stored file with identical bytes.
    let mut q = image_query(bytes.clone(), 5);
    q.exclude_self = true;
    let r2 = c.search.search(q).await.unwrap().into_inner();
    assert!(!hit_paths(&r2).contains(&paths[3].display().to_string()));
    assert_eq!(hit_paths(&r2)[..4], hit_paths(&r)[1..]);

    // By id and by path: the stored vector; exclude_self drops the image itself.
    let by_id = c.search.search(id_query(self_id, 5)).await.unwrap().into_inner();
    assert_eq!(hit_paths(&by_id), hit_paths(&r));
    let mut q = id_query(self_id, 4);
    q.exclude_self = true;
    let by_id_excl = c.search.search(q).await.unwrap().into_inner();
    assert_eq!(hit_paths(&by_id_excl), hit_paths(&r)[1..]);
    let by_path = pb::SearchRequest {
        query: Some(pb::search_request::Query::Stored(path_ref(&paths[3].display().to_string()).unwrap())),
        k: 5,
        ..Default::default()
    };
    assert_eq!(hit_paths(&c.search.search(by_path).await.unwrap().into_inner()), hit_paths(&r));

    // By vector: the test computes the embedding itself, the answer is the same.
    let encoder = load_tiny_model();
    let img = pixdex_indexer::decode::decode_bytes(&bytes, Default::default()).unwrap();
    let inputs = pixdex_indexer::inputs::ModelInputs::of(&encoder, &img, Default::default()).unwrap();
    let global = pixdex_indexer::batch::embed_images(&encoder, &[&inputs.square]).unwrap().remove(0).unwrap().global;
    let by_vector = pb::SearchRequest {
        query: Some(pb::search_request::Query::Vector(pb::Vector { values: global.as_slice().to_vec() })),
        k: 5,
        ..Default::default()
    };
    let v = c.search.search(by_vector).await.unwrap().into_inner();
    assert_eq!(hit_paths(&v), hit_paths(&r));
    for (a, b) in v.hits.iter().zip(&r.hits) {
        assert!((a.score - b.score).abs() < 1e-5);
    }

    // min_score keeps exactly the hits at or above it.
    let threshold = r.hits[2].score;
    let mut q = image_query(bytes.clone(), 10);
    q.min_score = Some(threshold);
    let above = c.search.search(q).await.unwrap().into_inner();
    assert!(above.hits.iter().all(|h| h.score >= threshold));
    assert_eq!(hit_paths(&above)[..3], hit_paths(&r)[..3]);

    // path_prefix: only the sub folder (odd images), and k of them.
    let mut q = image_query(bytes.clone(), 4);
    q.path_prefix = sub.clone();
    let in_sub = c.search.search(q).await.unwrap().into_inner();
    assert_eq!(in_sub.hits.len(), 4);
    assert!(hit_paths(&in_sub).iter().all(|p| p.starts_with(&sub)), "{:?}", hit_paths(&in_sub));

    // Batch: answers in order, the same as single queries.
    let batch = pb::BatchSearchRequest {
        queries: vec![
            image_query(std::fs::read(&paths[0]).unwrap(), 3),
            id_query(self_id, 5),
            image_query(std::fs::read(&paths[7]).unwrap(), 1),
        ],
    };
    let b = c.search.batch_search(batch).await.unwrap().into_inner();
    assert_eq!(b.responses.len(), 3);
    assert_eq!(hit_paths(&b.responses[0])[0], paths[0].display().to_string());
    assert_eq!(hit_paths(&b.responses[1]), hit_paths(&r));
    assert_eq!(hit_paths(&b.responses[2]), vec![paths[7].display().to_string()]);

    // The default message limit takes a 30 MB upload (here not an image: INVALID_ARGUMENT, not
    // RESOURCE_EXHAUSTED).
    let e = c.search.search(image_query(vec![7u8; 30 << 20], 1)).await.unwrap_err();
    assert_eq!(e.code(), tonic::Code::InvalidArgument, "{e}");

    // Upsert a new image under a key: searchable at once.
    let new_bytes = png_bytes(&picture(100, 90, 60));
    let up = c
        .images
        .upsert_image(pb::UpsertImageRequest { key: "phone/new.png".into(), image: new_bytes.clone() })
        .await
        .unwrap()
        .into_inner();
    let rec = up.record.clone().unwrap();
    assert!(!up.replaced && !up.reused_vectors);
    assert_eq!((rec.path.as_str(), rec.width, rec.height), ("phone/new.png", 90, 60));
    assert_eq!(rec.status(), pb::ImageStatus::Embedded);
    let found = c.search.search(image_query(new_bytes.clone(), 1)).await.unwrap().into_inner();
    assert_eq!(hit_paths(&found), vec!["phone/new.png".to_string()]);

    // The same key again replaces it; identical bytes under another key reuse the vectors.
    let other = png_bytes(&picture(101, 70, 70));
    let up2 = c
        .images
        .upsert_image(pb::UpsertImageRequest { key: "phone/new.png".into(), image: other.clone() })
        .await
        .unwrap()
        .into_inner();
    assert!(up2.replaced);
    let copy = c
        .images
        .upsert_image(pb::UpsertImageRequest { key: "copy.png".into(), image: other.clone() })
        .await
        .unwrap()
        .into_inner();
    assert!(copy.reused_vectors && !copy.replaced);
    let both = c.search.search(image_query(other, 2)).await.unwrap().into_inner();
    let mut top2 = hit_paths(&both);
    top2.sort();
    assert_eq!(top2, vec!["copy.png".to_string(), "phone/new.png".to_string()]);
    assert!(both.hits.iter().all(|h| h.score > 0.9999));

    // Get by key and by id agree.
    let got = c.images.get_image(pb::GetImageRequest { image: path_ref("copy.png") }).await.unwrap().into_inner();
    let copy_id = copy.record.unwrap().id;
    assert_eq!(got.id, copy_id);
    let got2 = c.images.get_image(pb::GetImageRequest { image: id_ref(copy_id) }).await.unwrap().into_inner();
    assert_eq!(got, got2);

    // Delete by id and by path: gone from get and from search.
    let del = c.images.delete_image(pb::DeleteImageRequest { image: id_ref(copy_id) }).await.unwrap().into_inner();
    assert_eq!(del.record.unwrap().path, "copy.png");
    let gone = c.images.get_image(pb::GetImageRequest { image: id_ref(copy_id) }).await.unwrap_err();
    assert_eq!(gone.code(), tonic::Code::NotFound);
    c.images.delete_image(pb::DeleteImageRequest { image: path_ref(&paths[3].display().to_string()) }).await.unwrap();
    let after = c.search.search(image_query(bytes, 20)).await.unwrap().into_inner();
    assert!(!hit_paths(&after).contains(&paths[3].display().to_string()));
    assert!(!hit_paths(&after).contains(&"copy.png".to_string()));

    // Stats add up: 12 indexed + 1 failed + 1 upload - 1 deleted file (the copy was deleted too).
    let stats = c.collection.get_stats(pb::GetStatsRequest {}).await.unwrap().into_inner();
    assert_eq!((stats.images, stats.vectors, stats.failed), (13, 12, 1), "{stats:?}");
    assert_eq!(stats.dim, 64);
    assert!(stats.model_loaded);
    assert_eq!(stats.search_index, "exact");
    assert!(stats.disk_bytes > 0);
    server.stop().await.expect("clean shutdown");
}
