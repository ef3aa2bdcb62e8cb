//! The generated protobuf types, servers and clients of package `pixdex.v1`.
#![allow(missing_docs, clippy::all)]

tonic::include_proto!("pixdex.v1");

/// The encoded descriptor set of `proto/pixdex/v1`, served by reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/pixdex_descriptor.bin"));
