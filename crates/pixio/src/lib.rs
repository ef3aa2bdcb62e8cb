//! Pixio, Meta's MAE-style vision encoder, in candle — exact to Hugging Face transformers 5.x.
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
mod error;
mod hub;
mod model;
mod preprocess;
mod weights;

pub use backbone::{FeatureMap, PixioBackbone};
pub use config::{Config, Size2};
pub use device::{DeviceChoice, default_dtype, parse_dtype};
pub use error::{Error, Result};
pub use hub::{DEFAULT_MODEL, HubOptions, ModelFiles, WeightSource};
pub use model::{PixioModel, PixioOutput, l2_normalize};
pub use preprocess::{
    Filter, PassOrder, Preprocessor, PreprocessorConfig, ResizeTarget, center_crop, resize_pillow, to_rgb,
};

pub use candle_core::{DType, Device, Tensor};
