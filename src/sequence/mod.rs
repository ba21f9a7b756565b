//! Pulse sequences as blocks, and the pulse shapes they are built from. A sequence reads like its
//! diagram and compiles to a [`crate::physics::Experiment`].

pub mod builders;
pub mod protocols;
pub mod shapes;
