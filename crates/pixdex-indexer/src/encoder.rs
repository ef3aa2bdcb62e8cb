//! The Pixio encoder as the pipeline and query paths use it: preprocessing, batched forward,
//! global vector + patch grid, and the fingerprint that pins a collection to this model.

use image::DynamicImage;
use pixdex_core::{CollectionConfig, PatchCodec, PatchGrid, UnitVector};
use pixio::{DType, Device, ModelFiles, PixioModel, Preprocessor, Tensor, WeightSource};
use std::io::{Read, Seek, SeekFrom};

/// Name and version of what a global vector is: the mean of the class tokens after the final
/// LayerNorm (transformers' `pooler_output`), L2-normalised.
pub const EMBEDDING_DEFINITION: &str = "pixio-pooler-l2/v1";

/// Stored patch bytes allowed per image; see [`PatchCodec::for_budget`]. 128 KiB keeps ViT-S/14
/// at full resolution (99 KB) and pools ViT-H/16 2×2 (82 KB): about 10 GB per 100k photos.
pub const PATCH_BUDGET_BYTES: usize = 128 << 10;

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
                Ok((g, PatchGrid { rows, cols, dim, values }))
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
