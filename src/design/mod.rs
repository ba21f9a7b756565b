//! Pulse design: spectral objectives on the simulator's signals (and, with later issues,
//! constraints, optimizers and product-operator analysis).

pub mod golden;
pub mod objectives;
pub mod optimize;
pub mod product_operators;
