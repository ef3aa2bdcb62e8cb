//! Writing a batch: embed the prepared inputs (one forward pass per input size), then commit
//! the new vectors, the copies and the failures in one transaction; and fitting a new
//! collection's region reduction before the first batch.

use pixdex_core::{Collection, Embedding, ImageRecord, ImageStatus, NewImage, PatchGrid, RegionGrid};
use std::collections::HashMap;
use std::path::PathBuf;

use crate::batch::{embed_all, embed_all_regions, embed_region_grids, group_by_size, input_size};
use crate::crawl::FoundFile;
use crate::decode::{decode_bytes_at_least, read_image_file};
use crate::encoder::Encoder;
use crate::error::Result;
use crate::inputs::{InputKinds, ModelInputs, RegionInput};
use crate::reuse::find_reusable;

use super::change::Prepared;
use super::{FileOutcome, IndexOptions, IndexReport, Progress, ProgressEvent};

/// Region grids already computed in this job (to fit the region reduction), by the blake3 of
/// the image bytes.
pub(super) type FittedRegions = HashMap<[u8; 32], RegionGrid>;

/// Embeds the pending inputs and commits them with the copies and failures in one transaction.
/// Images whose region grid is in `fitted` take it from there.
pub(super) fn write_batch(
    collection: &Collection,
    encoder: &dyn Encoder,
    kinds: InputKinds,
    pending: Vec<Prepared>,
    fitted: &mut FittedRegions,
    progress: &dyn Progress,
    report: &mut IndexReport,
) -> Result<()> {
    let mut upserts = Vec::with_capacity(pending.len());
    let mut outcomes = Vec::with_capacity(pending.len());
    let mut to_embed: Vec<(ImageRecord, ModelInputs)> = Vec::new();
    let mut region_inputs: Vec<(PathBuf, RegionInput)> = Vec::new();
    let mut regions: HashMap<PathBuf, RegionGrid> = HashMap::new();
    for p in pending {
        match p {
            Prepared::Embed { record, mut inputs } => {
                if let Some(r) = inputs.region.take() {
                    match fitted.remove(&record.blake3) {
                        Some(grid) => drop(regions.insert(record.path.clone(), grid)),
                        None => region_inputs.push((record.path.clone(), r)),
                    }
                }
                to_embed.push((record, inputs));
            }
            Prepared::Copy { record } => {
                // The image found when the file was prepared may have been replaced by an
                // earlier batch of this job: use any image that still has these bytes, else
                // leave the file for the next run.
                match find_reusable(collection, &record.blake3, kinds)? {
                    Some((source, _)) => {
                        outcomes.push((record.path.clone(), FileOutcome::Copied));
                        upserts.push(NewImage { record, embedding: Embedding::CopyOf(source) });
                    }
                    None => outcomes.push((
                        record.path.clone(),
                        FileOutcome::Failed("its copy changed during the job; it is embedded on the next run".into()),
                    )),
                }
            }
            Prepared::Touched { id, record } => {
                collection.update_record(id, &record)?;
                report.touched += 1;
                progress.event(&ProgressEvent::File { path: record.path, outcome: FileOutcome::Touched });
            }
            Prepared::Failed { path, record, error } => {
                outcomes.push((path, FileOutcome::Failed(error)));
                if let Some(record) = record {
                    upserts.push(NewImage { record, embedding: Embedding::None });
                }
            }
        }
    }
    let span = tracing::info_span!("embed_batch", images = to_embed.len(), regions = region_inputs.len());
    let embedded = span.in_scope(|| -> Result<_> {
        for ((path, r), tokens) in embed_all_regions(encoder, region_inputs, |(_, r)| &r.input)? {
            regions.insert(path, RegionGrid { frame: r.frame, tokens });
        }
        Ok(embed_all(encoder, to_embed, |(_, inputs)| &inputs.square)?)
    })?;
    for ((mut record, _), result) in embedded {
        match result {
            Ok(e) => {
                outcomes.push((record.path.clone(), FileOutcome::Embedded));
                let region = regions.remove(&record.path);
                let embedding =
                    Embedding::Computed { global: e.global, patches: Some(e.patches), views: e.views, region };
                upserts.push(NewImage { record, embedding });
            }
            Err(e) => {
                outcomes.push((record.path.clone(), FileOutcome::Failed(e.to_string())));
                record.status = ImageStatus::Failed { error: e.to_string() };
                upserts.push(NewImage { record, embedding: Embedding::None });
            }
        }
    }
    if !upserts.is_empty() {
        tracing::info_span!("commit", images = upserts.len()).in_scope(|| collection.commit(upserts, &[]))?;
    }
    for (path, outcome) in outcomes {
        match &outcome {
            FileOutcome::Embedded => report.embedded += 1,
            FileOutcome::Copied => report.copied += 1,
            FileOutcome::Touched => report.touched += 1,
            FileOutcome::Failed(e) => {
                tracing::warn!(path = %path.display(), error = %e, "image failed");
                report.failed.push((path.clone(), e.clone()));
            }
        }
        progress.event(&ProgressEvent::File { path, outcome });
    }
    Ok(())
}

/// Images whose grids fit a new collection's region and patch reductions.
pub const REDUCTION_SAMPLE: usize = 48;

/// Fits the collection's reductions that are not pinned yet (`region`, `patch`) on the grids of
/// up to [`REDUCTION_SAMPLE`] images spread over the job, so that they reflect the library rather
/// than its first folder. Returns the region grids by the blake3 of the bytes they were made
/// from: the job stores them rather than embedding the same images again (the square pass is
/// cheap and not kept). Files that fail are skipped; the pipeline records them.
pub(super) fn fit_reductions(
    collection: &Collection,
    encoder: &dyn Encoder,
    files: &[FoundFile],
    options: &IndexOptions,
    (region, patch): (bool, bool),
) -> Result<FittedRegions> {
    let step = files.len().div_ceil(REDUCTION_SAMPLE).max(1);
    let mut sample: Vec<([u8; 32], Option<RegionInput>, Vec<pixio::Tensor>)> = Vec::new();
    // Decoded as the job's own pass decodes them, so that the stored grids are the same.
    let min = options.input_kinds().min_decoded_size(encoder);
    for file in files.iter().step_by(step) {
        let limit = options.decode_limits.max_file_bytes;
        let Ok(bytes) = read_image_file(&file.path, limit, options.crawl.follow_links, &options.crawl.confinement())
        else {
            continue;
        };
        let Ok(decoded) = decode_bytes_at_least(&bytes, options.decode_limits, min) else { continue };
        let region_input = if region { RegionInput::of(encoder, &decoded).ok() } else { None };
        let square = if patch { encoder.prepare_square(&decoded.image, false).unwrap_or_default() } else { Vec::new() };
        sample.push((blake3::hash(&bytes).into(), region_input, square));
    }
    if patch {
        // Embedded in batches of one size; fitted in the files' order (the fit's floating-point
        // sums depend on it), so that the same library always gets the same reduction.
        let squares: Vec<(usize, &[pixio::Tensor])> =
            sample.iter().enumerate().filter(|(_, s)| !s.2.is_empty()).map(|(i, s)| (i, s.2.as_slice())).collect();
        let mut grids: Vec<(usize, PatchGrid)> = Vec::new();
        for chunk in squares.chunks(options.batch_size.max(1)) {
            for ((order, _), embedded) in embed_all(encoder, chunk.to_vec(), |(_, t)| t)? {
                if let Ok(e) = embedded {
                    grids.push((order, e.patches));
                }
            }
        }
        grids.sort_by_key(|(order, _)| *order);
        if !grids.is_empty() {
            collection.ensure_patch_reduction(&grids.iter().map(|(_, g)| g).collect::<Vec<_>>())?;
        }
    }
    let sample: Vec<(usize, ([u8; 32], RegionInput))> =
        sample.into_iter().filter_map(|(hash, r, _)| Some((hash, r?))).enumerate().collect();
    let mut grids: Vec<(usize, [u8; 32], RegionGrid)> = Vec::with_capacity(sample.len());
    for group in group_by_size(sample, |(_, (_, r))| input_size(&r.input).to_vec()) {
        for chunk in group.chunks(options.batch_size.max(1)) {
            let inputs: Vec<_> = chunk.iter().map(|(_, (_, r))| r.input.clone()).collect();
            for ((order, (hash, r)), tokens) in chunk.iter().zip(embed_region_grids(encoder, &inputs)?) {
                grids.push((*order, *hash, RegionGrid { frame: r.frame, tokens }));
            }
        }
    }
    grids.sort_by_key(|(order, _, _)| *order);
    if !grids.is_empty() {
        collection.ensure_region_reduction(&grids.iter().map(|(_, _, g)| &g.tokens).collect::<Vec<_>>())?;
    }
    Ok(grids.into_iter().map(|(_, hash, grid)| (hash, grid)).collect())
}
