//! Access control over real TLS: tokens by role on every kind of method, health open to all,
//! reflection behind a read token, and clients that cannot speak to the server the wrong way.

use pixdex_server::test_pki::TestPki;
use pixdex_server::{AccessTokens, ClientOptions, PixdexClient, ServeError, Server, ServerConfig, TlsIdentity, pb};
use tokio_stream::StreamExt;
use tonic::Code;
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_reflection::pb::v1::{
    ServerReflectionRequest, server_reflection_client::ServerReflectionClient,
    server_reflection_request::MessageRequest,
};

use crate::common::*;

const READ: &str = "read-token-8f2b61c0d4e7a913";
const WRITE: &str = "write-token-5c0e9a7b3d21f846";

fn secured(pki: &TestPki) -> impl FnOnce(&mut ServerConfig) {
    let tls = TlsIdentity { cert_pem: pki.cert_pem.clone().into(), key_pem: pki.key_pem.clone().into() };
    move |config| {
        config.access = Some(AccessTokens::parse(&format!("# ci\nread {READ}\nwrite {WRITE}\n")).unwrap());
        config.tls = Some(tls);
    }
}

fn options(pki: &TestPki, token: Option<&str>) -> ClientOptions {
    ClientOptions { token: token.map(str::to_string), ca_pem: Some(pki.ca_pem.clone().into()) }
}

async fn client(url: &str, pki: &TestPki, token: Option<&str>) -> PixdexClient {
    PixdexClient::connect_with(url, &options(pki, token)).await.expect("TLS connection")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_gate_each_method_by_role_over_tls() {
    let pki = TestPki::generate();
    let mut server = TestServer::start_secured(secured(&pki), options(&pki, Some(WRITE))).await;
    let url = server.url.clone();
    assert!(url.starts_with("https://"), "{url}");
    let png = png_bytes(&picture(3, 64, 64));

    // Health is open: no token needed.
    let mut anonymous = client(&url, &pki, None).await;
    let health = anonymous.health.check(HealthCheckRequest { service: String::new() }).await.unwrap().into_inner();
    assert_eq!(health.status(), ServingStatus::Serving);

    // No token, an unknown one, or another scheme: UNAUTHENTICATED, on reads and writes alike.
    let mut wrong = client(&url, &pki, Some("not-a-token-of-this-server")).await;
    for c in [&mut anonymous, &mut wrong] {
        let e = c.collection.get_stats(pb::GetStatsRequest {}).await.unwrap_err();
        assert_eq!(e.code(), Code::Unauthenticated, "{e:?}");
        let e = c.search.search(image_query(png.clone(), 1)).await.unwrap_err();
        assert_eq!(e.code(), Code::Unauthenticated, "{e:?}");
        let e = c.images.delete_image(pb::DeleteImageRequest { image: id_ref(1) }).await.unwrap_err();
        assert_eq!(e.code(), Code::Unauthenticated, "{e:?}");
    }
    let e = anonymous.index.cancel_index_job(pb::CancelIndexJobRequest { job_id: "job-1".into() }).await.unwrap_err();
    assert_eq!(e.code(), Code::Unauthenticated);
    assert!(!e.message().contains(READ) && !e.message().contains(WRITE));

    // A write token uploads.
    let upload = pb::UpsertImageRequest { key: "a.png".into(), image: png.clone() };
    let stored = server.client.images.upsert_image(upload.clone()).await.unwrap().into_inner().record.unwrap();

    // A read token reads, and is refused every mutating call with PERMISSION_DENIED.
    let mut reader = client(&url, &pki, Some(READ)).await;
    let stats = reader.collection.get_stats(pb::GetStatsRequest {}).await.unwrap().into_inner();
    assert_eq!(stats.images, 1);
    let hits = reader.search.search(image_query(png.clone(), 1)).await.unwrap().into_inner();
    assert_eq!(hits.hits.len(), 1);
    reader.images.get_image(pb::GetImageRequest { image: id_ref(stored.id) }).await.unwrap();
    reader.index.list_index_jobs(pb::ListIndexJobsRequest::default()).await.unwrap();
    let root = server.library().canonicalize().unwrap().display().to_string();
    let refusals = [
        reader.images.upsert_image(upload.clone()).await.unwrap_err(),
        reader.images.delete_image(pb::DeleteImageRequest { image: id_ref(stored.id) }).await.unwrap_err(),
        reader
            .index
            .start_index_job(pb::StartIndexJobRequest { roots: vec![root], ..Default::default() })
            .await
            .unwrap_err(),
        reader.index.cancel_index_job(pb::CancelIndexJobRequest { job_id: "job-1".into() }).await.unwrap_err(),
    ];
    for e in refusals {
        assert_eq!(e.code(), Code::PermissionDenied, "{e:?}");
    }
    let after = reader.collection.get_stats(pb::GetStatsRequest {}).await.unwrap().into_inner();
    assert_eq!((after.images, after.generation), (stats.images, stats.generation), "a refused call changed nothing");

    // Reflection needs a read token too.
    let list = || {
        tokio_stream::iter(vec![ServerReflectionRequest {
            host: String::new(),
            message_request: Some(MessageRequest::ListServices(String::new())),
        }])
    };
    let mut bare = ServerReflectionClient::new(anonymous.channel());
    let e = bare.server_reflection_info(list()).await.unwrap_err();
    assert_eq!(e.code(), Code::Unauthenticated);
    let with_token = tonic::service::interceptor::InterceptedService::new(reader.channel(), bearer(READ));
    let mut answers =
        ServerReflectionClient::new(with_token).server_reflection_info(list()).await.unwrap().into_inner();
    assert!(answers.next().await.expect("an answer").is_ok());

    // The writer deletes.
    server.client.images.delete_image(pb::DeleteImageRequest { image: id_ref(stored.id) }).await.unwrap();
    server.stop().await.unwrap();
}

fn bearer(token: &'static str) -> impl FnMut(tonic::Request<()>) -> Result<tonic::Request<()>, tonic::Status> {
    move |mut r| {
        r.metadata_mut().insert("authorization", format!("Bearer {token}").parse().unwrap());
        Ok(r)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_that_do_not_trust_or_do_not_speak_tls_get_nothing() {
    let pki = TestPki::generate();
    let mut server = TestServer::start_secured(secured(&pki), options(&pki, Some(READ))).await;
    let plain = server.url.replace("https://", "http://");
    // Plaintext HTTP/2 to a TLS port: no answer, whatever the token.
    let outcome = async {
        let mut c =
            PixdexClient::connect_with(&plain, &ClientOptions { token: Some(READ.into()), ca_pem: None }).await?;
        Ok::<_, Box<dyn std::error::Error>>(c.collection.get_stats(pb::GetStatsRequest {}).await?)
    };
    assert!(tokio::time::timeout(PATIENCE, outcome).await.expect("fails, not hangs").is_err());
    // TLS with another CA (the server's certificate is not trusted): the handshake fails.
    let other = TestPki::generate();
    let outcome = async {
        let mut c = PixdexClient::connect_with(&server.url, &options(&other, Some(READ))).await?;
        Ok::<_, Box<dyn std::error::Error>>(c.collection.get_stats(pb::GetStatsRequest {}).await?)
    };
    assert!(tokio::time::timeout(PATIENCE, outcome).await.expect("fails, not hangs").is_err());
    // A CA with a plaintext URL is a mistake the client names.
    let e = PixdexClient::connect_with(&plain, &options(&pki, None)).await.unwrap_err();
    assert!(e.to_string().contains("not https"), "{e}");
    // The trusted client still works.
    server.client.collection.get_stats(pb::GetStatsRequest {}).await.unwrap();
    server.stop().await.unwrap();
}

#[tokio::test]
async fn an_unusable_certificate_or_key_stops_the_server_before_it_listens() {
    let pki = TestPki::generate();
    let dir = tempfile::tempdir().unwrap();
    for (cert, key) in [
        (b"not a certificate".to_vec(), pki.key_pem.clone().into_bytes()),
        (pki.cert_pem.clone().into_bytes(), b"-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n".to_vec()),
    ] {
        let mut config = ServerConfig::new(dir.path().join("db"));
        config.tls = Some(TlsIdentity { cert_pem: cert, key_pem: key });
        match Server::open(config) {
            Err(e @ ServeError::Tls(_)) => assert!(!e.to_string().contains("PRIVATE KEY"), "{e}"),
            Err(e) => panic!("{e}"),
            Ok(_) => panic!("a bad TLS identity was accepted"),
        }
    }
}
