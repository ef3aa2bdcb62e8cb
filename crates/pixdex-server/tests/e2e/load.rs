//! Many parallel clients: every answer right, and query embeddings shared forward passes.

use pixdex_server::{PixdexClient, pb};
use std::time::Duration;

use crate::common::*;

const CLIENTS: usize = 24;
const QUERIES_PER_CLIENT: usize = 4;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn parallel_clients_get_right_answers_and_share_forward_passes() {
    let mut server = TestServer::start(|c| {
        c.batching = pixdex_server::BatchingConfig { max_wait: Duration::from_millis(20), ..c.batching }
    })
    .await;
    let paths = make_library(&server.library(), 16);
    server.index_library().await;
    let before = server.client.collection.get_stats(pb::GetStatsRequest {}).await.unwrap().into_inner();

    let mut tasks = Vec::new();
    for client_no in 0..CLIENTS {
        // Each client has its own connection, like separate processes would.
        let mut client = PixdexClient::connect(&server.url).await.unwrap();
        let paths = paths.clone();
        tasks.push(tokio::spawn(async move {
            for q in 0..QUERIES_PER_CLIENT {
                let target = &paths[(client_no * QUERIES_PER_CLIENT + q) % paths.len()];
                let bytes = std::fs::read(target).unwrap();
                let r = client.search.search(image_query(bytes, 3)).await.expect("search answers").into_inner();
                assert_eq!(hit_paths(&r)[0], target.display().to_string(), "client {client_no} query {q}");
                assert!(r.hits[0].score > 0.9999);
            }
        }));
    }
    let all = futures::future::join_all(tasks);
    for result in tokio::time::timeout(PATIENCE, all).await.expect("all clients finish in time") {
        result.expect("client task");
    }
    let after = server.client.collection.get_stats(pb::GetStatsRequest {}).await.unwrap().into_inner();
    let embeddings = after.query_embeddings - before.query_embeddings;
    let passes = after.query_forward_passes - before.query_forward_passes;
    assert_eq!(embeddings, (CLIENTS * QUERIES_PER_CLIENT) as u64);
    assert!(passes < embeddings, "{embeddings} query embeddings took {passes} forward passes: no batching");
    eprintln!("{embeddings} query embeddings in {passes} forward passes");
    server.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_cancelled_by_its_client_costs_no_forward_pass() {
    // A long batching window: the cancelled query sits in the batcher until its caller is gone.
    let batching = |c: &mut pixdex_server::ServerConfig| {
        c.batching = pixdex_server::BatchingConfig { max_wait: Duration::from_millis(1500), ..c.batching }
    };
    let mut server = TestServer::start(batching).await;
    let stats =
        |mut c: PixdexClient| async move { c.collection.get_stats(pb::GetStatsRequest {}).await.unwrap().into_inner() };
    let before = stats(server.client.clone()).await;
    let mut client = server.client.clone();
    let query = image_query(png_bytes(&picture(5, 64, 64)), 1);
    let gave_up = tokio::time::timeout(Duration::from_millis(300), client.search.search(query)).await;
    assert!(gave_up.is_err(), "the call should still be waiting for its batch");
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let after = stats(server.client.clone()).await;
    assert_eq!(after.query_embeddings, before.query_embeddings, "the cancelled query was embedded anyway");
    assert_eq!(after.query_forward_passes, before.query_forward_passes);
    // The server is fine and answers the next query.
    let png = png_bytes(&picture(6, 64, 64));
    server
        .client
        .images
        .upsert_image(pb::UpsertImageRequest { key: "six.png".into(), image: png.clone() })
        .await
        .unwrap();
    // An upload takes two embeddings: the image with its views, then its region grid.
    assert_eq!(after.query_embeddings + 2, stats(server.client.clone()).await.query_embeddings);
    server.stop().await.unwrap();
}
