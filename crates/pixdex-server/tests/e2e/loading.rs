//! While the model loads: UNAVAILABLE for what needs it, NOT_SERVING health; then serving.

use pixdex_server::pb;
use std::sync::mpsc;
use std::time::Duration;
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;

use crate::common::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_during_model_load_are_unavailable_then_served() {
    let (release, gate) = mpsc::channel::<()>();
    let loader: pixdex_server::ModelLoader = Box::new(move |_| {
        gate.recv_timeout(Duration::from_secs(60)).map_err(|e| format!("test gate: {e}"))?;
        Ok(std::sync::Arc::new(load_tiny_model()) as std::sync::Arc<dyn pixdex_indexer::encoder::Encoder>)
    });
    let mut server = TestServer::start_with(|_| {}, loader, false).await;
    let c = &mut server.client;
    let png = png_bytes(&picture(1, 64, 64));
    let e = c.search.search(image_query(png.clone(), 1)).await.unwrap_err();
    assert_eq!(e.code(), tonic::Code::Unavailable, "{e}");
    let region = || pb::RegionSearchRequest {
        query: Some(pb::region_search_request::Query::Image(png.clone())),
        ..Default::default()
    };
    let e = c.search.region_search(region()).await.unwrap_err();
    assert_eq!(e.code(), tonic::Code::Unavailable, "{e}");
    let e = c.collection.get_stats(pb::GetStatsRequest {}).await.unwrap_err();
    assert_eq!(e.code(), tonic::Code::Unavailable, "a new collection appears once the model is known");
    let health = c.health.check(HealthCheckRequest { service: String::new() }).await.unwrap().into_inner();
    assert_eq!(health.status(), ServingStatus::NotServing);

    release.send(()).unwrap();
    server.client.wait_ready(PATIENCE).await.unwrap();
    let c = &mut server.client;
    c.images.upsert_image(pb::UpsertImageRequest { key: "a.png".into(), image: png.clone() }).await.unwrap();
    let r = c.search.region_search(region()).await.unwrap().into_inner();
    let found: Vec<&str> = r.hits.iter().map(|h| h.image.as_ref().unwrap().path.as_str()).collect();
    assert_eq!(found, ["a.png"], "an upload is searchable by region at once");
    let r = c.search.search(image_query(png, 1)).await.unwrap().into_inner();
    assert_eq!(hit_paths(&r), vec!["a.png".to_string()]);
    server.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_model_on_an_existing_collection_stops_the_server_with_a_clear_error() {
    let mut server = TestServer::start(|_| {}).await;
    server.stop().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let mut config = pixdex_server::ServerConfig::new(server.dir.path().join("db"));
    config.store = server.postgres.as_ref().map(|pg| pg.url());
    let other = Box::new(|_: Option<&pixdex_core::CollectionConfig>| {
        let source = pixio::WeightSource::parse(&tiny_model().with_file_name("b-hub").display().to_string())
            .map_err(|e| e.to_string())?;
        let encoder = pixdex_indexer::encoder::PixioEncoder::load(&source, &pixio::Device::Cpu, pixio::DType::F32)
            .map_err(|e| e.to_string())?;
        Ok(std::sync::Arc::new(encoder) as std::sync::Arc<dyn pixdex_indexer::encoder::Encoder>)
    });
    let mut second = TestServer::start_in(dir, config, other, false).await;
    let err = second.stop_when_done().await.unwrap_err();
    assert!(err.to_string().contains("collection was built with"), "{err}");
}
