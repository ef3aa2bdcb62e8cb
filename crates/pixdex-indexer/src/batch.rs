//! Forward passes over many inputs: grouping by input size (a forward pass takes inputs of one
//! size), and unpacking each pass's outputs into per-image embeddings. Every forward pass that
//! goes through here gets a `forward` span with its kind, batch size, input size and duration.

use pixdex_core::{DedupViews, PatchGrid};
use pixio::Tensor;
use std::time::Instant;

use crate::encoder::{Encoder, ImageEmbedding};

/// Splits `items` into groups of one input size (`size` of each item), each group in the
/// order its items came. Processors with a fixed size give one group; region inputs give one
/// per grid shape (a camera's photos: landscape and portrait).
pub fn group_by_size<T, K: PartialEq>(items: Vec<T>, size: impl Fn(&T) -> K) -> Vec<Vec<T>> {
    let mut groups: Vec<(K, Vec<T>)> = Vec::new();
    for item in items {
        let key = size(&item);
        match groups.iter_mut().find(|(k, _)| *k == key) {
            Some((_, group)) => group.push(item),
            None => groups.push((key, vec![item])),
        }
    }
    groups.into_iter().map(|(_, group)| group).collect()
}

/// The size of an input, as [`group_by_size`] compares them.
pub fn input_size(input: &Tensor) -> &[usize] {
    input.dims()
}

/// One forward pass over images of one input size, each given as its square input alone or
/// followed by its two views ([`crate::inputs::ModelInputs::square`]): each image's embedding,
/// or its own error (a degenerate output) without failing the others.
pub fn embed_images(encoder: &dyn Encoder, images: &[&[Tensor]]) -> pixio::Result<Vec<pixio::Result<ImageEmbedding>>> {
    if let Some(odd) = images.iter().find(|v| v.len() != 1 && v.len() != 3) {
        return Err(pixio::Error::Input(format!("{} inputs for one image (1 or 3)", odd.len())));
    }
    let flat: Vec<Tensor> = images.iter().flat_map(|v| v.iter().cloned()).collect();
    let mut out = timed("global", images.len(), &flat, || encoder.embed_global(&flat))?.into_iter();
    Ok(images
        .iter()
        .map(|views| {
            // Take this image's outputs before looking at them, so that an error in one view
            // cannot shift the next image's outputs.
            let mut mine = out.by_ref().take(views.len()).collect::<Vec<_>>().into_iter();
            let (global, patches) = mine
                .next()
                .ok_or_else(|| pixio::Error::Input("the encoder gave fewer outputs than inputs".into()))??;
            let views = match (mine.next(), mine.next()) {
                (Some(flipped), Some(gray)) => {
                    let (flipped, flipped_patches) = flipped?;
                    Some(DedupViews { flipped, gray: gray?.0, flipped_patches: Some(flipped_patches) })
                }
                _ => None,
            };
            Ok(ImageEmbedding { global, patches, views })
        })
        .collect())
}

/// One forward pass over region inputs of one size: each input's region grid.
pub fn embed_region_grids(encoder: &dyn Encoder, inputs: &[Tensor]) -> pixio::Result<Vec<PatchGrid>> {
    let grids = timed("region", inputs.len(), inputs, || encoder.embed_region_grids(inputs))?;
    if grids.len() != inputs.len() {
        return Err(pixio::Error::Input(format!("{} region grids for {} inputs", grids.len(), inputs.len())));
    }
    Ok(grids)
}

/// Embeds every item's square inputs (`square` of each), one forward pass per input size;
/// items come back with their results, grouped by size.
pub fn embed_all<T>(
    encoder: &dyn Encoder,
    items: Vec<T>,
    square: impl Fn(&T) -> &[Tensor],
) -> pixio::Result<Vec<(T, pixio::Result<ImageEmbedding>)>> {
    let mut out = Vec::with_capacity(items.len());
    for group in group_by_size(items, |item| square(item).first().map(|t| input_size(t).to_vec())) {
        let inputs: Vec<&[Tensor]> = group.iter().map(&square).collect();
        let embedded = embed_images(encoder, &inputs)?;
        out.extend(group.into_iter().zip(embedded));
    }
    Ok(out)
}

/// Embeds every item's region input (`input` of each), one forward pass per grid shape;
/// items come back with their region grids, grouped by shape.
pub fn embed_all_regions<T>(
    encoder: &dyn Encoder,
    items: Vec<T>,
    input: impl Fn(&T) -> &Tensor,
) -> pixio::Result<Vec<(T, PatchGrid)>> {
    let mut out = Vec::with_capacity(items.len());
    for group in group_by_size(items, |item| input_size(input(item)).to_vec()) {
        let inputs: Vec<Tensor> = group.iter().map(|item| input(item).clone()).collect();
        let grids = embed_region_grids(encoder, &inputs)?;
        out.extend(group.into_iter().zip(grids));
    }
    Ok(out)
}

/// Runs one forward pass inside a `forward` span that records its size and duration.
fn timed<R>(
    kind: &'static str,
    images: usize,
    inputs: &[Tensor],
    pass: impl FnOnce() -> pixio::Result<R>,
) -> pixio::Result<R> {
    let (h, w) = match inputs.first().map(|t| t.dims()) {
        Some([.., h, w]) => (*h, *w),
        _ => (0, 0),
    };
    let span = tracing::info_span!("forward", kind, images, inputs = inputs.len(), h, w, ms = tracing::field::Empty);
    let _entered = span.enter();
    let started = Instant::now();
    let result = pass();
    let ms = started.elapsed().as_secs_f64() * 1e3;
    span.record("ms", ms);
    tracing::debug!(kind, images, inputs = inputs.len(), h, w, ms, ok = result.is_ok(), "forward pass");
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn groups_keep_first_seen_order() {
        let groups = group_by_size(vec![(1, 'a'), (2, 'b'), (1, 'c'), (3, 'd'), (2, 'e')], |(k, _)| *k);
        assert_eq!(groups, vec![vec![(1, 'a'), (1, 'c')], vec![(2, 'b'), (2, 'e')], vec![(3, 'd')]]);
        assert!(group_by_size(Vec::<u8>::new(), |x| *x).is_empty());
    }
}
