//! The query-embedding batcher: concurrent requests that need the encoder share forward passes.
//!
//! One thread owns the forward passes. It takes the first waiting request, lets others join for
//! at most `max_wait` (or until `max_batch`), drops requests whose caller has gone (a cancelled
//! call costs no forward pass), and answers each caller through its own channel. While a pass
//! runs, new requests queue up and form the next batch at once, so under load batches fill
//! without waiting.

use pixdex_indexer::encoder::{ImageEmbedding, PixioEncoder};
use pixio::Tensor;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender, TrySendError};
use std::time::Instant;
use tokio::sync::oneshot;

use crate::config::BatchingConfig;
use crate::status::ServiceError;

struct Pending {
    /// One preprocessed image, or an image with its dedup views.
    input: Vec<Tensor>,
    /// A region input: answered with its region grid as `patches`.
    region: bool,
    reply: oneshot::Sender<Result<ImageEmbedding, ServiceError>>,
}

/// Counters that show batching at work.
#[derive(Debug, Default)]
pub(crate) struct BatcherCounters {
    /// Query embeddings computed.
    pub(crate) embeddings: AtomicU64,
    /// Forward passes they took.
    pub(crate) forward_passes: AtomicU64,
    /// Inputs per forward pass, for the metrics.
    pub(crate) batch_sizes: crate::metrics::BatchSizes,
}

/// Handle to the batching thread (which ends when the last handle is dropped).
pub(crate) struct QueryBatcher {
    tx: SyncSender<Pending>,
    pub(crate) counters: Arc<BatcherCounters>,
}

impl QueryBatcher {
    pub(crate) fn start(encoder: Arc<PixioEncoder>, config: BatchingConfig) -> std::io::Result<Self> {
        let (tx, rx) = std::sync::mpsc::sync_channel(config.max_queue.max(1));
        let counters = Arc::new(BatcherCounters::default());
        let thread_counters = counters.clone();
        std::thread::Builder::new()
            .name("pixdex-query-encoder".into())
            .spawn(move || run(&encoder, &rx, config, &thread_counters))?;
        Ok(Self { tx, counters })
    }

    /// Embeds one preprocessed image (`[3, H, W]`, or the three views of
    /// [`PixioEncoder::prepare_views`]), sharing a forward pass with concurrent calls.
    pub(crate) async fn embed(&self, input: Vec<Tensor>) -> Result<ImageEmbedding, ServiceError> {
        self.send(input, false).await
    }

    /// Embeds one region input ([`PixioEncoder::prepare_region`] or `prepare_grid`): the
    /// answer's `patches` is its region grid ([`PixioEncoder::embed_region_grids`]).
    pub(crate) async fn embed_region(&self, input: Tensor) -> Result<ImageEmbedding, ServiceError> {
        self.send(vec![input], true).await
    }

    async fn send(&self, input: Vec<Tensor>, region: bool) -> Result<ImageEmbedding, ServiceError> {
        let (reply, answer) = oneshot::channel();
        match self.tx.try_send(Pending { input, region, reply }) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) => {
                return Err(ServiceError::Unavailable("too many queries waiting for the encoder; retry".into()));
            }
            Err(TrySendError::Disconnected(_)) => {
                return Err(ServiceError::Internal("the encoder thread stopped".into()));
            }
        }
        match answer.await {
            Ok(result) => result,
            Err(_) => Err(ServiceError::Internal("the encoder thread dropped a query".into())),
        }
    }
}

fn run(encoder: &PixioEncoder, rx: &Receiver<Pending>, config: BatchingConfig, counters: &BatcherCounters) {
    let max_batch = config.max_batch.max(1);
    while let Ok(first) = rx.recv() {
        let deadline = Instant::now() + config.max_wait;
        let mut batch = vec![first];
        while batch.len() < max_batch {
            match rx.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
                Ok(p) => batch.push(p),
                Err(RecvTimeoutError::Timeout | RecvTimeoutError::Disconnected) => break,
            }
        }
        batch.retain(|p| !p.reply.is_closed());
        // Inputs of one shape go in one pass (the preprocessor gives every image the same size;
        // this keeps it correct if that ever changes).
        while !batch.is_empty() {
            let dims = batch[0].input.first().map(|t| t.dims().to_vec()).unwrap_or_default();
            let region = batch[0].region;
            let (same, rest): (Vec<Pending>, Vec<Pending>) = batch
                .into_iter()
                .partition(|p| p.region == region && p.input.first().is_some_and(|t| t.dims() == dims));
            batch = rest;
            embed_group(encoder, same, counters);
        }
    }
}

fn embed_group(encoder: &PixioEncoder, group: Vec<Pending>, counters: &BatcherCounters) {
    let started = Instant::now();
    let results = if group.first().is_some_and(|p| p.region) {
        let inputs: Vec<Tensor> = group.iter().flat_map(|p| p.input.iter().cloned()).collect();
        encoder.embed_region_images(&inputs)
    } else {
        let inputs: Vec<Vec<Tensor>> = group.iter().map(|p| p.input.clone()).collect();
        encoder.embed_images(&inputs)
    };
    counters.forward_passes.fetch_add(1, Ordering::Relaxed);
    counters.embeddings.fetch_add(group.len() as u64, Ordering::Relaxed);
    counters.batch_sizes.observe(group.len());
    tracing::debug!(batch = group.len(), ms = started.elapsed().as_millis() as u64, "query forward pass");
    match results {
        Ok(results) => {
            for (p, r) in group.into_iter().zip(results) {
                let _ = p.reply.send(r.map_err(ServiceError::Model));
            }
        }
        Err(e) => {
            let msg = e.to_string();
            for p in group {
                let _ = p.reply.send(Err(ServiceError::Internal(format!("forward pass failed: {msg}"))));
            }
        }
    }
}
