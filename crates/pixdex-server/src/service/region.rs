//! `SearchService.RegionSearch`: the stored images that contain a region of the query image, and
//! where. The collection runs the search (`Collection::search_region`); this module gets the
//! query pixels (uploaded bytes, or a stored image's file read again), cuts the region, and
//! embeds it at the grid sizes the search asks for through the shared batcher.

use pixdex_core::{Collection, ImageId, ImageRecord, ImageStatus, PatchGrid};
use pixdex_indexer::decode::{DecodeLimits, DecodedImage, decode_bytes, header_pixels};
use pixdex_indexer::region_crop::RegionCrop;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use crate::convert::{RegionSearch, RegionSource};
use crate::pb;
use crate::state::{AppState, blocking};
use crate::status::ServiceError;

/// Where the query pixels come from.
enum Source {
    /// Uploaded bytes.
    Bytes(Vec<u8>),
    /// A stored image's file, read again (its record says which bytes were indexed).
    Stored(ImageId, ImageRecord),
}

/// Set when the call's future is dropped (the client cancelled or went away), so that the
/// blocking search stops before its next forward pass instead of finishing for nobody.
struct CancelOnDrop(Arc<AtomicBool>);

impl Drop for CancelOnDrop {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

/// Most patches a query embedding may have, against a largest stored grid of
/// `(region long side / patch + 1)²`: a guard in depth on the grid sizes the search asks for
/// (the search itself bounds them: the vote grid to 48 cells a side, rerank grids to one cell
/// more than the stored grid), because a huge grid would be a forward pass that exhausts memory.
fn max_query_patches(long_side: usize, patch: usize) -> usize {
    let side = long_side / patch.max(1) + 1;
    4 * side * side
}

pub(crate) async fn region_search(
    state: Arc<AppState>,
    search: RegionSearch,
) -> Result<pb::RegionSearchResponse, ServiceError> {
    let collection = state.collection()?;
    state.model()?;
    let mut query = search.query(Vec::new());
    let RegionSearch { source, region, exclude_self, .. } = search;
    let (source, exclude) = Source::resolve(&state, &collection, source, exclude_self)?;
    query.exclude = exclude;
    // The decoded region stays in memory for the whole search (a handful of forward passes), so
    // the decode permit that bounds decoded pixels is held until the search ends, even when the
    // client has gone (the blocking task still holds the pixels until its next check).
    let permit = state.decode_permits.acquire(source.pixels()).await?;
    let stop = Arc::new(AtomicBool::new(false));
    let _cancel_on_drop = CancelOnDrop(stop.clone());
    let runtime = tokio::runtime::Handle::current();
    let hits = blocking(move || {
        let _permit = permit;
        let crop = RegionCrop::new(&source.decode()?, region)?;
        let grids = GridEmbedder { state: &state, crop: &crop, stop: &stop, runtime };
        collection.search_region(crop.size(), &mut |rows, cols| grids.embed(rows, cols), &query)
    })
    .await?;
    Ok(pb::RegionSearchResponse { hits: hits.iter().map(pb::RegionHit::from).collect() })
}

/// Embeds the query region at the grid sizes the search asks for, on a blocking thread.
struct GridEmbedder<'a> {
    state: &'a AppState,
    crop: &'a RegionCrop,
    stop: &'a AtomicBool,
    runtime: tokio::runtime::Handle,
}

impl GridEmbedder<'_> {
    fn embed(&self, rows: usize, cols: usize) -> Result<PatchGrid, ServiceError> {
        if self.stop.load(Ordering::Relaxed) {
            return Err(ServiceError::Cancelled("region search cancelled by the client".into()));
        }
        if self.state.shutdown.is_cancelled() {
            return Err(ServiceError::Unavailable("the server is shutting down".into()));
        }
        let model = self.state.model()?;
        let max_patches = max_query_patches(model.encoder.region_long_side(), model.encoder.patch_size());
        if rows.saturating_mul(cols) > max_patches {
            let (w, h) = self.crop.size();
            return Err(ServiceError::invalid(format!(
                "the {w}×{h} query region is too thin to search (it would need a {rows}×{cols} patch \
                 grid, at most {max_patches} patches); draw a less elongated box"
            )));
        }
        let input = self.crop.input(&*model.encoder, rows, cols)?;
        // A blocking-pool thread may wait on the async batcher; the forward pass is shared with
        // concurrent queries of the same grid size.
        self.runtime.block_on(model.batcher.embed_region(input))
    }
}

/// Refuses, before any work, a stored query whose pixels the server cannot read again.
fn check_stored_source(id: ImageId, record: &ImageRecord) -> Result<(), ServiceError> {
    if let ImageStatus::Failed { error } = &record.status {
        return Err(ServiceError::FailedPrecondition(format!(
            "image {} ({}) could not be indexed: {error}",
            id.0,
            record.path.display()
        )));
    }
    // Uploads are stored under a relative key, not a file: reading the key as a path would read
    // whatever lies at that name in the server's working folder.
    if !record.path.is_absolute() {
        return Err(ServiceError::FailedPrecondition(format!(
            "image {} was uploaded (key `{}`) and the server keeps no pixels of uploads: send the image bytes \
             instead",
            id.0,
            record.path.display()
        )));
    }
    Ok(())
}

impl Source {
    /// The pixels to read, and the images to leave out of the results.
    fn resolve(
        state: &AppState,
        collection: &Collection,
        source: RegionSource,
        exclude_self: bool,
    ) -> Result<(Self, Vec<ImageId>), ServiceError> {
        match source {
            RegionSource::Image(bytes) => {
                let exclude = match exclude_self {
                    true => collection.ids_by_hash(blake3::hash(&bytes).as_bytes())?,
                    false => Vec::new(),
                };
                Ok((Source::Bytes(bytes), exclude))
            }
            RegionSource::Stored(image) => {
                let (id, record) = state.resolve(collection, &image)?;
                check_stored_source(id, &record)?;
                Ok((Source::Stored(id, record), if exclude_self { vec![id] } else { Vec::new() }))
            }
        }
    }

    /// Pixels the decode will hold: from the bytes' header, or the stored record's size.
    fn pixels(&self) -> u64 {
        match self {
            Source::Bytes(bytes) => header_pixels(bytes).unwrap_or(0),
            Source::Stored(_, record) => u64::from(record.width) * u64::from(record.height),
        }
    }

    /// The decoded query image (on a blocking thread). A stored image's file must still hold the
    /// bytes that were indexed: a box drawn on a result refers to those pixels.
    fn decode(&self) -> Result<DecodedImage, ServiceError> {
        match self {
            Source::Bytes(bytes) => Ok(decode_bytes(bytes, DecodeLimits::default())?),
            Source::Stored(id, record) => {
                let gone = |why: String| {
                    ServiceError::FailedPrecondition(format!(
                        "image {} ({}) cannot be read again: {why}; index its folder again",
                        id.0,
                        record.path.display()
                    ))
                };
                // `io::ErrorKind` is non-exhaustive: only a missing file gets its own words.
                let bytes = std::fs::read(&record.path).map_err(|e| match e.kind() {
                    std::io::ErrorKind::NotFound => gone("the file is gone (moved or deleted since indexing)".into()),
                    _ => gone(e.to_string()),
                })?;
                if blake3::hash(&bytes).as_bytes() != &record.blake3 {
                    return Err(gone("the file changed since it was indexed".into()));
                }
                decode_bytes(&bytes, DecodeLimits::default()).map_err(|e| gone(e.to_string()))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    #[test]
    fn thin_regions_are_capped_relative_to_the_stored_grids() {
        // ViT-S/14: stored grids are at most 32×32 (+1 cell of slack), the cap 4× that.
        assert_eq!(max_query_patches(448, 14), 4 * 33 * 33);
        assert!(max_query_patches(448, 8) > max_query_patches(448, 14));
    }

    #[test]
    fn only_indexed_files_are_read_again() {
        let record = |path: &str, status: ImageStatus| ImageRecord {
            path: PathBuf::from(path),
            size: 1,
            mtime_ns: 0,
            blake3: [0; 32],
            width: 1,
            height: 1,
            status,
        };
        let code = |r: Result<(), ServiceError>| r.map_err(|e| tonic::Status::from(e).code());
        assert_eq!(code(check_stored_source(ImageId(1), &record("/photos/a.jpg", ImageStatus::Embedded))), Ok(()));
        // An upload key names no file, even when something lies at that relative path.
        assert_eq!(
            code(check_stored_source(ImageId(1), &record("Cargo.toml", ImageStatus::Embedded))),
            Err(tonic::Code::FailedPrecondition)
        );
        let failed = ImageStatus::Failed { error: "not an image".into() };
        assert_eq!(
            code(check_stored_source(ImageId(1), &record("/photos/b.jpg", failed))),
            Err(tonic::Code::FailedPrecondition)
        );
    }
}
