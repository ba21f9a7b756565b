//! The durable store (embedded SQLite).
