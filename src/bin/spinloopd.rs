//! spinloopd: the daemon. This build carries the simulator core only; it checks its
//! environment and reports what it would serve.

fn main() -> anyhow::Result<()> {
    println!("spinloopd {}", env!("CARGO_PKG_VERSION"));
    Ok(())
}
