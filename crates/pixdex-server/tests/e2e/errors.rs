//! Every documented error status, and a server that is still healthy afterwards.

use pixdex_server::pb;
use tonic::Code;

use crate::common::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn bad_requests_get_the_right_status_and_change_nothing() {
    let mut server = TestServer::start(|c| c.max_message_bytes = 1 << 20).await;
    let paths = make_library(&server.library(), 4);
    server.index_library().await;
    let c = &mut server.client;
    let before = c.collection.get_stats(pb::GetStatsRequest {}).await.unwrap().into_inner();
    let code = |r: Result<tonic::Response<pb::SearchResponse>, tonic::Status>| r.unwrap_err();

    // Undecodable bytes: INVALID_ARGUMENT with the decoder's reason.
    let e = code(c.search.search(image_query(b"GIF89a but not really".to_vec(), 3)).await);
    assert_eq!(e.code(), Code::InvalidArgument, "{e}");
    assert!(e.message().contains("cannot decode"), "{e}");
    let e = code(c.search.search(image_query(Vec::new(), 3)).await);
    assert_eq!(e.code(), Code::InvalidArgument, "{e}");
    // Unknown id or path: NOT_FOUND.
    assert_eq!(code(c.search.search(id_query(987_654, 3)).await).code(), Code::NotFound);
    let by_path = pb::SearchRequest {
        query: Some(pb::search_request::Query::Stored(path_ref("/no/such.jpg").unwrap())),
        ..Default::default()
    };
    assert_eq!(code(c.search.search(by_path).await).code(), Code::NotFound);
    // A failed image has no vector to search with.
    let bad = server_path(&server, "bad.jpg");
    let c = &mut server.client;
    let failed = pb::SearchRequest {
        query: Some(pb::search_request::Query::Stored(path_ref(&bad).unwrap())),
        ..Default::default()
    };
    assert_eq!(code(c.search.search(failed).await).code(), Code::FailedPrecondition);
    // Bad vectors, k, ef, min_score, missing query.
    let vector = |values: Vec<f32>| pb::SearchRequest {
        query: Some(pb::search_request::Query::Vector(pb::Vector { values })),
        ..Default::default()
    };
    assert_eq!(code(c.search.search(vector(vec![1.0; 3])).await).code(), Code::InvalidArgument);
    assert_eq!(code(c.search.search(vector(vec![0.0; 64])).await).code(), Code::InvalidArgument);
    assert_eq!(code(c.search.search(vector(vec![f32::NAN; 64])).await).code(), Code::InvalidArgument);
    let mut q = vector(vec![1.0; 64]);
    q.k = 5000;
    assert_eq!(code(c.search.search(q).await).code(), Code::InvalidArgument);
    let mut q = vector(vec![1.0; 64]);
    q.ef = 5000;
    assert_eq!(code(c.search.search(q).await).code(), Code::InvalidArgument);
    let mut q = vector(vec![1.0; 64]);
    q.min_score = Some(2.0);
    assert_eq!(code(c.search.search(q).await).code(), Code::InvalidArgument);
    assert_eq!(code(c.search.search(pb::SearchRequest::default()).await).code(), Code::InvalidArgument);
    let empty = c.search.batch_search(pb::BatchSearchRequest { queries: vec![] }).await.unwrap_err();
    assert_eq!(empty.code(), Code::InvalidArgument);

    // Oversized message: RESOURCE_EXHAUSTED (the limit here is 1 MiB).
    let big = vec![0u8; 2 << 20];
    let e = code(c.search.search(image_query(big.clone(), 3)).await);
    assert_eq!(e.code(), Code::ResourceExhausted, "{e}");
    let e = c.images.upsert_image(pb::UpsertImageRequest { key: "big".into(), image: big }).await.unwrap_err();
    assert_eq!(e.code(), Code::ResourceExhausted, "{e}");

    // Uploads: bad keys and undecodable bytes store nothing.
    let png = std::fs::read(&paths[0]).unwrap();
    for key in ["", "/etc/passwd"] {
        let e =
            c.images.upsert_image(pb::UpsertImageRequest { key: key.into(), image: png.clone() }).await.unwrap_err();
        assert_eq!(e.code(), Code::InvalidArgument, "{key}: {e}");
    }
    let e = c
        .images
        .upsert_image(pb::UpsertImageRequest { key: "x.png".into(), image: b"\x89PNG\r\n\x1a\nbroken".to_vec() })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument, "{e}");
    let e = c.images.delete_image(pb::DeleteImageRequest { image: id_ref(987_654) }).await.unwrap_err();
    assert_eq!(e.code(), Code::NotFound);
    let e = c.images.get_image(pb::GetImageRequest { image: None }).await.unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);

    // Index jobs: outside the allowed roots, relative, `..`, symlinks not allowed, unknown job.
    let start = |roots: Vec<String>| pb::StartIndexJobRequest { roots, ..Default::default() };
    let outside = std::env::temp_dir().display().to_string();
    assert_eq!(c.index.start_index_job(start(vec![outside])).await.unwrap_err().code(), Code::PermissionDenied);
    assert_eq!(c.index.start_index_job(start(vec!["library".into()])).await.unwrap_err().code(), Code::InvalidArgument);
    let dotdot = format!("{}/../..", server.library().display());
    let c = &mut server.client;
    assert_eq!(c.index.start_index_job(start(vec![dotdot])).await.unwrap_err().code(), Code::InvalidArgument);
    assert_eq!(c.index.start_index_job(start(vec![])).await.unwrap_err().code(), Code::InvalidArgument);
    let lib = server.library().display().to_string();
    let c = &mut server.client;
    let mut follow = start(vec![lib.clone()]);
    follow.follow_symlinks = true;
    assert_eq!(c.index.start_index_job(follow).await.unwrap_err().code(), Code::PermissionDenied);
    let mut glob = start(vec![lib]);
    glob.include = vec!["[unclosed".into()];
    assert_eq!(c.index.start_index_job(glob).await.unwrap_err().code(), Code::InvalidArgument);
    let e = c.index.watch_index_job(pb::WatchIndexJobRequest { job_id: "job-99".into() }).await.unwrap_err();
    assert_eq!(e.code(), Code::NotFound);
    let e = c.index.cancel_index_job(pb::CancelIndexJobRequest { job_id: "nope".into() }).await.unwrap_err();
    assert_eq!(e.code(), Code::NotFound);

    // Nothing changed, and the server still answers.
    let after = c.collection.get_stats(pb::GetStatsRequest {}).await.unwrap().into_inner();
    assert_eq!((after.images, after.vectors, after.generation), (before.images, before.vectors, before.generation));
    let ok = c.search.search(image_query(png, 1)).await.unwrap().into_inner();
    assert_eq!(hit_paths(&ok), vec![paths[0].display().to_string()]);
    server.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_without_allowed_roots_runs_no_jobs() {
    let mut server = TestServer::start(|c| c.allowed_roots.clear()).await;
    let root = server.library().display().to_string();
    let e = server
        .client
        .index
        .start_index_job(pb::StartIndexJobRequest { roots: vec![root], ..Default::default() })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::FailedPrecondition);
    assert!(e.message().contains("--allow-root"), "{e}");
    server.stop().await.unwrap();
}

fn server_path(server: &TestServer, name: &str) -> String {
    server.library().canonicalize().unwrap().join(name).display().to_string()
}
