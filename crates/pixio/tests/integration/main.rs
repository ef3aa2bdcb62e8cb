//! Parity of the candle port with Hugging Face transformers, on fixtures that
//! `tests/reference/generate_pixio_fixtures.py` wrote (random-weight models in every key layout)
//! and on the real-weights ViT-S/14 in `../shared/data` when present.

mod fixtures;
mod layouts;
mod model;
mod preprocess;
mod real_weights;
