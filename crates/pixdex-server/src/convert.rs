//! Domain → protobuf conversions (infallible); protobuf → domain lives with each service, where
//! validation can answer with the right status.

use pixdex_core::{ImageId, ImageRecord, ImageStatus};

use crate::pb;

/// An image record as the API shows it.
pub(crate) fn image_record(id: ImageId, r: &ImageRecord) -> pb::ImageRecord {
    let (status, error) = match &r.status {
        ImageStatus::Embedded => (pb::ImageStatus::Embedded, String::new()),
        ImageStatus::Failed { error } => (pb::ImageStatus::Failed, error.clone()),
    };
    pb::ImageRecord {
        id: id.0,
        path: r.path.display().to_string(),
        size_bytes: r.size,
        mtime_ns: r.mtime_ns,
        blake3: r.blake3.iter().map(|b| format!("{b:02x}")).collect(),
        width: r.width,
        height: r.height,
        status: status.into(),
        error,
    }
}
