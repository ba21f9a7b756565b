//! The daemon ingestion benchmark behind `spinloop bench --daemon N`: an in-process daemon on a
//! Unix socket, N simulated consoles each streaming 2048-point FIDs on its own Connect stream,
//! measuring durable (acknowledged) acquisitions per second and the send→ack latency, saturated
//! and paced.

/// What to run.
#[derive(Debug, Clone, PartialEq)]
pub struct DaemonBenchOptions {
    /// Concurrent console streams.
    pub consoles: usize,
    /// Acquisitions in the saturated run (all consoles together).
    pub acquisitions: usize,
    /// Total rate of the paced run (acquisitions/s).
    pub rate: f64,
    /// Complex points per FID.
    pub points: usize,
}

/// Errors of the daemon benchmark.
#[derive(Debug, thiserror::Error)]
pub enum DaemonBenchError {
    /// Bad options.
    #[error("{0}")]
    Options(String),
}

/// The measurements.
#[derive(Debug, Clone, PartialEq)]
pub struct DaemonBenchReport {}

impl std::fmt::Display for DaemonBenchReport {
    fn fmt(&self, _f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        Ok(())
    }
}

/// Runs the benchmark (a tokio runtime of its own; blocks).
pub fn daemon_bench(_o: &DaemonBenchOptions) -> Result<DaemonBenchReport, DaemonBenchError> {
    Err(DaemonBenchError::Options("not built yet".into()))
}
