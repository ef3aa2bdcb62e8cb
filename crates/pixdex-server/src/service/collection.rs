//! `pixdex.v1.CollectionService`: counts, model, index state, disk use.

use pixdex_core::EXACT_SCAN_BELOW;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use tonic::{Request, Response, Status};

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
        let c = collection.clone();
        // Disk use walks the HNSW folder and the generation reads sled: off the async threads.
        let (generation, disk_bytes) = blocking(move || Ok((c.generation()?, c.disk_bytes()))).await?;
        let config = collection.config();
        let (images, vectors) = (collection.len() as u64, collection.vector_count() as u64);
        let (query_embeddings, query_forward_passes) = state.model.get().map_or((0, 0), |m| {
            (
                m.batcher.counters.embeddings.load(Ordering::Relaxed),
                m.batcher.counters.forward_passes.load(Ordering::Relaxed),
            )
        });
        let pool = config.patch_codec.pool;
        Ok(Response::new(pb::Stats {
            images,
            vectors,
            failed: images.saturating_sub(vectors),
            model: config.model.clone(),
            model_fingerprint: config.model_fingerprint.clone(),
            embedding: config.embedding.clone(),
            dim: config.dim as u32,
            patch_codec: if pool == 1 {
                "int8 per-patch scale, full resolution".into()
            } else {
                format!("int8 per-patch scale, {pool}x{pool} average pooling")
            },
            search_index: if (vectors as usize) < EXACT_SCAN_BELOW { "exact" } else { "hnsw" }.into(),
            exact_scan_below: EXACT_SCAN_BELOW as u64,
            hnsw_tombstones: collection.hnsw_tombstones() as u64,
            generation,
            disk_bytes,
            model_loaded: state.model.get().is_some(),
            query_embeddings,
            query_forward_passes,
            running_job_id: state.jobs.running().map(|j| j.id.clone()).unwrap_or_default(),
        }))
    }
}
