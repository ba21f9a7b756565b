//! Hardware constraints of a designed pulse: limits and penalties.
//!
//! This module owns the console's hard limits ([`HardwareLimits`]: the design-time check of a
//! [`Parameterization`] and the waveform interlock check that the daemon's safety module
//! reuses), the soft penalties added to a design loss with their exact gradients
//! ([`Penalties`]), and the two waveform measures they are built on ([`energy`], [`peak`]).
//!
//! Units: waveforms in Hz (γB1/2π), durations in s, energy Σ|u_k|²·dt in Hz²·s.

use serde::Deserialize;

use crate::design::parameterization::Parameterization;
use crate::physics::PhysicsError;
use crate::physics::error::positive;

/// Relative slack on the peak and energy limits of [`HardwareLimits::check_waveform`].
pub const LIMIT_SLACK: f64 = 1e-12;

/// Relative tolerance of duration, raster and duty-cycle comparisons (timings are sums and
/// products of floating-point segment durations).
pub const TIMING_TOLERANCE: f64 = 1e-9;

/// The console's hard limits (from its hello message later; from the problem file now).
#[derive(Debug, Clone, Copy, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HardwareLimits {
    /// Peak B1 (Hz, γB1/2π): every sample must satisfy |u_k| ≤ peak_b1_hz.
    pub peak_b1_hz: f64,
    /// Energy limit Σ_k |u_k|²·dt (Hz²·s), if the console has one.
    #[serde(default)]
    pub max_energy_hz2s: Option<f64>,
    /// Longest pulse (s).
    pub max_duration_s: f64,
    /// RF raster time (s): the segment duration must be an integer multiple of it.
    pub raster_s: f64,
    /// Largest pulse duration / TR, if the console has a duty-cycle limit (in (0, 1]).
    #[serde(default)]
    pub max_duty_cycle: Option<f64>,
}

/// `a ≤ b` with a relative tolerance on `b`.
fn le_tol(a: f64, b: f64, tol: f64) -> bool {
    a <= b * (1.0 + tol)
}

impl HardwareLimits {
    /// Checks the limits themselves: peak, duration and raster finite and > 0; max energy
    /// finite and > 0 when given; max duty cycle in (0, 1] when given.
    pub fn validate(&self) -> Result<(), PhysicsError> {
        positive("limits.peak_b1_hz", self.peak_b1_hz)?;
        positive("limits.max_duration_s", self.max_duration_s)?;
        positive("limits.raster_s", self.raster_s)?;
        if let Some(e) = self.max_energy_hz2s {
            positive("limits.max_energy_hz2s", e)?;
        }
        if let Some(d) = self.max_duty_cycle
            && !(d.is_finite() && d > 0.0 && d <= 1.0)
        {
            return Err(PhysicsError::invalid(
                "limits.max_duty_cycle",
                d,
                "must be in (0, 1]",
            ));
        }
        Ok(())
    }

    /// Checks a parameterization against the limits before any work: the limits and the
    /// parameterization are valid (at least one free segment, …), its peak ≤ `peak_b1_hz`,
    /// its duration ≤ `max_duration_s`, its dt an integer multiple of `raster_s` (relative
    /// tolerance [`TIMING_TOLERANCE`]), and, given a TR, duration ≤ TR and duration/TR ≤
    /// `max_duty_cycle`. A duty-cycle limit without a TR is an error (it cannot be checked).
    /// Every error names both numbers.
    pub fn check_design(
        &self,
        p: &Parameterization,
        tr_s: Option<f64>,
    ) -> Result<(), PhysicsError> {
        self.validate()?;
        p.validate()?;
        if p.peak_hz > self.peak_b1_hz {
            return Err(PhysicsError::invalid(
                "parameterization.peak_hz",
                p.peak_hz,
                format!("exceeds the hardware peak-B1 limit {} Hz", self.peak_b1_hz),
            ));
        }
        self.check_timing(p.segments, p.dt, tr_s, "parameterization")
    }

    /// Duration, raster and duty-cycle checks shared by the design and waveform checks.
    fn check_timing(
        &self,
        segments: usize,
        dt: f64,
        tr_s: Option<f64>,
        what: &str,
    ) -> Result<(), PhysicsError> {
        positive(format!("{what}.dt"), dt)?;
        let duration = segments as f64 * dt;
        if !le_tol(duration, self.max_duration_s, TIMING_TOLERANCE) {
            return Err(PhysicsError::invalid(
                format!("{what} duration (s)"),
                duration,
                format!(
                    "exceeds the hardware maximum pulse duration {} s ({segments} segments × {dt} s)",
                    self.max_duration_s
                ),
            ));
        }
        let steps = (dt / self.raster_s).round();
        if steps < 1.0 || (dt - steps * self.raster_s).abs() > TIMING_TOLERANCE * dt {
            return Err(PhysicsError::invalid(
                format!("{what}.dt"),
                dt,
                format!(
                    "must be a positive integer multiple of the RF raster {} s (dt/raster = {})",
                    self.raster_s,
                    dt / self.raster_s
                ),
            ));
        }
        match (tr_s, self.max_duty_cycle) {
            (Some(tr), limit) => {
                positive("tr_s", tr)?;
                if !le_tol(duration, tr, TIMING_TOLERANCE) {
                    return Err(PhysicsError::invalid(
                        format!("{what} duration (s)"),
                        duration,
                        format!("is longer than TR = {tr} s"),
                    ));
                }
                if let Some(max) = limit {
                    let duty = duration / tr;
                    if !le_tol(duty, max, TIMING_TOLERANCE) {
                        return Err(PhysicsError::invalid(
                            format!("{what} duty cycle (duration/TR)"),
                            duty,
                            format!(
                                "exceeds the hardware maximum duty cycle {max} \
                                 (duration {duration} s, TR {tr} s)"
                            ),
                        ));
                    }
                }
            }
            (None, Some(max)) => {
                return Err(PhysicsError::invalid(
                    "tr_s",
                    "none",
                    format!(
                        "the hardware has a duty-cycle limit {max}; a TR is needed to check it"
                    ),
                ));
            }
            (None, None) => {}
        }
        Ok(())
    }

    /// Every violation of the limits by a concrete waveform (empty when it is safe): sizes,
    /// an empty waveform, non-finite samples, |u_k| > peak·(1 + [`LIMIT_SLACK`]), energy >
    /// max·(1 + [`LIMIT_SLACK`]), duration, raster and duty cycle (see
    /// [`HardwareLimits::check_design`]). Invalid limits are reported as a violation too.
    /// Each violation names the quantity, its value and the limit.
    pub fn waveform_violations(
        &self,
        ux: &[f64],
        uy: &[f64],
        dt: f64,
        tr_s: Option<f64>,
    ) -> Vec<PhysicsError> {
        let mut out = Vec::new();
        if let Err(e) = self.validate() {
            out.push(e);
            return out;
        }
        if ux.len() != uy.len() {
            out.push(PhysicsError::SizeMismatch {
                what: "uy (against ux)".into(),
                expected: ux.len(),
                got: uy.len(),
            });
            return out;
        }
        if ux.is_empty() {
            out.push(PhysicsError::invalid("waveform", "[]", "has no segments"));
        }
        let mut non_finite = ux
            .iter()
            .zip(uy)
            .enumerate()
            .filter(|(_, (x, y))| !(x.is_finite() && y.is_finite()));
        if let Some((k, (x, y))) = non_finite.next() {
            let count = 1 + non_finite.count();
            out.push(PhysicsError::invalid(
                format!("u[{k}]"),
                format!("({x}, {y})"),
                format!("samples must be finite ({count} non-finite segment(s))"),
            ));
        } else {
            let limit = self.peak_b1_hz * (1.0 + LIMIT_SLACK);
            let mut over = 0usize;
            let mut worst: Option<(usize, f64)> = None;
            for (k, (&x, &y)) in ux.iter().zip(uy).enumerate() {
                let m = x.hypot(y);
                if m > limit {
                    over += 1;
                    if worst.is_none_or(|(_, w)| m > w) {
                        worst = Some((k, m));
                    }
                }
            }
            if let Some((k, m)) = worst {
                out.push(PhysicsError::invalid(
                    format!("|u[{k}]| (Hz)"),
                    m,
                    format!(
                        "exceeds the hardware peak-B1 limit {} Hz ({over} segment(s) over)",
                        self.peak_b1_hz
                    ),
                ));
            }
            if let Some(max) = self.max_energy_hz2s
                && dt.is_finite()
            {
                let e = energy(ux, uy, dt);
                if !le_tol(e, max, LIMIT_SLACK) {
                    out.push(PhysicsError::invalid(
                        "waveform energy Σ|u|²·dt (Hz²·s)",
                        e,
                        format!("exceeds the hardware energy limit {max} Hz²·s"),
                    ));
                }
            }
        }
        if let Err(e) = self.check_timing(ux.len(), dt, tr_s, "waveform") {
            out.push(e);
        }
        out
    }

    /// The interlock: Ok when the waveform is within every limit, else the violation (several
    /// violations are joined into one [`PhysicsError::InvalidParameter`] on `waveform`, value
    /// the count, reason the list). See [`HardwareLimits::waveform_violations`].
    pub fn check_waveform(
        &self,
        ux: &[f64],
        uy: &[f64],
        dt: f64,
        tr_s: Option<f64>,
    ) -> Result<(), PhysicsError> {
        let mut v = self.waveform_violations(ux, uy, dt, tr_s);
        match v.len() {
            0 => Ok(()),
            1 => Err(v.remove(0)),
            n => Err(PhysicsError::invalid(
                "waveform",
                format!("{n} violations"),
                v.iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join("; "),
            )),
        }
    }
}

/// Soft penalties added to a design loss, each with its exact gradient with respect to ux and
/// uy. All weights default to 0 (off) and must be finite and ≥ 0. With N segments of
/// duration dt, T = N·dt, peak P and E = Σ_k |u_k|²·dt:
///
/// - energy: `energy_weight · E/(P²·T)` — the mean power over the pulse relative to full
///   power: 1 for a constant waveform at |u| = P, independent of N and dt.
/// - smoothness (a bandwidth penalty against amplifier transients):
///   `smoothness_weight · N·Σ_{k=0..=N} |u_k − u_{k−1}|²/P²` with u_{−1} = u_N = 0, i.e. the
///   switch-on and switch-off steps count. This is the discretisation of
///   (T/P²)·∫|du/dt|² dt, so it is resolution independent for smooth waveforms: π²/2 for a
///   half-sine lobe of peak P (large N), and 2N for a constant waveform at full power
///   (its switch-on and switch-off steps are genuine transients).
/// - energy limit: `energy_limit_weight · max(0, E/E_max − 1)²`, a quadratic barrier that is
///   zero below the hardware energy limit E_max and only applies when one is given.
#[derive(Debug, Clone, Copy, PartialEq, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Penalties {
    /// Weight of the normalized energy E/(P²·T).
    pub energy_weight: f64,
    /// Weight of the normalized squared-difference (bandwidth) penalty.
    pub smoothness_weight: f64,
    /// Weight of the quadratic barrier above the energy limit.
    pub energy_limit_weight: f64,
}

impl Penalties {
    /// The sum of the penalties (see [`Penalties`]) for waveform (ux, uy) with segment
    /// duration `dt`, peak `peak_hz` and optional energy limit `max_energy` (Hz²·s); their
    /// gradient is ADDED into `grad_ux`, `grad_uy` (all four slices of one length N ≥ 1).
    #[allow(clippy::too_many_arguments)] // waveform, timing, scales and two output buffers
    pub fn evaluate(
        &self,
        ux: &[f64],
        uy: &[f64],
        dt: f64,
        peak_hz: f64,
        max_energy: Option<f64>,
        grad_ux: &mut [f64],
        grad_uy: &mut [f64],
    ) -> Result<f64, PhysicsError> {
        for (name, w) in [
            ("penalties.energy_weight", self.energy_weight),
            ("penalties.smoothness_weight", self.smoothness_weight),
            ("penalties.energy_limit_weight", self.energy_limit_weight),
        ] {
            if !(w.is_finite() && w >= 0.0) {
                return Err(PhysicsError::invalid(name, w, "must be finite and ≥ 0"));
            }
        }
        positive("dt", dt)?;
        positive("peak_hz", peak_hz)?;
        if let Some(e) = max_energy {
            positive("max_energy", e)?;
        }
        let n = ux.len();
        if n == 0 {
            return Err(PhysicsError::invalid(
                "ux",
                "[]",
                "waveform has no segments",
            ));
        }
        for (what, len) in [
            ("uy", uy.len()),
            ("grad_ux", grad_ux.len()),
            ("grad_uy", grad_uy.len()),
        ] {
            if len != n {
                return Err(PhysicsError::SizeMismatch {
                    what: what.into(),
                    expected: n,
                    got: len,
                });
            }
        }
        for (name, u) in [("ux", ux), ("uy", uy)] {
            if let Some(k) = u.iter().position(|v| !v.is_finite()) {
                return Err(PhysicsError::invalid(
                    format!("{name}[{k}]"),
                    u[k],
                    "must be finite",
                ));
            }
        }
        let nf = n as f64;
        let p2 = peak_hz * peak_hz;
        let sum_sq: f64 = ux.iter().chain(uy).map(|v| v * v).sum();
        let mut loss = 0.0;

        // Energy: w·Σ|u|²·dt/(P²·N·dt) = w·Σ|u|²/(N·P²).
        if self.energy_weight != 0.0 {
            let c = self.energy_weight / (nf * p2);
            loss += c * sum_sq;
            for (g, u) in grad_ux.iter_mut().zip(ux).chain(grad_uy.iter_mut().zip(uy)) {
                *g += 2.0 * c * u;
            }
        }

        // Smoothness: w·N/P²·Σ_{k=0..=N} |u_k − u_{k−1}|², zero padding at both ends.
        if self.smoothness_weight != 0.0 {
            let c = self.smoothness_weight * nf / p2;
            for (u, g) in [(ux, &mut *grad_ux), (uy, &mut *grad_uy)] {
                let mut prev = 0.0;
                for k in 0..=n {
                    let cur = if k < n { u[k] } else { 0.0 };
                    let d = cur - prev;
                    loss += c * d * d;
                    // ∂/∂u_k of d_k² is +2d_k, ∂/∂u_{k−1} is −2d_k.
                    if k < n {
                        g[k] += 2.0 * c * d;
                    }
                    if k > 0 {
                        g[k - 1] -= 2.0 * c * d;
                    }
                    prev = cur;
                }
            }
        }

        // Energy barrier: w·max(0, E/Emax − 1)².
        if let Some(max) = max_energy
            && self.energy_limit_weight != 0.0
        {
            let excess = sum_sq * dt / max - 1.0;
            if excess > 0.0 {
                loss += self.energy_limit_weight * excess * excess;
                let c = 2.0 * self.energy_limit_weight * excess * 2.0 * dt / max;
                for (g, u) in grad_ux.iter_mut().zip(ux).chain(grad_uy.iter_mut().zip(uy)) {
                    *g += c * u;
                }
            }
        }
        Ok(loss)
    }
}

/// Energy Σ_k (ux_k² + uy_k²)·dt (Hz²·s) over the paired samples (the shorter slice bounds
/// the sum). Non-finite samples give a non-finite result.
pub fn energy(ux: &[f64], uy: &[f64], dt: f64) -> f64 {
    ux.iter().zip(uy).map(|(x, y)| x * x + y * y).sum::<f64>() * dt
}

/// Peak max_k |u_k| = max_k hypot(ux_k, uy_k) (Hz) over the paired samples; 0 for an empty
/// waveform and NaN if any paired sample is NaN.
pub fn peak(ux: &[f64], uy: &[f64]) -> f64 {
    ux.iter().zip(uy).fold(0.0, |m: f64, (x, y)| {
        let v = x.hypot(*y);
        if v.is_nan() || v > m { v } else { m }
    })
}
