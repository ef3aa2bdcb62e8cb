//! What every service shares: the collection, the model once loaded, the jobs, the shutdown token.

use pixdex_core::{Collection, ImageId, ImageRecord, RegionGrid, UnitVector};
use pixdex_indexer::decode::{DecodeLimits, decode_bytes, header_pixels};
use pixdex_indexer::encoder::{Encoder, ImageEmbedding};
use pixdex_indexer::inputs::{InputKinds, ModelInputs};
use std::sync::{Arc, OnceLock};
use tokio_util::sync::CancellationToken;

use crate::batcher::QueryBatcher;
use crate::config::ServerConfig;
use crate::convert::ImageRef;
use crate::jobs::IndexJobs;
use crate::metrics::Metrics;
use crate::status::ServiceError;

/// The loaded model and its query batcher. The server knows the model only as an [`Encoder`].
pub(crate) struct LoadedModel {
    pub(crate) encoder: Arc<dyn Encoder>,
    pub(crate) batcher: QueryBatcher,
}

/// Shared by every service.
pub(crate) struct AppState {
    pub(crate) config: ServerConfig,
    /// Set at start when the collection exists, else once the model has loaded and created it.
    pub(crate) collection: OnceLock<Arc<Collection>>,
    pub(crate) model: OnceLock<LoadedModel>,
    pub(crate) jobs: IndexJobs,
    pub(crate) metrics: Arc<Metrics>,
    pub(crate) shutdown: CancellationToken,
    /// Bounds the pixels being decoded at once ([`DecodePermits`]). Shared so that a region
    /// search can hold its permit on the blocking thread that holds the pixels.
    pub(crate) decode_permits: Arc<DecodePermits>,
    /// One duplicate search at a time: it reads every stored vector and holds a blocking thread.
    pub(crate) dedup_run: Arc<tokio::sync::Semaphore>,
}

impl AppState {
    pub(crate) fn collection(&self) -> Result<Arc<Collection>, ServiceError> {
        self.collection
            .get()
            .cloned()
            .ok_or_else(|| ServiceError::Unavailable("the server is loading the model; retry shortly".into()))
    }

    pub(crate) fn model(&self) -> Result<&LoadedModel, ServiceError> {
        self.model
            .get()
            .ok_or_else(|| ServiceError::Unavailable("the server is loading the model; retry shortly".into()))
    }

    /// Resolves an image reference to its id and record; NOT_FOUND when absent.
    pub(crate) fn resolve(
        &self,
        collection: &Collection,
        image: &ImageRef,
    ) -> Result<(ImageId, ImageRecord), ServiceError> {
        let id = match image {
            ImageRef::Id(id) => *id,
            ImageRef::Path(path) => collection
                .id_by_path(std::path::Path::new(path))?
                .ok_or_else(|| ServiceError::NotFound(format!("no image with path `{path}`")))?,
        };
        let record = collection.get(id)?.ok_or_else(|| ServiceError::NotFound(format!("no image with id {}", id.0)))?;
        Ok((id, record))
    }

    /// Decodes, preprocesses and embeds uploaded bytes (decoding on the blocking pool, the
    /// forward pass shared through the batcher). Returns the upright size too.
    pub(crate) async fn embed_bytes(
        &self,
        bytes: Arc<Vec<u8>>,
        with_views: bool,
    ) -> Result<(ImageEmbedding, (u32, u32)), ServiceError> {
        let (e, size, _) = self.embed_bytes_with(bytes, InputKinds { views: with_views, region: false }).await?;
        Ok((e, size))
    }

    /// [`Self::embed_bytes`] for an upload: with the dedup views and the region grid, as the
    /// index pipeline stores images.
    pub(crate) async fn embed_upload(
        &self,
        bytes: Arc<Vec<u8>>,
    ) -> Result<(ImageEmbedding, (u32, u32), Option<RegionGrid>), ServiceError> {
        self.embed_bytes_with(bytes, InputKinds::STORED).await
    }

    /// Decodes `bytes`, makes the inputs `kinds` asks for ([`ModelInputs::of`], as the index
    /// pipeline does) and embeds them through the batcher.
    async fn embed_bytes_with(
        &self,
        bytes: Arc<Vec<u8>>,
        kinds: InputKinds,
    ) -> Result<(ImageEmbedding, (u32, u32), Option<RegionGrid>), ServiceError> {
        let model = self.model()?;
        if bytes.is_empty() {
            return Err(ServiceError::invalid("empty image bytes"));
        }
        let encoder = model.encoder.clone();
        let permit = self.decode_permits.acquire(header_pixels(&bytes).unwrap_or(0)).await?;
        // The permit travels with the decode: a client that cancels does not free it while the
        // decode runs on (send-and-cancel loops would otherwise decode without bound). Only
        // decoding is bounded here: the batcher bounds the rest, and holding the permit through
        // the forward pass would cap batches at the permit count.
        let (inputs, size) = tokio::task::spawn_blocking(move || {
            let _permit = permit;
            let decoded = decode_bytes(&bytes, DecodeLimits::default())?;
            let size = (decoded.image.width(), decoded.image.height());
            Ok::<_, ServiceError>((ModelInputs::of(&*encoder, &decoded, kinds)?, size))
        })
        .await
        .map_err(|e| ServiceError::Internal(format!("decoding task: {e}")))??;
        let embedding = model.batcher.embed(inputs.square).await?;
        let region = match inputs.region {
            // The region input goes through the batcher alone (its own size and pass).
            Some(r) => Some(RegionGrid { frame: r.frame, tokens: model.batcher.embed_region(r.input).await? }),
            None => None,
        };
        Ok((embedding, size, region))
    }

    /// The stored vector of a resolved image; FAILED_PRECONDITION for images without one.
    pub(crate) fn stored_vector(
        &self,
        collection: &Collection,
        id: ImageId,
        record: &ImageRecord,
    ) -> Result<UnitVector, ServiceError> {
        collection.global_vector(id)?.ok_or_else(|| {
            let why = match &record.status {
                pixdex_core::ImageStatus::Failed { error } => error.clone(),
                pixdex_core::ImageStatus::Embedded => "no stored vector".into(),
            };
            ServiceError::FailedPrecondition(format!("image {} has no embedding: {why}", id.0))
        })
    }
}

/// Megapixels being decoded at once, in permits of one megapixel: a decoded 100-megapixel photo
/// takes 300 MB or more, so large uploads queue by their size rather than by their count. The
/// budget is 25 megapixels per core, and at least the largest image the decoder accepts.
pub(crate) struct DecodePermits {
    semaphore: Arc<tokio::sync::Semaphore>,
    budget: u32,
}

impl DecodePermits {
    pub(crate) fn new(cores: usize) -> Self {
        let largest = DecodeLimits::default().max_pixels.div_ceil(1_000_000) as u32;
        let budget = (25 * cores as u32).max(largest);
        Self { semaphore: Arc::new(tokio::sync::Semaphore::new(budget as usize)), budget }
    }

    /// Waits for room to decode an image of `pixels` (from its header; 0 when unknown, which
    /// weighs one permit: such bytes fail before anything large is allocated).
    pub(crate) async fn acquire(&self, pixels: u64) -> Result<tokio::sync::OwnedSemaphorePermit, ServiceError> {
        let weight = pixels.div_ceil(1_000_000).clamp(1, u64::from(self.budget)) as u32;
        self.semaphore
            .clone()
            .acquire_many_owned(weight)
            .await
            .map_err(|_| ServiceError::Unavailable("the server is shutting down".into()))
    }
}

/// Runs blocking collection work off the async threads.
pub(crate) async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, ServiceError> + Send + 'static,
) -> Result<T, ServiceError> {
    tokio::task::spawn_blocking(f).await.map_err(|e| ServiceError::Internal(format!("blocking task: {e}")))?
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn decode_permits_weigh_images_by_their_megapixels() {
        let permits = DecodePermits::new(2);
        assert_eq!(permits.budget, 100, "at least the largest image the decoder accepts");
        let big = permits.acquire(60_000_000).await.unwrap();
        assert_eq!(big.num_permits(), 60);
        // 40 left: a 12-megapixel photo fits three times, not four.
        let small: Vec<_> = futures::future::join_all((0..3).map(|_| permits.acquire(12_000_000))).await;
        assert_eq!(permits.semaphore.available_permits(), 4);
        let waiting = tokio::time::timeout(std::time::Duration::from_millis(50), permits.acquire(12_000_000)).await;
        assert!(waiting.is_err(), "a fourth 12-megapixel decode waits");
        drop(big);
        assert_eq!(permits.acquire(12_000_000).await.unwrap().num_permits(), 12);
        // Unknown sizes weigh one permit; a size past the budget weighs the whole budget.
        drop(small);
        assert_eq!(permits.acquire(0).await.unwrap().num_permits(), 1);
        assert_eq!(permits.acquire(u64::MAX).await.unwrap().num_permits(), 100);
    }
}
