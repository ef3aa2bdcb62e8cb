//! Reusing stored vectors for identical bytes: a copied or moved file, or an upload of bytes the
//! collection already holds, gets the stored image's vectors instead of a forward pass.

use pixdex_core::{Collection, ImageId, ImageRecord, ImageStatus};

use crate::inputs::InputKinds;

/// A stored image with exactly these bytes (`blake3`) whose vectors can be copied: embedded,
/// with a stored global vector, and with what `kinds` asks for (the dedup views, the region
/// grid), so that a copy never has less than an embedding of its own would.
pub fn find_reusable(
    collection: &Collection,
    blake3: &[u8; 32],
    kinds: InputKinds,
) -> pixdex_core::Result<Option<(ImageId, ImageRecord)>> {
    for id in collection.ids_by_hash(blake3)? {
        if let Some(record) = collection.get(id)?
            && record.status == ImageStatus::Embedded
            && collection.has_global_vector(id)?
            && !lacks_inputs(collection, id, &record, kinds)?
        {
            return Ok(Some((id, record)));
        }
    }
    Ok(None)
}

/// Whether an embedded image misses the dedup views or the region grid `kinds` asks for
/// (indexed by an older pixdex or with them off): it is embedded again, so that an upgraded
/// collection gains them. Images that failed lack nothing (they have no vectors to upgrade).
pub fn lacks_inputs(
    collection: &Collection,
    id: ImageId,
    record: &ImageRecord,
    kinds: InputKinds,
) -> pixdex_core::Result<bool> {
    if record.status != ImageStatus::Embedded {
        return Ok(false);
    }
    Ok((kinds.views && !collection.has_view_vectors(id)?) || (kinds.region && !collection.has_region_grid(id)?))
}
