//! Compiles `proto/pixdex/v1/*.proto` with protox (pure Rust: no system `protoc`), and writes the
//! descriptor set that server reflection serves.

use prost::Message;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../proto");
    println!("cargo:rerun-if-changed={}", root.display());
    let files = [
        "pixdex/v1/images.proto",
        "pixdex/v1/search.proto",
        "pixdex/v1/index.proto",
        "pixdex/v1/collection.proto",
        "pixdex/v1/dedup.proto",
    ];
    let fds = protox::compile(files, [&root])?;
    let out = std::path::PathBuf::from(std::env::var("OUT_DIR")?);
    std::fs::write(out.join("pixdex_descriptor.bin"), fds.encode_to_vec())?;
    tonic_prost_build::configure().build_server(true).build_client(true).compile_fds(fds)?;
    Ok(())
}
