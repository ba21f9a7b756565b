//! The closed-loop session: a sans-IO state machine (no sockets, no clocks). Inputs are
//! acquisitions, operator commands and the time; outputs are waveforms to play (each through
//! the safety interlock), events, fit records, checkpoints and a final outcome.
//!
//! - `profile.rs` — what a console declared ([`ConsoleProfile`]), id rules.
//! - `spec.rs` — what an operator asked ([`SessionSpec`]) and its compilation, against a
//!   console, into the design problem.
//! - `model.rs` — the physics a session runs ([`LoopModel`]: design, objective, joint fit).
//! - `session.rs` — the state machine ([`Session`]).
//! - `sim_console.rs` — a console with hidden hardware truth ([`SimConsole`]) for HIL runs.

mod model;
mod profile;
mod session;
mod sim_console;
mod spec;

pub use model::{Design, FitOutcome, HardwareEstimate, LoopModel, ProbeChoice};
pub use profile::{ConsoleProfile, MAX_SAMPLE_COUNT, check_id};
pub use session::{
    ACQUISITION_TIMEOUT_S, AcquisitionInput, CancelToken, Checkpoint, ControlError, MAX_PROBES,
    MAX_SENDS, Outcome, Outgoing, Output, Phase, SentWaveform, Session,
};
pub use sim_console::SimConsole;
pub use spec::{
    Budget, ConstraintSpec, Convergence, EnsembleSpec, ObjectivePart, PulseSpec, SequenceSpec,
    SessionSpec,
};
