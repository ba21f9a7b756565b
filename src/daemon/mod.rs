//! The daemon's shell: tonic services over the sans-IO core (`control`), the store actor,
//! configuration, systemd notification and shutdown. Everything here is I/O glue; decisions
//! live in `control`, `safety` and `store`.

pub mod pb;
