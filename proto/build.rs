//! Compiles `kar/v1/*.proto` with protox (no `protoc` needed), generates the
//! prost types and tonic stubs, and writes the descriptor set that reflection
//! and the JSON gateway serve.

use prost::Message;
use std::{env, fs, path::PathBuf};

const FILES: &[&str] = &[
    "kar/v1/common.proto",
    "kar/v1/actors.proto",
    "kar/v1/state.proto",
    "kar/v1/services.proto",
    "kar/v1/app.proto",
    "kar/v1/mesh.proto",
    "kar/v1/reminders.proto",
    "kar/v1/events.proto",
    "kar/v1/options.proto",
];

fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed=kar");
    println!("cargo:rerun-if-changed=third_party");
    let descriptors = protox::compile(FILES, [".", "third_party"])?;
    let out = PathBuf::from(env::var("OUT_DIR")?);
    fs::write(out.join("kar_descriptor.bin"), descriptors.encode_to_vec())?;
    tonic_prost_build::configure()
        .build_client(true)
        .build_server(true)
        .compile_fds(descriptors)?;
    Ok(())
}
