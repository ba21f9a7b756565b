//! Pulse design: spectral objectives on the simulator's signals, waveform parameterizations
//! under hardware limits, optimizers and product-operator analysis.

pub mod constraints;
pub mod golden;
pub mod objectives;
pub mod optimize;
pub mod outputs;
pub mod parameterization;
pub mod problem;
pub mod product_operators;
pub mod quantification;
