//! `pixdex.v1.DedupService`: duplicate groups streamed as found, and the duplicates of one image.

use pixdex_core::{Collection, DedupOptions, DedupPhase, DuplicateGroup};
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};
use tokio::sync::mpsc;
use tokio_stream::Stream;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status};

use crate::convert::{DedupProgressEvents, DuplicatesOfQuery, dedup_summary, image_record};
use crate::pb::{self, find_duplicates_response::Event};
use crate::state::{AppState, blocking};
use crate::status::ServiceError;

pub(crate) struct DedupApi {
    pub(crate) state: Arc<AppState>,
}

type DedupStream = Pin<Box<dyn Stream<Item = Result<pb::FindDuplicatesResponse, Status>> + Send + 'static>>;

#[tonic::async_trait]
impl pb::dedup_service_server::DedupService for DedupApi {
    type FindDuplicatesStream = DedupStream;

    async fn find_duplicates(
        &self,
        request: Request<pb::FindDuplicatesRequest>,
    ) -> Result<Response<Self::FindDuplicatesStream>, Status> {
        let options = DedupOptions::try_from(request.into_inner()).map_err(ServiceError::from)?;
        let collection = self.state.collection()?;
        // Held by the run (not the stream): released when the run ends, even if the client
        // never reads what is buffered.
        let run = self.state.dedup_run.clone().try_acquire_owned().map_err(|_| {
            ServiceError::ResourceExhausted("a duplicate search is already running; try again when it ends".into())
        })?;
        let (tx, rx) = mpsc::channel(16);
        // The last message (summary or error) always has room, even behind a client that stopped.
        let last = tx.clone().reserve_owned().await.map_err(|_| ServiceError::Internal("stream closed".into()))?;
        // The run stops when the server shuts down, when the client goes away, or when it stops
        // reading for `dedup_send_timeout`. The watcher must not hold a sender, or the stream
        // would never end.
        let cancel = Arc::new(AtomicBool::new(false));
        let (done, finished) = tokio::sync::oneshot::channel::<()>();
        let (watch_cancel, shutdown) = (cancel.clone(), self.state.shutdown.clone());
        tokio::spawn(async move {
            tokio::select! {
                () = shutdown.cancelled() => watch_cancel.store(true, Ordering::Relaxed),
                _ = finished => {}
            }
        });
        let streamed = StreamedRun {
            collection,
            options,
            tx,
            last,
            cancel,
            patience: self.state.config.dedup_send_timeout,
            runtime: tokio::runtime::Handle::current(),
        };
        tokio::task::spawn_blocking(move || {
            let _run = run;
            let _done = done; // dropped when the run ends, which releases the watcher
            streamed.run();
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }

    async fn duplicates_of(
        &self,
        request: Request<pb::DuplicatesOfRequest>,
    ) -> Result<Response<pb::DuplicatesOfResponse>, Status> {
        let DuplicatesOfQuery { image, options } = request.into_inner().try_into().map_err(ServiceError::from)?;
        let collection = self.state.collection()?;
        let (id, record) = self.state.resolve(&collection, &image)?;
        let found = blocking(move || Ok(collection.duplicates_of(id, &options)?)).await?;
        Ok(Response::new(pb::DuplicatesOfResponse {
            image: Some(image_record(id, &record)),
            exact: found.exact.iter().map(pb::DuplicateMember::from).collect(),
            near: found.near.iter().map(pb::DuplicateMember::from).collect(),
            keeper_id: found.keeper.0,
            keeper_reason: found.keeper_reason,
        }))
    }
}

/// One duplicate search sending its events to a client: each send waits at most `patience` for
/// room (a client that stops reading stops the run), and the last message (summary or error)
/// goes into a slot reserved for it.
struct StreamedRun {
    collection: Arc<Collection>,
    options: DedupOptions,
    tx: mpsc::Sender<Result<pb::FindDuplicatesResponse, Status>>,
    last: mpsc::OwnedPermit<Result<pb::FindDuplicatesResponse, Status>>,
    cancel: Arc<AtomicBool>,
    patience: Duration,
    runtime: tokio::runtime::Handle,
}

impl StreamedRun {
    /// Runs on a blocking thread.
    fn run(self) {
        let Self { collection, options, tx, last, cancel, patience, runtime } = self;
        let started = Instant::now();
        let stalled = AtomicBool::new(false);
        let send = |event: Event| {
            if cancel.load(Ordering::Relaxed) {
                return;
            }
            let message = Ok(pb::FindDuplicatesResponse { event: Some(event) });
            match runtime.block_on(async { tokio::time::timeout(patience, tx.send(message)).await }) {
                Ok(Ok(())) => {}
                Ok(Err(_)) => cancel.store(true, Ordering::Relaxed), // the client went away
                Err(_) => {
                    stalled.store(true, Ordering::Relaxed);
                    cancel.store(true, Ordering::Relaxed);
                }
            }
        };
        let events = DedupProgressEvents::default();
        let progress =
            |phase: DedupPhase, done: usize, total: usize| send(Event::Progress(events.event(phase, done, total)));
        let mut on_group = |g: &DuplicateGroup| send(Event::Group(g.into()));
        // A panic fails this run's stream (INTERNAL), not the server.
        let run =
            std::panic::AssertUnwindSafe(|| collection.find_duplicates(&options, &progress, &cancel, &mut on_group));
        let message = match std::panic::catch_unwind(run) {
            Err(_) => Err(Status::internal("the duplicate search failed (a bug: see the server log)")),
            Ok(Ok(_)) if stalled.load(Ordering::Relaxed) => Err(Status::deadline_exceeded(format!(
                "the duplicate search stopped: its client read nothing for {patience:?}"
            ))),
            Ok(Ok(_)) if cancel.load(Ordering::Relaxed) => Err(Status::cancelled("duplicate search cancelled")),
            Ok(Ok(groups)) => Ok(pb::FindDuplicatesResponse {
                event: Some(Event::Summary(dedup_summary(&groups, started.elapsed(), options.threshold))),
            }),
            Ok(Err(e)) => Err(ServiceError::from(e).into()),
        };
        drop(tx);
        last.send(message);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use pixdex_core::{CollectionConfig, Embedding, ImageRecord, ImageStatus, NewImage, PatchCodec, UnitVector};

    /// `pairs` exact duplicate pairs (same bytes hash) in a fresh collection.
    fn collection_with_pairs(dir: &std::path::Path, pairs: u8) -> Arc<Collection> {
        let config = CollectionConfig {
            model: "test/model".into(),
            model_fingerprint: "fp".into(),
            embedding: "pixio-pooler-l2/v1".into(),
            dim: 8,
            patch_codec: PatchCodec { pool: 1, quantised: false },
        };
        let c = Collection::open_or_create(dir, &config).unwrap();
        let images = (0..pairs * 2)
            .map(|i| NewImage {
                record: ImageRecord {
                    path: format!("/photos/{i}.jpg").into(),
                    size: 100,
                    mtime_ns: i64::from(i),
                    blake3: [i / 2; 32],
                    width: 64,
                    height: 48,
                    status: ImageStatus::Embedded,
                },
                embedding: Embedding::Computed {
                    // A direction of its own per pair: no near duplicates across pairs.
                    global: UnitVector::new((0..8u8).map(|d| f32::from(u8::from(d == i / 2))).collect()).unwrap(),
                    patches: None,
                    views: None,
                    region: None,
                },
            })
            .collect();
        c.commit(images, &[]).unwrap();
        Arc::new(c)
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_client_that_stops_reading_stops_the_run_which_frees_its_slot() {
        let dir = tempfile::tempdir().unwrap();
        let collection = collection_with_pairs(dir.path(), 6);
        let slot = Arc::new(tokio::sync::Semaphore::new(1));
        let permit = slot.clone().try_acquire_owned().unwrap();
        // Room for two messages and the last: six groups cannot all fit.
        let (tx, mut rx) = mpsc::channel(3);
        let last = tx.clone().reserve_owned().await.unwrap();
        let options = DedupOptions { threshold: 0.99, min_geometry: None, ..DedupOptions::default() };
        let streamed = StreamedRun {
            collection,
            options,
            tx,
            last,
            cancel: Arc::new(AtomicBool::new(false)),
            patience: Duration::from_millis(300),
            runtime: tokio::runtime::Handle::current(),
        };
        let run = tokio::task::spawn_blocking(move || {
            let _permit = permit;
            streamed.run();
        });
        // While it waits for the reader, a second run finds the slot taken.
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(slot.clone().try_acquire_owned().is_err(), "one run at a time");
        tokio::time::timeout(Duration::from_secs(30), run).await.expect("the stalled run stops").unwrap();
        assert!(slot.try_acquire_owned().is_ok(), "the slot is free again");
        // What was buffered, then why it stopped.
        let mut messages = Vec::new();
        while let Some(m) = rx.recv().await {
            messages.push(m);
        }
        let ending = messages.pop().unwrap().unwrap_err();
        assert_eq!(ending.code(), tonic::Code::DeadlineExceeded, "{ending:?}");
        assert!(messages.iter().all(Result::is_ok) && messages.len() == 2, "{messages:?}");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_client_that_reads_gets_every_group_and_the_summary() {
        let dir = tempfile::tempdir().unwrap();
        let (tx, mut rx) = mpsc::channel(3);
        let last = tx.clone().reserve_owned().await.unwrap();
        let streamed = StreamedRun {
            collection: collection_with_pairs(dir.path(), 6),
            options: DedupOptions { threshold: 0.99, min_geometry: None, ..DedupOptions::default() },
            tx,
            last,
            cancel: Arc::new(AtomicBool::new(false)),
            patience: Duration::from_secs(30),
            runtime: tokio::runtime::Handle::current(),
        };
        let run = tokio::task::spawn_blocking(move || streamed.run());
        let mut groups = 0;
        let mut summary = false;
        while let Some(m) = rx.recv().await {
            match m.unwrap().event.unwrap() {
                Event::Group(_) => groups += 1,
                Event::Summary(_) => summary = true,
                Event::Progress(_) => {}
            }
        }
        run.await.unwrap();
        assert_eq!((groups, summary), (6, true));
    }
}
