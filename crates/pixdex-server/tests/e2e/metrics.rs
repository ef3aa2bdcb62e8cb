//! `/metrics`: the real server with its metrics endpoint on a loopback port, a few RPCs (one
//! refused), an index job and an upload, then a scrape over plain HTTP/1.

use pixdex_server::pb;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use tonic::Code;

use crate::common::*;

/// `GET /metrics` over a plain TCP connection; the status line and the body.
fn scrape(addr: SocketAddr, path: &str) -> (String, String) {
    let mut stream = TcpStream::connect(addr).expect("metrics endpoint reachable");
    stream.set_read_timeout(Some(PATIENCE)).unwrap();
    write!(stream, "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n").unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).expect("a whole response");
    let (head, body) = response.split_once("\r\n\r\n").expect("headers, then the body");
    let status = head.lines().next().unwrap_or_default().to_string();
    assert!(status.contains("404") || head.contains("text/plain; version=0.0.4"), "{head}");
    (status, body.to_string())
}

/// The value of the sample `name` (with its labels, exactly as exposed).
fn sample(text: &str, name: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(name).and_then(|rest| rest.strip_prefix(' ')))
        .unwrap_or_else(|| panic!("no `{name}` in\n{text}"))
        .parse()
        .unwrap_or_else(|e| panic!("`{name}` is not a number: {e}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn metrics_count_requests_jobs_encoder_passes_and_the_collection() {
    let (mut server, metrics) = TestServer::start_with_metrics().await;
    let paths = make_library(&server.library(), 2);
    let last = server.index_library().await.pop().expect("a final state");
    assert_eq!((last.state(), last.embedded, last.failed), (pb::JobState::Succeeded, 2, 1), "{last:?}");
    let c = &mut server.client;
    let bytes = std::fs::read(&paths[0]).unwrap();
    let hits = c.search.search(image_query(bytes.clone(), 2)).await.unwrap().into_inner().hits;
    assert_eq!(hits.len(), 2);
    let refused = c.search.search(image_query(bytes.clone(), 100_000)).await.unwrap_err();
    assert_eq!(refused.code(), Code::InvalidArgument);
    let upload = pb::UpsertImageRequest { key: "phone/a.png".into(), image: png_bytes(&picture(40, 50, 40)) };
    c.images.upsert_image(upload).await.unwrap();
    c.collection.get_stats(pb::GetStatsRequest {}).await.unwrap();

    let (status, text) = tokio::task::spawn_blocking(move || scrape(metrics, "/metrics")).await.unwrap();
    assert!(status.contains("200"), "{status}");
    let search = "/pixdex.v1.SearchService/Search";
    assert_eq!(sample(&text, &format!(r#"pixdex_rpc_requests_total{{code="OK",method="{search}"}}"#)), 1.0);
    assert_eq!(
        sample(&text, &format!(r#"pixdex_rpc_requests_total{{code="INVALID_ARGUMENT",method="{search}"}}"#)),
        1.0
    );
    let upsert = r#"pixdex_rpc_requests_total{code="OK",method="/pixdex.v1.ImageService/UpsertImage"}"#;
    assert_eq!(sample(&text, upsert), 1.0);
    // The watch stream counts when it ends, with its final state.
    let watch = r#"pixdex_rpc_requests_total{code="OK",method="/pixdex.v1.IndexService/WatchIndexJob"}"#;
    assert_eq!(sample(&text, watch), 1.0);
    assert_eq!(sample(&text, &format!(r#"pixdex_rpc_duration_seconds_bucket{{method="{search}",le="+Inf"}}"#)), 2.0);
    assert_eq!(sample(&text, &format!(r#"pixdex_rpc_duration_seconds_count{{method="{search}"}}"#)), 2.0);
    // Index jobs and their files (two pictures and a corrupt file).
    assert_eq!(sample(&text, "pixdex_index_jobs_started_total"), 1.0);
    assert_eq!(sample(&text, r#"pixdex_index_jobs_finished_total{state="succeeded"}"#), 1.0);
    assert_eq!(sample(&text, r#"pixdex_index_files_total{outcome="embedded"}"#), 2.0);
    assert_eq!(sample(&text, r#"pixdex_index_files_total{outcome="failed"}"#), 1.0);
    // The query encoder: the search, and the upload's views and region grid.
    let passes = sample(&text, "pixdex_query_forward_passes_total");
    assert!(passes >= 2.0, "{passes}");
    assert_eq!(sample(&text, "pixdex_query_batch_size_count"), passes);
    assert_eq!(sample(&text, "pixdex_query_batch_size_sum"), sample(&text, "pixdex_query_embeddings_total"));
    assert_eq!(sample(&text, r#"pixdex_query_batch_size_bucket{le="+Inf"}"#), passes);
    // The collection, read at scrape time: three indexed records (one failed) and the upload.
    assert_eq!(sample(&text, "pixdex_collection_images"), 4.0);
    assert_eq!(sample(&text, "pixdex_collection_vectors"), 3.0);
    assert!(sample(&text, "pixdex_collection_disk_bytes") > 0.0);

    let (status, _) = tokio::task::spawn_blocking(move || scrape(metrics, "/other")).await.unwrap();
    assert!(status.contains("404"), "{status}");
    server.stop().await.unwrap();
}
