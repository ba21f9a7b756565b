//! Calibration: the hardware model (B1 scale, B0 offset, phases, linewidth, amplitude,
//! amplifier compression) and its fit to measured spectra through the simulator.
//!
//! This module owns [`HardwareModel`] (what differs between the console and the nominal
//! simulation), [`Measurement`] (one played waveform and the FID it gave), [`Calibrator`]
//! (the forward model [`Calibrator::predict`], its linearization and exact gradient, and the
//! least-squares fit [`Calibrator::fit`] with uncertainties) and [`CalibrateError`].
//!
//! # The forward model
//! A calibration runs on a compiled design problem: its sequence with the designed pulse's
//! block replaced by the waveform that was played, its molecules, field, carrier, spatial grid
//! and concentrations c_m (all 1 when the problem gives none). For a hardware model
//! θ = (b1, Δν0, φ0, τ, Δlw, A, a_sat) and a commanded waveform u_k = ux_k + i·uy_k (Hz):
//!
//! 1. **Amplifier (AM/AM)**, on the designed pulse only (the sequence's other pulses are the
//!    vendor's calibrated ones): u'_k = u_k·g(|u_k|) with g(a) = 1/√(1 + (a/a_sat)²); |u'| grows
//!    linearly at small amplitude and saturates at a_sat (Hz, in commanded units). No
//!    compression (`None`) is g ≡ 1. No AM/PM (phase) distortion is modelled.
//! 2. **Spins**: one simulator member with B1 scale b1 (multiplying every RF pulse of the
//!    sequence, shaped, slice-selective or ideal) and B0 offset Δν0 (Hz, the whole experiment),
//!    exactly as [`crate::physics::Member`]; the designed pulse plays u'. The signal is the
//!    grid mean with the problem's nominal linewidth lw0: s_m(t) for each molecule.
//! 3. **Receiver**: x(t_k) = A·e^{−π·Δlw·t_k}·Σ_m c_m·s_m(t_k), t_k = k·dwell. Δlw is the extra
//!    Lorentzian linewidth (Hz) on top of lw0; it may be negative down to any value (a total
//!    linewidth lw0 + Δlw < 0 is unphysical but keeps the estimator unbiased near zero; it is
//!    not clamped). A scales the concentrations (receiver gain × voxel size × …).
//! 4. **Phases**, on the spectrum X = fftshift(fft(x with x₀ halved)) (the crate's
//!    [`crate::spectrum::SpectrumPlan::spectrum`]): Y(f_j) = e^{i(φ0 + 2π·f_j·τ)}·X(f_j) on the
//!    DFT axis f_j of [`crate::spectrum::frequency_axis`]. τ > 0 is a receiver that starts
//!    sampling τ late (a line A·e^{i2πft} sampled at t + τ gains e^{i2πfτ}); in the units of
//!    [`crate::spectrum::processing::Phase`] it is φ1 = 2π·τ·f0\[MHz\] rad/ppm about the
//!    carrier. The predicted FID is the inverse of that spectrum map (so for τ ≠ 0 it is the
//!    FID circularly shifted by τ on the DFT grid; for τ = 0 it is e^{iφ0}·x exactly).
//!
//! # The fit
//! Joint least squares over all measurements (shared hardware, each with its own waveform) in
//! the **frequency domain over a ppm window** (default: the problem's quantification window):
//! r = √averages·(Y − D) on the window bins, stacked real and imaginary parts, cost ½‖r‖².
//! The frequency domain is chosen because the window keeps the fit to where the metabolites
//! are (a console's residual water, baseline roll and out-of-band artefacts stay out), the
//! spectrum map is linear and (up to the halved first point) orthogonal, so white FID noise
//! stays white with variance (M − ¾)·σ² per real component, and τ acts there exactly.
//!
//! Levenberg–Marquardt with Marquardt's diagonal scaling minimizes the cost. Jacobian columns:
//! φ0 (i·Y), τ (i2πf·Y), Δlw and A (the spectra of −πt·x and x/A) are exact and analytic; b1,
//! Δν0 and a_sat are central differences of the simulated mixture with steps
//! h_b1 = 10⁻⁴·b1, h_Δν0 = 10⁻⁴ Hz, h_a_sat = 10⁻⁴·a_sat (truncation ~h²·f‴/6, below 10⁻⁸
//! relative for sequences up to ~1 s, and well above the simulator's rounding), the B1 and B0
//! pairs computed as extra members of one simulation. [`Calibrator::exact_gradient`] gives the
//! exact adjoint gradient of the cost (through [`crate::physics::Simulator::loss_and_gradient`])
//! against which Jᵀr is tested.
//!
//! # Uncertainties
//! Cov = σ²·(JᵀJ)⁻¹ over the free parameters, σ² the variance of one real spectral component:
//! from the residual, σ² = ‖r‖²/(2N − P) (N window bins over all measurements, P free
//! parameters), or from a known FID noise SD σt as (M − ¾)·σt². The inverse is taken on the
//! diagonally scaled matrix by a symmetric eigendecomposition: a parameter with a zero column,
//! or with any weight on an eigenvector whose eigenvalue is below 10⁻¹² of the largest, is
//! **not identifiable** and gets an infinite standard error (its correlations are NaN); the
//! others come from the pseudo-inverse. A nearly degenerate but not singular case (B1 from a
//! single 90° acquisition, where B1 mostly trades off with the amplitude) shows as a large
//! finite standard error and a correlation near ±1 — the session then plays probes
//! ([`probe_waveform`], [`PROBE_SCALES`]) and can predict their benefit beforehand with
//! [`Calibrator::expected_std_errors`].

mod calibrator;
mod lm;
mod model;

pub use calibrator::{Calibrator, Linearization};
pub use lm::{CalibrationFit, FitOptions, FittedParameter, FreeParameters, StdErrors};
pub use model::{
    HardwareModel, Measurement, PARAMETER_NAMES, PARAMETER_UNITS, PROBE_SCALES, Probe, compress,
    probe_waveform,
};

use crate::physics::PhysicsError;

/// Why a calibration input was refused or a fit could not run.
#[derive(Debug, thiserror::Error)]
pub enum CalibrateError {
    /// No measurements were given.
    #[error("calibration data is empty: need at least one measurement")]
    EmptyData,
    /// A sample is NaN or infinite.
    #[error("{field}[{index}] is not finite ({value})")]
    NonFinite {
        /// The field, e.g. `data[1].fid`.
        field: String,
        /// Index of the sample.
        index: usize,
        /// The value (as text).
        value: String,
    },
    /// A length differs from what the problem needs.
    #[error("{field} has length {got}, expected {expected}")]
    Length {
        /// The field.
        field: String,
        /// Expected length.
        expected: usize,
        /// Given length.
        got: usize,
    },
    /// A value is out of range or inconsistent with the problem.
    #[error("{field} = {value}: {reason}")]
    Invalid {
        /// The field.
        field: String,
        /// The value (as text).
        value: String,
        /// Why it was refused.
        reason: String,
    },
    /// The simulator refused the experiment.
    #[error("simulation: {0}")]
    Physics(#[from] PhysicsError),
}

impl CalibrateError {
    pub(crate) fn invalid(
        field: impl Into<String>,
        value: impl std::fmt::Display,
        reason: impl Into<String>,
    ) -> CalibrateError {
        CalibrateError::Invalid {
            field: field.into(),
            value: value.to_string(),
            reason: reason.into(),
        }
    }
}
