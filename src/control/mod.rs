//! The closed-loop session: a sans-IO state machine (no sockets, no clocks).
