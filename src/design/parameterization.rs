//! Waveform parameterizations with a hard peak-B1 limit.
//!
//! This module owns the map θ ↦ (ux, uy) from unconstrained optimizer parameters θ to a
//! piecewise-constant RF waveform (Hz, γB1/2π, rotating-frame x and y), its exact adjoint
//! ([`Parameterization::pullback`]: ∂L/∂θ from ∂L/∂ux, ∂L/∂uy), its inverse for warm starts
//! ([`Parameterization::from_waveform`]) and reproducible random starts
//! ([`Parameterization::random`]).
//!
//! The peak limit is enforced by reparameterization, not by a penalty: every θ (of any
//! magnitude) maps to a waveform with |u_k| < P on every segment, so every optimizer iterate
//! is feasible by construction. The map is u_k = κ·P·s(p_k), with the radial squash
//! s(p) = tanh(|p|)/|p|·p (s(0) = 0, smooth at 0) and the margin κ = [`PEAK_MARGIN`]
//! = 1 − 2⁻⁴⁰: tanh rounds to exactly 1 for |p| ≳ 19, and the margin keeps the rounded |u|
//! strictly below P.
//!
//! Segments `0..fixed_edges` and `segments − fixed_edges..segments` are exactly zero; the
//! remaining F = segments − 2·fixed_edges "free" segments are parameterized.

use std::f64::consts::PI;
use std::ops::Range;

use serde::Deserialize;

use crate::physics::PhysicsError;
use crate::physics::error::positive;

/// κ: the waveform is u = κ·P·s(p) with κ = 1 − 2⁻⁴⁰ (a relative margin of 9.1e-13), so
/// that rounding can never put |u| at or above the peak P, even where tanh(|p|) rounds to 1.
pub const PEAK_MARGIN: f64 = 1.0 - 1.0 / 1_099_511_627_776.0;

/// The shape family of a [`Parameterization`]. In TOML: `kind = { type = "cartesian" }`,
/// `kind = { type = "amplitude_phase" }` or `kind = { type = "sine_basis", terms = 12 }`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(try_from = "KindSpec")]
pub enum ParamKind {
    /// Free piecewise-constant (x, y): 2 parameters per free segment, θ = [p_x0, p_y0, p_x1,
    /// p_y1, …]; u_k = κ·P·s(p_k) with the radial squash s(p) = tanh(|p|)/|p|·p.
    Cartesian,
    /// Free piecewise-constant (amplitude, phase): θ = [a_0, φ_0, a_1, φ_1, …] per free segment;
    /// A_k = κ·P·tanh(a_k) (signed amplitude), φ_k free (rad); u_k = A_k·(cos φ_k, sin φ_k).
    AmplitudePhase,
    /// Smooth: θ = [c_1, d_1, c_2, d_2, …, c_terms, d_terms];
    /// v_k = Σ_{j=1..=terms} (c_j, d_j)·sin(jπ t_k/T), with t_k the segment midpoints measured
    /// from the start of the free window and T = F·dt its duration; u_k = κ·P·s(v_k) as for
    /// [`ParamKind::Cartesian`]. Band-limited by construction and tending to zero at both edges
    /// of the free window. `terms` must be between 1 and F (the sampled sines j = 1..=F are the
    /// orthogonal DST-II basis; higher j alias).
    SineBasis {
        /// Number of sine terms per channel.
        terms: usize,
    },
}

/// The TOML/JSON form of a [`ParamKind`] (serde's internally tagged enums ignore unknown
/// fields of unit variants, so the kind is read through this strict record).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct KindSpec {
    #[serde(rename = "type")]
    tag: KindTag,
    #[serde(default)]
    terms: Option<usize>,
}

#[derive(Deserialize)]
#[serde(rename_all = "snake_case")]
enum KindTag {
    Cartesian,
    AmplitudePhase,
    SineBasis,
}

impl TryFrom<KindSpec> for ParamKind {
    type Error = String;

    fn try_from(spec: KindSpec) -> Result<Self, Self::Error> {
        match (spec.tag, spec.terms) {
            (KindTag::Cartesian, None) => Ok(ParamKind::Cartesian),
            (KindTag::AmplitudePhase, None) => Ok(ParamKind::AmplitudePhase),
            (KindTag::SineBasis, Some(terms)) => Ok(ParamKind::SineBasis { terms }),
            (KindTag::SineBasis, None) => Err("kind \"sine_basis\" needs `terms`".into()),
            (_, Some(_)) => Err("`terms` applies only to kind \"sine_basis\"".into()),
        }
    }
}

/// A peak-limited waveform parameterization: `segments` piecewise-constant segments of
/// duration `dt`, peak `peak_hz`, shape family `kind`, and `fixed_edges` zero segments at each
/// end.
///
/// Fields are public plain data (a problem file holds them); [`Parameterization::new`]
/// validates, and every fallible method re-validates (O(1)), so a struct built or mutated
/// directly cannot produce an out-of-limit waveform.
#[derive(Debug, Clone, Copy, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Parameterization {
    /// Number of piecewise-constant segments (≥ 1).
    pub segments: usize,
    /// Segment duration (s, finite, > 0).
    pub dt: f64,
    /// Peak B1 P (Hz, finite, > 0): every waveform satisfies |u_k| < P.
    pub peak_hz: f64,
    /// Shape family.
    pub kind: ParamKind,
    /// The first and last `fixed_edges` segments are exactly zero (2·fixed_edges < segments).
    #[serde(default)]
    pub fixed_edges: usize,
}

/// f(r) = tanh(r)/r and g(r) = f′(r)/r, so that s(p) = f(|p|)·p and
/// ∂s/∂p = f·I + g·p·pᵀ.
#[inline]
fn radial(r: f64) -> (f64, f64) {
    if r < 1e-3 {
        // Taylor series: tanh r = r − r³/3 + 2r⁵/15 − 17r⁷/315 + …; next terms are O(r⁸).
        let r2 = r * r;
        let f = 1.0 - r2 / 3.0 + 2.0 * r2 * r2 / 15.0 - 17.0 * r2 * r2 * r2 / 315.0;
        let g = -2.0 / 3.0 + 8.0 * r2 / 15.0 - 34.0 * r2 * r2 / 105.0;
        (f, g)
    } else {
        let t = r.tanh();
        let sech = 1.0 / r.cosh(); // cosh overflows to ∞ for r > 710: sech = 0, exact enough
        let f = t / r;
        // g = (r·sech² − tanh r)/r³ = (sech² − f)/r², divided in two steps to avoid overflow.
        let g = ((sech * sech - f) / r) / r;
        (f, g)
    }
}

/// 2⁻⁶⁰⁰ (exact): the factor pre-squash vectors are scaled by when their norm overflows.
const OVERFLOW_SCALE: f64 = 2.409919865102884e-181; // 2^-600

/// A pre-squash vector whose norm is finite, and the factor it was scaled by: (v, 1) when |v|
/// is finite, else `recompute(2⁻⁶⁰⁰)` (v computed from parameters scaled by 2⁻⁶⁰⁰, so that
/// sums of huge finite parameters do not overflow). The squash saturates either way; scaling
/// keeps the direction, so |u| stays below the peak and no sample is NaN.
#[inline]
fn finite_vector(v: (f64, f64), recompute: impl Fn(f64) -> (f64, f64)) -> (f64, f64, f64) {
    if v.0.hypot(v.1).is_finite() {
        (v.0, v.1, 1.0)
    } else {
        let w = recompute(OVERFLOW_SCALE);
        (w.0, w.1, OVERFLOW_SCALE)
    }
}

/// The largest f64 below 1 (1 − 2⁻⁵³): |w| is clamped to it before atanh, so that samples
/// with κP ≤ |u| < P (where tanh saturates) map to the finite atanh(1 − 2⁻⁵³) ≈ 18.7.
const BELOW_ONE: f64 = 1.0 - 1.0 / 9_007_199_254_740_992.0;

/// atanh(min(m, 1 − 2⁻⁵³)) for m ≥ 0.
#[inline]
fn saturated_atanh(m: f64) -> f64 {
    m.min(BELOW_ONE).atanh()
}

/// Inverse of the radial squash on w = u/(κP): p = atanh(|w|)/|w|·w (|w| clamped below 1).
#[inline]
fn unsquash(wx: f64, wy: f64) -> (f64, f64) {
    let m = wx.hypot(wy);
    if m == 0.0 {
        (0.0, 0.0)
    } else {
        let k = saturated_atanh(m) / m;
        (k * wx, k * wy)
    }
}

/// Calls `each(j, sin(jx))` for j = 0..terms (index j is term j + 1), by rotation
/// (error grows linearly in j, with one `sin_cos` per call).
#[inline]
fn for_each_sine(x: f64, terms: usize, mut each: impl FnMut(usize, f64)) {
    let (s1, c1) = x.sin_cos();
    let (mut s, mut c) = (s1, c1);
    for j in 0..terms {
        each(j, s);
        let sn = s * c1 + c * s1;
        c = c * c1 - s * s1;
        s = sn;
    }
}

impl Parameterization {
    /// Builds and validates a parameterization: `segments` ≥ 1, `dt` and `peak_hz` finite
    /// and positive, 2·`fixed_edges` < `segments`, and for [`ParamKind::SineBasis`]
    /// 1 ≤ `terms` ≤ F = segments − 2·fixed_edges.
    pub fn new(
        segments: usize,
        dt: f64,
        peak_hz: f64,
        kind: ParamKind,
        fixed_edges: usize,
    ) -> Result<Self, PhysicsError> {
        let p = Parameterization {
            segments,
            dt,
            peak_hz,
            kind,
            fixed_edges,
        };
        p.validate()?;
        Ok(p)
    }

    /// Checks the invariants listed at [`Parameterization::new`].
    pub fn validate(&self) -> Result<(), PhysicsError> {
        if self.segments == 0 {
            return Err(PhysicsError::invalid(
                "parameterization.segments",
                0,
                "must be ≥ 1",
            ));
        }
        positive("parameterization.dt", self.dt)?;
        positive("parameterization.peak_hz", self.peak_hz)?;
        if self
            .fixed_edges
            .checked_mul(2)
            .is_none_or(|e| e >= self.segments)
        {
            return Err(PhysicsError::invalid(
                "parameterization.fixed_edges",
                self.fixed_edges,
                format!(
                    "2·fixed_edges must be < segments = {} (at least one free segment)",
                    self.segments
                ),
            ));
        }
        if let ParamKind::SineBasis { terms } = self.kind {
            let free = self.free_segments();
            if terms == 0 || terms > free {
                return Err(PhysicsError::invalid(
                    "parameterization.kind.terms",
                    terms,
                    format!("must be between 1 and the number of free segments {free}"),
                ));
            }
        }
        Ok(())
    }

    /// Number of parameters: 2·F for Cartesian and AmplitudePhase, 2·terms for SineBasis.
    pub fn len(&self) -> usize {
        match self.kind {
            ParamKind::Cartesian | ParamKind::AmplitudePhase => 2 * self.free_segments(),
            ParamKind::SineBasis { terms } => 2 * terms,
        }
    }

    /// True when there are no parameters (never for a validated parameterization).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Pulse duration T_pulse = segments·dt (s), fixed edges included.
    pub fn duration(&self) -> f64 {
        self.segments as f64 * self.dt
    }

    /// Number of free (non-fixed) segments F = segments − 2·fixed_edges.
    pub fn free_segments(&self) -> usize {
        self.segments
            .saturating_sub(self.fixed_edges.saturating_mul(2))
    }

    /// Indices of the free segments.
    pub fn free_range(&self) -> Range<usize> {
        self.fixed_edges..self.fixed_edges + self.free_segments()
    }

    /// The largest |u| the parameterization approaches: κ·P (strictly never reached).
    pub fn reachable_peak(&self) -> f64 {
        PEAK_MARGIN * self.peak_hz
    }

    fn check_theta(&self, theta: &[f64]) -> Result<(), PhysicsError> {
        self.validate()?;
        if theta.len() != self.len() {
            return Err(PhysicsError::SizeMismatch {
                what: "parameter vector theta".into(),
                expected: self.len(),
                got: theta.len(),
            });
        }
        if let Some(i) = theta.iter().position(|t| !t.is_finite()) {
            return Err(PhysicsError::invalid(
                format!("theta[{i}]"),
                theta[i],
                "parameters must be finite",
            ));
        }
        Ok(())
    }

    fn check_len(&self, what: &str, got: usize) -> Result<(), PhysicsError> {
        if got != self.segments {
            return Err(PhysicsError::SizeMismatch {
                what: what.into(),
                expected: self.segments,
                got,
            });
        }
        Ok(())
    }

    /// The waveform (ux, uy) in Hz of parameters θ (length [`Parameterization::len`]).
    /// Every θ gives |u_k| < P on every segment and exactly zero fixed edges.
    pub fn waveform(&self, theta: &[f64]) -> Result<(Vec<f64>, Vec<f64>), PhysicsError> {
        let mut ux = vec![0.0; self.segments];
        let mut uy = vec![0.0; self.segments];
        self.waveform_into(theta, &mut ux, &mut uy)?;
        Ok((ux, uy))
    }

    /// [`Parameterization::waveform`] into caller buffers of length `segments` (overwritten;
    /// no allocation).
    pub fn waveform_into(
        &self,
        theta: &[f64],
        ux: &mut [f64],
        uy: &mut [f64],
    ) -> Result<(), PhysicsError> {
        self.check_theta(theta)?;
        self.check_len("ux", ux.len())?;
        self.check_len("uy", uy.len())?;
        ux.fill(0.0);
        uy.fill(0.0);
        let scale = self.reachable_peak();
        let free = self.free_range();
        let (ux, uy) = (&mut ux[free.clone()], &mut uy[free]);
        match self.kind {
            ParamKind::Cartesian => {
                for ((p, x), y) in theta.chunks_exact(2).zip(ux.iter_mut()).zip(uy.iter_mut()) {
                    let (px, py, _) = finite_vector((p[0], p[1]), |k| (k * p[0], k * p[1]));
                    let (f, _) = radial(px.hypot(py));
                    *x = scale * f * px;
                    *y = scale * f * py;
                }
            }
            ParamKind::AmplitudePhase => {
                for ((p, x), y) in theta.chunks_exact(2).zip(ux.iter_mut()).zip(uy.iter_mut()) {
                    let a = scale * p[0].tanh();
                    let (s, c) = p[1].sin_cos();
                    *x = a * c;
                    *y = a * s;
                }
            }
            ParamKind::SineBasis { terms } => {
                let nf = ux.len() as f64;
                for (i, (x, y)) in ux.iter_mut().zip(uy.iter_mut()).enumerate() {
                    let angle = (i as f64 + 0.5) * PI / nf;
                    let (vx, vy, _) =
                        finite_vector(self.sine_values(theta, terms, angle, 1.0), |k| {
                            self.sine_values(theta, terms, angle, k)
                        });
                    let (f, _) = radial(vx.hypot(vy));
                    *x = scale * f * vx;
                    *y = scale * f * vy;
                }
            }
        }
        Ok(())
    }

    /// Pre-squash values v = Σ_j (k·c_j, k·d_j)·sin(j·x).
    #[inline]
    fn sine_values(&self, theta: &[f64], terms: usize, x: f64, k: f64) -> (f64, f64) {
        let (mut vx, mut vy) = (0.0, 0.0);
        for_each_sine(x, terms, |j, s| {
            vx += k * theta[2 * j] * s;
            vy += k * theta[2 * j + 1] * s;
        });
        (vx, vy)
    }

    /// Exact chain rule: ∂L/∂θ given ∂L/∂ux and ∂L/∂uy (each of length `segments`; the
    /// entries on fixed edges are ignored since those samples do not depend on θ).
    pub fn pullback(
        &self,
        theta: &[f64],
        grad_ux: &[f64],
        grad_uy: &[f64],
    ) -> Result<Vec<f64>, PhysicsError> {
        let mut out = vec![0.0; self.len()];
        self.pullback_into(theta, grad_ux, grad_uy, &mut out)?;
        Ok(out)
    }

    /// [`Parameterization::pullback`] into a caller buffer of length
    /// [`Parameterization::len`] (overwritten; no allocation).
    pub fn pullback_into(
        &self,
        theta: &[f64],
        grad_ux: &[f64],
        grad_uy: &[f64],
        out: &mut [f64],
    ) -> Result<(), PhysicsError> {
        self.check_theta(theta)?;
        self.check_len("grad_ux", grad_ux.len())?;
        self.check_len("grad_uy", grad_uy.len())?;
        if out.len() != self.len() {
            return Err(PhysicsError::SizeMismatch {
                what: "pullback output".into(),
                expected: self.len(),
                got: out.len(),
            });
        }
        let scale = self.reachable_peak();
        let free = self.free_range();
        let (gx, gy) = (&grad_ux[free.clone()], &grad_uy[free]);
        // ∂u/∂p = κP·(f·I + g·p·pᵀ), symmetric: the pullback of (gx, gy) is
        // κP·(f·(gx, gy) + g·(p·(gx, gy))·p).
        let squash_adjoint = |px: f64, py: f64, gx: f64, gy: f64| {
            let (f, g) = radial(px.hypot(py));
            let c = g * (px * gx + py * gy);
            (scale * (f * gx + c * px), scale * (f * gy + c * py))
        };
        match self.kind {
            ParamKind::Cartesian => {
                for (((p, o), &gx), &gy) in theta
                    .chunks_exact(2)
                    .zip(out.chunks_exact_mut(2))
                    .zip(gx)
                    .zip(gy)
                {
                    let (px, py, k) = finite_vector((p[0], p[1]), |k| (k * p[0], k * p[1]));
                    let (ox, oy) = squash_adjoint(px, py, gx, gy);
                    o[0] = k * ox;
                    o[1] = k * oy;
                }
            }
            ParamKind::AmplitudePhase => {
                for (((p, o), &gx), &gy) in theta
                    .chunks_exact(2)
                    .zip(out.chunks_exact_mut(2))
                    .zip(gx)
                    .zip(gy)
                {
                    let t = p[0].tanh();
                    let sech = 1.0 / p[0].cosh();
                    let (s, c) = p[1].sin_cos();
                    o[0] = scale * sech * sech * (gx * c + gy * s);
                    o[1] = scale * t * (gy * c - gx * s);
                }
            }
            ParamKind::SineBasis { terms } => {
                out.fill(0.0);
                let nf = gx.len() as f64;
                for (i, (&gx, &gy)) in gx.iter().zip(gy).enumerate() {
                    let x = (i as f64 + 0.5) * PI / nf;
                    let (vx, vy, k) = finite_vector(self.sine_values(theta, terms, x, 1.0), |k| {
                        self.sine_values(theta, terms, x, k)
                    });
                    let (bx, by) = squash_adjoint(vx, vy, gx, gy);
                    for_each_sine(x, terms, |j, s| {
                        out[2 * j] += k * bx * s;
                        out[2 * j + 1] += k * by * s;
                    });
                }
            }
        }
        Ok(())
    }

    /// Warm start: parameters reproducing a given waveform.
    ///
    /// - Cartesian and AmplitudePhase: the exact inverse (AmplitudePhase returns a_k ≥ 0 and
    ///   φ_k = atan2(uy, ux) ∈ (−π, π], φ_k = 0 where u_k = 0).
    /// - SineBasis: a **projection**, not an inverse: the pre-squash values v_k = s⁻¹(u_k/κP)
    ///   are projected by least squares onto the sampled sine basis (which is orthogonal, so
    ///   this is exact in O(F·terms)); a waveform outside the span is only approximated.
    ///
    /// Samples with κ·P ≤ |u_k| < P (the last 9.1e-13 relative below the peak, where tanh
    /// saturates in floating point) map to the saturated parameter atanh(1 − 2⁻⁵³) ≈ 18.7 in
    /// their direction, reproduced to within 1e-12·P; so any waveform this parameterization
    /// produces is accepted.
    ///
    /// Errors: sizes, non-finite samples, fixed-edge samples with |u| > 1e-12·P, and any free
    /// segment with |u_k| ≥ P (not reachable; the message names the segment and the peak).
    pub fn from_waveform(&self, ux: &[f64], uy: &[f64]) -> Result<Vec<f64>, PhysicsError> {
        self.validate()?;
        self.check_len("ux", ux.len())?;
        self.check_len("uy", uy.len())?;
        for (k, (&x, &y)) in ux.iter().zip(uy).enumerate() {
            if !x.is_finite() {
                return Err(PhysicsError::invalid(
                    format!("ux[{k}]"),
                    x,
                    "must be finite",
                ));
            }
            if !y.is_finite() {
                return Err(PhysicsError::invalid(
                    format!("uy[{k}]"),
                    y,
                    "must be finite",
                ));
            }
        }
        let free = self.free_range();
        let edge_tol = 1e-12 * self.peak_hz;
        for k in (0..self.segments).filter(|k| !free.contains(k)) {
            let m = ux[k].hypot(uy[k]);
            if m > edge_tol {
                return Err(PhysicsError::invalid(
                    format!("|u[{k}]|"),
                    m,
                    format!(
                        "segment {k} is a fixed edge (fixed_edges = {}) and must be zero \
                         (within 1e-12·peak = {edge_tol} Hz)",
                        self.fixed_edges
                    ),
                ));
            }
        }
        for k in free.clone() {
            let m = ux[k].hypot(uy[k]);
            if m >= self.peak_hz {
                return Err(PhysicsError::invalid(
                    format!("|u[{k}]|"),
                    m,
                    format!(
                        "segment {k} is at or above the peak {} Hz; a peak-limited \
                         parameterization reaches only |u| < peak",
                        self.peak_hz
                    ),
                ));
            }
        }
        let scale = self.reachable_peak();
        let (ux, uy) = (&ux[free.clone()], &uy[free]);
        let mut theta = vec![0.0; self.len()];
        match self.kind {
            ParamKind::Cartesian => {
                for ((o, &x), &y) in theta.chunks_exact_mut(2).zip(ux).zip(uy) {
                    let (px, py) = unsquash(x / scale, y / scale);
                    o[0] = px;
                    o[1] = py;
                }
            }
            ParamKind::AmplitudePhase => {
                for ((o, &x), &y) in theta.chunks_exact_mut(2).zip(ux).zip(uy) {
                    let m = x.hypot(y);
                    o[0] = saturated_atanh(m / scale);
                    o[1] = if m == 0.0 { 0.0 } else { y.atan2(x) };
                }
            }
            ParamKind::SineBasis { terms } => {
                let n = ux.len();
                let nf = n as f64;
                for (i, (&x, &y)) in ux.iter().zip(uy).enumerate() {
                    let (vx, vy) = unsquash(x / scale, y / scale);
                    for_each_sine((i as f64 + 0.5) * PI / nf, terms, |j, s| {
                        theta[2 * j] += vx * s;
                        theta[2 * j + 1] += vy * s;
                    });
                }
                // Σ_k sin²(jπ(k+½)/F) = F/2 for j < F and F for j = F (DST-II orthogonality).
                for (j, o) in theta.chunks_exact_mut(2).enumerate() {
                    let norm = if j + 1 == n { nf } else { nf / 2.0 };
                    o[0] /= norm;
                    o[1] /= norm;
                }
            }
        }
        Ok(theta)
    }

    /// Reproducible pseudo-random parameters, independent and uniform on (−scale, scale)
    /// (SplitMix64 stream from `seed`; the same seed always gives the same vector). `scale`
    /// should be finite and ≥ 0.
    pub fn random(&self, seed: u64, scale: f64) -> Vec<f64> {
        let mut rng = SplitMix64(seed);
        (0..self.len())
            .map(|_| scale * (2.0 * rng.next_unit() - 1.0))
            .collect()
    }
}

/// SplitMix64 (Steele, Lea & Flood 2014): a tiny, well-mixed 64-bit generator.
struct SplitMix64(u64);

impl SplitMix64 {
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform on [0, 1) with 53 random bits.
    fn next_unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 * (1.0 / 9_007_199_254_740_992.0)
    }
}
