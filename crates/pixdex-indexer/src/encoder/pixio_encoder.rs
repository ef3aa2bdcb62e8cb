//! The Pixio encoder: the model's own preprocessing (Pillow-exact resize, normalisation), its
//! forward pass, and the fingerprint that pins a collection to this model.

use image::DynamicImage;
use pixdex_core::{CollectionConfig, PatchCodec, PatchGrid};
use pixio::{DType, Device, ModelFiles, PixioModel, Preprocessor, Tensor, WeightSource};
use std::io::{Read, Seek, SeekFrom};

use super::{EMBEDDING_DEFINITION, Encoder, GlobalOutput, square_views, unit_vector};

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

    /// The config a collection built with this encoder pins (also [`Encoder::collection_config`]).
    pub fn collection_config(&self) -> CollectionConfig {
        let cfg = self.model.config();
        // Quantised patch grids cost 32 bytes per token: full resolution for every model size.
        CollectionConfig {
            model: self.source.clone(),
            model_fingerprint: self.fingerprint.clone(),
            embedding: EMBEDDING_DEFINITION.to_string(),
            dim: cfg.hidden_size,
            patch_codec: PatchCodec::quantised(),
        }
    }

    /// Block whose tokens region grids keep (with the final LayerNorm): the middle one. Deeper
    /// tokens mix in more of the photo around them through global attention, so an object
    /// pasted into another photo stops matching the object alone; on the dev region benchmark
    /// block 6 of ViT-S/14's 12 found pasted objects at hit@10 0.90 against 0.35 for the last
    /// block (block 9: 0.70), and plain crops at 1.00 against 0.73.
    pub fn region_layer(&self) -> usize {
        (self.model.config().num_hidden_layers / 2).max(1)
    }

    /// Number of transformer blocks.
    pub fn layers(&self) -> usize {
        self.model.config().num_hidden_layers
    }

    /// Patch grids of inputs of one size at several depths: for each of `layers` (block outputs,
    /// see [`PixioModel::layer_patch_grid`]), one grid per input. For measuring which depth
    /// matches regions best.
    pub fn embed_grids_at_layers(&self, inputs: &[Tensor], layers: &[usize]) -> pixio::Result<Vec<Vec<PatchGrid>>> {
        let out = self.model.forward_with_hidden_states(&Tensor::stack(inputs, 0)?)?;
        layers.iter().map(|&layer| grids_of(&self.model.layer_patch_grid(&out, layer)?)).collect()
    }
}

impl Encoder for PixioEncoder {
    fn collection_config(&self) -> CollectionConfig {
        PixioEncoder::collection_config(self)
    }

    fn patch_size(&self) -> usize {
        self.model.config().patch_size.width
    }

    fn square_side(&self) -> usize {
        match self.preprocessor.config().size {
            pixio::ResizeTarget::Exact(s) => s.height.max(s.width),
            pixio::ResizeTarget::ShortestEdge(n) => n,
        }
    }

    fn prepare_square(&self, image: &DynamicImage, views: bool) -> pixio::Result<Vec<Tensor>> {
        if !views {
            return Ok(vec![self.preprocessor.preprocess(image)?]);
        }
        // The first view is exactly `preprocess`'s input: the same resize, then normalisation.
        let rgb = self.preprocessor.resize(image)?;
        let (h, w) = (rgb.height() as usize, rgb.width() as usize);
        square_views(rgb)
            .iter()
            .map(|view| Ok(Tensor::from_vec(self.preprocessor.normalize(view), (3, h, w), &Device::Cpu)?))
            .collect()
    }

    fn model_rgb(&self, image: &DynamicImage) -> Option<image::RgbImage> {
        match image {
            DynamicImage::ImageRgb8(_) => None,
            other => Some(self.preprocessor.model_rgb(other).into_owned()),
        }
    }

    fn prepare_grid(&self, image: &DynamicImage, rows: usize, cols: usize) -> pixio::Result<Tensor> {
        if image.width() == 0 || image.height() == 0 || rows == 0 || cols == 0 {
            return Err(pixio::Error::Input("empty image or grid".into()));
        }
        let p = self.patch_size();
        let (w, h) = (cols * p, rows * p);
        // RGB8 pixels (most photos) are borrowed, not copied, as the square input borrows them.
        let rgb = self.preprocessor.model_rgb(image);
        let cfg = self.preprocessor.config();
        let resized = if (rgb.width() as usize, rgb.height() as usize) == (w, h) {
            rgb.into_owned()
        } else {
            pixio::resize_pillow(&rgb, w, h, cfg.resample, cfg.pass_order)
        };
        Ok(Tensor::from_vec(self.preprocessor.normalize(&resized), (3, h, w), &Device::Cpu)?)
    }

    fn embed_global(&self, inputs: &[Tensor]) -> pixio::Result<Vec<GlobalOutput>> {
        let out = self.model.forward(&Tensor::stack(inputs, 0)?)?;
        let global = out.global_embedding()?.to_vec2::<f32>()?;
        let grids = grids_of(&out.patch_grid()?)?;
        Ok(global.into_iter().zip(grids).map(|(g, grid)| Ok((unit_vector(g)?, grid))).collect())
    }

    fn embed_region_grids(&self, inputs: &[Tensor]) -> pixio::Result<Vec<PatchGrid>> {
        // Only the blocks up to the kept one run: half of ViT-S/14's twelve, and no pooler.
        grids_of(&self.model.patch_grid_at_layer(&Tensor::stack(inputs, 0)?, self.region_layer())?)
    }
}

/// `[B, rows, cols, dim]` → one f32 grid per input.
fn grids_of(grid: &Tensor) -> pixio::Result<Vec<PatchGrid>> {
    let grid = grid.to_dtype(DType::F32)?;
    let (_, rows, cols, dim) = grid.dims4()?;
    let values = grid.flatten_from(1)?.to_vec2::<f32>()?;
    values
        .into_iter()
        .map(|values| {
            PatchGrid::new(rows, cols, dim, values).map_err(|e| pixio::Error::Input(format!("patch grid: {e}")))
        })
        .collect()
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
