//! Compiles `quickchat/v1/*.proto` into tonic clients and servers, plus the encoded file
//! descriptor set that server reflection serves. Uses a vendored `protoc`, so a fresh machine
//! needs nothing installed.

use std::path::PathBuf;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let protos = ["auth.proto", "group.proto", "chat.proto"]
        .map(|f| PathBuf::from(format!("quickchat/v1/{f}")));
    let out_dir = PathBuf::from(std::env::var("OUT_DIR")?);
    let protoc = protoc_bin_vendored::protoc_bin_path()?;
    let well_known = protoc_bin_vendored::include_path()?;

    let mut config = tonic_prost_build::Config::new();
    config.protoc_executable(protoc);
    tonic_prost_build::configure()
        .file_descriptor_set_path(out_dir.join("quickchat_descriptor.bin"))
        .compile_with_config(config, &protos, &[PathBuf::from("."), well_known])?;
    for proto in &protos {
        println!("cargo:rerun-if-changed={}", proto.display());
    }
    Ok(())
}
