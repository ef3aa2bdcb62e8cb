//! Indexing image libraries for pixdex.
//!
//! For now this crate owns decoding ([`decode`]): the one path from file bytes to pixels that both
//! the indexer and query-time embedding use, with EXIF orientation applied and decode limits set.
#![deny(missing_docs)]

pub mod decode;
