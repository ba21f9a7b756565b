//! Compiles `proto/spinloop/v1/*.proto` with protox (pure Rust, no protoc) into the tonic
//! services and messages of `spinloop::daemon::pb`, and writes the encoded descriptor set
//! the daemon's server reflection serves.

use prost::Message;
use std::{env, fs, path::PathBuf};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let files = [
        "spinloop/v1/console.proto",
        "spinloop/v1/sessions.proto",
        "spinloop/v1/design.proto",
    ];
    println!("cargo:rerun-if-changed=proto");
    for f in &files {
        println!("cargo:rerun-if-changed=proto/{f}");
    }
    let fds = protox::compile(files, ["proto"])?;
    let out = PathBuf::from(env::var("OUT_DIR")?);
    fs::write(out.join("spinloop_descriptor.bin"), fds.encode_to_vec())?;
    tonic_prost_build::configure()
        .build_server(true)
        .build_client(true)
        // The generated `XClient::connect(dst)` constructor would clash with the Console
        // service's `Connect` rpc; clients build a Channel and call `XClient::new`.
        .build_transport(false)
        .compile_fds(fds)?;
    Ok(())
}
