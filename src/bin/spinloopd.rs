//! spinloopd: the daemon. This build carries the simulator core only; the gRPC services, store
//! and configuration land with the daemon issue. It parses its command line and reports what it
//! is.

use clap::Parser;

#[derive(Parser)]
#[command(
    name = "spinloopd",
    version,
    about = "spinloop daemon (simulator core only in this build)"
)]
struct Args {}

fn main() -> anyhow::Result<()> {
    let _ = Args::parse();
    println!(
        "spinloopd {}: the daemon's services are not part of this build; use `spinloop` for the \
         offline tools",
        env!("CARGO_PKG_VERSION")
    );
    Ok(())
}
