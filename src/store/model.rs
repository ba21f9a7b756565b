//! The rows the store reads and writes.
//!
//! Times are Unix milliseconds (`i64`) taken from the system clock when the row is written.
//! JSON columns (`limits`, `spec`, `params`, `payload`) are [`serde_json::Value`]: the store
//! keeps them verbatim and does not interpret them.

use num_complex::Complex64;
use serde_json::Value;

/// What a console announces about itself (the hello message).
#[derive(Debug, Clone, PartialEq)]
pub struct ConsoleInfo {
    /// The console's stable id (non-empty).
    pub id: String,
    /// Observed nucleus, e.g. `"1H"` (non-empty).
    pub nucleus: String,
    /// Larmor frequency in Hz (finite, > 0).
    pub f0_hz: f64,
    /// The console's hard limits (peak B1, energy, duty cycle, ...) as JSON.
    pub limits: Value,
}

/// A stored console.
#[derive(Debug, Clone, PartialEq)]
pub struct Console {
    /// What the console last announced.
    pub info: ConsoleInfo,
    /// When the console was first seen (Unix ms).
    pub first_seen_ms: i64,
    /// When the console last announced itself (Unix ms).
    pub last_seen_ms: i64,
}

/// The life cycle of a session: `Open` until it ends in exactly one terminal state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SessionState {
    /// Running (or to be resumed after a restart).
    Open,
    /// Reached its goal.
    Converged,
    /// Stopped by a fault or an exhausted budget.
    Failed,
    /// Cancelled by an operator.
    Cancelled,
}

impl SessionState {
    /// The text stored in the `state` column.
    pub fn as_str(self) -> &'static str {
        match self {
            SessionState::Open => "open",
            SessionState::Converged => "converged",
            SessionState::Failed => "failed",
            SessionState::Cancelled => "cancelled",
        }
    }

    /// Parse the text stored in the `state` column.
    pub fn parse(s: &str) -> Option<SessionState> {
        match s {
            "open" => Some(SessionState::Open),
            "converged" => Some(SessionState::Converged),
            "failed" => Some(SessionState::Failed),
            "cancelled" => Some(SessionState::Cancelled),
            _ => None,
        }
    }

    /// Whether the state is final (every state but `Open`).
    pub fn is_terminal(self) -> bool {
        self != SessionState::Open
    }
}

impl std::fmt::Display for SessionState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A session to create (it starts `Open`).
#[derive(Debug, Clone, PartialEq)]
pub struct NewSession {
    /// The session id (non-empty, unique).
    pub id: String,
    /// The console it runs on (must exist).
    pub console_id: String,
    /// The operator's request (targets, objective, constraints, ensemble, budget) as JSON.
    pub spec: Value,
}

/// A stored session.
#[derive(Debug, Clone, PartialEq)]
pub struct Session {
    /// The session id.
    pub id: String,
    /// The console it runs on.
    pub console_id: String,
    /// The operator's request as JSON.
    pub spec: Value,
    /// Current state.
    pub state: SessionState,
    /// Creation time (Unix ms).
    pub created_ms: i64,
    /// Last state change (Unix ms).
    pub updated_ms: i64,
}

/// An acquisition (FID) as received from a console, before it is stored.
#[derive(Debug, Clone, PartialEq)]
pub struct NewAcquisition {
    /// The session it belongs to (must exist and run on `console_id`).
    pub session_id: String,
    /// The console that sent it (must exist).
    pub console_id: String,
    /// The console's idempotency key: a retry carries the same key (non-empty).
    pub idempotency_key: String,
    /// The id of the waveform the console played (non-empty). The store does not check that it
    /// was sent; the daemon does, with [`crate::store::Store::waveform_was_sent`].
    pub waveform_id: String,
    /// Dwell time in seconds (finite, > 0).
    pub dwell_s: f64,
    /// Larmor frequency in Hz at acquisition (finite, > 0).
    pub f0_hz: f64,
    /// Number of averages (≥ 1).
    pub averages: u32,
    /// Receive coil name (may be empty).
    pub coil: String,
    /// Declared sample count; must equal `samples.len()`.
    pub n_samples: usize,
    /// The complex samples (non-empty, every component finite). Stored bit-exact.
    pub samples: Vec<Complex64>,
}

/// A stored acquisition.
#[derive(Debug, Clone, PartialEq)]
pub struct Acquisition {
    /// The store's id for it (assigned on first insert; a retry gets the same id back).
    pub id: i64,
    /// Everything the console sent, exactly as inserted.
    pub data: NewAcquisition,
    /// When it was committed (Unix ms).
    pub received_ms: i64,
}

/// The outcome of an ingestion that committed (so the caller may acknowledge it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ingested {
    /// Newly stored under this id.
    Stored {
        /// The new acquisition id.
        id: i64,
    },
    /// Already stored (same console, same idempotency key, same content) under this id;
    /// nothing new was written.
    Duplicate {
        /// The id of the original row.
        id: i64,
    },
}

impl Ingested {
    /// The acquisition id, whether new or original.
    pub fn id(self) -> i64 {
        match self {
            Ingested::Stored { id } | Ingested::Duplicate { id } => id,
        }
    }
}

/// A waveform to store (before it is sent).
#[derive(Debug, Clone, PartialEq)]
pub struct NewWaveform {
    /// The waveform id the console will echo in its acquisitions (non-empty, unique).
    pub id: String,
    /// The session that designed it (must exist).
    pub session_id: String,
    /// Raster time in seconds (finite, > 0).
    pub dt_s: f64,
    /// RF samples (non-empty, finite). Stored bit-exact.
    pub samples: Vec<Complex64>,
    /// Whether the safety interlock approved it.
    pub approved: bool,
}

/// A stored waveform.
#[derive(Debug, Clone, PartialEq)]
pub struct Waveform {
    /// Everything inserted, exactly.
    pub data: NewWaveform,
    /// When it was stored (Unix ms).
    pub created_ms: i64,
    /// When it was marked sent (Unix ms), if it was.
    pub sent_ms: Option<i64>,
}

/// A fit result to store.
#[derive(Debug, Clone, PartialEq)]
pub struct NewFit {
    /// The session it belongs to (must exist).
    pub session_id: String,
    /// The acquisition it was fitted to, if one (must exist and belong to the session).
    pub acquisition_id: Option<i64>,
    /// Fitted parameters with uncertainties, as JSON.
    pub params: Value,
}

/// A stored fit.
#[derive(Debug, Clone, PartialEq)]
pub struct Fit {
    /// The fit id.
    pub id: i64,
    /// Everything inserted.
    pub data: NewFit,
    /// When it was stored (Unix ms).
    pub created_ms: i64,
}

/// A stored event (the session's journal; what `Watch` streams).
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    /// Strictly increasing sequence number, never reused.
    pub seq: i64,
    /// The session it concerns, if any.
    pub session_id: Option<String>,
    /// Event kind, e.g. `"fit"`, `"waveform_sent"`, `"converged"` (non-empty).
    pub kind: String,
    /// Event payload as JSON.
    pub payload: Value,
    /// When it was appended (Unix ms).
    pub at_ms: i64,
}

/// Everything one step of a closed-loop session produced, committed in one transaction: a
/// crash leaves all of it or none.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct SessionStep {
    /// The session.
    pub session_id: String,
    /// Waveforms the interlock approved, stored and marked sent (the shell sends them to
    /// the console after the commit). A waveform already stored with identical content is
    /// only marked sent again (a repeat).
    pub waveforms: Vec<NewWaveform>,
    /// Fits.
    pub fits: Vec<NewFit>,
    /// Events `(kind, payload)`, in order.
    pub events: Vec<(String, Value)>,
    /// The new checkpoint, if it changed.
    pub checkpoint: Option<Value>,
    /// The new state, if it changed.
    pub state: Option<SessionState>,
}
