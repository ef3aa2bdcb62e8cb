//! Duplicate detection over gRPC: streamed groups, the summary, and "duplicates of this image".

use pixdex_server::pb::{self, find_duplicates_response::Event};
use tonic::Code;

use crate::common::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn find_duplicates_streams_exact_and_near_groups() {
    let mut server = TestServer::start(|_| {}).await;
    let lib = server.library();
    let paths = make_library(&lib, 6);
    // An exact copy of p0, and p1 at twice the size (near: the keeper, more pixels).
    std::fs::copy(&paths[0], lib.join("copy-of-p0.png")).unwrap();
    let p1 = image::open(&paths[1]).unwrap();
    p1.resize_exact(p1.width() * 2, p1.height() * 2, image::imageops::FilterType::CatmullRom)
        .save(lib.join("p1-large.png"))
        .unwrap();
    // p3 mirrored: found through the stored mirrored view, where it scores as its original.
    image::open(&paths[3]).unwrap().fliph().save(lib.join("p3-mirror.png")).unwrap();
    server.index_library().await;
    let c = &mut server.client;

    // The tiny random-weight model's patches mean nothing: the similarity alone decides.
    let request = pb::FindDuplicatesRequest { threshold: Some(0.99), no_verify: true, ..Default::default() };
    let mut stream = c.dedup.find_duplicates(request).await.unwrap().into_inner();
    let (mut groups, mut progress, mut summary) = (Vec::new(), 0, None);
    while let Some(message) = stream.message().await.unwrap() {
        assert!(summary.is_none(), "the summary comes last");
        match message.event.unwrap() {
            Event::Progress(p) => {
                assert!(p.searched <= p.total && p.verified <= p.to_verify, "{p:?}");
                progress += 1;
            }
            Event::Group(g) => groups.push(g),
            Event::Summary(s) => summary = Some(s),
        }
    }
    let summary = summary.expect("a summary");
    assert!(progress >= 1);
    let names = |g: &pb::DuplicateGroup| -> Vec<String> {
        g.members.iter().map(|m| m.image.as_ref().unwrap().path.rsplit('/').next().unwrap().to_string()).collect()
    };
    let exact: Vec<_> = groups.iter().filter(|g| g.kind() == pb::DuplicateKind::Exact).collect();
    assert_eq!(exact.len(), 1, "{groups:?}");
    let mut e = names(exact[0]);
    e.sort();
    assert_eq!(e, vec!["copy-of-p0.png", "p0.png"]);
    let mut near: Vec<_> = groups.iter().filter(|g| g.kind() == pb::DuplicateKind::Near).collect();
    assert_eq!(near.len(), 2, "{:?}", near.iter().map(|g| names(g)).collect::<Vec<_>>());
    near.sort_by_key(|g| names(g).contains(&"p3.png".to_string()));
    assert_eq!(names(near[0]), vec!["p1-large.png", "p1.png"], "the larger copy is the keeper");
    assert!(near[0].keeper_reason.starts_with("largest pixel count"), "{}", near[0].keeper_reason);
    assert!(near[0].members[1].score >= 0.99);
    // The tiny model finds most pictures alike (p4 may join at 0.99); the mirror scores ~1.
    let mirror = near[1].members.iter().find(|m| m.image.as_ref().unwrap().path.ends_with("p3-mirror.png"));
    let p3 = near[1].members.iter().find(|m| m.image.as_ref().unwrap().path.ends_with("/p3.png"));
    assert!(mirror.is_some() && p3.is_some(), "{:?}", names(near[1]));
    let of3 = c
        .dedup
        .duplicates_of(pb::DuplicatesOfRequest {
            image: path_ref(&paths[3].display().to_string()),
            threshold: Some(0.999),
            no_verify: true,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let near3: Vec<&str> = of3.near.iter().map(|m| m.image.as_ref().unwrap().path.as_str()).collect();
    assert!(near3.iter().any(|p| p.ends_with("/p3-mirror.png")), "the mirrored view scores ~1: {near3:?}");
    assert_eq!(summary.groups, 3);
    assert_eq!(summary.images_in_groups, groups.iter().map(|g| g.members.len() as u64).sum::<u64>());
    let sizes: u64 =
        groups.iter().flat_map(|g| g.members.iter().skip(1)).map(|m| m.image.as_ref().unwrap().size_bytes).sum();
    assert_eq!(summary.reclaimable_bytes, sizes);

    // Scoped: duplicates of p1.
    let of = c
        .dedup
        .duplicates_of(pb::DuplicatesOfRequest {
            image: path_ref(&paths[1].display().to_string()),
            threshold: Some(0.99),
            no_verify: true,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert!(of.exact.is_empty());
    assert_eq!(of.near.len(), 1);
    let large = of.near[0].image.as_ref().unwrap();
    assert!(large.path.ends_with("p1-large.png"));
    assert_eq!(of.keeper_id, large.id);
    // And of p0: its exact copy.
    let of0 = c
        .dedup
        .duplicates_of(pb::DuplicatesOfRequest {
            image: path_ref(&paths[0].display().to_string()),
            threshold: Some(0.99),
            no_verify: true,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(of0.exact.len(), 1);
    assert!(of0.near.is_empty(), "exact copies are not listed twice");

    // Errors.
    let e = c
        .dedup
        .duplicates_of(pb::DuplicatesOfRequest { image: id_ref(424_242), ..Default::default() })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::NotFound);
    assert_eq!(
        refusal(c, pb::FindDuplicatesRequest { threshold: Some(1.5), ..Default::default() }).await,
        Code::InvalidArgument
    );
    assert_eq!(
        refusal(c, pb::FindDuplicatesRequest { min_geometry: Some(2.0), ..Default::default() }).await,
        Code::InvalidArgument
    );
    // The defaults (patch verification on) run to a summary.
    let mut stream = c.dedup.find_duplicates(pb::FindDuplicatesRequest::default()).await.unwrap().into_inner();
    let mut last = None;
    while let Some(message) = stream.message().await.unwrap() {
        last = message.event;
    }
    assert!(matches!(last, Some(Event::Summary(s)) if s.groups >= 2), "exact and mirror groups at least");
    assert_eq!(
        refusal(c, pb::FindDuplicatesRequest { keeper_rule: vec![17], ..Default::default() }).await,
        Code::InvalidArgument
    );
    server.stop().await.unwrap();
}

/// The status a `FindDuplicates` call that must fail fails with.
async fn refusal(c: &mut pixdex_server::PixdexClient, request: pb::FindDuplicatesRequest) -> Code {
    c.dedup.find_duplicates(request).await.expect_err("the request is refused").code()
}
