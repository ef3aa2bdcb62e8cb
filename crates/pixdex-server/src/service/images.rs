//! `pixdex.v1.ImageService`: upload (upsert) one image under a key, delete, get.

use pixdex_core::{Embedding, ImageRecord, ImageStatus, NewImage};
use std::path::{Component, Path, PathBuf};
use std::sync::Arc;
use tonic::{Request, Response, Status};

use crate::convert::{ImageRef, Invalid, image_record};
use crate::pb;
use crate::state::{AppState, blocking};
use crate::status::ServiceError;

/// Longest upload key, in bytes.
const MAX_KEY_BYTES: usize = 1024;

pub(crate) struct ImageApi {
    pub(crate) state: Arc<AppState>,
}

/// A key is stored as the image's path: it must not look like an absolute path (which belongs
/// to indexed files) or hold characters that make paths ambiguous.
fn check_key(key: &str) -> Result<(), Invalid> {
    let bad = |why: &str| Err(Invalid(format!("invalid key `{key}`: {why}")));
    if key.is_empty() {
        return bad("empty");
    }
    if key.len() > MAX_KEY_BYTES {
        return bad("longer than 1024 bytes");
    }
    if key.contains('\0') {
        return bad("contains NUL");
    }
    if Path::new(key).components().any(|c| matches!(c, Component::RootDir | Component::Prefix(_))) {
        return bad("keys must not start with `/` (absolute paths are indexed files)");
    }
    Ok(())
}

fn now_ns() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

#[tonic::async_trait]
impl pb::image_service_server::ImageService for ImageApi {
    async fn upsert_image(
        &self,
        request: Request<pb::UpsertImageRequest>,
    ) -> Result<Response<pb::UpsertImageResponse>, Status> {
        Ok(Response::new(upsert(&self.state, request.into_inner()).await?))
    }

    async fn delete_image(
        &self,
        request: Request<pb::DeleteImageRequest>,
    ) -> Result<Response<pb::DeleteImageResponse>, Status> {
        let pb::DeleteImageRequest { image } = request.into_inner();
        let image = ImageRef::try_from(image).map_err(ServiceError::from)?;
        let collection = self.state.collection()?;
        let (id, record) = self.state.resolve(&collection, &image)?;
        blocking(move || Ok(collection.commit(Vec::new(), &[id])?)).await?;
        Ok(Response::new(pb::DeleteImageResponse { record: Some(image_record(id, &record)) }))
    }

    async fn get_image(&self, request: Request<pb::GetImageRequest>) -> Result<Response<pb::ImageRecord>, Status> {
        let pb::GetImageRequest { image } = request.into_inner();
        let image = ImageRef::try_from(image).map_err(ServiceError::from)?;
        let collection = self.state.collection()?;
        let (id, record) = self.state.resolve(&collection, &image)?;
        Ok(Response::new(image_record(id, &record)))
    }
}

/// Stores uploaded bytes under `key`: vectors copied from identical stored bytes, else embedded.
async fn upsert(state: &AppState, request: pb::UpsertImageRequest) -> Result<pb::UpsertImageResponse, ServiceError> {
    let pb::UpsertImageRequest { key, image } = request;
    check_key(&key)?;
    let collection = state.collection()?;
    state.model()?;
    let bytes = Arc::new(image);
    let hash = *blake3::hash(&bytes).as_bytes();
    // Identical bytes already embedded: copy their vectors instead of a forward pass.
    let source = pixdex_indexer::reuse::find_reusable(&collection, &hash, Default::default())?;
    let (embedding, (width, height)) = match &source {
        Some((id, record)) => (Embedding::CopyOf(*id), (record.width, record.height)),
        None => {
            // Uploads are stored like indexed files, with the views duplicate detection uses.
            let (e, size, region) = state.embed_upload(bytes.clone()).await?;
            (Embedding::Computed { global: e.global, patches: Some(e.patches), views: e.views, region }, size)
        }
    };
    let record = ImageRecord {
        path: PathBuf::from(&key),
        size: bytes.len() as u64,
        mtime_ns: now_ns(),
        blake3: hash,
        width,
        height,
        status: ImageStatus::Embedded,
    };
    let stored = record.clone();
    let (replaced, ids) = blocking(move || {
        let replaced = collection.id_by_path(&record.path)?.is_some();
        Ok((replaced, collection.commit(vec![NewImage { record, embedding }], &[])?))
    })
    .await?;
    let id = *ids.first().ok_or_else(|| ServiceError::Internal("commit returned no id".into()))?;
    Ok(pb::UpsertImageResponse { record: Some(image_record(id, &stored)), replaced, reused_vectors: source.is_some() })
}

#[cfg(test)]
mod tests {
    use super::check_key;

    #[test]
    fn keys_are_relative_names() {
        assert!(check_key("phone/IMG_0001.jpg").is_ok());
        assert!(check_key("a").is_ok());
        assert!(check_key("").is_err());
        assert!(check_key("/etc/passwd").is_err());
        assert!(check_key("nul\0byte").is_err());
        assert!(check_key(&"k".repeat(1025)).is_err());
    }
}
