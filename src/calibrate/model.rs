//! The hardware model's parameters and their validation, the amplifier's AM/AM map and its
//! derivative, measurements and probe waveforms (equations in the module doc of
//! [`crate::calibrate`]).

use num_complex::Complex64 as C64;
use serde::{Deserialize, Serialize};

use super::CalibrateError;

/// Parameter names in the order of [`HardwareModel::to_vector`] (for reports).
pub const PARAMETER_NAMES: [&str; 7] = [
    "b1_scale",
    "b0_offset_hz",
    "phase0_rad",
    "phase1_s",
    "linewidth_hz",
    "amplitude",
    "compression_sat_hz",
];

/// Units of [`PARAMETER_NAMES`] ("" = dimensionless).
pub const PARAMETER_UNITS: [&str; 7] = ["", "Hz", "rad", "s", "Hz", "", "Hz"];

/// Scales of the designed pulse that make B1 identifiable: a nominal 90° pulse played at
/// 0.5× and 1.5× gives 45° and 135°, where the signal changes with B1 in opposite directions
/// (d sin(b1·θ)/d b1 = θ·cos θ), so B1 no longer trades off with the amplitude as it does for
/// a single 90° acquisition (stationary in B1 to first order). Every probe must still pass the
/// safety interlock (1.5× raises the peak B1 by 1.5).
pub const PROBE_SCALES: [f64; 2] = [0.5, 1.5];

/// How the real console differs from the nominal simulation.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct HardwareModel {
    /// B1 scale (1 = nominal; multiplies every RF pulse). Must be > 0.
    pub b1_scale: f64,
    /// B0 offset (Hz), the whole experiment.
    pub b0_offset_hz: f64,
    /// Zero-order receiver phase φ0 (rad).
    pub phase0_rad: f64,
    /// First-order phase as a receive delay τ (s): spectrum × e^{i(φ0 + 2π f τ)}.
    pub phase1_s: f64,
    /// Extra Lorentzian linewidth (Hz) on top of the problem's nominal linewidth (may be < 0).
    pub linewidth_hz: f64,
    /// Scale of the concentrations (1 = the problem's concentrations as simulated).
    pub amplitude: f64,
    /// Amplifier saturation a_sat (Hz) of the AM/AM map u ↦ u/√(1 + (|u|/a_sat)²) applied to
    /// the designed pulse; `None` = linear amplifier.
    pub compression: Option<f64>,
}

impl Default for HardwareModel {
    fn default() -> Self {
        HardwareModel::NOMINAL
    }
}

impl HardwareModel {
    /// The nominal hardware: the simulation as designed.
    pub const NOMINAL: HardwareModel = HardwareModel {
        b1_scale: 1.0,
        b0_offset_hz: 0.0,
        phase0_rad: 0.0,
        phase1_s: 0.0,
        linewidth_hz: 0.0,
        amplitude: 1.0,
        compression: None,
    };

    /// Checks ranges: every value finite, b1 > 0, a_sat > 0.
    pub fn validate(&self, what: &str) -> Result<(), CalibrateError> {
        let v = self.to_vector();
        for (i, (x, name)) in v.iter().zip(PARAMETER_NAMES).enumerate() {
            if i == 6 && self.compression.is_none() {
                continue;
            }
            if !x.is_finite() {
                return Err(CalibrateError::invalid(
                    format!("{what}.{name}"),
                    x,
                    "must be finite",
                ));
            }
        }
        if self.b1_scale <= 0.0 {
            return Err(CalibrateError::invalid(
                format!("{what}.b1_scale"),
                self.b1_scale,
                "must be > 0",
            ));
        }
        if let Some(s) = self.compression
            && s <= 0.0
        {
            return Err(CalibrateError::invalid(
                format!("{what}.compression_sat_hz"),
                s,
                "must be > 0 (None for a linear amplifier)",
            ));
        }
        Ok(())
    }

    /// The parameters in the order of [`PARAMETER_NAMES`] (a_sat = +∞ without compression).
    pub fn to_vector(&self) -> [f64; 7] {
        [
            self.b1_scale,
            self.b0_offset_hz,
            self.phase0_rad,
            self.phase1_s,
            self.linewidth_hz,
            self.amplitude,
            self.compression.unwrap_or(f64::INFINITY),
        ]
    }

    /// The inverse of [`HardwareModel::to_vector`] (a_sat = +∞ is no compression).
    pub fn from_vector(v: &[f64; 7]) -> HardwareModel {
        HardwareModel {
            b1_scale: v[0],
            b0_offset_hz: v[1],
            phase0_rad: v[2],
            phase1_s: v[3],
            linewidth_hz: v[4],
            amplitude: v[5],
            compression: if v[6].is_infinite() { None } else { Some(v[6]) },
        }
    }
}

/// One acquisition: the waveform played in the designed pulse's place and the FID returned.
#[derive(Debug, Clone, PartialEq)]
pub struct Measurement {
    /// x controls (Hz), one per segment of the problem's designed pulse.
    pub ux: Vec<f64>,
    /// y controls (Hz).
    pub uy: Vec<f64>,
    /// Segment duration (s); must be the problem's raster.
    pub dt: f64,
    /// The FID: the mean of `averages` transients, the problem's number of points.
    pub fid: Vec<C64>,
    /// Dwell (s); must be the problem's.
    pub dwell_s: f64,
    /// Transients averaged (≥ 1): the residual is weighted by √averages.
    pub averages: u32,
}

/// A candidate acquisition for [`crate::calibrate::Calibrator::expected_std_errors`]: a
/// waveform and its number of averages (no data yet).
#[derive(Debug, Clone, PartialEq)]
pub struct Probe {
    /// x controls (Hz).
    pub ux: Vec<f64>,
    /// y controls (Hz).
    pub uy: Vec<f64>,
    /// Transients averaged (≥ 1).
    pub averages: u32,
}

/// The designed pulse scaled by `scale` (e.g. [`PROBE_SCALES`]): same shape and phase, flip ×
/// scale. The caller passes probes through the safety interlock like any waveform.
pub fn probe_waveform(
    ux: &[f64],
    uy: &[f64],
    scale: f64,
) -> Result<(Vec<f64>, Vec<f64>), CalibrateError> {
    check_waveform("waveform", ux, uy)?;
    if !(scale.is_finite() && scale > 0.0) {
        return Err(CalibrateError::invalid(
            "probe scale",
            scale,
            "must be finite and > 0",
        ));
    }
    Ok((
        ux.iter().map(|x| x * scale).collect(),
        uy.iter().map(|y| y * scale).collect(),
    ))
}

/// Finite samples and equal lengths.
pub(crate) fn check_waveform(what: &str, ux: &[f64], uy: &[f64]) -> Result<(), CalibrateError> {
    if ux.len() != uy.len() {
        return Err(CalibrateError::Length {
            field: format!("{what}.uy"),
            expected: ux.len(),
            got: uy.len(),
        });
    }
    for (name, v) in [("ux", ux), ("uy", uy)] {
        if let Some((i, x)) = v.iter().enumerate().find(|(_, x)| !x.is_finite()) {
            return Err(CalibrateError::NonFinite {
                field: format!("{what}.{name}"),
                index: i,
                value: x.to_string(),
            });
        }
    }
    Ok(())
}

/// The amplifier's AM/AM map u ↦ u·g(|u|), g(a) = 1/√(1 + (a/a_sat)²) (identity for `None`).
pub fn compress(ux: &[f64], uy: &[f64], sat_hz: Option<f64>) -> (Vec<f64>, Vec<f64>) {
    match sat_hz {
        None => (ux.to_vec(), uy.to_vec()),
        Some(s) => ux
            .iter()
            .zip(uy)
            .map(|(&x, &y)| {
                let q = (x * x + y * y) / (s * s);
                let g = 1.0 / (1.0 + q).sqrt();
                (x * g, y * g)
            })
            .unzip(),
    }
}

/// ∂u'/∂a_sat of [`compress`]: u·(a²/s³)·(1 + a²/s²)^{−3/2}.
pub(crate) fn compress_derivative(ux: &[f64], uy: &[f64], s: f64) -> (Vec<f64>, Vec<f64>) {
    ux.iter()
        .zip(uy)
        .map(|(&x, &y)| {
            let a2 = x * x + y * y;
            let q = a2 / (s * s);
            let d = a2 / (s * s * s) * (1.0 + q).powf(-1.5);
            (x * d, y * d)
        })
        .unzip()
}
