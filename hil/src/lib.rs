//! Simulated MR consoles with hidden hardware truth, for hardware-in-the-loop runs of
//! spinloop: the daemon must discover errors it is not told about.
//!
//! - [`hardware`] — the hidden truth ([`HiddenTruth`]: B1 scale, B0 offset and linear drift,
//!   AM/AM and AM/PM, transmit filter group delay, receiver phase and delay, linewidth, gain)
//!   and the transmit chain.
//! - [`console`] — the physics seam [`ConsolePhysics`] ("waveform + acquisition time → FID"),
//!   [`SimulatedConsole`], the console kinds (3 T clinical with a brain phantom, 11.7 T
//!   spectrometer with citrate) and the SNR definition.
//! - [`grpc`] — the transport: a [`ConsolePhysics`] speaking the daemon's `Console` gRPC
//!   protocol, with reconnects and retries (a serial firmware transport can wrap the same
//!   trait later).
//! - [`serial`] — the other transport: a [`ConsolePhysics`] behind the firmware protocol on a
//!   pseudo-terminal, which the daemon opens as a `[[serial_console]]`.
//! - [`scenario`] — scenario files (TOML).
//! - [`evaluate`] — objectives under the true hardware, the oracle pulse, ratios.
//! - [`run`] — a whole scenario against a daemon: console, session, report, verdict.
#![deny(missing_docs)]

pub mod console;
pub mod evaluate;
pub mod grpc;
pub mod hardware;
pub mod run;
pub mod scenario;
pub mod serial;

pub use console::{ConsoleKind, ConsolePhysics, Phantom, SimulatedConsole};
pub use hardware::HiddenTruth;
pub use scenario::Scenario;

use std::path::PathBuf;

/// Errors of the HIL library.
#[derive(Debug, thiserror::Error)]
pub enum HilError {
    /// A value out of range.
    #[error("{field} = {value}: {reason}")]
    Invalid {
        /// The field.
        field: String,
        /// The value (as text).
        value: String,
        /// Why it was refused.
        reason: String,
    },
    /// A scenario file could not be parsed or is inconsistent.
    #[error("scenario {source_name}: {message}")]
    Scenario {
        /// The file.
        source_name: String,
        /// What is wrong.
        message: String,
    },
    /// A file could not be read or written.
    #[error("{path}: {message}")]
    Io {
        /// The path.
        path: PathBuf,
        /// The OS error.
        message: String,
    },
    /// The simulator refused the experiment.
    #[error("physics: {0}")]
    Physics(#[from] spinloop::physics::PhysicsError),
    /// The calibrator refused the experiment.
    #[error("calibration model: {0}")]
    Calibrate(#[from] spinloop::calibrate::CalibrateError),
    /// A link-level failure (bad export, task failure, timeout, …).
    #[error("daemon link: {0}")]
    Link(String),
    /// The connection to the daemon failed.
    #[error("connecting to the daemon: {0}")]
    Transport(String),
    /// The daemon answered a call with an error status.
    #[error("daemon: {0:?}: {1}")]
    Status(tonic::Code, String),
}

impl HilError {
    /// An [`HilError::Invalid`].
    pub fn invalid(
        field: impl Into<String>,
        value: impl std::fmt::Display,
        reason: impl Into<String>,
    ) -> HilError {
        HilError::Invalid {
            field: field.into(),
            value: value.to_string(),
            reason: reason.into(),
        }
    }
}

impl From<tonic::Status> for HilError {
    fn from(s: tonic::Status) -> HilError {
        HilError::Status(s.code(), s.message().to_string())
    }
}

impl From<tonic::transport::Error> for HilError {
    fn from(e: tonic::transport::Error) -> HilError {
        HilError::Transport(e.to_string())
    }
}
