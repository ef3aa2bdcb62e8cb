//! Standard gRPC health checking and server reflection, through real clients.

use tokio_stream::StreamExt;
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_reflection::pb::v1::{
    ServerReflectionRequest, server_reflection_client::ServerReflectionClient,
    server_reflection_request::MessageRequest, server_reflection_response::MessageResponse,
};

use crate::common::*;

const SERVICES: [&str; 5] = [
    "pixdex.v1.SearchService",
    "pixdex.v1.ImageService",
    "pixdex.v1.IndexService",
    "pixdex.v1.CollectionService",
    "pixdex.v1.DedupService",
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_and_reflection_list_and_describe_every_service() {
    let mut server = TestServer::start(|_| {}).await;
    for service in SERVICES.iter().copied().chain([""]) {
        let r = server.client.health.check(HealthCheckRequest { service: service.into() }).await.unwrap().into_inner();
        assert_eq!(r.status(), ServingStatus::Serving, "{service}");
    }

    let mut reflection = ServerReflectionClient::new(server.client.channel());
    let ask = |m: MessageRequest| ServerReflectionRequest { host: String::new(), message_request: Some(m) };
    let requests = vec![
        ask(MessageRequest::ListServices(String::new())),
        ask(MessageRequest::FileContainingSymbol("pixdex.v1.SearchService".into())),
        ask(MessageRequest::FileContainingSymbol("pixdex.v1.IndexJob".into())),
    ];
    let mut answers = reflection.server_reflection_info(tokio_stream::iter(requests)).await.unwrap().into_inner();
    let mut responses = Vec::new();
    while let Some(r) = answers.next().await {
        responses.push(r.unwrap().message_response.expect("an answer"));
    }
    assert_eq!(responses.len(), 3);
    let MessageResponse::ListServicesResponse(list) = &responses[0] else { panic!("{:?}", responses[0]) };
    let names: Vec<&str> = list.service.iter().map(|s| s.name.as_str()).collect();
    for service in SERVICES.iter().chain(&["grpc.health.v1.Health", "grpc.reflection.v1.ServerReflection"]) {
        assert!(names.contains(service), "{service} missing from {names:?}");
    }
    for r in &responses[1..] {
        let MessageResponse::FileDescriptorResponse(files) = r else { panic!("{r:?}") };
        assert!(!files.file_descriptor_proto.is_empty());
    }
    // Generic clients see every rpc, the newest included (the names are in the encoded descriptor).
    let MessageResponse::FileDescriptorResponse(search) = &responses[1] else { panic!("{:?}", responses[1]) };
    assert!(search.file_descriptor_proto.iter().any(|f| f.windows(12).any(|w| w == b"RegionSearch")));
    server.stop().await.unwrap();
}
