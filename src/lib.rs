//! spinloop: closed-loop, spectrum-driven RF pulse design for MR consoles.
//!
//! Layers (dependencies point one way): [`physics`] ← [`spectrum`] / [`design`].
//! The daemon, store, safety interlock and control loop arrive with their issues.

pub mod bench;
pub mod design;
pub mod physics;
pub mod spectrum;
