//! The reference problem `glu_gln_3t` of `shared/reference/golden_glu_gln_3t.json`: one shaped
//! pulse (512 × 20 µs) drives glutamate and glutamine at 123.2 MHz; the loss rewards Glu
//! absorption and penalizes Gln power in 2.25–2.50 ppm of the spectrum of a 1024-point FID
//! (0.5 ms dwell, 4 Hz lines). The `b1` variant averages it over B1 scales 0.80, 0.84, …, 1.20.

use crate::design::objectives::{Term, TermKind, WindowLoss};
use crate::physics::{
    Acquisition, Block, Experiment, Field, Member, PhysicsError, SimOptions, Simulator, library,
};

/// Number of pulse segments.
pub const SEGMENTS: usize = 512;
/// Segment duration (s).
pub const DT: f64 = 20e-6;
/// Carrier (ppm).
pub const CARRIER_PPM: f64 = 3.0;
/// B1 scales of the ensemble variant.
pub const B1_SCALES: [f64; 11] = [
    0.8, 0.84, 0.88, 0.92, 0.96, 1.0, 1.04, 1.08, 1.12, 1.16, 1.2,
];

/// Which variant of the golden problem.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Variant {
    /// Nominal hardware only (2 simulations).
    Single,
    /// Mean over the 11 B1 scales (22 simulations).
    B1,
}

/// The test pulse: s = (k+0.5)/N, ux = 250 sin(πs) cos(6πs), uy = 250 sin(πs) sin(6πs) + 40 s.
pub fn test_pulse() -> (Vec<f64>, Vec<f64>) {
    let pi = std::f64::consts::PI;
    (0..SEGMENTS)
        .map(|k| {
            let s = (k as f64 + 0.5) / SEGMENTS as f64;
            (
                250.0 * (pi * s).sin() * (6.0 * pi * s).cos(),
                250.0 * (pi * s).sin() * (6.0 * pi * s).sin() + 40.0 * s,
            )
        })
        .unzip()
}

/// The experiment with the given controls.
pub fn experiment(ux: Vec<f64>, uy: Vec<f64>) -> Experiment {
    Experiment {
        blocks: vec![Block::Pulse { dt: DT, ux, uy }],
        acquisition: Acquisition {
            points: 1024,
            dwell: 0.5e-3,
            linewidth_hz: 4.0,
        },
    }
}

/// Ensemble members of a variant.
pub fn members(variant: Variant) -> Vec<Member> {
    match variant {
        Variant::Single => vec![Member::NOMINAL],
        Variant::B1 => B1_SCALES
            .iter()
            .map(|&b1| Member { b1, b0_hz: 0.0 })
            .collect(),
    }
}

/// Simulator for Glu and Gln (in that order) at 123.2 MHz, carrier 3.0 ppm.
pub fn simulator(variant: Variant, options: SimOptions) -> Result<Simulator, PhysicsError> {
    Simulator::new(
        vec![library::glutamate(), library::glutamine()],
        Field::THREE_T,
        CARRIER_PPM,
        members(variant),
        options,
    )
}

/// The loss L = −Σ_W Re S_glu + Σ_W |S_gln|²/1000 over 2.25–2.50 ppm (mean over members).
pub fn loss() -> Result<WindowLoss, PhysicsError> {
    WindowLoss::new(
        1024,
        0.5e-3,
        CARRIER_PPM,
        Field::THREE_T.f0_mhz,
        (2.25, 2.5),
        vec![
            Term {
                molecule: 0,
                kind: TermKind::RealSum,
                weight: -1.0,
            },
            Term {
                molecule: 1,
                kind: TermKind::Power,
                weight: 1.0 / 1000.0,
            },
        ],
    )
}
