//! Protobuf ↔ domain, in one place. Requests become validated domain queries through `TryFrom`
//! (k, candidates, neighbours, vectors, image references, path prefixes and keeper rules are
//! checked here, once; `min_score` and boxes are checked by the core's queries); answers become
//! protobuf through `From`. The CLI's `--server` mode builds its requests and reads the answers
//! through the same conversions, in the other direction.
//!
//! A conversion that fails says why in an [`Invalid`], which the server answers with
//! `INVALID_ARGUMENT` (and the client reports as a malformed answer).

mod dedup;
mod index;
mod search;
mod stats;

pub use dedup::{DedupProgressEvents, DuplicatesOfQuery, dedup_progress, dedup_summary};
pub use index::IndexJobRequest;
pub use search::{RegionMatch, RegionSearch, RegionSource, SearchQuery, SearchSource};
pub use stats::CollectionStats;

use pixdex_core::{ImageId, ImageRecord, ImageStatus, MAX_K, PixelBox};
use std::path::PathBuf;

use crate::pb;

/// k when a request leaves it 0.
pub const DEFAULT_K: usize = 10;

/// Why a message does not convert: a request the server refuses (`INVALID_ARGUMENT`), or an answer
/// the client cannot read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct Invalid(pub String);

impl Invalid {
    pub(crate) fn new(msg: impl Into<String>) -> Self {
        Self(msg.into())
    }
}

/// A count in a request: 0 means `default`, else at most `max`.
pub(crate) fn count_or_default(name: &str, value: u32, default: usize, max: usize) -> Result<usize, Invalid> {
    match value as usize {
        0 => Ok(default),
        v if v > max => Err(Invalid(format!("{name} must be 1..={max}, not {v}"))),
        v => Ok(v),
    }
}

/// The number of results a request asks for: 0 means [`DEFAULT_K`].
pub fn parse_k(k: u32) -> Result<usize, Invalid> {
    count_or_default("k", k, DEFAULT_K, MAX_K)
}

/// A count as the API carries it (the domain bounds counts well inside 32 bits).
pub(crate) fn wire_count(n: usize) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

/// An empty prefix means no filter.
pub(crate) fn path_prefix(prefix: String) -> Option<String> {
    Some(prefix).filter(|p| !p.is_empty())
}

/// A stored image, by id or by path (or upload key).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ImageRef {
    /// By id.
    Id(ImageId),
    /// By the path (or key) it was stored under.
    Path(String),
}

impl TryFrom<Option<pb::ImageRef>> for ImageRef {
    type Error = Invalid;

    fn try_from(r: Option<pb::ImageRef>) -> Result<Self, Invalid> {
        match r.and_then(|r| r.r#ref) {
            Some(pb::image_ref::Ref::Id(id)) => Ok(Self::Id(ImageId(id))),
            Some(pb::image_ref::Ref::Path(path)) => Ok(Self::Path(path)),
            None => Err(Invalid::new("missing image reference (id or path)")),
        }
    }
}

impl From<ImageRef> for pb::ImageRef {
    fn from(r: ImageRef) -> Self {
        let r = match r {
            ImageRef::Id(id) => pb::image_ref::Ref::Id(id.0),
            ImageRef::Path(path) => pb::image_ref::Ref::Path(path),
        };
        Self { r#ref: Some(r) }
    }
}

/// An image record as the API shows it.
pub fn image_record(id: ImageId, r: &ImageRecord) -> pb::ImageRecord {
    let (status, error) = match &r.status {
        ImageStatus::Embedded => (pb::ImageStatus::Embedded, String::new()),
        ImageStatus::Failed { error } => (pb::ImageStatus::Failed, error.clone()),
    };
    pb::ImageRecord {
        id: id.0,
        path: r.path.display().to_string(),
        size_bytes: r.size,
        mtime_ns: r.mtime_ns,
        blake3: blake3::Hash::from_bytes(r.blake3).to_hex().to_string(),
        width: r.width,
        height: r.height,
        status: status.into(),
        error,
    }
}

impl TryFrom<pb::ImageRecord> for (ImageId, ImageRecord) {
    type Error = Invalid;

    fn try_from(r: pb::ImageRecord) -> Result<Self, Invalid> {
        let blake3 =
            blake3::Hash::from_hex(&r.blake3).map_err(|e| Invalid(format!("bad blake3 `{}`: {e}", r.blake3)))?;
        let status = match r.status() {
            pb::ImageStatus::Embedded => ImageStatus::Embedded,
            pb::ImageStatus::Failed => ImageStatus::Failed { error: r.error },
            pb::ImageStatus::Unspecified => return Err(Invalid(format!("image {} has no status", r.id))),
        };
        let record = ImageRecord {
            path: PathBuf::from(r.path),
            size: r.size_bytes,
            mtime_ns: r.mtime_ns,
            blake3: *blake3.as_bytes(),
            width: r.width,
            height: r.height,
            status,
        };
        Ok((ImageId(r.id), record))
    }
}

/// The record a hit or member must carry.
pub(crate) fn required_record(image: Option<pb::ImageRecord>) -> Result<(ImageId, ImageRecord), Invalid> {
    image.ok_or_else(|| Invalid::new("an answer without its image record"))?.try_into()
}

impl From<PixelBox> for pb::PixelBox {
    fn from(b: PixelBox) -> Self {
        Self { x: b.x, y: b.y, w: b.w, h: b.h }
    }
}

impl From<pb::PixelBox> for PixelBox {
    fn from(b: pb::PixelBox) -> Self {
        Self { x: b.x, y: b.y, w: b.w, h: b.h }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn k_defaults_and_bounds() {
        assert_eq!(parse_k(0), Ok(DEFAULT_K));
        assert_eq!(parse_k(7), Ok(7));
        assert_eq!(parse_k(MAX_K as u32), Ok(MAX_K));
        assert!(parse_k(MAX_K as u32 + 1).unwrap_err().0.contains("k must be 1..="));
    }

    #[test]
    fn records_round_trip() {
        let record = ImageRecord {
            path: PathBuf::from("/photos/a.jpg"),
            size: 12,
            mtime_ns: -3,
            blake3: *blake3::hash(b"a").as_bytes(),
            width: 4,
            height: 5,
            status: ImageStatus::Failed { error: "broken".into() },
        };
        let wire = image_record(ImageId(9), &record);
        assert_eq!(wire.blake3, blake3::hash(b"a").to_hex().as_str());
        assert_eq!(<(ImageId, ImageRecord)>::try_from(wire.clone()), Ok((ImageId(9), record)));
        let no_status = pb::ImageRecord { status: 0, ..wire.clone() };
        assert!(<(ImageId, ImageRecord)>::try_from(no_status).is_err());
        let bad_hash = pb::ImageRecord { blake3: "xyz".into(), ..wire };
        assert!(<(ImageId, ImageRecord)>::try_from(bad_hash).is_err());
    }

    #[test]
    fn image_refs_must_be_set() {
        assert_eq!(ImageRef::try_from(None).unwrap_err().0, "missing image reference (id or path)");
        assert!(ImageRef::try_from(Some(pb::ImageRef { r#ref: None })).is_err());
        let by_path = pb::ImageRef::from(ImageRef::Path("k".into()));
        assert_eq!(ImageRef::try_from(Some(by_path)), Ok(ImageRef::Path("k".into())));
    }
}
