//! `PixdexClient`: the four pixdex services and health over one channel, with message limits
//! that fit large photos (the CLI and the tests use it).

use std::time::{Duration, Instant};
use tonic::transport::{Channel, Endpoint};
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::{HealthCheckRequest, health_client::HealthClient};

use crate::config::DEFAULT_MAX_MESSAGE_BYTES;
use crate::pb::{
    collection_service_client::CollectionServiceClient, dedup_service_client::DedupServiceClient,
    image_service_client::ImageServiceClient, index_service_client::IndexServiceClient,
    search_service_client::SearchServiceClient,
};

/// Clients of every pixdex service, sharing one HTTP/2 connection.
#[derive(Debug, Clone)]
pub struct PixdexClient {
    /// Similarity search.
    pub search: SearchServiceClient<Channel>,
    /// Upserts, deletes and records.
    pub images: ImageServiceClient<Channel>,
    /// Index jobs.
    pub index: IndexServiceClient<Channel>,
    /// Stats.
    pub collection: CollectionServiceClient<Channel>,
    /// Duplicate detection.
    pub dedup: DedupServiceClient<Channel>,
    /// Standard gRPC health checking.
    pub health: HealthClient<Channel>,
    channel: Channel,
    url: String,
}

/// Why the client could not reach a ready server.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
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
    /// Connects to `url` (e.g. `http://127.0.0.1:50051`).
    pub async fn connect(url: &str) -> Result<Self, ClientError> {
        let err = |source| ClientError::Connect { url: url.to_string(), source };
        let channel = Endpoint::from_shared(url.to_string())
            .map_err(err)?
            .connect_timeout(Duration::from_secs(10))
            .tcp_nodelay(true)
            .connect()
            .await
            .map_err(err)?;
        Ok(Self::from_channel(channel, url))
    }

    /// Clients over an existing channel to `url`.
    pub fn from_channel(channel: Channel, url: &str) -> Self {
        let max = DEFAULT_MAX_MESSAGE_BYTES;
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
            health: HealthClient::new(channel.clone()),
            channel,
            url: url.to_string(),
        }
    }

    /// The server's URL.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The underlying channel (for other clients, e.g. reflection).
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
