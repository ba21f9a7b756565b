//! FID → spectrum: first-point halving, FFT, fftshift, the frequency and ppm axes, the exact
//! backward map of a spectral gradient to an FID gradient, and (in [`processing`]) apodization,
//! zero filling, phasing, referencing, integrals, noise and SNR.
//!
//! Conventions (DESIGN.md): s\[0\] is halved, S = fftshift(fft(s)) with numpy's sign and no
//! normalisation; f = fftshift(fftfreq(M, dwell)); ppm = carrier + f/f0\[MHz\].

pub mod basis;
pub mod compare;
pub mod fit;
pub mod io;
pub mod processing;

use std::sync::Arc;

use num_complex::Complex64 as C64;
use rustfft::{Fft, FftPlanner};

use crate::physics::PhysicsError;

/// A reusable FFT plan for FIDs of one length.
#[derive(Clone)]
pub struct SpectrumPlan {
    points: usize,
    forward: Arc<dyn Fft<f64>>,
    inverse: Arc<dyn Fft<f64>>,
}

impl std::fmt::Debug for SpectrumPlan {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SpectrumPlan")
            .field("points", &self.points)
            .finish()
    }
}

impl SpectrumPlan {
    /// Plans FFTs of `points` samples.
    pub fn new(points: usize) -> Result<SpectrumPlan, PhysicsError> {
        if points == 0 {
            return Err(PhysicsError::invalid("points", 0, "must be >= 1"));
        }
        let mut planner = FftPlanner::new();
        Ok(SpectrumPlan {
            points,
            forward: planner.plan_fft_forward(points),
            inverse: planner.plan_fft_inverse(points),
        })
    }

    /// Number of points.
    pub fn points(&self) -> usize {
        self.points
    }

    /// Spectrum of `fid` (length `points`): s\[0\] halved, FFT, fftshift.
    pub fn spectrum(&self, fid: &[C64]) -> Result<Vec<C64>, PhysicsError> {
        self.check(fid.len())?;
        let mut buf = fid.to_vec();
        buf[0] *= 0.5;
        self.forward.process(&mut buf);
        Ok(fftshift(&buf))
    }

    /// Adjoint of [`SpectrumPlan::spectrum`]: given G = ∂L/∂Re S + i∂L/∂Im S on the shifted
    /// spectrum, returns g = ∂L/∂Re s + i∂L/∂Im s on the FID.
    pub fn spectrum_adjoint(&self, grad_spectrum: &[C64]) -> Result<Vec<C64>, PhysicsError> {
        self.check(grad_spectrum.len())?;
        // Undo the shift, then g'_m = Σ_k G_k e^{+2πikm/M} (unnormalised inverse FFT).
        let mut buf = ifftshift(grad_spectrum);
        self.inverse.process(&mut buf);
        buf[0] *= 0.5;
        Ok(buf)
    }

    fn check(&self, n: usize) -> Result<(), PhysicsError> {
        if n != self.points {
            return Err(PhysicsError::SizeMismatch {
                what: "FID length".into(),
                expected: self.points,
                got: n,
            });
        }
        Ok(())
    }
}

/// numpy's fftshift: out\[j\] = x\[(j − M/2) mod M] (M/2 rounded down).
pub fn fftshift(x: &[C64]) -> Vec<C64> {
    let m = x.len();
    let h = m / 2;
    (0..m).map(|j| x[(j + m - h) % m]).collect()
}

/// Inverse of [`fftshift`].
pub fn ifftshift(x: &[C64]) -> Vec<C64> {
    let m = x.len();
    let h = m / 2;
    (0..m).map(|j| x[(j + h) % m]).collect()
}

/// Frequency axis (Hz) after fftshift: f_j = (j − ⌊M/2⌋)/(M·dwell).
pub fn frequency_axis(points: usize, dwell: f64) -> Vec<f64> {
    let h = (points / 2) as f64;
    (0..points)
        .map(|j| (j as f64 - h) / (points as f64 * dwell))
        .collect()
}

/// ppm axis: carrier + f/f0.
pub fn ppm_axis(points: usize, dwell: f64, carrier_ppm: f64, f0_mhz: f64) -> Vec<f64> {
    frequency_axis(points, dwell)
        .into_iter()
        .map(|f| carrier_ppm + f / f0_mhz)
        .collect()
}

/// Indices of the shifted spectrum whose ppm lies in [lo, hi] (inclusive).
pub fn window_indices(ppm: &[f64], lo: f64, hi: f64) -> Vec<usize> {
    (0..ppm.len())
        .filter(|&j| ppm[j] >= lo && ppm[j] <= hi)
        .collect()
}
