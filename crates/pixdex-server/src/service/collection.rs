//! `pixdex.v1.CollectionService`: counts, model, index state, disk use.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use tonic::{Request, Response, Status};

use crate::convert::CollectionStats;
use crate::pb;
use crate::state::{AppState, blocking};

pub(crate) struct CollectionApi {
    pub(crate) state: Arc<AppState>,
}

#[tonic::async_trait]
impl pb::collection_service_server::CollectionService for CollectionApi {
    async fn get_stats(&self, _request: Request<pb::GetStatsRequest>) -> Result<Response<pb::Stats>, Status> {
        let state = &self.state;
        let collection = state.collection()?;
        // Counting failed records and disk use walk sled and the folder: off the async threads.
        let stats = blocking(move || Ok(CollectionStats::read(&collection)?)).await?;
        let (query_embeddings, query_forward_passes) = state.model.get().map_or((0, 0), |m| {
            (
                m.batcher.counters.embeddings.load(Ordering::Relaxed),
                m.batcher.counters.forward_passes.load(Ordering::Relaxed),
            )
        });
        Ok(Response::new(pb::Stats {
            model_loaded: state.model.get().is_some(),
            query_embeddings,
            query_forward_passes,
            running_job_id: state.jobs.running().map(|j| j.id.clone()).unwrap_or_default(),
            ..pb::Stats::from(stats)
        }))
    }
}
