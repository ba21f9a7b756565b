//! The hardware fit: Levenberg–Marquardt over the free parameters (Marquardt's diagonal
//! scaling, steps that leave b1 > 0 and a_sat > 0), the covariance from the Jacobian with
//! unidentifiable parameters reported as infinite, and the result types.
//!
//! Stop rules (`converged = true`): an accepted step decreases the cost by less than
//! `tolerance` relative; or the residual is orthogonal to every Jacobian column
//! (|J_pᵀr| ≤ 10⁻⁸·‖J_p‖·‖r‖); or no damped step decreases the cost while the residual is
//! at the rounding level of the data (‖r‖ ≤ 10⁻¹⁰·‖√w·D‖) or orthogonal to 10⁻⁴. Otherwise
//! (iteration budget spent, or stuck) `converged = false` and the last accepted point is kept.

use serde::{Deserialize, Serialize};

use super::CalibrateError;
use super::calibrator::{
    AMPLITUDE, B0, B1, COMPRESSION, Calibrator, LINEWIDTH, Linearization, PHASE0, PHASE1, dot,
};
use super::model::{HardwareModel, Measurement, PARAMETER_NAMES, PARAMETER_UNITS, Probe};

/// Which hardware parameters the fit adjusts (the others stay at the start model's values).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct FreeParameters {
    /// B1 scale.
    pub b1_scale: bool,
    /// B0 offset.
    pub b0_offset: bool,
    /// Zero-order phase.
    pub phase0: bool,
    /// First-order phase (receive delay τ).
    pub phase1: bool,
    /// Extra linewidth.
    pub linewidth: bool,
    /// Amplitude.
    pub amplitude: bool,
    /// Amplifier saturation a_sat.
    pub compression: bool,
}

impl Default for FreeParameters {
    /// Everything but the receive delay and the compression.
    fn default() -> Self {
        FreeParameters {
            b1_scale: true,
            b0_offset: true,
            phase0: true,
            phase1: false,
            linewidth: true,
            amplitude: true,
            compression: false,
        }
    }
}

impl FreeParameters {
    /// Indices of the free parameters in [`PARAMETER_NAMES`] order.
    pub fn indices(&self) -> Vec<usize> {
        [
            self.b1_scale,
            self.b0_offset,
            self.phase0,
            self.phase1,
            self.linewidth,
            self.amplitude,
            self.compression,
        ]
        .iter()
        .enumerate()
        .filter(|(_, f)| **f)
        .map(|(i, _)| i)
        .collect()
    }
}

/// Options of [`Calibrator::fit`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FitOptions {
    /// Free parameters.
    pub free: FreeParameters,
    /// Fit window (ppm); `None`: the problem's quantification window.
    pub window_ppm: Option<(f64, f64)>,
    /// Levenberg–Marquardt iteration budget (≥ 1).
    pub max_iterations: usize,
    /// Stop when an accepted step lowers the cost by less than this fraction.
    pub tolerance: f64,
    /// Known noise SD of one real FID component of a single transient; `None`: estimated from
    /// the residual.
    pub noise_sd: Option<f64>,
    /// Start of a_sat (Hz) when compression is free and the start model has none; `None`:
    /// 3 × the largest commanded |u| in the data.
    pub compression_start_hz: Option<f64>,
}

impl Default for FitOptions {
    fn default() -> Self {
        FitOptions {
            free: FreeParameters::default(),
            window_ppm: None,
            max_iterations: 50,
            tolerance: 1e-10,
            noise_sd: None,
            compression_start_hz: None,
        }
    }
}

/// Standard errors of the fitted parameters (`None`: held fixed; +∞: not identifiable).
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
pub struct StdErrors {
    /// σ(b1).
    pub b1_scale: Option<f64>,
    /// σ(Δν0) (Hz).
    pub b0_offset_hz: Option<f64>,
    /// σ(φ0) (rad).
    pub phase0_rad: Option<f64>,
    /// σ(τ) (s).
    pub phase1_s: Option<f64>,
    /// σ(Δlw) (Hz).
    pub linewidth_hz: Option<f64>,
    /// σ(A).
    pub amplitude: Option<f64>,
    /// σ(a_sat) (Hz).
    pub compression_sat_hz: Option<f64>,
}

impl StdErrors {
    fn from_parts(parameters: &[usize], sd: &[f64]) -> StdErrors {
        let mut v = [None; 7];
        for (&p, &s) in parameters.iter().zip(sd) {
            v[p] = Some(s);
        }
        StdErrors {
            b1_scale: v[B1],
            b0_offset_hz: v[B0],
            phase0_rad: v[PHASE0],
            phase1_s: v[PHASE1],
            linewidth_hz: v[LINEWIDTH],
            amplitude: v[AMPLITUDE],
            compression_sat_hz: v[COMPRESSION],
        }
    }

    /// In [`PARAMETER_NAMES`] order.
    pub fn to_array(&self) -> [Option<f64>; 7] {
        [
            self.b1_scale,
            self.b0_offset_hz,
            self.phase0_rad,
            self.phase1_s,
            self.linewidth_hz,
            self.amplitude,
            self.compression_sat_hz,
        ]
    }
}

/// One reported parameter.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FittedParameter {
    /// Name (one of [`PARAMETER_NAMES`]).
    pub name: String,
    /// Value.
    pub value: f64,
    /// Standard error (`None`: held fixed; +∞: not identifiable).
    pub std_error: Option<f64>,
    /// Unit ("" = dimensionless).
    pub unit: String,
}

/// The outcome of [`Calibrator::fit`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CalibrationFit {
    /// The fitted hardware.
    pub model: HardwareModel,
    /// Standard errors of the free parameters.
    pub std_errors: StdErrors,
    /// Names of the free parameters: the order of `covariance` and `correlation`.
    pub free: Vec<String>,
    /// Covariance of the free parameters (row-major; +∞ on the diagonal of an unidentifiable
    /// parameter, NaN off it).
    pub covariance: Vec<f64>,
    /// Correlation matrix (row-major; NaN where undefined).
    pub correlation: Vec<f64>,
    /// RMS of the weighted residual per real spectral component.
    pub residual_rms: f64,
    /// Noise SD of one real FID component of a single transient (given, or from the residual).
    pub noise_sd: f64,
    /// Accepted Levenberg–Marquardt iterations.
    pub iterations: usize,
    /// Whether a stop rule was met (module doc).
    pub converged: bool,
    /// Final cost ½‖r‖².
    pub cost: f64,
}

impl CalibrationFit {
    /// Every parameter with its value, standard error and unit (a_sat only with compression).
    pub fn parameters(&self) -> Vec<FittedParameter> {
        let v = self.model.to_vector();
        let e = self.std_errors.to_array();
        (0..7)
            .filter(|&i| i != COMPRESSION || self.model.compression.is_some())
            .map(|i| FittedParameter {
                name: PARAMETER_NAMES[i].into(),
                value: v[i],
                std_error: e[i],
                unit: PARAMETER_UNITS[i].into(),
            })
            .collect()
    }
}

/// Covariance σ²·(JᵀJ)⁻¹ with unidentifiable parameters at +∞ (module doc of `calibrate`).
pub(crate) fn covariance(a: &[f64], n: usize, sigma2: f64) -> Vec<f64> {
    let d: Vec<f64> = (0..n).map(|p| a[p * n + p].max(0.0).sqrt()).collect();
    let ok: Vec<usize> = (0..n).filter(|&p| d[p] > 0.0 && d[p].is_finite()).collect();
    let k = ok.len();
    let mut scaled = vec![0.0; k * k];
    for (i, &p) in ok.iter().enumerate() {
        for (j, &q) in ok.iter().enumerate() {
            scaled[i * k + j] = a[p * n + q] / (d[p] * d[q]);
        }
    }
    let (lambda, vectors) = jacobi_eigen(&scaled, k);
    let lmax = lambda.iter().cloned().fold(0.0, f64::max);
    let null: Vec<usize> = (0..k)
        .filter(|&e| lambda[e].is_nan() || lambda[e] <= 1e-12 * lmax)
        .collect();
    let mut unidentified = vec![true; n];
    for (i, &p) in ok.iter().enumerate() {
        let load: f64 = null.iter().map(|&e| vectors[i * k + e].powi(2)).sum();
        unidentified[p] = load > 1e-12;
    }
    let mut cov = vec![0.0; n * n];
    for p in 0..n {
        for q in 0..n {
            cov[p * n + q] = if unidentified[p] || unidentified[q] {
                if p == q { f64::INFINITY } else { f64::NAN }
            } else {
                let (i, j) = (
                    ok.iter().position(|&x| x == p).unwrap_or(0),
                    ok.iter().position(|&x| x == q).unwrap_or(0),
                );
                let s: f64 = (0..k)
                    .filter(|e| !null.contains(e))
                    .map(|e| vectors[i * k + e] * vectors[j * k + e] / lambda[e])
                    .sum();
                sigma2 * s / (d[p] * d[q])
            };
        }
    }
    cov
}

/// Eigenvalues and eigenvectors (row-major, column e = vector e) of a symmetric matrix by
/// cyclic Jacobi rotations (n ≤ 7 here).
fn jacobi_eigen(a: &[f64], n: usize) -> (Vec<f64>, Vec<f64>) {
    let mut m = a.to_vec();
    let mut v = vec![0.0; n * n];
    for i in 0..n {
        v[i * n + i] = 1.0;
    }
    for _sweep in 0..100 {
        let off: f64 = (0..n)
            .flat_map(|p| (0..n).filter(move |&q| q != p).map(move |q| (p, q)))
            .map(|(p, q)| m[p * n + q].powi(2))
            .sum();
        let diag: f64 = (0..n).map(|p| m[p * n + p].powi(2)).sum();
        if off <= 1e-32 * diag || off == 0.0 {
            break;
        }
        for p in 0..n {
            for q in p + 1..n {
                let apq = m[p * n + q];
                if apq == 0.0 {
                    continue;
                }
                let theta = (m[q * n + q] - m[p * n + p]) / (2.0 * apq);
                let t = theta.signum() / (theta.abs() + (theta * theta + 1.0).sqrt());
                let t = if theta == 0.0 { 1.0 } else { t };
                let c = 1.0 / (t * t + 1.0).sqrt();
                let s = t * c;
                for r in 0..n {
                    let (mrp, mrq) = (m[r * n + p], m[r * n + q]);
                    m[r * n + p] = c * mrp - s * mrq;
                    m[r * n + q] = s * mrp + c * mrq;
                }
                for r in 0..n {
                    let (mpr, mqr) = (m[p * n + r], m[q * n + r]);
                    m[p * n + r] = c * mpr - s * mqr;
                    m[q * n + r] = s * mpr + c * mqr;
                }
                for r in 0..n {
                    let (vrp, vrq) = (v[r * n + p], v[r * n + q]);
                    v[r * n + p] = c * vrp - s * vrq;
                    v[r * n + q] = s * vrp + c * vrq;
                }
            }
        }
    }
    ((0..n).map(|p| m[p * n + p]).collect(), v)
}

/// Solves the damped, scaled normal equations (Â + μI)z = −ĝ by Cholesky; None if not
/// positive definite.
fn damped_step(a: &[f64], g: &[f64], n: usize, mu: f64) -> Option<Vec<f64>> {
    let d: Vec<f64> = (0..n)
        .map(|p| {
            let x = a[p * n + p].max(0.0).sqrt();
            if x > 0.0 { x } else { 1.0 }
        })
        .collect();
    let mut m = vec![0.0; n * n];
    for p in 0..n {
        for q in 0..n {
            m[p * n + q] = a[p * n + q] / (d[p] * d[q]);
        }
        m[p * n + p] += mu;
    }
    // Cholesky m = L Lᵀ.
    let mut l = vec![0.0; n * n];
    for i in 0..n {
        for j in 0..=i {
            let s = m[i * n + j] - (0..j).map(|k| l[i * n + k] * l[j * n + k]).sum::<f64>();
            if i == j {
                if s.is_nan() || s <= 0.0 {
                    return None;
                }
                l[i * n + i] = s.sqrt();
            } else {
                l[i * n + j] = s / l[j * n + j];
            }
        }
    }
    let b: Vec<f64> = (0..n).map(|p| -g[p] / d[p]).collect();
    let mut y = vec![0.0; n];
    for i in 0..n {
        y[i] = (b[i] - (0..i).map(|k| l[i * n + k] * y[k]).sum::<f64>()) / l[i * n + i];
    }
    let mut z = vec![0.0; n];
    for i in (0..n).rev() {
        z[i] = (y[i] - (i + 1..n).map(|k| l[k * n + i] * z[k]).sum::<f64>()) / l[i * n + i];
    }
    Some((0..n).map(|p| z[p] / d[p]).collect())
}

/// max_p |J_pᵀr| / (‖J_p‖·‖r‖).
fn orthogonality(lin: &Linearization) -> f64 {
    let rn = dot(&lin.residual, &lin.residual).sqrt();
    lin.columns
        .iter()
        .map(|c| {
            let cn = dot(c, c).sqrt();
            if cn > 0.0 && rn > 0.0 {
                dot(c, &lin.residual).abs() / (cn * rn)
            } else {
                0.0
            }
        })
        .fold(0.0, f64::max)
}

fn check_options(options: &FitOptions) -> Result<(), CalibrateError> {
    if options.max_iterations == 0 {
        return Err(CalibrateError::invalid(
            "options.max_iterations",
            0,
            "must be >= 1",
        ));
    }
    if !(options.tolerance.is_finite() && options.tolerance >= 0.0) {
        return Err(CalibrateError::invalid(
            "options.tolerance",
            options.tolerance,
            "must be finite and >= 0",
        ));
    }
    if let Some(s) = options.noise_sd
        && !(s.is_finite() && s > 0.0)
    {
        return Err(CalibrateError::invalid(
            "options.noise_sd",
            s,
            "must be finite and > 0",
        ));
    }
    if let Some(s) = options.compression_start_hz
        && !(s.is_finite() && s > 0.0)
    {
        return Err(CalibrateError::invalid(
            "options.compression_start_hz",
            s,
            "must be finite and > 0",
        ));
    }
    if options.free.indices().is_empty() {
        return Err(CalibrateError::invalid(
            "options.free",
            "none",
            "at least one parameter must be free",
        ));
    }
    Ok(())
}

impl Calibrator {
    /// Fits the hardware model to `data` by Levenberg–Marquardt from `start` (module doc).
    pub fn fit(
        &mut self,
        data: &[Measurement],
        start: &HardwareModel,
        options: &FitOptions,
    ) -> Result<CalibrationFit, CalibrateError> {
        check_options(options)?;
        self.validate(data)?;
        start.validate("start")?;
        let mut start = *start;
        if options.free.compression && start.compression.is_none() {
            let peak = data
                .iter()
                .flat_map(|m| m.ux.iter().zip(&m.uy).map(|(x, y)| x.hypot(*y)))
                .fold(0.0, f64::max);
            let s = options.compression_start_hz.unwrap_or(3.0 * peak);
            if s.is_nan() || s <= 0.0 {
                return Err(CalibrateError::invalid(
                    "data waveforms",
                    "all zero",
                    "compression cannot be fitted without RF",
                ));
            }
            start.compression = Some(s);
        }
        // Fresh tables for every fit (they grow with the B0 offsets visited).
        self.reset_simulator()?;
        let free = options.free.indices();
        let n = free.len();
        let rows = 2 * self.window(options)?.len() * data.len();
        if rows <= n {
            return Err(CalibrateError::invalid(
                "options.window_ppm",
                format!("{:?}", options.window_ppm),
                format!("{rows} residual rows are too few for {n} free parameters"),
            ));
        }
        let data_norm: f64 = {
            let idx = self.window(options)?;
            let plan = crate::spectrum::SpectrumPlan::new(self.acquisition().points)?;
            let mut s = 0.0;
            for m in data {
                let sp = plan.spectrum(&m.fid)?;
                s += f64::from(m.averages) * idx.iter().map(|&j| sp[j].norm_sqr()).sum::<f64>();
            }
            s.sqrt()
        };
        let mut theta = start.to_vector();
        let mut model = start;
        let mut lin = self.linearize(data, &model, options)?;
        let mut cost = lin.cost();
        if !cost.is_finite() {
            return Err(CalibrateError::invalid(
                "start",
                format!("{start:?}"),
                "the cost is not finite there",
            ));
        }
        let mut mu = 1e-3;
        let mut iterations = 0;
        let mut converged = false;
        for _ in 0..options.max_iterations {
            if orthogonality(&lin) <= 1e-8 {
                converged = true;
                break;
            }
            let a = lin.normal_matrix();
            let g = lin.gradient();
            let mut accepted = false;
            for _ in 0..40 {
                let Some(step) = damped_step(&a, &g, n, mu) else {
                    mu *= 4.0;
                    continue;
                };
                let mut trial = theta;
                for (&p, s) in free.iter().zip(&step) {
                    trial[p] += s;
                }
                let trial_model = HardwareModel::from_vector(&trial);
                // Trust bounds: B1 may change by half its value per step, B0 by a quarter of
                // the spectral width.
                let wild = (trial[B1] - theta[B1]).abs() > 0.5 * theta[B1]
                    || (trial[B0] - theta[B0]).abs() > 0.25 / self.acquisition().dwell;
                if wild || trial_model.validate("trial").is_err() {
                    mu *= 4.0;
                    continue;
                }
                // A trial the simulator refuses (a wild step along a column at the rounding
                // level) is a rejected step, not a failed fit.
                let c2 = match self.cost(data, &trial_model, options) {
                    Ok(c) => c,
                    Err(CalibrateError::Physics(_)) => f64::INFINITY,
                    Err(e) => return Err(e),
                };
                if c2.is_finite() && c2 < cost {
                    let rel = (cost - c2) / cost;
                    theta = trial;
                    model = trial_model;
                    cost = c2;
                    lin = self.linearize(data, &model, options)?;
                    cost = lin.cost().min(cost);
                    mu = (mu / 3.0).max(1e-12);
                    iterations += 1;
                    accepted = true;
                    if rel < options.tolerance {
                        converged = true;
                    }
                    break;
                }
                mu *= 4.0;
            }
            if converged {
                break;
            }
            if !accepted {
                let rn = (2.0 * cost).sqrt();
                converged = rn <= 1e-10 * data_norm || orthogonality(&lin) <= 1e-4;
                break;
            }
        }
        let rows = lin.residual.len();
        let sigma2 = match options.noise_sd {
            Some(sd) => sd * sd * self.spectral_noise_factor(),
            None => 2.0 * cost / (rows - n) as f64,
        };
        let cov = covariance(&lin.normal_matrix(), n, sigma2);
        let sd: Vec<f64> = (0..n).map(|p| cov[p * n + p].sqrt()).collect();
        let mut corr = vec![0.0; n * n];
        for p in 0..n {
            for q in 0..n {
                corr[p * n + q] = if p == q && sd[p].is_finite() {
                    1.0
                } else if sd[p].is_finite() && sd[q].is_finite() && sd[p] > 0.0 && sd[q] > 0.0 {
                    cov[p * n + q] / (sd[p] * sd[q])
                } else {
                    f64::NAN
                };
            }
        }
        Ok(CalibrationFit {
            model,
            std_errors: StdErrors::from_parts(&free, &sd),
            free: free
                .iter()
                .map(|&p| PARAMETER_NAMES[p].to_string())
                .collect(),
            covariance: cov,
            correlation: corr,
            residual_rms: (2.0 * cost / rows as f64).sqrt(),
            noise_sd: (sigma2 / self.spectral_noise_factor()).sqrt(),
            iterations,
            converged,
            cost,
        })
    }

    /// Variance of one real spectral component per unit FID noise variance: Σ_k h_k² = M − ¾
    /// (the first point is halved).
    fn spectral_noise_factor(&self) -> f64 {
        self.acquisition().points as f64 - 0.75
    }

    /// The standard errors a fit would report (the Cramér–Rao bound at `model`) if the probes
    /// were played on hardware `model` with FID noise SD `noise_sd` (one real component of a
    /// single transient): lets a session compare candidate probe sets before playing them.
    pub fn expected_std_errors(
        &mut self,
        model: &HardwareModel,
        probes: &[Probe],
        noise_sd: f64,
        options: &FitOptions,
    ) -> Result<StdErrors, CalibrateError> {
        check_options(options)?;
        if !(noise_sd.is_finite() && noise_sd > 0.0) {
            return Err(CalibrateError::invalid(
                "noise_sd",
                noise_sd,
                "must be finite and > 0",
            ));
        }
        let acq = self.acquisition();
        let data: Vec<Measurement> = probes
            .iter()
            .map(|p| Measurement {
                ux: p.ux.clone(),
                uy: p.uy.clone(),
                dt: self.dt(),
                fid: vec![num_complex::Complex64::new(0.0, 0.0); acq.points],
                dwell_s: acq.dwell,
                averages: p.averages,
            })
            .collect();
        let lin = self.linearize(&data, model, options)?;
        let n = lin.parameters.len();
        let cov = covariance(
            &lin.normal_matrix(),
            n,
            noise_sd * noise_sd * self.spectral_noise_factor(),
        );
        let sd: Vec<f64> = (0..n).map(|p| cov[p * n + p].sqrt()).collect();
        Ok(StdErrors::from_parts(&lin.parameters, &sd))
    }
}
