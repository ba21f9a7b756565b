//! spinloop: closed-loop, spectrum-driven RF pulse design for MR consoles.
//!
//! Layers (dependencies point one way): [`physics`] ← [`sequence`] ← [`spectrum`] / [`design`]
//! ← [`safety`]; [`store`] is the durable edge (SQLite). The daemon and the control loop arrive
//! with their issue; [`crate::bench`] holds the measurement behind `spinloop bench`.
//!
//! # Example
//! Lactate at 3 T after an ideal 90° pulse about y (Fz → Fx): four protons, so the FID starts
//! at amplitude 4.
//! ```
//! use spinloop::physics::{
//!     library, Acquisition, Block, Experiment, Field, Member, SimOptions, Simulator,
//! };
//! let mut sim = Simulator::new(
//!     vec![library::lactate()], Field::THREE_T, 3.0, vec![Member::NOMINAL], SimOptions::default(),
//! )?;
//! let exp = Experiment {
//!     blocks: vec![Block::Hard { flip: std::f64::consts::FRAC_PI_2, phase: std::f64::consts::FRAC_PI_2 }],
//!     acquisition: Acquisition { points: 1024, dwell: 2.5e-4, linewidth_hz: 2.0 },
//! };
//! let signals = sim.simulate(&exp)?;
//! let s0 = signals.fid(0, 0)[0];
//! assert!((s0.re - 4.0).abs() < 1e-12 && s0.im.abs() < 1e-12);
//! # Ok::<(), spinloop::physics::PhysicsError>(())
//! ```

pub mod bench;
pub mod calibrate;
pub mod control;
pub mod daemon;
pub mod design;
pub mod formats;
pub mod physics;
pub mod plot;
pub mod safety;
pub mod sequence;
pub mod spectrum;
pub mod store;
