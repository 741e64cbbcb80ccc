//! Compiles `quickchat/v1/*.proto` into tonic clients and servers, plus the encoded file
//! descriptor set that server reflection serves. Uses a vendored `protoc`, so a fresh machine
//! needs nothing installed.

use std::path::PathBuf;

/// Our codec: prost's, but a message that does not decode is the caller's error.
const CODEC: &str = "crate::codec::ProtoCodec";

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let protos = ["auth.proto", "group.proto", "chat.proto", "admin.proto"]
        .map(|f| PathBuf::from(format!("quickchat/v1/{f}")));
    let out_dir = PathBuf::from(std::env::var("OUT_DIR")?);
    let protoc = protoc_bin_vendored::protoc_bin_path()?;
    let well_known = protoc_bin_vendored::include_path()?;

    let mut config = tonic_prost_build::Config::new();
    config.protoc_executable(protoc);
    tonic_prost_build::configure()
        .codec_path(CODEC)
        .file_descriptor_set_path(out_dir.join("quickchat_descriptor.bin"))
        .compile_with_config(config, &protos, &[PathBuf::from("."), well_known])?;
    // A second pass generates only ChatService's server again, with the stream responses
    // mapped to pre-encoded frames (see `frames` in lib.rs); every other type is the one
    // generated above.
    let frames_dir = out_dir.join("frames");
    std::fs::create_dir_all(&frames_dir)?;
    let mut config = tonic_prost_build::Config::new();
    config.protoc_executable(protoc_bin_vendored::protoc_bin_path()?);
    tonic_prost_build::configure()
        .codec_path(CODEC)
        .build_client(false)
        .out_dir(&frames_dir)
        .extern_path(".quickchat.v1", "crate::v1")
        .extern_path(".quickchat.v1.ChatResponse", "crate::frames::EventFrame")
        .extern_path(
            ".quickchat.v1.SubscribeResponse",
            "crate::frames::EventFrame",
        )
        .compile_with_config(
            config,
            &[PathBuf::from("quickchat/v1/chat.proto")],
            &[PathBuf::from("."), protoc_bin_vendored::include_path()?],
        )?;
    for proto in &protos {
        println!("cargo:rerun-if-changed={}", proto.display());
    }
    Ok(())
}
