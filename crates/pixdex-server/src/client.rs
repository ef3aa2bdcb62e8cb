//! `PixdexClient`: the pixdex services and health over one channel, with message limits that fit
//! large photos, TLS for `https://` URLs and a bearer token on every call (the CLI and the tests
//! use it).

use std::time::{Duration, Instant};
use tonic::metadata::{AsciiMetadataValue, MetadataValue};
use tonic::service::Interceptor;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint};
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::{HealthCheckRequest, health_client::HealthClient};

use crate::config::DEFAULT_MAX_MESSAGE_BYTES;
use crate::pb::{
    collection_service_client::CollectionServiceClient, dedup_service_client::DedupServiceClient,
    image_service_client::ImageServiceClient, index_service_client::IndexServiceClient,
    search_service_client::SearchServiceClient,
};

/// How to reach a server beyond its URL.
#[derive(Clone, Default)]
pub struct ClientOptions {
    /// Sent as `authorization: Bearer TOKEN` on every call.
    pub token: Option<String>,
    /// For `https://` URLs: trust only this CA (PEM) instead of the system's roots (a private or
    /// self-signed certificate).
    pub ca_pem: Option<Vec<u8>>,
}

impl std::fmt::Debug for ClientOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientOptions")
            .field("token", &self.token.as_ref().map(|_| "redacted"))
            .field("ca_pem", &self.ca_pem.as_ref().map(Vec::len))
            .finish()
    }
}

/// Adds the bearer token to each call (marked sensitive: HPACK never indexes it).
#[derive(Clone)]
pub struct BearerToken(Option<AsciiMetadataValue>);

impl std::fmt::Debug for BearerToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.0.is_some() { "BearerToken(redacted)" } else { "BearerToken(none)" })
    }
}

impl Interceptor for BearerToken {
    fn call(&mut self, mut request: tonic::Request<()>) -> Result<tonic::Request<()>, tonic::Status> {
        if let Some(value) = &self.0 {
            request.metadata_mut().insert("authorization", value.clone());
        }
        Ok(request)
    }
}

/// The channel every client of a [`PixdexClient`] calls through.
pub type ClientChannel = InterceptedService<Channel, BearerToken>;

/// Clients of every pixdex service, sharing one HTTP/2 connection.
#[derive(Debug, Clone)]
pub struct PixdexClient {
    /// Similarity search.
    pub search: SearchServiceClient<ClientChannel>,
    /// Upserts, deletes and records.
    pub images: ImageServiceClient<ClientChannel>,
    /// Index jobs.
    pub index: IndexServiceClient<ClientChannel>,
    /// Stats.
    pub collection: CollectionServiceClient<ClientChannel>,
    /// Duplicate detection.
    pub dedup: DedupServiceClient<ClientChannel>,
    /// Standard gRPC health checking.
    pub health: HealthClient<ClientChannel>,
    channel: Channel,
    url: String,
}

/// Why the client could not reach a ready server.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The token cannot travel in a header, or the CA is not PEM.
    #[error("{0}")]
    Options(String),
    /// Bad URL or connection failure.
    #[error("cannot connect to {url}: {source}")]
    Connect {
        /// The server URL.
        url: String,
        /// The cause.
        source: tonic::transport::Error,
    },
    /// The server did not report SERVING in time.
    #[error("the server at {url} is not ready after {waited:?} (last status: {last})")]
    NotReady {
        /// The server URL.
        url: String,
        /// How long we waited.
        waited: Duration,
        /// The last health status or error.
        last: String,
    },
}

impl PixdexClient {
    /// Connects to `url` (e.g. `http://127.0.0.1:50051`) without a token.
    pub async fn connect(url: &str) -> Result<Self, ClientError> {
        Self::connect_with(url, &ClientOptions::default()).await
    }

    /// Connects to `url` (`https://…` is TLS, trusting `options.ca_pem` or the system's roots),
    /// sending `options.token` on every call.
    pub async fn connect_with(url: &str, options: &ClientOptions) -> Result<Self, ClientError> {
        let err = |source| ClientError::Connect { url: url.to_string(), source };
        let mut endpoint = Endpoint::from_shared(url.to_string())
            .map_err(err)?
            .connect_timeout(Duration::from_secs(10))
            .tcp_nodelay(true);
        let https = endpoint.uri().scheme_str() == Some("https");
        if options.ca_pem.is_some() && !https {
            return Err(ClientError::Options(format!("a CA certificate was given but {url} is not https://")));
        }
        if https {
            let tls = match &options.ca_pem {
                Some(ca) => ClientTlsConfig::new().ca_certificate(Certificate::from_pem(ca)),
                None => ClientTlsConfig::new().with_native_roots(),
            };
            endpoint = endpoint.tls_config(tls).map_err(err)?;
        }
        let channel = endpoint.connect().await.map_err(err)?;
        let token = match &options.token {
            Some(token) => {
                let mut value: AsciiMetadataValue = MetadataValue::try_from(format!("Bearer {}", token.trim()))
                    .map_err(|_| ClientError::Options("the token must be printable ASCII".into()))?;
                value.set_sensitive(true);
                Some(value)
            }
            None => None,
        };
        Ok(Self::from_channel(channel, url, BearerToken(token)))
    }

    /// Clients over an existing channel to `url`, each call carrying `token`.
    pub fn from_channel(channel: Channel, url: &str, token: BearerToken) -> Self {
        let max = DEFAULT_MAX_MESSAGE_BYTES;
        let channel_with_token = InterceptedService::new(channel.clone(), token);
        let (raw, channel) = (channel, channel_with_token);
        Self {
            search: SearchServiceClient::new(channel.clone())
                .max_decoding_message_size(max)
                .max_encoding_message_size(max),
            images: ImageServiceClient::new(channel.clone())
                .max_decoding_message_size(max)
                .max_encoding_message_size(max),
            index: IndexServiceClient::new(channel.clone())
                .max_decoding_message_size(max)
                .max_encoding_message_size(max),
            collection: CollectionServiceClient::new(channel.clone())
                .max_decoding_message_size(max)
                .max_encoding_message_size(max),
            dedup: DedupServiceClient::new(channel.clone())
                .max_decoding_message_size(max)
                .max_encoding_message_size(max),
            health: HealthClient::new(channel),
            channel: raw,
            url: url.to_string(),
        }
    }

    /// The server's URL.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The underlying channel, without the token (for other clients, e.g. reflection).
    pub fn channel(&self) -> Channel {
        self.channel.clone()
    }

    /// Waits until the server reports SERVING (the model is loaded), polling health.
    pub async fn wait_ready(&mut self, timeout: Duration) -> Result<(), ClientError> {
        let started = Instant::now();
        loop {
            let last = match self.health.check(HealthCheckRequest { service: String::new() }).await {
                Ok(r) if r.get_ref().status == ServingStatus::Serving as i32 => return Ok(()),
                Ok(r) => format!("{:?}", ServingStatus::try_from(r.get_ref().status).unwrap_or(ServingStatus::Unknown)),
                Err(status) => status.to_string(),
            };
            if started.elapsed() > timeout {
                return Err(ClientError::NotReady { url: self.url.clone(), waited: timeout, last });
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}
