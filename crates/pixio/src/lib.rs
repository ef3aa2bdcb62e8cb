//! Pixio, Meta's MAE-style vision encoder, in candle — exact to Hugging Face transformers 5.x.
//!
//! This crate owns the model and nothing around it: the checkpoint's `config.json`, finding and
//! loading its weights (a folder or a Hub id through hf-hub; every key layout; sharded; f32, f16
//! or bf16), the exact preprocessing (Pillow-exact resampling), the forward pass of
//! [`PixioModel`] (to the last block, or keeping every block's output for a chosen block's patch
//! grid) and [`PixioBackbone`], the fused CPU kernels, and the choice of device and dtype. It
//! knows nothing of collections, storage or gRPC, and reads no file but the checkpoint's: callers
//! decode images (pixdex applies EXIF orientation first) and hand it pixels. Modules, private
//! behind the re-exports below: `config`, `hub` (where the files are), `weights` (key layouts →
//! canonical names), `preprocess` and `resample`, `embeddings` and `model` (pixio-spec §3),
//! `backbone`, `cpu_ops`, `device`, `error`.
//!
//! ```no_run
//! use pixio::{DeviceChoice, ModelFiles, PixioModel, Preprocessor, WeightSource};
//! # fn main() -> pixio::Result<()> {
//! let files = ModelFiles::resolve(&WeightSource::parse("facebook/pixio-vith16")?)?;
//! let device = DeviceChoice::Cpu.open()?;
//! let model = PixioModel::load(&files, &device, pixio::default_dtype(&device))?;
//! let pre = Preprocessor::load(&files)?;
//! let image = image::open("cat.jpg").map_err(|e| pixio::Error::Input(e.to_string()))?;
//! let out = model.forward(&pre.preprocess(&image)?.unsqueeze(0)?)?;
//! let global = out.global_embedding()?; // [1, 1280], unit length
//! let patches = out.patch_grid()?; // [1, 16, 16, 1280]
//! # Ok(()) }
//! ```
//!
//! * [`Config`] reads `config.json` leniently; nothing about the architecture is hard-coded.
//! * [`ModelFiles`] finds a checkpoint in a folder or on the Hub (hf-hub, with its cache).
//! * Every published key layout loads (Hub, `save_pretrained`, in-memory names, a saved
//!   backbone; single or sharded; f32, f16 or bf16 on disk); a missing or mis-shaped tensor is an
//!   error that names it.
//! * [`Preprocessor`] reproduces the checkpoint's `BitImageProcessor` bit for bit.
//! * [`PixioModel`] and [`PixioBackbone`] run on the CPU (f32 by default) or, with the `cuda`
//!   feature, on a GPU in bf16/f16 with LayerNorm and softmax in f32.
#![deny(missing_docs)]

mod backbone;
mod config;
mod cpu_ops;
mod device;
mod embeddings;
mod error;
mod hub;
mod model;
mod preprocess;
mod resample;
mod weights;

pub use backbone::{FeatureMap, PixioBackbone};
pub use config::{Config, Size2};
pub use device::{DeviceChoice, default_dtype, parse_dtype};
pub use error::{Error, Result};
pub use hub::{DEFAULT_MODEL, HubOptions, ModelFiles, WeightSource};
pub use model::{PixioModel, PixioOutput, l2_normalize};
pub use preprocess::{Preprocessor, PreprocessorConfig, ResizeTarget, center_crop, to_rgb};
pub use resample::{Filter, PassOrder, resize_pillow};

pub use candle_core::{DType, Device, Tensor};
