//! Hostile clients against the real server: cut and bomb-sized images, and a storm of calls
//! cancelled mid-decode. Each gets a client error (never INTERNAL), and the server answers
//! correctly after.

use pixdex_server::{PixdexClient, pb};
use std::time::Duration;
use tonic::Code;

use crate::common::*;

/// A JPEG of a photo-like picture.
fn jpeg_bytes(seed: u32, w: u32, h: u32) -> Vec<u8> {
    let mut out = Vec::new();
    image::codecs::jpeg::JpegEncoder::new_with_quality(&mut out, 90).encode_image(&picture(seed, w, h)).unwrap();
    out
}

/// A real 1×1 PNG whose header claims `w` × `h` pixels (CRC fixed up): decoders read the header
/// and the first data chunk before they know better.
fn png_claiming(w: u32, h: u32) -> Vec<u8> {
    let mut png = png_bytes(&picture(0, 1, 1));
    // IHDR's data starts at byte 16: width and height, big-endian.
    png[16..20].copy_from_slice(&w.to_be_bytes());
    png[20..24].copy_from_slice(&h.to_be_bytes());
    let mut crc = 0xFFFF_FFFFu32;
    for &b in &png[12..29] {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = if crc & 1 != 0 { (crc >> 1) ^ 0xEDB8_8320 } else { crc >> 1 };
        }
    }
    png[29..33].copy_from_slice(&(!crc).to_be_bytes());
    png
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cut_and_bomb_images_are_client_errors_and_store_nothing() {
    let mut server = TestServer::start(|_| {}).await;
    let c = &mut server.client;
    let whole = jpeg_bytes(2, 320, 240);
    let cut = whole[..whole.len() / 3].to_vec();
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("a JPEG cut to a third", cut.clone()),
        ("a JPEG without its last two bytes", whole[..whole.len() - 2].to_vec()),
        ("a PNG claiming 100000 × 100000 pixels", png_claiming(100_000, 100_000)),
        ("a PNG claiming 30000 × 30000 pixels (2.7 GB decoded)", png_claiming(30_000, 30_000)),
        ("a PNG claiming 12000 × 10000 pixels (120 MP, 360 MB decoded)", png_claiming(12_000, 10_000)),
    ];
    for (what, bytes) in &cases {
        let e = c.search.search(image_query(bytes.clone(), 1)).await.unwrap_err();
        assert_eq!(e.code(), Code::InvalidArgument, "{what}: {e:?}");
        let upload = pb::UpsertImageRequest { key: "hostile.jpg".into(), image: bytes.clone() };
        let e = c.images.upsert_image(upload).await.unwrap_err();
        assert_eq!(e.code(), Code::InvalidArgument, "{what}: {e:?}");
    }
    let e = c.search.search(image_query(cut, 1)).await.unwrap_err();
    assert!(e.message().contains("truncated"), "{e:?}");
    // Refused by its header, before anything is allocated.
    let e = c.search.search(image_query(png_claiming(12_000, 10_000), 1)).await.unwrap_err();
    assert!(e.message().contains("120000000 pixels, more than the limit"), "{e:?}");
    let stats = c.collection.get_stats(pb::GetStatsRequest {}).await.unwrap().into_inner();
    assert_eq!((stats.images, stats.generation), (0, 0), "nothing was stored");
    // The whole JPEG is fine.
    let stored = pb::UpsertImageRequest { key: "whole.jpg".into(), image: whole.clone() };
    c.images.upsert_image(stored).await.unwrap();
    let hits = c.search.search(image_query(whole, 1)).await.unwrap().into_inner();
    assert!(hits.hits[0].score > 0.9999);
    server.stop().await.unwrap();
}

/// Calls cancelled while their image decodes (the decode goes on, holding its permit); bounded by
/// count. The server then answers every kind of call correctly.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_storm_of_calls_cancelled_mid_decode_leaves_a_server_that_answers() {
    const STORM: usize = 48;
    let mut server = TestServer::start(|_| {}).await;
    let photo = jpeg_bytes(4, 1600, 1200);
    let upload = pb::UpsertImageRequest { key: "kept.jpg".into(), image: jpeg_bytes(9, 200, 150) };
    let kept = server.client.images.upsert_image(upload).await.unwrap().into_inner().record.unwrap();
    for round in 0..STORM {
        let mut client = server.client.clone();
        let query = image_query(photo.clone(), 3);
        // Cancelled after a few milliseconds: mid-upload or mid-decode.
        let call = async move { client.search.search(query).await };
        let cut_short = tokio::time::timeout(Duration::from_millis(2 + (round % 8) as u64), call).await;
        if let Ok(answer) = cut_short {
            // Fast enough to finish: then it must be right.
            assert_eq!(answer.unwrap().into_inner().hits.len(), 1);
        }
    }
    // Every call answers, within the test's patience (the permits came back).
    let c = &mut server.client;
    let answers = async {
        let hits = c.search.search(id_query(kept.id, 1)).await.unwrap().into_inner();
        assert_eq!(hits.hits[0].image.as_ref().unwrap().id, kept.id);
        let hits = c.search.search(image_query(photo.clone(), 1)).await.unwrap().into_inner();
        assert_eq!(hits.hits.len(), 1);
        c.collection.get_stats(pb::GetStatsRequest {}).await.unwrap().into_inner()
    };
    let stats = tokio::time::timeout(PATIENCE, answers).await.expect("the server answers after the storm");
    assert_eq!(stats.images, 1);
    server.stop().await.unwrap();
}

/// A BatchSearch whose images total more than 32 MiB is refused whole, before any decode.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_oversized_batch_is_refused_before_anything_is_decoded() {
    let mut server = TestServer::start(|_| {}).await;
    let c = &mut server.client;
    let big = vec![0xAB; 11 << 20];
    let queries = vec![image_query(big.clone(), 1), image_query(big.clone(), 1), image_query(big, 1)];
    let e = c.search.batch_search(pb::BatchSearchRequest { queries }).await.unwrap_err();
    assert_eq!(e.code(), Code::ResourceExhausted, "{e:?}");
    assert!(e.message().contains("several calls"), "{e:?}");
    let too_many = vec![id_query(1, 1); 257];
    let e = c.search.batch_search(pb::BatchSearchRequest { queries: too_many }).await.unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument, "{e:?}");
    let stats = c.collection.get_stats(pb::GetStatsRequest {}).await.unwrap().into_inner();
    assert_eq!(stats.query_embeddings, 0, "nothing was embedded");
    server.stop().await.unwrap();
}

/// Past `max_connections` a new connection is closed at once; one freed makes room again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_past_the_cap_are_closed_and_room_comes_back() {
    // The test's own client holds one of the two.
    let mut server = TestServer::start(|c| c.max_connections = 2).await;
    let stats = |mut c: PixdexClient| async move { c.collection.get_stats(pb::GetStatsRequest {}).await };
    let second = PixdexClient::connect(&server.url).await.expect("the second connection");
    stats(second.clone()).await.expect("the second connection answers");
    let third = match PixdexClient::connect(&server.url).await {
        Ok(client) => stats(client).await.map(|_| ()),
        Err(e) => Err(tonic::Status::unavailable(e.to_string())),
    };
    assert!(third.is_err(), "a third connection was served");
    drop(second);
    let again = tokio::time::timeout(PATIENCE, async {
        loop {
            if let Ok(client) = PixdexClient::connect(&server.url).await
                && stats(client).await.is_ok()
            {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    });
    again.await.expect("a closed connection frees its place");
    stats(server.client.clone()).await.expect("the first connection still answers");
    server.stop().await.unwrap();
}
