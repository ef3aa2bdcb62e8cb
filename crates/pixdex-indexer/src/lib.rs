//! Indexing image libraries for pixdex: crawling ([`crawl`]), decoding ([`decode`], the one path
//! from bytes to upright pixels that indexing and queries share), the encoder as the pipeline
//! uses it ([`encoder`]), the index job ([`pipeline`]), and region queries ([`region_query`]). It reports progress events and never
//! prints.
#![deny(missing_docs)]

pub mod crawl;
pub mod decode;
pub mod encoder;
mod error;
pub mod pipeline;
pub mod region_query;

pub use error::{Error, Result};
