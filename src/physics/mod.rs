//! The physics core: spin systems, product operators, the strong-coupling Hamiltonian,
//! exact propagation and exact adjoint gradients. It does no I/O beyond reading a spin-system
//! file on request, and knows nothing about gRPC, SQLite or serial ports.
//!
//! # Conventions (pinned; see `shared/DESIGN.md`)
//! - Frequencies in Hz (×2π for rad/s), times in seconds, shifts in ppm.
//! - Rotating frame at a carrier ppm: νi = (δi − δcarrier)·f0\[MHz\].
//! - H0 = Σ νi Izi + Σ Jij (Ixi Ixj + Iyi Iyj + Izi Izj), always the strong-coupling form.
//! - RF segment k: H = H0 + b1·(ux\[k\] Fx + uy\[k\] Fy) + Δν0·Fz, U = exp(−i·2π·dt·H).
//! - ρ0 = Fz; signal s(t) = Tr[ρ(t) F+]/2^(n−2), F+ = Fx + iFy, damped by exp(−π·lw·t):
//!   each proton contributes amplitude 1 after an ideal 90°; a positive offset appears at a
//!   positive frequency.
//! - Molecules are sums of independently simulated fragments times their weights.

pub mod engine;
pub mod error;
pub mod hamiltonian;
pub mod kernels;
pub mod library;
pub mod linalg;
pub mod operators;
pub mod propagator;
pub mod signals;
pub mod spin_system;

pub use engine::{
    Acquisition, Block, Experiment, Gradient, GradientRequest, Line, Member, SimOptions, Simulator,
    SpatialGrid,
};
pub use error::PhysicsError;
pub use signals::{SignalLoss, Signals};
pub use spin_system::{Coupling, Field, Fragment, Molecule, Nucleus, SingletGroup, Spin};
