//! Compiles `kar/v1/*.proto` with protox (no `protoc` needed), generates the
//! prost types and tonic stubs, and writes the descriptor set that reflection
//! and the JSON gateway serve.

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
    let mut compiler = protox::Compiler::new([".", "third_party"])?;
    compiler.include_source_info(true).include_imports(true).open_files(FILES)?;
    let out = PathBuf::from(env::var("OUT_DIR")?);
    // Encoded by protox itself: `prost_types` would drop the extension
    // options (`google.api.http`) the JSON gateway is driven by.
    fs::write(out.join("kar_descriptor.bin"), compiler.encode_file_descriptor_set())?;
    let descriptors = compiler.file_descriptor_set();
    tonic_prost_build::configure().build_client(true).build_server(true).compile_fds(descriptors)?;
    Ok(())
}
