//! Change detection and preparation: which crawled files need work, and for each one read once,
//! whether it is unchanged bytes (touched), a copy or move of a stored image (vectors reused),
//! or must be decoded into model inputs.

use pixdex_core::{Collection, ImageId, ImageRecord, ImageStatus};
use std::path::PathBuf;

use crate::crawl::FoundFile;
use crate::decode::{decode_bytes_at_least, read_image_file};
use crate::encoder::Encoder;
use crate::inputs::{InputKinds, ModelInputs};
use crate::reuse::{find_reusable, lacks_inputs};

use super::IndexOptions;

/// A decode worker's result for one file.
pub(super) enum Prepared {
    Embed {
        record: ImageRecord,
        inputs: ModelInputs,
    },
    Copy {
        record: ImageRecord,
    },
    Touched {
        id: ImageId,
        record: ImageRecord,
    },
    /// `record: None` for transient failures (unreadable right now, lookup error): nothing is
    /// written, so the old record stays and the next run retries.
    Failed {
        path: PathBuf,
        record: Option<ImageRecord>,
        error: String,
    },
}

/// The files that need work, and how many are unchanged: same path, size and mtime, and not
/// lacking the inputs this job computes (an image indexed without them is embedded again).
pub(super) fn changed_files(
    collection: &Collection,
    files: &[FoundFile],
    kinds: InputKinds,
) -> pixdex_core::Result<(Vec<FoundFile>, usize)> {
    let mut todo = Vec::new();
    let mut unchanged = 0;
    for file in files {
        let stored = match collection.id_by_path(&file.path)? {
            Some(id) => collection.get(id)?.map(|rec| (id, rec)),
            None => None,
        };
        match stored {
            Some((id, rec))
                if rec.size == file.size
                    && rec.mtime_ns == file.mtime_ns
                    && !lacks_inputs(collection, id, &rec, kinds)? =>
            {
                unchanged += 1
            }
            _ => todo.push(file.clone()),
        }
    }
    Ok((todo, unchanged))
}

pub(super) fn record_of(file: &FoundFile, hash: [u8; 32], width: u32, height: u32, status: ImageStatus) -> ImageRecord {
    ImageRecord {
        path: file.path.clone(),
        size: file.size,
        mtime_ns: file.mtime_ns,
        blake3: hash,
        width,
        height,
        status,
    }
}

/// Reads, hashes and (only if needed) decodes and prepares one file.
pub(super) fn prepare(
    collection: &Collection,
    encoder: &dyn Encoder,
    file: FoundFile,
    options: &IndexOptions,
) -> Prepared {
    let kinds = options.input_kinds();
    let failed = |file: &FoundFile, hash, error: String| Prepared::Failed {
        path: file.path.clone(),
        record: Some(record_of(file, hash, 0, 0, ImageStatus::Failed { error: error.clone() })),
        error,
    };
    let transient = |file: &FoundFile, error: String| Prepared::Failed { path: file.path.clone(), record: None, error };
    let bytes = match read_image_file(
        &file.path,
        options.decode_limits.max_file_bytes,
        options.crawl.follow_links,
        &options.crawl.confinement(),
    ) {
        Ok(b) => b,
        Err(e) => return transient(&file, format!("cannot read: {e}")),
    };
    let hash: [u8; 32] = blake3::hash(&bytes).into();
    let lookup = || -> pixdex_core::Result<Option<Prepared>> {
        // Same bytes at the same path: only the mtime changed.
        if let Some(id) = collection.id_by_path(&file.path)?
            && let Some(old) = collection.get(id)?
            && old.blake3 == hash
            && !lacks_inputs(collection, id, &old, kinds)?
        {
            let record = ImageRecord { size: file.size, mtime_ns: file.mtime_ns, ..old };
            return Ok(Some(Prepared::Touched { id, record }));
        }
        // Same bytes elsewhere (a copy or a move): reuse the stored vectors.
        Ok(find_reusable(collection, &hash, kinds)?.map(|(_, src)| Prepared::Copy {
            record: record_of(&file, hash, src.width, src.height, ImageStatus::Embedded),
        }))
    };
    match lookup() {
        Ok(Some(p)) => return p,
        Ok(None) => {}
        Err(e) => return transient(&file, format!("collection lookup: {e}")),
    }
    if bytes.is_empty() {
        return failed(&file, hash, "empty file".into());
    }
    let decoded = match decode_bytes_at_least(&bytes, options.decode_limits, kinds.min_decoded_size(encoder)) {
        Ok(d) => d,
        Err(e) => return failed(&file, hash, e.to_string()),
    };
    drop(bytes);
    let (w, h) = decoded.full_size;
    match ModelInputs::of(encoder, &decoded, kinds) {
        Ok(inputs) => Prepared::Embed { record: record_of(&file, hash, w, h, ImageStatus::Embedded), inputs },
        Err(e) => failed(&file, hash, e.to_string()),
    }
}
