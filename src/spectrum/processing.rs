//! Spectral processing a physicist applies before reading a spectrum: apodization (exponential,
//! Gaussian), zero filling, zero- and first-order phase, frequency referencing, peak search,
//! window integrals, noise and SNR, and seeded complex Gaussian noise for simulations.
//!
//! Conventions: FIDs are sampled at t_m = m·dwell; spectra are `SpectrumPlan::spectrum` output
//! (s\[0\] halved, FFT, fftshift) on the axis of [`super::frequency_axis`]. Integrals are
//! normalized so that a line of FID amplitude A (s(t) = A·e^{i2πft}…) fully inside the window
//! integrates to A: ∫ = (2/M)·Σ_W Re S.

use num_complex::Complex64 as C64;

use crate::physics::PhysicsError;
use crate::physics::error::{finite, positive};

/// Multiplies by e^{−π·lb·t}: adds `lb_hz` Hz of Lorentzian full width at half maximum.
pub fn apodize_exponential(fid: &mut [C64], dwell: f64, lb_hz: f64) -> Result<(), PhysicsError> {
    positive("dwell", dwell)?;
    finite("lb_hz", lb_hz)?;
    for (m, s) in fid.iter_mut().enumerate() {
        *s *= (-std::f64::consts::PI * lb_hz * m as f64 * dwell).exp();
    }
    Ok(())
}

/// Multiplies by e^{−(π·gb·t)²/(4 ln 2)}: convolves each line with a Gaussian of `gb_hz` Hz full
/// width at half maximum.
pub fn apodize_gaussian(fid: &mut [C64], dwell: f64, gb_hz: f64) -> Result<(), PhysicsError> {
    positive("dwell", dwell)?;
    finite("gb_hz", gb_hz)?;
    let k = (std::f64::consts::PI * gb_hz).powi(2) / (4.0 * std::f64::consts::LN_2);
    for (m, s) in fid.iter_mut().enumerate() {
        let t = m as f64 * dwell;
        *s *= (-k * t * t).exp();
    }
    Ok(())
}

/// Appends zeros up to `points` samples (no-op if already that long; error if longer).
pub fn zero_fill(fid: &[C64], points: usize) -> Result<Vec<C64>, PhysicsError> {
    if points < fid.len() {
        return Err(PhysicsError::invalid(
            "zero_fill points",
            points,
            format!("shorter than the FID ({} points)", fid.len()),
        ));
    }
    let mut v = fid.to_vec();
    v.resize(points, C64::new(0.0, 0.0));
    Ok(v)
}

/// Zero- and first-order phase: S(f) ← S(f)·e^{i(φ0 + φ1·(ppm − pivot))}.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Phase {
    /// Zero-order phase (rad).
    pub zero_rad: f64,
    /// First-order phase (rad per ppm).
    pub first_rad_per_ppm: f64,
    /// Pivot of the first-order term (ppm).
    pub pivot_ppm: f64,
}

impl Phase {
    /// Applies the phase to a spectrum on the given ppm axis.
    pub fn apply(&self, spectrum: &mut [C64], ppm: &[f64]) -> Result<(), PhysicsError> {
        same_len(spectrum.len(), ppm.len())?;
        finite("zero_rad", self.zero_rad)?;
        finite("first_rad_per_ppm", self.first_rad_per_ppm)?;
        finite("pivot_ppm", self.pivot_ppm)?;
        for (s, &x) in spectrum.iter_mut().zip(ppm) {
            *s *= C64::from_polar(
                1.0,
                self.zero_rad + self.first_rad_per_ppm * (x - self.pivot_ppm),
            );
        }
        Ok(())
    }
}

/// Shifts every line by −`shift_hz` (multiplies the FID by e^{−i2π·shift·t}); use it to move a
/// reference peak found at f to its nominal frequency with shift = f − f_nominal.
pub fn shift_frequency(fid: &mut [C64], dwell: f64, shift_hz: f64) -> Result<(), PhysicsError> {
    positive("dwell", dwell)?;
    finite("shift_hz", shift_hz)?;
    for (m, s) in fid.iter_mut().enumerate() {
        *s *= C64::from_polar(
            1.0,
            -2.0 * std::f64::consts::PI * shift_hz * m as f64 * dwell,
        );
    }
    Ok(())
}

fn same_len(a: usize, b: usize) -> Result<(), PhysicsError> {
    if a != b {
        return Err(PhysicsError::SizeMismatch {
            what: "spectrum and axis".into(),
            expected: b,
            got: a,
        });
    }
    Ok(())
}

fn window(ppm: &[f64], lo: f64, hi: f64) -> Result<Vec<usize>, PhysicsError> {
    finite("window lo", lo)?;
    finite("window hi", hi)?;
    let idx = super::window_indices(ppm, lo.min(hi), lo.max(hi));
    if idx.is_empty() {
        return Err(PhysicsError::invalid(
            "window",
            format!("[{lo}, {hi}] ppm"),
            "contains no spectral point",
        ));
    }
    Ok(idx)
}

/// The ppm of the largest real (absorption) value in [lo, hi], refined by a parabola through
/// the maximum and its neighbours.
pub fn peak_ppm(spectrum: &[C64], ppm: &[f64], lo: f64, hi: f64) -> Result<f64, PhysicsError> {
    same_len(spectrum.len(), ppm.len())?;
    let idx = window(ppm, lo, hi)?;
    let mut best = idx[0];
    for &j in &idx {
        if spectrum[j].re > spectrum[best].re {
            best = j;
        }
    }
    if best == 0 || best + 1 >= spectrum.len() {
        return Ok(ppm[best]);
    }
    let (a, b, c) = (
        spectrum[best - 1].re,
        spectrum[best].re,
        spectrum[best + 1].re,
    );
    let denom = a - 2.0 * b + c;
    let delta = if denom.abs() > 0.0 {
        0.5 * (a - c) / denom
    } else {
        0.0
    };
    Ok(ppm[best] + delta.clamp(-0.5, 0.5) * (ppm[best + 1] - ppm[best]))
}

/// Normalized integral (2/M)·Σ_W Re S over [lo, hi]: a line of FID amplitude A inside the
/// window integrates to A (less its Lorentzian tails outside).
pub fn integral(spectrum: &[C64], ppm: &[f64], lo: f64, hi: f64) -> Result<f64, PhysicsError> {
    same_len(spectrum.len(), ppm.len())?;
    let idx = window(ppm, lo, hi)?;
    Ok(2.0 / spectrum.len() as f64 * idx.iter().map(|&j| spectrum[j].re).sum::<f64>())
}

/// Standard deviation of the real part in a signal-free window, after removing a straight-line
/// fit (so a sloping baseline does not count as noise).
pub fn noise_std(spectrum: &[C64], ppm: &[f64], lo: f64, hi: f64) -> Result<f64, PhysicsError> {
    same_len(spectrum.len(), ppm.len())?;
    let idx = window(ppm, lo, hi)?;
    if idx.len() < 3 {
        return Err(PhysicsError::invalid(
            "noise window",
            format!("[{lo}, {hi}] ppm"),
            "needs at least 3 points",
        ));
    }
    let n = idx.len() as f64;
    let xs: Vec<f64> = idx.iter().map(|&j| j as f64).collect();
    let ys: Vec<f64> = idx.iter().map(|&j| spectrum[j].re).collect();
    let mx = xs.iter().sum::<f64>() / n;
    let my = ys.iter().sum::<f64>() / n;
    let sxx: f64 = xs.iter().map(|x| (x - mx) * (x - mx)).sum();
    let sxy: f64 = xs.iter().zip(&ys).map(|(x, y)| (x - mx) * (y - my)).sum();
    let slope = sxy / sxx;
    let ss: f64 = xs
        .iter()
        .zip(&ys)
        .map(|(x, y)| {
            let r = y - (my + slope * (x - mx));
            r * r
        })
        .sum();
    Ok((ss / (n - 2.0)).sqrt())
}

/// SNR as FSL-MRS and most vendors report it: the largest real value in the signal window over
/// the standard deviation of the real part in the noise window.
pub fn snr(
    spectrum: &[C64],
    ppm: &[f64],
    signal: (f64, f64),
    noise: (f64, f64),
) -> Result<f64, PhysicsError> {
    let idx = window(ppm, signal.0, signal.1)?;
    let peak = idx
        .iter()
        .map(|&j| spectrum[j].re)
        .fold(f64::NEG_INFINITY, f64::max);
    let sd = noise_std(spectrum, ppm, noise.0, noise.1)?;
    if sd <= 0.0 {
        return Err(PhysicsError::Numerical(
            "noise window has zero variance".into(),
        ));
    }
    Ok(peak / sd)
}

/// A small, seeded generator of complex Gaussian noise (SplitMix64 + Box–Muller): the same seed
/// gives the same noise on every machine.
#[derive(Debug, Clone)]
pub struct NoiseSource {
    state: u64,
}

impl NoiseSource {
    /// A generator with this seed.
    pub fn new(seed: u64) -> NoiseSource {
        NoiseSource { state: seed }
    }

    fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn uniform(&mut self) -> f64 {
        // (0, 1]: never 0, so the logarithm below is finite.
        ((self.next_u64() >> 11) as f64 + 1.0) / (1u64 << 53) as f64
    }

    /// One complex sample with independent N(0, σ²) real and imaginary parts.
    pub fn sample(&mut self, sigma: f64) -> C64 {
        let r = (-2.0 * self.uniform().ln()).sqrt() * sigma;
        let th = 2.0 * std::f64::consts::PI * self.uniform();
        C64::from_polar(r, th)
    }

    /// Adds noise of standard deviation `sigma` (per real and imaginary part) to every sample.
    pub fn add_to(&mut self, fid: &mut [C64], sigma: f64) -> Result<(), PhysicsError> {
        finite("noise sigma", sigma)?;
        if sigma < 0.0 {
            return Err(PhysicsError::invalid("noise sigma", sigma, "must be >= 0"));
        }
        for s in fid.iter_mut() {
            *s += self.sample(sigma);
        }
        Ok(())
    }
}
