//! The hidden hardware truth of a simulated console ([`HiddenTruth`]) and its transmit chain:
//! the transmit filter ([`transmit_filter`]) and the amplifier's AM/AM and AM/PM
//! ([`amplifier`]). Pure functions of the commanded waveform; no spins, no noise, no I/O.
//!
//! # Conventions
//! A waveform is the complex sample sequence u_k = ux_k + i·uy_k (Hz, γB1/2π), each sample held
//! for the designed pulse's segment duration dt (s).
//!
//! - **Transmit filter** — a causal first-order (one-pole) low-pass on the sample sequence,
//!   y_k = α·u_k + (1 − α)·y_{k−1}, y_{−1} = 0, α = 1/(1 + D), D = τ_g/dt. Its DC gain is 1
//!   and its group delay at DC is exactly D samples = τ_g seconds (a ramp u_k = k comes out as
//!   k − D once the transient has died). τ_g = 0 gives α = 1: the identity, bit for bit. The
//!   output keeps the input's length: the filter's tail after the last segment is cut (the RF
//!   gate closes with the pulse).
//! - **Amplifier** — Saleh-type memoryless nonlinearity of the input amplitude a = |u|:
//!   u' = u·g(a)·e^{iΦ(a)}, with AM/AM g(a) = 1/√(1 + (a/a_sat)²) (the daemon's model,
//!   [`spinloop::calibrate::compress`]; none = 1) and AM/PM Φ(a) = Φ_max·q/(1 + q),
//!   q = (a/a_pm)² (rad; none = 0): a phase shift that grows as a² at small amplitude and
//!   saturates at Φ_max.
//! - Then the B1 scale multiplies the waveform, the spins evolve with the B0 offset at the
//!   acquisition's time t, ν0(t) = ν0 + ν̇0·t, and the receiver applies its phase, delay,
//!   extra linewidth and gain (see [`crate::console`]).

use num_complex::Complex64 as C64;
use serde::{Deserialize, Serialize};
use spinloop::calibrate::HardwareModel;

use crate::HilError;

/// The hardware a simulated console really has (what the daemon must discover).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HiddenTruth {
    /// B1 scale (1 = nominal), multiplying every RF sample after the amplifier. In (0.1, 10).
    #[serde(default = "one")]
    pub b1_scale: f64,
    /// B0 offset at session time 0 (Hz).
    #[serde(default)]
    pub b0_offset_hz: f64,
    /// Linear B0 drift (Hz/s of session time): ν0(t) = ν0 + ν̇0·t.
    #[serde(default)]
    pub b0_drift_hz_per_s: f64,
    /// AM/AM saturation a_sat (Hz); absent = linear amplifier.
    #[serde(default)]
    pub am_am_sat_hz: Option<f64>,
    /// AM/PM maximum phase Φ_max (rad); 0 = none.
    #[serde(default)]
    pub am_pm_max_rad: f64,
    /// AM/PM amplitude scale a_pm (Hz): Φ(a_pm) = Φ_max/2. Required (> 0) when Φ_max ≠ 0.
    #[serde(default)]
    pub am_pm_sat_hz: Option<f64>,
    /// Group delay τ_g (s) of the first-order transmit low-pass; 0 = no filter.
    #[serde(default)]
    pub tx_group_delay_s: f64,
    /// Receiver zero-order phase (rad).
    #[serde(default)]
    pub rx_phase_rad: f64,
    /// Receive delay τ (s): the spectrum gains e^{i2πfτ} (as the daemon's model).
    #[serde(default)]
    pub rx_delay_s: f64,
    /// Extra Lorentzian linewidth (Hz) on top of the session's nominal linewidth.
    #[serde(default)]
    pub extra_linewidth_hz: f64,
    /// Receiver gain × phantom scale (1 = the phantom's concentrations as given).
    #[serde(default = "one")]
    pub amplitude: f64,
}

fn one() -> f64 {
    1.0
}

impl Default for HiddenTruth {
    fn default() -> Self {
        HiddenTruth {
            b1_scale: 1.0,
            b0_offset_hz: 0.0,
            b0_drift_hz_per_s: 0.0,
            am_am_sat_hz: None,
            am_pm_max_rad: 0.0,
            am_pm_sat_hz: None,
            tx_group_delay_s: 0.0,
            rx_phase_rad: 0.0,
            rx_delay_s: 0.0,
            extra_linewidth_hz: 0.0,
            amplitude: 1.0,
        }
    }
}

fn check(field: &str, v: f64, ok: bool, reason: &str) -> Result<(), HilError> {
    if v.is_finite() && ok {
        Ok(())
    } else {
        Err(HilError::invalid(format!("truth.{field}"), v, reason))
    }
}

impl HiddenTruth {
    /// Checks every value's range (names the field and value of a rejection).
    pub fn validate(&self) -> Result<(), HilError> {
        check(
            "b1_scale",
            self.b1_scale,
            self.b1_scale > 0.1 && self.b1_scale < 10.0,
            "must be in (0.1, 10)",
        )?;
        check(
            "b0_offset_hz",
            self.b0_offset_hz,
            self.b0_offset_hz.abs() <= 1000.0,
            "must be within ±1000 Hz",
        )?;
        check(
            "b0_drift_hz_per_s",
            self.b0_drift_hz_per_s,
            self.b0_drift_hz_per_s.abs() <= 10.0,
            "must be within ±10 Hz/s",
        )?;
        if let Some(s) = self.am_am_sat_hz {
            check("am_am_sat_hz", s, s > 0.0, "must be > 0 (omit for none)")?;
        }
        check(
            "am_pm_max_rad",
            self.am_pm_max_rad,
            self.am_pm_max_rad.abs() <= std::f64::consts::PI,
            "must be within ±π",
        )?;
        match self.am_pm_sat_hz {
            Some(s) => check("am_pm_sat_hz", s, s > 0.0, "must be > 0")?,
            None if self.am_pm_max_rad != 0.0 => {
                return Err(HilError::invalid(
                    "truth.am_pm_sat_hz",
                    "missing",
                    "required when am_pm_max_rad ≠ 0",
                ));
            }
            None => {}
        }
        check(
            "tx_group_delay_s",
            self.tx_group_delay_s,
            (0.0..=1e-3).contains(&self.tx_group_delay_s),
            "must be in [0, 1 ms]",
        )?;
        check("rx_phase_rad", self.rx_phase_rad, true, "must be finite")?;
        check(
            "rx_delay_s",
            self.rx_delay_s,
            self.rx_delay_s.abs() <= 1e-3,
            "must be within ±1 ms",
        )?;
        check(
            "extra_linewidth_hz",
            self.extra_linewidth_hz,
            (0.0..=50.0).contains(&self.extra_linewidth_hz),
            "must be in [0, 50] Hz",
        )?;
        check(
            "amplitude",
            self.amplitude,
            self.amplitude > 0.0,
            "must be > 0",
        )?;
        Ok(())
    }

    /// B0 offset (Hz) at session time `t_s`.
    pub fn b0_at(&self, t_s: f64) -> f64 {
        self.b0_offset_hz + self.b0_drift_hz_per_s * t_s
    }

    /// The part of the truth the daemon's [`HardwareModel`] can express, at time `t_s`: B1,
    /// B0(t), receiver phase and delay, extra linewidth, amplitude. The transmit filter, AM/AM
    /// and AM/PM are applied to the waveform before (so `compression` is `None` here).
    pub fn model_at(&self, t_s: f64) -> HardwareModel {
        HardwareModel {
            b1_scale: self.b1_scale,
            b0_offset_hz: self.b0_at(t_s),
            phase0_rad: self.rx_phase_rad,
            phase1_s: self.rx_delay_s,
            linewidth_hz: self.extra_linewidth_hz,
            amplitude: self.amplitude,
            compression: None,
        }
    }

    /// The transmit chain: filter, then amplifier (module doc). Returns the waveform the
    /// coil sees before the B1 scale.
    pub fn transmit(
        &self,
        ux: &[f64],
        uy: &[f64],
        dt: f64,
    ) -> Result<(Vec<f64>, Vec<f64>), HilError> {
        let (fx, fy) = transmit_filter(ux, uy, dt, self.tx_group_delay_s)?;
        amplifier(
            &fx,
            &fy,
            self.am_am_sat_hz,
            self.am_pm_max_rad,
            self.am_pm_sat_hz.unwrap_or(1.0),
        )
    }
}

fn check_waveform(ux: &[f64], uy: &[f64]) -> Result<(), HilError> {
    if ux.len() != uy.len() {
        return Err(HilError::invalid(
            "waveform.uy",
            uy.len(),
            format!("length differs from ux ({})", ux.len()),
        ));
    }
    if let Some((i, v)) = ux
        .iter()
        .chain(uy)
        .enumerate()
        .find(|(_, v)| !v.is_finite())
    {
        return Err(HilError::invalid(
            format!("waveform sample {i}"),
            v,
            "must be finite",
        ));
    }
    Ok(())
}

/// The first-order transmit low-pass with group delay `group_delay_s` (module doc).
pub fn transmit_filter(
    ux: &[f64],
    uy: &[f64],
    dt: f64,
    group_delay_s: f64,
) -> Result<(Vec<f64>, Vec<f64>), HilError> {
    check_waveform(ux, uy)?;
    if !(dt.is_finite() && dt > 0.0) {
        return Err(HilError::invalid("dt", dt, "must be finite and > 0"));
    }
    if !(group_delay_s.is_finite() && group_delay_s >= 0.0) {
        return Err(HilError::invalid(
            "group_delay_s",
            group_delay_s,
            "must be finite and ≥ 0",
        ));
    }
    let alpha = 1.0 / (1.0 + group_delay_s / dt);
    let beta = 1.0 - alpha;
    let mut y = C64::new(0.0, 0.0);
    Ok(ux
        .iter()
        .zip(uy)
        .map(|(&x, &v)| {
            y = C64::new(x, v) * alpha + y * beta;
            (y.re, y.im)
        })
        .unzip())
}

/// The amplifier: AM/AM (saturation `am_sat_hz`, `None` = linear) and AM/PM (Φ_max =
/// `pm_max_rad` at scale `pm_sat_hz`) of the input amplitude (module doc).
pub fn amplifier(
    ux: &[f64],
    uy: &[f64],
    am_sat_hz: Option<f64>,
    pm_max_rad: f64,
    pm_sat_hz: f64,
) -> Result<(Vec<f64>, Vec<f64>), HilError> {
    check_waveform(ux, uy)?;
    if let Some(s) = am_sat_hz
        && !(s.is_finite() && s > 0.0)
    {
        return Err(HilError::invalid("am_sat_hz", s, "must be finite and > 0"));
    }
    if !(pm_max_rad.is_finite() && pm_sat_hz.is_finite() && pm_sat_hz > 0.0) {
        return Err(HilError::invalid(
            "am/pm",
            format!("{pm_max_rad} rad at {pm_sat_hz} Hz"),
            "must be finite, scale > 0",
        ));
    }
    Ok(ux
        .iter()
        .zip(uy)
        .map(|(&x, &y)| {
            let u = C64::new(x, y);
            let a2 = u.norm_sqr();
            let g = am_sat_hz.map_or(1.0, |s| 1.0 / (1.0 + a2 / (s * s)).sqrt());
            let out = if pm_max_rad == 0.0 {
                u * g
            } else {
                let q = a2 / (pm_sat_hz * pm_sat_hz);
                u * C64::from_polar(g, pm_max_rad * q / (1.0 + q))
            };
            (out.re, out.im)
        })
        .unzip())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn wave(n: usize) -> (Vec<f64>, Vec<f64>) {
        (0..n)
            .map(|k| {
                let t = k as f64 / n as f64;
                (800.0 * (3.0 * t).sin(), 300.0 * (5.0 * t).cos() - 100.0)
            })
            .unzip()
    }

    #[test]
    fn zero_group_delay_is_the_identity() {
        let (ux, uy) = wave(64);
        let (fx, fy) = transmit_filter(&ux, &uy, 20e-6, 0.0).expect("filter");
        assert_eq!(fx, ux);
        assert_eq!(fy, uy);
    }

    #[test]
    fn filter_has_unit_dc_gain_and_the_set_group_delay() {
        let dt = 10e-6;
        let tau = 25e-6; // D = 2.5 samples
        let n = 400;
        // Constant input: converges to the constant (unit DC gain).
        let (fx, _) = transmit_filter(&vec![100.0; n], &vec![0.0; n], dt, tau).expect("filter");
        assert!((fx[n - 1] - 100.0).abs() < 1e-9);
        // Ramp input u_k = k: after the transient, y_k = k − D exactly (group delay D).
        let ramp: Vec<f64> = (0..n).map(|k| k as f64).collect();
        let (fx, fy) = transmit_filter(&ramp, &vec![0.0; n], dt, tau).expect("filter");
        let d = tau / dt;
        assert!(
            (fx[n - 1] - ((n - 1) as f64 - d)).abs() < 1e-9,
            "{}",
            fx[n - 1]
        );
        assert!(fy.iter().all(|&y| y == 0.0));
        // Causal: the first output is α·u_0.
        let (fx, _) = transmit_filter(&[1.0, 0.0], &[0.0, 0.0], dt, tau).expect("filter");
        assert!((fx[0] - 1.0 / (1.0 + d)).abs() < 1e-15);
    }

    #[test]
    fn am_pm_of_a_constant_amplitude_pulse_is_a_pure_phase() {
        let n = 32;
        let a = 700.0;
        let (ux, uy): (Vec<f64>, Vec<f64>) = (0..n)
            .map(|k| {
                let p = 0.3 * k as f64;
                (a * p.cos(), a * p.sin())
            })
            .unzip();
        let (pm_max, pm_sat) = (0.4, 1000.0);
        let (ox, oy) = amplifier(&ux, &uy, None, pm_max, pm_sat).expect("amp");
        let q: f64 = (a / pm_sat) * (a / pm_sat);
        let phi = pm_max * q / (1.0 + q);
        for k in 0..n {
            let u = C64::new(ux[k], uy[k]);
            let o = C64::new(ox[k], oy[k]);
            assert!((o.norm() - a).abs() < 1e-9);
            let rot = o / u;
            assert!((rot.arg() - phi).abs() < 1e-12, "{} vs {phi}", rot.arg());
        }
    }

    #[test]
    fn am_am_matches_the_daemons_compression_and_linear_is_identity() {
        let (ux, uy) = wave(50);
        let (ox, oy) = amplifier(&ux, &uy, Some(900.0), 0.0, 1.0).expect("amp");
        let (cx, cy) = spinloop::calibrate::compress(&ux, &uy, Some(900.0));
        for k in 0..ux.len() {
            assert!((ox[k] - cx[k]).abs() <= 1e-12 * cx[k].abs().max(1.0));
            assert!((oy[k] - cy[k]).abs() <= 1e-12 * cy[k].abs().max(1.0));
        }
        let (ox, oy) = amplifier(&ux, &uy, None, 0.0, 1.0).expect("amp");
        assert_eq!((ox, oy), (ux, uy));
    }

    #[test]
    fn bad_truth_is_rejected_with_the_field() {
        let t = HiddenTruth {
            b1_scale: -1.0,
            ..HiddenTruth::default()
        };
        assert!(
            t.validate()
                .unwrap_err()
                .to_string()
                .contains("truth.b1_scale")
        );
        let t = HiddenTruth {
            am_pm_max_rad: 0.2,
            ..HiddenTruth::default()
        };
        assert!(
            t.validate()
                .unwrap_err()
                .to_string()
                .contains("am_pm_sat_hz")
        );
        assert!(HiddenTruth::default().validate().is_ok());
    }
}
