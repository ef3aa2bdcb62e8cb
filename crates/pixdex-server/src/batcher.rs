//! The query-embedding batcher: concurrent requests that need the encoder share forward passes.
//!
//! One thread owns the forward passes. It takes the first waiting request, lets others join for
//! at most `max_wait` (or until `max_batch`), drops requests whose caller has gone (a cancelled
//! call costs no forward pass), and answers each caller through its own channel. While a pass
//! runs, new requests queue up and form the next batch at once, so under load batches fill
//! without waiting. A forward pass that panics fails its callers' queries (`INTERNAL`) and
//! the thread goes on; if the thread ever stops, [`QueryBatcher::stopped`] says so (health turns
//! `NOT_SERVING`) and queries get `UNAVAILABLE`. How inputs are made, grouped by size and unpacked is the indexer's
//! ([`pixdex_indexer::batch`]); this module only schedules them.

use pixdex_core::PatchGrid;
use pixdex_indexer::batch::{embed_images, embed_region_grids, group_by_size, input_size};
use pixdex_indexer::encoder::{Encoder, ImageEmbedding};
use pixio::Tensor;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender, TrySendError};
use std::time::{Duration, Instant};
use tokio::sync::oneshot;

use crate::config::BatchingConfig;
use crate::status::ServiceError;

/// One caller's request.
enum Pending {
    /// One square input, or an image with its dedup views: answered with its embedding.
    Square { inputs: Vec<Tensor>, reply: oneshot::Sender<Result<ImageEmbedding, ServiceError>> },
    /// A region input: answered with its region grid.
    Region { input: Tensor, reply: oneshot::Sender<Result<PatchGrid, ServiceError>> },
}

impl Pending {
    fn is_abandoned(&self) -> bool {
        match self {
            Pending::Square { reply, .. } => reply.is_closed(),
            Pending::Region { reply, .. } => reply.is_closed(),
        }
    }

    /// Which pass it can share: the kind and the input size.
    fn pass_key(&self) -> (bool, Vec<usize>) {
        match self {
            Pending::Square { inputs, .. } => {
                (false, inputs.first().map(|t| input_size(t).to_vec()).unwrap_or_default())
            }
            Pending::Region { input, .. } => (true, input_size(input).to_vec()),
        }
    }
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
    /// Forward passes that panicked (contained).
    pub(crate) panics: AtomicU64,
}

/// Handle to the batching thread (which ends when the last handle is dropped).
pub(crate) struct QueryBatcher {
    tx: SyncSender<Pending>,
    pub(crate) counters: Arc<BatcherCounters>,
    /// Closed when the thread ends.
    stopped: tokio::sync::watch::Receiver<()>,
}

impl QueryBatcher {
    pub(crate) fn start(encoder: Arc<dyn Encoder>, config: BatchingConfig) -> std::io::Result<Self> {
        let (tx, rx) = std::sync::mpsc::sync_channel(config.max_queue.max(1));
        let counters = Arc::new(BatcherCounters::default());
        let thread_counters = counters.clone();
        let (alive, stopped) = tokio::sync::watch::channel(());
        std::thread::Builder::new().name("pixdex-query-encoder".into()).spawn(move || {
            // Dropped when the thread ends, however it ends.
            let _alive = alive;
            run(&*encoder, &rx, config, &thread_counters)
        })?;
        Ok(Self { tx, counters, stopped })
    }

    /// Completes when the encoder thread has stopped (it should not while the server runs).
    pub(crate) fn stopped(&self) -> impl Future<Output = ()> + Send + 'static {
        let mut stopped = self.stopped.clone();
        async move { while stopped.changed().await.is_ok() {} }
    }

    /// Embeds one image given as its square input(s) ([`pixdex_indexer::inputs::ModelInputs`]'s
    /// `square`), sharing a forward pass with concurrent calls.
    pub(crate) async fn embed(&self, inputs: Vec<Tensor>) -> Result<ImageEmbedding, ServiceError> {
        let (reply, answer) = oneshot::channel();
        self.send(Pending::Square { inputs, reply })?;
        answer.await.unwrap_or_else(|_| Err(dropped()))
    }

    /// The region grid of one grid-sized input (an image's region input or a region query at
    /// one grid size), sharing a forward pass with concurrent calls of the same size.
    pub(crate) async fn embed_region(&self, input: Tensor) -> Result<PatchGrid, ServiceError> {
        let (reply, answer) = oneshot::channel();
        self.send(Pending::Region { input, reply })?;
        answer.await.unwrap_or_else(|_| Err(dropped()))
    }

    fn send(&self, pending: Pending) -> Result<(), ServiceError> {
        self.tx.try_send(pending).map_err(|e| match e {
            TrySendError::Full(_) => {
                ServiceError::Unavailable("too many queries waiting for the encoder; retry".into())
            }
            TrySendError::Disconnected(_) => ServiceError::Unavailable("the encoder thread stopped".into()),
        })
    }
}

fn dropped() -> ServiceError {
    ServiceError::Internal("the forward pass of this query failed (see the server's log)".into())
}

fn run(encoder: &dyn Encoder, rx: &Receiver<Pending>, config: BatchingConfig, counters: &BatcherCounters) {
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
        batch.retain(|p| !p.is_abandoned());
        // Inputs of one kind and size go in one pass (the preprocessor gives every square
        // input the same size; region queries come in many grid sizes).
        for group in group_by_size(batch, Pending::pass_key) {
            // A panic is a bug in a pass, not in the thread: its callers' replies are dropped
            // on the unwind (they get INTERNAL) and the next batch runs.
            let pass = std::panic::AssertUnwindSafe(|| embed_group(encoder, group, counters));
            if let Err(panic) = std::panic::catch_unwind(pass) {
                counters.panics.fetch_add(1, Ordering::Relaxed);
                tracing::error!(panic = panic_message(&*panic), "a query forward pass panicked; its queries failed");
            }
        }
    }
}

/// One forward pass over a group of one kind and input size; each caller gets its answer.
fn embed_group(encoder: &dyn Encoder, group: Vec<Pending>, counters: &BatcherCounters) {
    let started = Instant::now();
    let images = group.len();
    let mut squares = Vec::new();
    let mut regions = Vec::new();
    for p in group {
        match p {
            Pending::Square { inputs, reply } => squares.push((inputs, reply)),
            Pending::Region { input, reply } => regions.push((input, reply)),
        }
    }
    // Counted before anyone is answered, so that a caller who reads the stats after its answer
    // sees its own pass.
    if !squares.is_empty() {
        let (inputs, replies): (Vec<Vec<Tensor>>, Vec<_>) = squares.into_iter().unzip();
        let inputs: Vec<&[Tensor]> = inputs.iter().map(Vec::as_slice).collect();
        let results =
            embed_images(encoder, &inputs).map(|r| r.into_iter().map(|r| r.map_err(ServiceError::Model)).collect());
        forward_pass_done(counters, images, started.elapsed());
        answer(replies, results);
    }
    if !regions.is_empty() {
        let (inputs, replies): (Vec<Tensor>, Vec<_>) = regions.into_iter().unzip();
        let results = embed_region_grids(encoder, &inputs).map(|grids| grids.into_iter().map(Ok).collect());
        forward_pass_done(counters, images, started.elapsed());
        answer(replies, results);
    }
}

/// Sends each caller its result, or the pass's error to all of them.
fn answer<T>(
    replies: Vec<oneshot::Sender<Result<T, ServiceError>>>,
    results: pixio::Result<Vec<Result<T, ServiceError>>>,
) {
    match results {
        Ok(results) => {
            for (reply, r) in replies.into_iter().zip(results) {
                let _ = reply.send(r);
            }
        }
        Err(e) => {
            let msg = e.to_string();
            for reply in replies {
                let _ = reply.send(Err(ServiceError::Internal(format!("forward pass failed: {msg}"))));
            }
        }
    }
}

/// The text of a panic's payload.
pub(crate) fn panic_message(payload: &(dyn std::any::Any + Send)) -> &str {
    payload
        .downcast_ref::<&str>()
        .copied()
        .or_else(|| payload.downcast_ref::<String>().map(String::as_str))
        .unwrap_or("(no message)")
}

/// Where a forward pass over a group completes: counts it (and its images) for the stats.
fn forward_pass_done(counters: &BatcherCounters, images: usize, elapsed: Duration) {
    counters.forward_passes.fetch_add(1, Ordering::Relaxed);
    counters.embeddings.fetch_add(images as u64, Ordering::Relaxed);
    counters.batch_sizes.observe(images);
    tracing::debug!(batch = images, ms = elapsed.as_millis() as u64, "query forward pass");
}

#[cfg(test)]
mod tests {
    use super::*;
    use pixdex_indexer::testing::FakeEncoder;

    fn square(encoder: &FakeEncoder, rgb: [u8; 3], views: bool) -> Vec<Tensor> {
        let img = image::DynamicImage::ImageRgb8(image::RgbImage::from_pixel(9, 7, image::Rgb(rgb)));
        encoder.prepare_square(&img, views).unwrap()
    }

    /// Concurrent queries of one kind and size share a pass; another kind or size gets its own,
    /// and each caller gets its own answer.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_queries_share_a_forward_pass_per_kind_and_size() {
        let fake = FakeEncoder::default();
        let (red, blue) = (square(&fake, [200, 10, 10], false), square(&fake, [10, 10, 200], true));
        let img = image::DynamicImage::ImageRgb8(image::RgbImage::from_pixel(9, 7, image::Rgb([5, 90, 5])));
        let (small, large) = (fake.prepare_grid(&img, 2, 3).unwrap(), fake.prepare_grid(&img, 3, 3).unwrap());
        // A window long enough that all five join it even on a loaded two-core machine (300 ms
        // was missed once while a build ran beside the tests).
        let config = BatchingConfig { max_batch: 16, max_wait: Duration::from_millis(2000), max_queue: 16 };
        let batcher = QueryBatcher::start(Arc::new(FakeEncoder::default()), config).unwrap();
        let (r, b, r2, g1, g2) = tokio::join!(
            batcher.embed(red.clone()),
            batcher.embed(blue),
            batcher.embed(red),
            batcher.embed_region(small),
            batcher.embed_region(large),
        );
        let (r, b, r2) = (r.unwrap(), b.unwrap(), r2.unwrap());
        assert_eq!(r.global, r2.global);
        assert_ne!(r.global, b.global);
        assert!(r.views.is_none() && b.views.is_some());
        assert_eq!((g1.unwrap().rows(), g2.unwrap().rows()), (2, 3));
        // Squares in one pass, then one region pass per grid size.
        assert_eq!(batcher.counters.forward_passes.load(Ordering::Relaxed), 3);
        assert_eq!(batcher.counters.embeddings.load(Ordering::Relaxed), 5);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_panicking_pass_fails_its_queries_and_the_next_ones_succeed() {
        let fake = Arc::new(FakeEncoder::default());
        let red = square(&fake, [200, 10, 10], false);
        let config = BatchingConfig { max_batch: 4, max_wait: Duration::from_millis(1), max_queue: 16 };
        let batcher = QueryBatcher::start(fake.clone(), config).unwrap();
        fake.panic_in_next_passes(1);
        let failed = batcher.embed(red.clone()).await.unwrap_err();
        assert!(matches!(failed, ServiceError::Internal(_)), "{failed:?}");
        batcher.embed(red).await.expect("the thread survived");
        // Counted before the thread took the next query.
        assert_eq!(batcher.counters.panics.load(Ordering::Relaxed), 1);
        // The thread is alive: `stopped` has not completed.
        let stopped = batcher.stopped();
        assert!(tokio::time::timeout(Duration::from_millis(50), stopped).await.is_err());
    }
}
