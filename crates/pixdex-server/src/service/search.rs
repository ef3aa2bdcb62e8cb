//! `pixdex.v1.SearchService`: similarity search by image bytes, stored image or vector, and
//! region search (in `region.rs`).

use pixdex_core::{MAX_K, SimilarQuery, UnitVector};
use std::sync::Arc;
use tonic::{Request, Response, Status};

use crate::convert::image_record;
use crate::pb::{self, search_request::Query};
use crate::state::{AppState, blocking};
use crate::status::ServiceError;

/// Most queries in one BatchSearch.
const MAX_BATCH_QUERIES: usize = 256;

/// k when the request leaves it 0.
pub(super) const DEFAULT_K: usize = 10;

pub(crate) struct SearchApi {
    pub(crate) state: Arc<AppState>,
}

#[tonic::async_trait]
impl pb::search_service_server::SearchService for SearchApi {
    async fn search(&self, request: Request<pb::SearchRequest>) -> Result<Response<pb::SearchResponse>, Status> {
        Ok(Response::new(search_one(&self.state, request.into_inner()).await?))
    }

    async fn batch_search(
        &self,
        request: Request<pb::BatchSearchRequest>,
    ) -> Result<Response<pb::BatchSearchResponse>, Status> {
        let pb::BatchSearchRequest { queries } = request.into_inner();
        if queries.is_empty() || queries.len() > MAX_BATCH_QUERIES {
            return Err(ServiceError::invalid(format!(
                "a batch holds 1..={MAX_BATCH_QUERIES} queries, not {}",
                queries.len()
            ))
            .into());
        }
        // Concurrently, so that the image queries share forward passes in the batcher.
        let answers = futures::future::join_all(queries.into_iter().map(|q| search_one(&self.state, q))).await;
        let responses = answers.into_iter().collect::<Result<Vec<_>, _>>()?;
        Ok(Response::new(pb::BatchSearchResponse { responses }))
    }

    async fn region_search(
        &self,
        request: Request<pb::RegionSearchRequest>,
    ) -> Result<Response<pb::RegionSearchResponse>, Status> {
        Ok(Response::new(super::region::region_search(self.state.clone(), request.into_inner()).await?))
    }
}

async fn search_one(state: &AppState, request: pb::SearchRequest) -> Result<pb::SearchResponse, ServiceError> {
    let pb::SearchRequest { query, k, min_score, path_prefix, exclude_self } = request;
    let k = match k as usize {
        0 => DEFAULT_K,
        k if k > MAX_K => return Err(ServiceError::invalid(format!("k must be 1..={MAX_K}, not {k}"))),
        k => k,
    };
    let collection = state.collection()?;
    let (vector, exclude) =
        match query.ok_or_else(|| ServiceError::invalid("missing query (image, stored or vector)"))? {
            Query::Image(bytes) => {
                let hash = blake3::hash(&bytes);
                let (embedding, _size) = state.embed_bytes(Arc::new(bytes), false).await?;
                let vector = embedding.global;
                let exclude = if exclude_self { collection.ids_by_hash(hash.as_bytes())? } else { Vec::new() };
                (vector, exclude)
            }
            Query::Stored(image) => {
                let (id, record) = state.resolve(&collection, Some(image))?;
                let vector = state.stored_vector(&collection, id, &record)?;
                (vector, if exclude_self { vec![id] } else { Vec::new() })
            }
            Query::Vector(pb::Vector { values }) => (UnitVector::new(values)?, Vec::new()),
        };
    let query = SimilarQuery { k, min_score, path_prefix: Some(path_prefix).filter(|p| !p.is_empty()), exclude };
    let hits = blocking(move || Ok(collection.search_similar(&vector, &query)?)).await?;
    Ok(pb::SearchResponse {
        hits: hits
            .iter()
            .map(|h| pb::Hit { score: h.hit.score, image: Some(image_record(h.hit.id, &h.record)) })
            .collect(),
    })
}
