//! The Pixio encoder as the pipeline and query paths use it: preprocessing, batched forward,
//! global vector + patch grid, and the fingerprint that pins a collection to this model.

use image::DynamicImage;
use pixdex_core::{CollectionConfig, DedupViews, PatchCodec, PatchGrid, RegionFrame, UnitVector, region_grid_shape};
use pixio::{DType, Device, ModelFiles, PixioModel, Preprocessor, Tensor, WeightSource};
use std::io::{Read, Seek, SeekFrom};

/// Name and version of what a global vector is: the mean of the class tokens after the final
/// LayerNorm (transformers' `pooler_output`), L2-normalised.
pub const EMBEDDING_DEFINITION: &str = "pixio-pooler-l2/v1";

/// Stored patch bytes allowed per image; see [`PatchCodec::for_budget`]. 128 KiB keeps ViT-S/14
/// at full resolution (99 KB) and pools ViT-H/16 2×2 (82 KB): about 10 GB per 100k photos.
pub const PATCH_BUDGET_BYTES: usize = 128 << 10;

/// Long side, in pixels, of the aspect-preserving pass kept for region search: 32 patches of
/// ViT-S/14 (about 730 tokens for a 4:3 photo), 28 of a /16 model. Small objects need the
/// detail; a square 224 pass squashes and blurs them.
pub const REGION_LONG_SIDE: usize = 448;

/// What the encoder computes for one image.
#[derive(Debug, Clone)]
pub struct ImageEmbedding {
    /// The global vector.
    pub global: UnitVector,
    /// The full-resolution patch grid.
    pub patches: PatchGrid,
    /// The mirrored and grayscale views, when the input had them ([`PixioEncoder::prepare_views`]).
    pub views: Option<DedupViews>,
}

/// A loaded model and its preprocessing.
pub struct PixioEncoder {
    model: PixioModel,
    preprocessor: Preprocessor,
    source: String,
    fingerprint: String,
}

impl PixioEncoder {
    /// Loads a model from a folder or the Hub.
    pub fn load(source: &WeightSource, device: &Device, dtype: DType) -> pixio::Result<Self> {
        let files = ModelFiles::resolve(source)?;
        let model = PixioModel::load(&files, device, dtype)?;
        let preprocessor = Preprocessor::load(&files)?;
        let fingerprint = fingerprint(&files)?;
        Ok(Self { model, preprocessor, source: source.to_string(), fingerprint })
    }

    /// The config a collection built with this encoder pins.
    pub fn collection_config(&self) -> CollectionConfig {
        let cfg = self.model.config();
        let (ph, pw) = (cfg.patch_size.height, cfg.patch_size.width);
        let input = self.preprocessor.config();
        let (h, w) = match input.size {
            pixio::ResizeTarget::Exact(s) if !input.do_center_crop => (s.height, s.width),
            _ => (input.crop_size.height, input.crop_size.width),
        };
        CollectionConfig {
            model: self.source.clone(),
            model_fingerprint: self.fingerprint.clone(),
            embedding: EMBEDDING_DEFINITION.to_string(),
            dim: cfg.hidden_size,
            patch_codec: PatchCodec::for_budget(h / ph, w / pw, cfg.hidden_size, PATCH_BUDGET_BYTES),
        }
    }

    /// `[3, H, W]` model input for one decoded (upright) image.
    pub fn prepare(&self, image: &DynamicImage) -> pixio::Result<Tensor> {
        self.preprocessor.preprocess(image)
    }

    /// Model inputs for indexing one image: the image, then its mirrored and its grayscale
    /// version (ITU-R 601 luma, as Pillow's `L`, in all three channels), each made from the same
    /// resized pixels. The first is exactly [`Self::prepare`]'s input.
    pub fn prepare_views(&self, image: &DynamicImage) -> pixio::Result<Vec<Tensor>> {
        let rgb = self.preprocessor.resize(image)?;
        let flipped = image::imageops::flip_horizontal(&rgb);
        let mut gray = rgb.clone();
        for px in gray.pixels_mut() {
            let [r, g, b] = px.0.map(u32::from);
            let l = ((r * 19595 + g * 38470 + b * 7471 + 0x8000) >> 16) as u8;
            px.0 = [l; 3];
        }
        let (h, w) = (rgb.height() as usize, rgb.width() as usize);
        [rgb, flipped, gray]
            .iter()
            .map(|view| Ok(Tensor::from_vec(self.preprocessor.normalize(view), (3, h, w), &Device::Cpu)?))
            .collect()
    }

    /// Pixels per patch side.
    pub fn patch_size(&self) -> usize {
        self.model.config().patch_size.width
    }

    /// The region-search input of one decoded image: the upright image at
    /// [`REGION_LONG_SIDE`], aspect kept, and the frame the grid covers.
    pub fn prepare_region(
        &self,
        image: &DynamicImage,
        orientation: image::metadata::Orientation,
    ) -> pixio::Result<(Tensor, RegionFrame)> {
        let (w, h) = (image.width(), image.height());
        let (rows, cols) = region_grid_shape(w, h, self.patch_size(), REGION_LONG_SIDE);
        let frame = RegionFrame { width: w, height: h, orientation: orientation.to_exif() };
        Ok((self.prepare_grid(image, rows, cols)?, frame))
    }

    /// `[3, rows·P, cols·P]` model input: `image` resized to exactly `rows × cols` patches (the
    /// preprocessor's filter and normalisation, no crop). Region queries embed crops this way.
    pub fn prepare_grid(&self, image: &DynamicImage, rows: usize, cols: usize) -> pixio::Result<Tensor> {
        if image.width() == 0 || image.height() == 0 || rows == 0 || cols == 0 {
            return Err(pixio::Error::Input("empty image or grid".into()));
        }
        let p = self.patch_size();
        let (w, h) = (cols * p, rows * p);
        let rgb = pixio::to_rgb(image);
        let cfg = self.preprocessor.config();
        let resized = if (rgb.width() as usize, rgb.height() as usize) == (w, h) {
            rgb
        } else {
            pixio::resize_pillow(&rgb, w, h, cfg.resample, cfg.pass_order)
        };
        Ok(Tensor::from_vec(self.preprocessor.normalize(&resized), (3, h, w), &Device::Cpu)?)
    }

    /// Block whose tokens region grids keep (with the final LayerNorm): the middle one. Deeper
    /// tokens mix in more of the photo around them through global attention, so an object
    /// pasted into another photo stops matching the object alone; on the dev region benchmark
    /// block 6 of ViT-S/14's 12 found pasted objects at hit@10 0.90 against 0.35 for the last
    /// block (block 9: 0.70), and plain crops at 1.00 against 0.73.
    pub fn region_layer(&self) -> usize {
        (self.model.config().num_hidden_layers / 2).max(1)
    }

    /// Region grids (block [`Self::region_layer`]'s patch tokens) of inputs of one size: region
    /// inputs and region queries.
    pub fn embed_region_grids(&self, inputs: &[Tensor]) -> pixio::Result<Vec<PatchGrid>> {
        Ok(self.embed_grids_at_layers(inputs, &[self.region_layer()])?.pop().unwrap_or_default())
    }

    /// [`Self::embed_region_grids`] with each input's global vector too, for callers that share
    /// [`ImageEmbedding`] (the server's batcher): `patches` is the region grid.
    pub fn embed_region_images(&self, inputs: &[Tensor]) -> pixio::Result<Vec<pixio::Result<ImageEmbedding>>> {
        let out = self.model.forward_with_hidden_states(&Tensor::stack(inputs, 0)?)?;
        let global = out.global_embedding()?.to_vec2::<f32>()?;
        let grid = self.model.layer_patch_grid(&out, self.region_layer())?.to_dtype(DType::F32)?;
        let (_, rows, cols, dim) = grid.dims4()?;
        let grids = grid.flatten_from(1)?.to_vec2::<f32>()?;
        Ok(global
            .into_iter()
            .zip(grids)
            .map(|(g, values)| {
                let global =
                    UnitVector::new(g).map_err(|e| pixio::Error::Input(format!("degenerate embedding: {e}")))?;
                Ok(ImageEmbedding { global, patches: patch_grid(rows, cols, dim, values)?, views: None })
            })
            .collect())
    }

    /// Patch grids of inputs of one size at several depths: for each of `layers` (block outputs,
    /// see [`PixioModel::layer_patch_grid`]), one grid per input. For measuring which depth
    /// matches regions best.
    pub fn embed_grids_at_layers(&self, inputs: &[Tensor], layers: &[usize]) -> pixio::Result<Vec<Vec<PatchGrid>>> {
        let out = self.model.forward_with_hidden_states(&Tensor::stack(inputs, 0)?)?;
        layers
            .iter()
            .map(|&layer| {
                let grid = self.model.layer_patch_grid(&out, layer)?.to_dtype(DType::F32)?;
                let (_, rows, cols, dim) = grid.dims4()?;
                let grids = grid.flatten_from(1)?.to_vec2::<f32>()?;
                grids.into_iter().map(|values| patch_grid(rows, cols, dim, values)).collect()
            })
            .collect()
    }

    /// Number of transformer blocks.
    pub fn layers(&self) -> usize {
        self.model.config().num_hidden_layers
    }

    /// Global vectors and patch grids for inputs of one size; an image whose embedding is
    /// degenerate (zero or not finite) gets its own error without failing the others.
    pub fn embed(&self, inputs: &[Tensor]) -> pixio::Result<Vec<pixio::Result<(UnitVector, PatchGrid)>>> {
        let out = self.model.forward(&Tensor::stack(inputs, 0)?)?;
        let global = out.global_embedding()?.to_vec2::<f32>()?;
        let grid = out.patch_grid()?.to_dtype(DType::F32)?;
        let (_, rows, cols, dim) = grid.dims4()?;
        let grids = grid.flatten_from(1)?.to_vec2::<f32>()?;
        Ok(global
            .into_iter()
            .zip(grids)
            .map(|(g, values)| {
                let g = UnitVector::new(g).map_err(|e| pixio::Error::Input(format!("degenerate embedding: {e}")))?;
                Ok((g, patch_grid(rows, cols, dim, values)?))
            })
            .collect())
    }

    /// Embeds images given as [`Self::prepare`]'s one input or [`Self::prepare_views`]'s three,
    /// all in one forward pass (inputs of one size).
    pub fn embed_images(&self, images: &[Vec<Tensor>]) -> pixio::Result<Vec<pixio::Result<ImageEmbedding>>> {
        if let Some(odd) = images.iter().find(|v| v.len() != 1 && v.len() != 3) {
            return Err(pixio::Error::Input(format!("{} inputs for one image (1 or 3)", odd.len())));
        }
        let flat: Vec<Tensor> = images.iter().flatten().cloned().collect();
        let mut out = self.embed(&flat)?.into_iter();
        Ok(images
            .iter()
            .map(|views| {
                // Take this image's outputs before looking at them, so that an error in one view
                // cannot shift the next image's outputs.
                let mine: Vec<_> = out.by_ref().take(views.len()).collect();
                let mut mine = mine.into_iter();
                let (global, patches) = mine.next().expect("one output per input")?;
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
}

/// blake3 over the config, the preprocessor config, and each weights file's size and first and
/// last MiB: another checkpoint (or another preprocessing) gives another fingerprint without
/// reading gigabytes at every start.
fn fingerprint(files: &ModelFiles) -> pixio::Result<String> {
    let io = |path: &std::path::Path| {
        let path = path.to_path_buf();
        move |source| pixio::Error::Io { path, source }
    };
    let mut h = blake3::Hasher::new();
    h.update(&std::fs::read(&files.config).map_err(io(&files.config))?);
    if let Some(p) = &files.preprocessor {
        h.update(&std::fs::read(p).map_err(io(p))?);
    }
    for w in &files.weights {
        let mut f = std::fs::File::open(w).map_err(io(w))?;
        let len = f.metadata().map_err(io(w))?.len();
        h.update(&len.to_le_bytes());
        let mut buf = vec![0u8; (1 << 20).min(len as usize)];
        f.read_exact(&mut buf).map_err(io(w))?;
        h.update(&buf);
        f.seek(SeekFrom::Start(len - buf.len() as u64)).map_err(io(w))?;
        f.read_exact(&mut buf).map_err(io(w))?;
        h.update(&buf);
    }
    Ok(h.finalize().to_hex()[..16].to_string())
}

/// A model output's `rows × cols × dim` values as a [`PatchGrid`].
fn patch_grid(rows: usize, cols: usize, dim: usize, values: Vec<f32>) -> pixio::Result<PatchGrid> {
    PatchGrid::new(rows, cols, dim, values).map_err(|e| pixio::Error::Input(format!("patch grid: {e}")))
}
