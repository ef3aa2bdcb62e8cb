//! `pixdex.v1.SearchService`: similarity search by image bytes, stored image or vector, and
//! region search (in `region.rs`).

use std::sync::Arc;
use tonic::{Request, Response, Status};

use crate::convert::{SearchQuery, SearchSource};
use crate::pb;
use crate::state::{AppState, blocking};
use crate::status::ServiceError;

/// Most queries in one BatchSearch.
const MAX_BATCH_QUERIES: usize = 256;
/// Most image bytes in one BatchSearch (half the default message limit): its images are decoded
/// concurrently, and one call must not queue more than this much work.
const MAX_BATCH_IMAGE_BYTES: usize = 32 << 20;

pub(crate) struct SearchApi {
    pub(crate) state: Arc<AppState>,
}

#[tonic::async_trait]
impl pb::search_service_server::SearchService for SearchApi {
    async fn search(&self, request: Request<pb::SearchRequest>) -> Result<Response<pb::SearchResponse>, Status> {
        let query = SearchQuery::try_from(request.into_inner()).map_err(ServiceError::from)?;
        Ok(Response::new(search_one(&self.state, query).await?))
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
        let image_bytes: usize = queries
            .iter()
            .map(|q| match &q.query {
                Some(pb::search_request::Query::Image(bytes)) => bytes.len(),
                _ => 0,
            })
            .sum();
        if image_bytes > MAX_BATCH_IMAGE_BYTES {
            return Err(ServiceError::ResourceExhausted(format!(
                "the batch's images total {image_bytes} bytes, more than the {MAX_BATCH_IMAGE_BYTES} one call may hold: send them in several calls"
            ))
            .into());
        }
        let queries = queries.into_iter().map(SearchQuery::try_from).collect::<Result<Vec<_>, _>>();
        let queries = queries.map_err(ServiceError::from)?;
        // Concurrently, so that the image queries share forward passes in the batcher.
        let answers = futures::future::join_all(queries.into_iter().map(|q| search_one(&self.state, q))).await;
        let responses = answers.into_iter().collect::<Result<Vec<_>, _>>()?;
        Ok(Response::new(pb::BatchSearchResponse { responses }))
    }

    async fn region_search(
        &self,
        request: Request<pb::RegionSearchRequest>,
    ) -> Result<Response<pb::RegionSearchResponse>, Status> {
        let query = request.into_inner().try_into().map_err(ServiceError::from)?;
        Ok(Response::new(super::region::region_search(self.state.clone(), query).await?))
    }
}

async fn search_one(state: &AppState, query: SearchQuery) -> Result<pb::SearchResponse, ServiceError> {
    let collection = state.collection()?;
    let mut similar = query.similar(Vec::new());
    let exclude_self = query.exclude_self;
    let vector = match query.source {
        SearchSource::Image(bytes) => {
            if exclude_self {
                similar.exclude = collection.ids_by_hash(blake3::hash(&bytes).as_bytes())?;
            }
            state.embed_bytes(Arc::new(bytes), false).await?.0.global
        }
        SearchSource::Stored(image) => {
            let (id, record) = state.resolve(&collection, &image)?;
            if exclude_self {
                similar.exclude = vec![id];
            }
            state.stored_vector(&collection, id, &record)?
        }
        SearchSource::Vector(vector) => vector,
    };
    let hits = blocking(move || Ok(collection.search_similar(&vector, &similar)?)).await?;
    Ok(pb::SearchResponse { hits: hits.iter().map(pb::Hit::from).collect() })
}
