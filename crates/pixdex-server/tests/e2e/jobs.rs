//! Index jobs: streamed progress, errors, cancellation, shutdown mid-job.

use pixdex_server::pb;
use std::collections::HashSet;

use crate::common::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_job_streams_progress_and_reports_each_error_once() {
    let mut server = TestServer::start(|c| c.index_batch_size = 2).await;
    let paths = make_library(&server.library(), 10);
    let updates = server.index_library().await;
    assert!(updates.len() >= 2, "at least the first and the final state: {updates:?}");
    let last = updates.last().unwrap();
    assert_eq!(last.state(), pb::JobState::Succeeded);
    assert_eq!((last.found, last.unchanged, last.embedded, last.failed, last.remaining), (11, 0, 10, 1, 0));
    assert!(last.files_per_second > 0.0);
    // Counts never go backwards, and the errors arrive once, spread over the stream.
    assert!(updates.windows(2).all(|w| w[1].embedded >= w[0].embedded && w[1].failed >= w[0].failed));
    let errors: Vec<&pb::FileError> = updates.iter().flat_map(|u| &u.errors).collect();
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert!(errors[0].path.ends_with("bad.jpg"), "{:?}", errors[0]);
    assert!(!errors[0].error.is_empty());

    // Get/List show the finished job with every error; a second run finds everything unchanged.
    let job = server
        .client
        .index
        .get_index_job(pb::GetIndexJobRequest { job_id: last.job_id.clone() })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(job.errors.len(), 1);
    let again = server.index_library().await;
    let again = again.last().unwrap();
    assert_eq!((again.unchanged, again.embedded), (11, 0), "{again:?}");
    let list = server.client.index.list_index_jobs(pb::ListIndexJobsRequest {}).await.unwrap().into_inner();
    assert_eq!(list.jobs.iter().map(|j| j.job_id.as_str()).collect::<Vec<_>>(), vec!["job-2", "job-1"]);

    // Delete a file and re-index: the record goes.
    std::fs::remove_file(&paths[0]).unwrap();
    let third = server.index_library().await;
    assert_eq!(third.last().unwrap().removed, 1);
    server.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn cancel_stops_a_job_after_its_batch_and_keeps_what_it_stored() {
    // One image per batch (each a committed, flushed transaction): slow enough to cancel midway.
    let mut server = TestServer::start(|c| c.index_batch_size = 1).await;
    make_library(&server.library(), 200);
    let root = server.library().canonicalize().unwrap().display().to_string();
    let job = server
        .client
        .index
        .start_index_job(pb::StartIndexJobRequest { roots: vec![root.clone()], ..Default::default() })
        .await
        .unwrap()
        .into_inner();
    // A second job while this one runs is refused.
    let second = server
        .client
        .index
        .start_index_job(pb::StartIndexJobRequest { roots: vec![root], ..Default::default() })
        .await
        .unwrap_err();
    assert_eq!(second.code(), tonic::Code::FailedPrecondition, "{second}");
    server.client.index.cancel_index_job(pb::CancelIndexJobRequest { job_id: job.job_id.clone() }).await.unwrap();
    let updates = watch(&mut server.client, &job.job_id).await;
    let last = updates.last().unwrap();
    assert_eq!(last.state(), pb::JobState::Cancelled, "{last:?}");
    assert!(last.embedded < 200, "cancelled before the end: {last:?}");
    let stats = server.client.collection.get_stats(pb::GetStatsRequest {}).await.unwrap().into_inner();
    assert_eq!(stats.vectors, last.embedded, "what the job reported is what is stored");
    server.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn shutdown_mid_job_stores_the_batch_in_flight_and_flushes() {
    let mut server = TestServer::start(|c| c.index_batch_size = 1).await;
    make_library(&server.library(), 200);
    let root = server.library().canonicalize().unwrap().display().to_string();
    let job = server
        .client
        .index
        .start_index_job(pb::StartIndexJobRequest { roots: vec![root], ..Default::default() })
        .await
        .unwrap()
        .into_inner();
    let mut stream = server
        .client
        .index
        .watch_index_job(pb::WatchIndexJobRequest { job_id: job.job_id.clone() })
        .await
        .unwrap()
        .into_inner();
    // Wait until something is stored, then shut down while the job runs.
    loop {
        let update = stream.message().await.unwrap().expect("job still running");
        if update.embedded >= 4 {
            break;
        }
    }
    server.stop().await.expect("clean shutdown");
    // The watcher saw the final state (cancelled) before the stream ended.
    let mut last = None;
    while let Ok(Some(update)) = stream.message().await {
        last = Some(update);
    }
    let last = last.expect("a final state after shutdown began");
    assert_eq!(last.state(), pb::JobState::Cancelled, "{last:?}");
    // The collection opens offline (the lock is released) and holds exactly what was reported.
    let collection = server.location().open().expect("opens after shutdown");
    assert_eq!(collection.vector_count() as u64, last.embedded);
    let ids: HashSet<_> = collection.records().map(|r| r.unwrap().0).collect();
    assert_eq!(ids.len() as u64, last.embedded + last.failed);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_panic_in_an_index_job_fails_it_and_frees_the_slot() {
    use pixdex_indexer::encoder::Encoder;
    use pixdex_indexer::testing::FakeEncoder;
    use std::sync::Arc;
    let fake = Arc::new(FakeEncoder::default());
    let encoder = fake.clone();
    let loader: pixdex_server::ModelLoader = Box::new(move |_| Ok(encoder as Arc<dyn Encoder>));
    let mut server = TestServer::start_with(|_| {}, loader, true).await;
    make_library(&server.library(), 4);
    fake.panic_in_next_passes(1);
    let failed = server.index_library().await;
    let failed = failed.last().unwrap();
    assert_eq!(failed.state(), pb::JobState::Failed, "{failed:?}");
    assert!(failed.error.contains("panicked") && failed.error.contains("as asked"), "{}", failed.error);
    // The next job runs (the slot is free) and stores everything.
    let next = server.index_library().await;
    let next = next.last().unwrap();
    assert_eq!(next.state(), pb::JobState::Succeeded, "{next:?}");
    assert_eq!(next.embedded + next.unchanged, 4, "{next:?}");
    // Queries still embed: the query encoder is a thread of its own, and a panicking query pass
    // fails only its own query.
    let png = png_bytes(&picture(1, 64, 64));
    fake.panic_in_next_passes(1);
    let e = server.client.search.search(image_query(png.clone(), 1)).await.unwrap_err();
    assert_eq!(e.code(), tonic::Code::Internal, "{e:?}");
    server.client.search.search(image_query(png, 1)).await.unwrap();
    let health = server
        .client
        .health
        .check(tonic_health::pb::HealthCheckRequest { service: String::new() })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(health.status(), tonic_health::pb::health_check_response::ServingStatus::Serving);
    server.stop().await.unwrap();
}
