//! Pulse shapes: sampled complex RF envelopes on a uniform raster, the standard families that
//! build them (hard, sinc–Hanning, Gaussian, hyperbolic-secant adiabatic), their calibration
//! (`peak_for_flip`, bandwidths) and their conversion into a physics [`Block::Pulse`].
//!
//! This module owns [`Shape`] and [`ShapeKind`]. File formats (Bruker shape files) live in
//! [`crate::formats::bruker`] and convert to and from [`Shape`].
//!
//! # Conventions (DESIGN.md "Physics conventions")
//! - A shape of `n` samples and raster `dt` (s) lasts `T = n·dt`. Sample k is the value on the
//!   piecewise-constant segment [k·dt, (k+1)·dt); its time is the segment centre, measured from
//!   the pulse centre: `t_k = (k + ½)·dt − T/2`.
//! - A sample is a complex relative amplitude: |s| ≤ 1 is the fraction of the peak B1 and
//!   arg s the RF phase (0 = x, π/2 = y). The family constructors normalise so that
//!   max |s| = 1 exactly (for an even `n` the centre of a symmetric shape falls between samples,
//!   so the samples are divided by their own maximum).
//! - With a peak B1 of `peak` Hz the controls are `ux\[k\] = peak·Re s_k`, `uy\[k\] = peak·Im s_k`
//!   (see [`Shape::to_controls`]), and the physics core applies
//!   H = H0 + b1·(ux Fx + uy Fy), U = exp(−i2π·dt·H): a constant ν1 Hz for τ s rotates by
//!   2π·ν1·τ rad.
//! - A frequency offset `f` (Hz) is the linear phase ramp s_k·e^{+i2π·f·t_k}: in the frame of a
//!   spin at offset +f Hz (H0 ∋ f·Fz) the shifted pulse is the original one on resonance, so
//!   positive offsets select positive frequencies, as in the spectrum convention.
//! - The *small-tip profile* of a shape is |Σ_k s_k e^{−i2π f t_k}·dt| as a function of f; the
//!   bandwidths of [`Shape::bandwidth_hz`] are defined on it (except for the adiabatic HS
//!   family, whose bandwidth is its frequency sweep).

use std::f64::consts::PI;

use num_complex::Complex64;

use crate::physics::error::{finite, positive};
use crate::physics::{Block, PhysicsError};

/// Largest number of samples a shape may have (a guard against absurd allocations).
pub const MAX_SAMPLES: usize = 1 << 24;

/// x at which sin(x)/x = ½ (the half-maximum point of a rectangle's small-tip profile).
const SINC_HALF_X: f64 = 1.895_494_267_033_981;

/// Relative threshold below which |Σ s·dt| / T counts as zero in [`Shape::peak_for_flip`].
const ZERO_INTEGRAL: f64 = 1e-6;

/// The family a [`Shape`] was built from, with its defining parameters. Operations that keep
/// the envelope as a function of normalised time ([`Shape::with_offset`],
/// [`Shape::with_phase`], [`Shape::resampled`]) keep the kind, so the closed-form bandwidths stay
/// available.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum ShapeKind {
    /// Rectangle.
    Hard,
    /// Sinc apodised by a Hanning window, `lobes` zero crossings on each side of the main lobe.
    SincHanning {
        /// Zero crossings on each side of the centre (the last one at the pulse edge).
        lobes: u32,
    },
    /// Truncated Gaussian with value `truncation` at the pulse edges.
    Gaussian {
        /// Relative amplitude at t = ±T/2, in (0, 1).
        truncation: f64,
    },
    /// Silver–Joseph–Hoult hyperbolic secant (adiabatic).
    HyperbolicSecant {
        /// Dimensionless sweep factor μ.
        mu: f64,
        /// Dimensionless truncation factor β (edge amplitude sech β).
        beta: f64,
    },
    /// Anything else: an optimised waveform, a shape read from a file.
    Custom,
}

/// A sampled complex RF envelope on a uniform raster (see the module docs for the
/// conventions).
#[derive(Debug, Clone, PartialEq)]
pub struct Shape {
    /// Name (free text, e.g. `sinc_hanning(lobes=3)`).
    pub name: String,
    /// Raster: duration of one piecewise-constant segment (s).
    pub dt: f64,
    /// Complex relative amplitudes, |s| ≤ 1.
    pub samples: Vec<Complex64>,
    /// The family and its parameters ([`ShapeKind::Custom`] when unknown).
    pub kind: ShapeKind,
}

/// Checks a sample count.
fn check_n(field: &str, n: usize) -> Result<usize, PhysicsError> {
    if n == 0 {
        return Err(PhysicsError::invalid(
            field,
            n,
            "a shape needs at least 1 sample",
        ));
    }
    if n > MAX_SAMPLES {
        return Err(PhysicsError::invalid(
            field,
            n,
            format!("at most {MAX_SAMPLES} samples are supported"),
        ));
    }
    Ok(n)
}

/// Segment-centre times from the pulse centre: t_k = (k + ½)·dt − T/2.
fn centre_times(n: usize, dt: f64) -> impl Iterator<Item = f64> {
    let half = 0.5 * n as f64 * dt;
    (0..n).map(move |k| (k as f64 + 0.5) * dt - half)
}

/// sech x without overflow.
fn sech(x: f64) -> f64 {
    let e = (-x.abs()).exp();
    2.0 * e / (1.0 + e * e)
}

/// ln cosh x without overflow.
fn ln_cosh(x: f64) -> f64 {
    let a = x.abs();
    a + (-2.0 * a).exp().ln_1p() - std::f64::consts::LN_2
}

impl Shape {
    /// Builds a shape from real samples, normalised so that max |s| = 1.
    fn normalised(name: String, duration: f64, values: Vec<Complex64>, kind: ShapeKind) -> Shape {
        let n = values.len();
        let max = values.iter().map(|s| s.norm()).fold(0.0, f64::max);
        let samples = if max > 0.0 {
            values.into_iter().map(|s| s / max).collect()
        } else {
            values
        };
        Shape {
            name,
            dt: duration / n as f64,
            samples,
            kind,
        }
    }

    /// Validates (duration, n) of a family constructor.
    fn check_raster(duration: f64, n: usize) -> Result<(), PhysicsError> {
        positive("duration", duration)?;
        check_n("n", n)?;
        positive("duration / n", duration / n as f64)?;
        Ok(())
    }

    /// A rectangle of `n` samples over `duration` s: every sample is 1.
    pub fn hard(duration: f64, n: usize) -> Result<Shape, PhysicsError> {
        Shape::check_raster(duration, n)?;
        Ok(Shape::normalised(
            "hard".to_string(),
            duration,
            vec![Complex64::new(1.0, 0.0); n],
            ShapeKind::Hard,
        ))
    }

    /// Sinc–Hanning of `lobes` = L zero crossings on each side of the main lobe:
    ///
    /// s(t) = sinc(2π·L·t/T) · (½ + ½·cos(2π·t/T)),  t ∈ [−T/2, T/2],  sinc x = sin x / x,
    ///
    /// sampled at the segment centres. The zero crossings are at t = m·T/(2L), m = ±1…±L, the
    /// last one at the pulse edge, so the "3-lobe sinc" of clinical sequences (main lobe plus
    /// one side lobe per side) is L = 2. The un-windowed sinc's Fourier transform is a
    /// rectangle of width 2L/T: the time–bandwidth product is TBW = 2L and
    /// [`Shape::bandwidth_hz`] is 2L/T. The Hanning window smooths the rectangle's edges
    /// symmetrically (over ~±2/T), so for L ≥ 2 the small-tip profile still falls to half its
    /// centre value at ±L/T (0.500 ± 0.006 measured for L = 2…8). For L = 1 (a windowed main
    /// lobe only) the window's transition is as wide as the band and the profile at ±1/T is
    /// 0.62 of its centre value: 2/T is then only nominal.
    pub fn sinc_hanning(duration: f64, n: usize, lobes: u32) -> Result<Shape, PhysicsError> {
        Shape::check_raster(duration, n)?;
        if lobes == 0 {
            return Err(PhysicsError::invalid("lobes", lobes, "must be >= 1"));
        }
        let l = f64::from(lobes);
        let values = centre_times(n, duration / n as f64)
            .map(|t| {
                let x = 2.0 * PI * l * t / duration;
                let sinc = if x == 0.0 { 1.0 } else { x.sin() / x };
                let window = 0.5 + 0.5 * (2.0 * PI * t / duration).cos();
                Complex64::new(sinc * window, 0.0)
            })
            .collect();
        Ok(Shape::normalised(
            format!("sinc_hanning(lobes={lobes})"),
            duration,
            values,
            ShapeKind::SincHanning { lobes },
        ))
    }

    /// Truncated Gaussian: s(t) = exp(−t²/(2σ²)) for t ∈ [−T/2, T/2], with σ chosen so that
    /// the value at the edges is `truncation` (e.g. 0.01):
    ///
    /// σ = (T/2) / √(−2·ln truncation),  truncation ∈ (0, 1).
    ///
    /// Its area (continuous, before the max-normalisation of even `n`) is
    /// σ√(2π)·erf(T/(2√2·σ)). [`Shape::bandwidth_hz`] is the FWHM of the small-tip profile of
    /// the *untruncated* Gaussian, √(2 ln 2)/(π σ).
    pub fn gaussian(duration: f64, n: usize, truncation: f64) -> Result<Shape, PhysicsError> {
        Shape::check_raster(duration, n)?;
        if !(truncation.is_finite() && truncation > 0.0 && truncation < 1.0) {
            return Err(PhysicsError::invalid(
                "truncation",
                truncation,
                "must be in (0, 1): the relative amplitude at the pulse edges",
            ));
        }
        let sigma = gaussian_sigma(duration, truncation);
        let values = centre_times(n, duration / n as f64)
            .map(|t| Complex64::new((-t * t / (2.0 * sigma * sigma)).exp(), 0.0))
            .collect();
        Ok(Shape::normalised(
            format!("gaussian(truncation={truncation})"),
            duration,
            values,
            ShapeKind::Gaussian { truncation },
        ))
    }

    /// Silver–Joseph–Hoult hyperbolic-secant adiabatic pulse. With the normalised time
    /// τ = 2t/T ∈ [−1, 1] (t from the pulse centre):
    ///
    /// - amplitude A(τ) = sech(β·τ) (edge value sech β, e.g. β = 5.3 → 0.01);
    /// - instantaneous frequency Δf(t) = −(μβ/(πT))·tanh(β·τ) Hz (i.e. Δω = −μ·β_t·tanh(β_t·t)
    ///   rad/s with β_t = 2β/T s⁻¹, the SJH form), sweeping from +μβ/(πT) down to −μβ/(πT);
    /// - phase φ(τ) = 2π∫Δf dt = −μ·ln cosh(β·τ) (zero at the centre), evaluated in closed
    ///   form at the segment centres.
    ///
    /// So s_k = A(τ_k)·e^{iφ(τ_k)} (then max-normalised). The nominal inversion bandwidth is
    /// the full sweep of the untruncated pulse, [`Shape::adiabatic_bandwidth_hz`] =
    /// 2μβ/(πT); the truncated pulse sweeps 2μβ·tanh(β)/(πT). Adiabaticity needs a peak B1
    /// well above √μ·β_t/(2π) Hz. `mu` = 0 gives a plain (non-adiabatic) sech pulse.
    pub fn hyperbolic_secant(
        duration: f64,
        n: usize,
        mu: f64,
        beta: f64,
    ) -> Result<Shape, PhysicsError> {
        Shape::check_raster(duration, n)?;
        finite("mu", mu)?;
        if mu < 0.0 {
            return Err(PhysicsError::invalid("mu", mu, "must be >= 0"));
        }
        positive("beta", beta)?;
        let values = centre_times(n, duration / n as f64)
            .map(|t| {
                let tau = 2.0 * t / duration;
                Complex64::from_polar(sech(beta * tau), -mu * ln_cosh(beta * tau))
            })
            .collect();
        Ok(Shape::normalised(
            format!("hyperbolic_secant(mu={mu}, beta={beta})"),
            duration,
            values,
            ShapeKind::HyperbolicSecant { mu, beta },
        ))
    }

    /// A shape from given samples (kind [`ShapeKind::Custom`]): `dt` > 0, 1 ≤ n ≤
    /// [`MAX_SAMPLES`], every sample finite with |s| ≤ 1 (not renormalised).
    pub fn from_samples(
        name: impl Into<String>,
        dt: f64,
        samples: Vec<Complex64>,
    ) -> Result<Shape, PhysicsError> {
        positive("dt", dt)?;
        check_n("samples.len()", samples.len())?;
        for (k, s) in samples.iter().enumerate() {
            if !(s.re.is_finite() && s.im.is_finite()) {
                return Err(PhysicsError::invalid(
                    format!("samples[{k}]"),
                    s,
                    "must be finite",
                ));
            }
            if s.norm() > 1.0 + 1e-12 {
                return Err(PhysicsError::invalid(
                    format!("samples[{k}]"),
                    s,
                    "|sample| must be <= 1 (relative amplitude)",
                ));
            }
        }
        positive("duration", dt * samples.len() as f64)?;
        Ok(Shape {
            name: name.into(),
            dt,
            samples,
            kind: ShapeKind::Custom,
        })
    }

    /// A shape from physics controls (Hz), e.g. an optimised waveform: returns the shape
    /// normalised to max |s| = 1 and its peak B1 (Hz), so that `shape.to_controls(peak)`
    /// gives back (ux, uy) to rounding.
    pub fn from_controls(
        name: impl Into<String>,
        dt: f64,
        ux: &[f64],
        uy: &[f64],
    ) -> Result<(Shape, f64), PhysicsError> {
        positive("dt", dt)?;
        if ux.len() != uy.len() {
            return Err(PhysicsError::SizeMismatch {
                what: "uy".to_string(),
                expected: ux.len(),
                got: uy.len(),
            });
        }
        check_n("ux.len()", ux.len())?;
        let mut samples = Vec::with_capacity(ux.len());
        for (k, (&x, &y)) in ux.iter().zip(uy).enumerate() {
            finite(format!("ux[{k}]"), x)?;
            finite(format!("uy[{k}]"), y)?;
            samples.push(Complex64::new(x, y));
        }
        let peak = samples.iter().map(|s| s.norm()).fold(0.0, f64::max);
        if !(peak > 0.0 && peak.is_finite()) {
            return Err(PhysicsError::invalid(
                "ux, uy",
                peak,
                "peak amplitude must be finite and > 0",
            ));
        }
        for s in &mut samples {
            *s /= peak;
        }
        Ok((
            Shape {
                name: name.into(),
                dt,
                samples,
                kind: ShapeKind::Custom,
            },
            peak,
        ))
    }

    /// Duration T = n·dt (s).
    pub fn duration(&self) -> f64 {
        self.dt * self.samples.len() as f64
    }

    /// Number of samples.
    pub fn len(&self) -> usize {
        self.samples.len()
    }

    /// Whether the shape has no samples (never true for a validated shape).
    pub fn is_empty(&self) -> bool {
        self.samples.is_empty()
    }

    /// Segment-centre times from the pulse centre, t_k = (k + ½)·dt − T/2 (s).
    pub fn times(&self) -> Vec<f64> {
        centre_times(self.samples.len(), self.dt).collect()
    }

    /// Largest |sample| (1 for the family constructors).
    pub fn max_abs(&self) -> f64 {
        self.samples.iter().map(|s| s.norm()).fold(0.0, f64::max)
    }

    /// Σ s_k·dt (complex, s). For a real amplitude-modulated shape its real part is the area;
    /// for a hard pulse it is T.
    pub fn integral(&self) -> Complex64 {
        self.samples.iter().sum::<Complex64>() * self.dt
    }

    /// Physics controls for a peak B1 of `peak_hz`: ux = peak·Re s, uy = peak·Im s (Hz).
    pub fn to_controls(&self, peak_hz: f64) -> (Vec<f64>, Vec<f64>) {
        let ux = self.samples.iter().map(|s| peak_hz * s.re).collect();
        let uy = self.samples.iter().map(|s| peak_hz * s.im).collect();
        (ux, uy)
    }

    /// The physics block `Block::Pulse { dt, ux, uy }` for a peak B1 of `peak_hz` (Hz).
    pub fn to_block(&self, peak_hz: f64) -> Block {
        let (ux, uy) = self.to_controls(peak_hz);
        Block::Pulse {
            dt: self.dt,
            ux,
            uy,
        }
    }

    /// Peak B1 (Hz) for a flip of `flip_rad`, by the linear (small-tip, vendor) definition
    ///
    /// 2π · peak · |Σ s_k·dt| = flip.
    ///
    /// On resonance this is exact for any real amplitude-modulated shape (constant phase,
    /// possibly with sign changes): every segment rotates about the same axis, so the angles
    /// add. Off resonance and for phase-modulated shapes it is the small-tip approximation.
    /// It is evaluated at zero frequency, so calibrate before [`Shape::with_offset`] (the
    /// shifted pulse has the same flip at the centre of its shifted band).
    ///
    /// Errors: `flip_rad` not finite and > 0; an adiabatic [`ShapeKind::HyperbolicSecant`]
    /// shape (its flip is not linear in B1: choose the peak from the adiabatic condition);
    /// a shape whose |Σ s·dt| is below 1e-6·T·max|s| (e.g. antisymmetric), for which the
    /// linear definition has no answer.
    pub fn peak_for_flip(&self, flip_rad: f64) -> Result<f64, PhysicsError> {
        positive("flip_rad", flip_rad)?;
        if let ShapeKind::HyperbolicSecant { .. } = self.kind {
            return Err(PhysicsError::invalid(
                format!("{}.kind", self.name),
                "HyperbolicSecant",
                "an adiabatic pulse has no linear flip angle; choose the peak B1 from the \
                 adiabatic condition",
            ));
        }
        let area = self.integral().norm();
        let scale = self.duration() * self.max_abs();
        if !(area.is_finite() && scale.is_finite() && area > ZERO_INTEGRAL * scale) {
            return Err(PhysicsError::invalid(
                format!("{}.integral", self.name),
                area,
                "|Σ s·dt| is ~0 (antisymmetric or fully phase-modulated shape): the linear \
                 flip-angle definition does not apply",
            ));
        }
        Ok(flip_rad / (2.0 * PI * area))
    }

    /// The shape shifted in frequency by `offset_hz`: s_k·e^{i2π·offset·t_k}, with t_k the
    /// segment centres measured from the pulse centre (the phase is zero at the centre). It
    /// acts on spins at offset +`offset_hz` as the original pulse acts on resonance (up to the
    /// piecewise-constant sampling of the ramp, an O((2π·offset·dt)²) effect).
    pub fn with_offset(&self, offset_hz: f64) -> Result<Shape, PhysicsError> {
        finite("offset_hz", offset_hz)?;
        let samples = self
            .samples
            .iter()
            .zip(centre_times(self.samples.len(), self.dt))
            .map(|(s, t)| s * Complex64::from_polar(1.0, 2.0 * PI * offset_hz * t))
            .collect();
        Ok(Shape {
            name: self.name.clone(),
            dt: self.dt,
            samples,
            kind: self.kind,
        })
    }

    /// The shape with every sample's phase advanced by `phase_rad` (s·e^{iφ}): φ = π/2 turns
    /// an x pulse into a y pulse.
    pub fn with_phase(&self, phase_rad: f64) -> Result<Shape, PhysicsError> {
        finite("phase_rad", phase_rad)?;
        let z = Complex64::from_polar(1.0, phase_rad);
        Ok(Shape {
            name: self.name.clone(),
            dt: self.dt,
            samples: self.samples.iter().map(|s| s * z).collect(),
            kind: self.kind,
        })
    }

    /// The shape on a new raster `dt` (e.g. the console's): n' = round(T/dt) samples (at least
    /// 1), so the new duration n'·dt differs from T by at most dt/2 — the envelope is taken as a
    /// function of normalised time u = (t + T/2)/T ∈ [0, 1] and stretched by n'·dt/T. Each new
    /// segment centre u'_j = (j + ½)/n' is linearly interpolated (real and imaginary parts
    /// separately) between the two nearest old segment centres; before the first / after the
    /// last old centre the edge sample is held (the old pulse is piecewise constant there).
    /// Samples are not renormalised: at a fixed peak B1 the waveform stays the same, and since
    /// |(1−w)a + w·b| ≤ max(|a|, |b|) the bound |s| ≤ 1 holds (the maximum may fall slightly
    /// below 1 when the old peak sample lies between new centres). Interpolating Re/Im rather
    /// than amplitude/phase lowers |s| a little where the phase turns fast between samples
    /// (by 1 − cos(Δφ/2) at most, Δφ the phase step between old samples).
    pub fn resampled(&self, dt: f64) -> Result<Shape, PhysicsError> {
        positive("dt", dt)?;
        check_n(&format!("{}.samples.len()", self.name), self.samples.len())?;
        let ratio = self.duration() / dt;
        if !(ratio.is_finite() && ratio < MAX_SAMPLES as f64 + 0.5) {
            return Err(PhysicsError::invalid(
                "dt",
                dt,
                format!("duration / dt = {ratio} would exceed {MAX_SAMPLES} samples"),
            ));
        }
        let n_new = (ratio.round() as usize).max(1);
        let n_old = self.samples.len();
        if n_new == n_old {
            // Same count: a pure change of raster, the samples are kept as they are.
            return Ok(Shape { dt, ..self.clone() });
        }
        let last = n_old - 1;
        let samples = (0..n_new)
            .map(|j| {
                let u = (j as f64 + 0.5) / n_new as f64;
                let p = u * n_old as f64 - 0.5;
                if p <= 0.0 {
                    self.samples[0]
                } else if p >= last as f64 {
                    self.samples[last]
                } else {
                    // 0 < p < last, so i + 1 <= last.
                    let i = (p.floor() as usize).min(last - 1);
                    let w = p - i as f64;
                    self.samples[i] * (1.0 - w) + self.samples[i + 1] * w
                }
            })
            .collect();
        Ok(Shape {
            name: self.name.clone(),
            dt,
            samples,
            kind: self.kind,
        })
    }

    /// Nominal bandwidth (Hz) of the family, from its closed form at the current duration T:
    ///
    /// - hard: FWHM of the small-tip profile T·|sinc(πfT)|, 2·x½/(πT) ≈ 1.2067/T
    ///   (x½ = 1.895494…, sin x/x = ½);
    /// - sinc–Hanning: 2L/T, the width of the ideal rectangular profile, at whose edges the
    ///   small-tip profile is half its centre value for L ≥ 2 (TBW = 2L; see
    ///   [`Shape::sinc_hanning`] for L = 1);
    /// - Gaussian: √(2 ln 2)/(πσ), the FWHM of the untruncated Gaussian's profile
    ///   (σ as in [`Shape::gaussian`]);
    /// - hyperbolic secant: the adiabatic inversion bandwidth 2μβ/(πT)
    ///   ([`Shape::adiabatic_bandwidth_hz`]);
    /// - custom: `None`.
    pub fn bandwidth_hz(&self) -> Option<f64> {
        let t = self.duration();
        match self.kind {
            ShapeKind::Hard => Some(2.0 * SINC_HALF_X / (PI * t)),
            ShapeKind::SincHanning { lobes } => Some(2.0 * f64::from(lobes) / t),
            ShapeKind::Gaussian { truncation } => {
                Some((2.0 * std::f64::consts::LN_2).sqrt() / (PI * gaussian_sigma(t, truncation)))
            }
            ShapeKind::HyperbolicSecant { .. } => self.adiabatic_bandwidth_hz(),
            ShapeKind::Custom => None,
        }
    }

    /// Cayley–Klein parameters (α, β) of the whole pulse for an isolated spin at `offset_hz`,
    /// with the shape played at peak B1 `peak_hz`: each segment is the rotation
    /// exp(−i2π·dt·(ux Ix + uy Iy + f Iz)), composed exactly (2×2 SU(2) products). From them,
    /// excitation from Mz gives Mxy = 2α*β and a crushed refocusing pulse keeps the spin-echo
    /// pathway with weight |β|².
    pub fn cayley_klein(&self, peak_hz: f64, offset_hz: f64) -> (Complex64, Complex64) {
        let mut a = Complex64::new(1.0, 0.0);
        let mut b = Complex64::new(0.0, 0.0);
        for s in &self.samples {
            let (bx, by, bz) = (peak_hz * s.re, peak_hz * s.im, offset_hz);
            let w = (bx * bx + by * by + bz * bz).sqrt();
            let half = PI * self.dt * w;
            let (sn, cs) = half.sin_cos();
            let (nx, ny, nz) = if w > 0.0 {
                (bx / w, by / w, bz / w)
            } else {
                (0.0, 0.0, 1.0)
            };
            let ak = Complex64::new(cs, -nz * sn);
            let bk = Complex64::new(ny * sn, -nx * sn);
            let (na, nb) = (ak * a - bk.conj() * b, bk * a + ak.conj() * b);
            a = na;
            b = nb;
        }
        (a, b)
    }

    /// Full width at half maximum (Hz) of the large-tip slice profile of this shape scaled to
    /// `flip_rad` ([`Shape::peak_for_flip`]): the excitation profile |Mxy| = |2α*β| when
    /// `refocusing` is false, the spin-echo efficiency |β|² when true. This is the bandwidth a
    /// scanner uses to set the slice gradient so that the slice it *gets* has the nominal
    /// thickness (for large flips it differs from the small-tip [`Shape::bandwidth_hz`]).
    /// Found on a 1/2000-of-range offset scan out to 20/T with linear interpolation at the
    /// half-maximum crossings on each side.
    pub fn profile_fwhm_hz(&self, flip_rad: f64, refocusing: bool) -> Result<f64, PhysicsError> {
        let peak = self.peak_for_flip(flip_rad)?;
        let response = |f: f64| {
            let (a, b) = self.cayley_klein(peak, f);
            if refocusing {
                b.norm_sqr()
            } else {
                2.0 * (a.conj() * b).norm()
            }
        };
        let centre = response(0.0);
        if !(centre.is_finite() && centre > 0.0) {
            return Err(PhysicsError::invalid(
                format!("{}.profile", self.name),
                centre,
                "the pulse has no response on resonance",
            ));
        }
        let range = 20.0 / self.duration();
        let steps = 2000;
        let half = centre / 2.0;
        let mut edges = [0.0f64; 2];
        for (side, sign) in [(0usize, 1.0f64), (1, -1.0)] {
            let mut prev = (0.0, centre);
            let mut found = None;
            for k in 1..=steps {
                let f = sign * range * k as f64 / steps as f64;
                let r = response(f);
                if r < half {
                    let w = (prev.1 - half) / (prev.1 - r);
                    found = Some(prev.0 + w * (f - prev.0));
                    break;
                }
                prev = (f, r);
            }
            edges[side] = found.ok_or_else(|| {
                PhysicsError::invalid(
                    format!("{}.profile", self.name),
                    range,
                    "the profile does not fall to half maximum within 20/T Hz",
                )
            })?;
        }
        Ok(edges[0] - edges[1])
    }

    /// Inversion bandwidth (Hz) of a hyperbolic-secant shape: the full frequency sweep of the
    /// untruncated pulse, 2μβ/(πT) (the instantaneous frequency −(μβ/(πT))·tanh(2βt/T) runs
    /// between ±μβ/(πT)); `None` for other kinds.
    pub fn adiabatic_bandwidth_hz(&self) -> Option<f64> {
        match self.kind {
            ShapeKind::HyperbolicSecant { mu, beta } => {
                Some(2.0 * mu * beta / (PI * self.duration()))
            }
            _ => None,
        }
    }
}

/// σ of a Gaussian of duration `duration` whose edge value is `truncation`.
fn gaussian_sigma(duration: f64, truncation: f64) -> f64 {
    0.5 * duration / (-2.0 * truncation.ln()).sqrt()
}
