//! The closed-loop session: a sans-IO state machine (no sockets, no clocks). Inputs are
//! acquisitions, operator commands and the time; outputs are waveforms to play (each through
//! the safety interlock), events and a final state.

mod profile;

pub use profile::{ConsoleProfile, MAX_SAMPLE_COUNT, check_id};
