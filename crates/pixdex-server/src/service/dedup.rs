//! `pixdex.v1.DedupService`: duplicate groups streamed as found, and the duplicates of one image.

use pixdex_core::{DedupOptions, DedupPhase, DuplicateGroup};
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;
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
        let (tx, rx) = tokio::sync::mpsc::channel(64);
        // The run stops when the server shuts down, or when the client goes away (a failed send:
        // progress goes out every 1024 images). The watcher must not hold a sender, or the
        // stream would never end.
        let cancel = Arc::new(AtomicBool::new(false));
        let (done, finished) = tokio::sync::oneshot::channel::<()>();
        let (watch_cancel, shutdown) = (cancel.clone(), self.state.shutdown.clone());
        tokio::spawn(async move {
            tokio::select! {
                () = shutdown.cancelled() => watch_cancel.store(true, Ordering::Relaxed),
                _ = finished => {}
            }
        });
        tokio::task::spawn_blocking(move || {
            let _done = done; // dropped when the run ends, which releases the watcher
            let started = Instant::now();
            let send = |event: Event| {
                if tx.is_closed() || tx.blocking_send(Ok(pb::FindDuplicatesResponse { event: Some(event) })).is_err() {
                    cancel.store(true, Ordering::Relaxed);
                }
            };
            let events = DedupProgressEvents::default();
            let progress =
                |phase: DedupPhase, done: usize, total: usize| send(Event::Progress(events.event(phase, done, total)));
            let mut on_group = |g: &DuplicateGroup| send(Event::Group(g.into()));
            match collection.find_duplicates(&options, &progress, &cancel, &mut on_group) {
                Ok(_) if cancel.load(Ordering::Relaxed) => {
                    let _ = tx.blocking_send(Err(Status::cancelled("duplicate search cancelled")));
                }
                Ok(groups) => send(Event::Summary(dedup_summary(&groups, started.elapsed(), options.threshold))),
                Err(e) => {
                    let _ = tx.blocking_send(Err(ServiceError::from(e).into()));
                }
            }
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
