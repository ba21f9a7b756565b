//! The physics a session runs: design under a hardware estimate (the ensemble re-centred on
//! it), the objective of a waveform under an estimate, and the joint hardware fit of every
//! FID so far (`calibrate`). Pure computation; the session decides when to call it.

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::session::{AcquisitionInput, SentWaveform};
use super::spec::EnsembleSpec;
use crate::calibrate::{
    Calibrator, FitOptions, HardwareModel, Measurement, PROBE_SCALES, Probe, probe_waveform,
};
use crate::design::problem::{DesignProblem, ProblemSpec};
use crate::physics::{PhysicsError, SignalLoss};

/// The current hardware estimate (the calibrated model).
pub type HardwareEstimate = HardwareModel;

/// A designed waveform.
#[derive(Debug, Clone)]
pub struct Design {
    /// Segment duration (s).
    pub dt: f64,
    /// x samples (Hz).
    pub ux: Vec<f64>,
    /// y samples (Hz).
    pub uy: Vec<f64>,
    /// Optimizer parameters.
    pub theta: Vec<f64>,
    /// Objective predicted under the estimate it was designed for.
    pub predicted: f64,
    /// Optimizer iterations.
    pub iterations: usize,
    /// Optimizer stop reason.
    pub stop: String,
}

/// A fit of the hardware model.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FitOutcome {
    /// The new estimate.
    pub estimate: HardwareEstimate,
    /// Parameters with standard errors (`[{name, value, std_error, unit}]`).
    pub parameters: Value,
    /// Standard error of the B1 scale.
    pub b1_sigma: f64,
    /// RMS of the residuals.
    pub residual_rms: f64,
    /// Iterations of the fit.
    pub iterations: usize,
    /// FID noise SD (one real component of one transient) the fit found.
    pub noise_sd: f64,
}

/// A probe chosen to identify the B1 scale.
#[derive(Debug, Clone)]
pub struct ProbeChoice {
    /// Scale of the design (flip × scale).
    pub scale: f64,
    /// x samples (Hz).
    pub ux: Vec<f64>,
    /// y samples (Hz).
    pub uy: Vec<f64>,
    /// σ(B1 scale) the joint fit is expected to reach with it (Cramér–Rao bound at the
    /// estimate).
    pub expected_b1_sigma: f64,
}

/// The session's physics.
pub struct LoopModel {
    problem: ProblemSpec,
    ensemble: EnsembleSpec,
    calibrator: Calibrator,
}

impl LoopModel {
    /// The model for a (validated) problem and the ensemble relative to the estimate.
    pub fn new(problem: ProblemSpec, ensemble: EnsembleSpec) -> Result<LoopModel, PhysicsError> {
        let nominal = DesignProblem::build(problem.clone())?;
        let calibrator = Calibrator::new(&nominal)
            .map_err(|e| PhysicsError::invalid("session", "calibration model", e.to_string()))?;
        Ok(LoopModel {
            problem,
            ensemble,
            calibrator,
        })
    }

    /// The design problem under an estimate: the ensemble re-centred on its B1 scale and B0
    /// offset, the linewidth widened by its extra broadening.
    pub fn problem_under(&self, e: &HardwareEstimate) -> Result<DesignProblem, PhysicsError> {
        let mut spec = self.problem.clone();
        spec.ensemble.b1 = self.ensemble.b1.iter().map(|b| b * e.b1_scale).collect();
        spec.ensemble.b0_hz = self
            .ensemble
            .b0_hz
            .iter()
            .map(|b| b + e.b0_offset_hz)
            .collect();
        spec.acquisition.linewidth_hz = (spec.acquisition.linewidth_hz + e.linewidth_hz).max(0.1);
        DesignProblem::build(spec)
    }

    /// The objective (without penalties) of a waveform under an estimate.
    pub fn objective(
        &mut self,
        e: &HardwareEstimate,
        ux: &[f64],
        uy: &[f64],
    ) -> Result<f64, PhysicsError> {
        let mut p = self.problem_under(e)?;
        let s = p.signals(ux, uy)?;
        p.objective.evaluate(&s, None)
    }

    /// Designs under an estimate, warm-started from `warm` (optimizer parameters) or from the
    /// problem's start.
    /// A set `cancel` stops the optimizer at its next iteration (the result is then
    /// discarded by the session).
    pub fn design(
        &mut self,
        e: &HardwareEstimate,
        warm: Option<&[f64]>,
        cancel: &super::CancelToken,
    ) -> Result<Design, PhysicsError> {
        let mut p = self.problem_under(e)?;
        let x0 = match warm {
            Some(x) => x.to_vec(),
            None => p.initial_parameters()?,
        };
        let r = p.optimize_from(&x0, |_| {
            if cancel.is_cancelled() {
                crate::design::optimize::Control::Stop
            } else {
                crate::design::optimize::Control::Continue
            }
        })?;
        let (mut ux, mut uy) = r.optimized;
        let mut theta = r.parameters;
        // The energy limit is a soft barrier in the objective; project a design that ends
        // above it back onto the limit (a uniform scale, which also keeps the peak below its
        // limit) so the interlock sees a waveform it can approve.
        if let Some(max) = p.spec.limits.max_energy_hz2s {
            let e: f64 = ux.iter().zip(&uy).map(|(x, y)| x * x + y * y).sum::<f64>() * p.param.dt;
            if e > max {
                let k = (max / e).sqrt() * (1.0 - 1e-9);
                ux.iter_mut().chain(uy.iter_mut()).for_each(|v| *v *= k);
                theta = p.param.from_waveform(&ux, &uy)?;
            }
        }
        let s = p.signals(&ux, &uy)?;
        let predicted = p.objective.evaluate(&s, None)?;
        Ok(Design {
            dt: p.param.dt,
            ux,
            uy,
            theta,
            predicted,
            iterations: r.optimizer.history.len().saturating_sub(1),
            stop: format!("{:?}", r.optimizer.reason),
        })
    }

    /// The joint fit of every FID (each with the waveform it was measured with), from `start`.
    pub fn fit(
        &mut self,
        data: &[(SentWaveform, AcquisitionInput)],
        start: &HardwareEstimate,
    ) -> Result<FitOutcome, PhysicsError> {
        let measurements: Vec<Measurement> = data
            .iter()
            .map(|(w, a)| Measurement {
                ux: w.ux.clone(),
                uy: w.uy.clone(),
                dt: w.dt,
                fid: a.fid.clone(),
                dwell_s: a.dwell_s,
                averages: a.averages,
            })
            .collect();
        let fit = self
            .calibrator
            .fit(&measurements, start, &FitOptions::default())
            .map_err(|e| PhysicsError::Numerical(e.to_string()))?;
        let params = fit.parameters();
        let b1_sigma = params
            .iter()
            .find(|p| p.name == "b1_scale")
            .map_or(f64::INFINITY, |p| p.std_error.unwrap_or(f64::INFINITY));
        let parameters = json!(
            params
                .iter()
                .map(|p| json!({
                    "name": p.name, "value": p.value, "std_error": p.std_error, "unit": p.unit,
                }))
                .collect::<Vec<_>>()
        );
        Ok(FitOutcome {
            estimate: fit.model,
            parameters,
            b1_sigma,
            residual_rms: fit.residual_rms,
            iterations: fit.iterations,
            noise_sd: fit.noise_sd,
        })
    }

    /// The probe that best identifies the B1 scale: among the design scaled by each of
    /// [`PROBE_SCALES`] that passes the console's per-waveform limits (peak, energy, duration,
    /// raster, duty cycle at its TR), the one whose FIDs, fitted jointly with the ones already
    /// measured (`played`: waveform and averages of each), give the smallest expected σ(B1) at
    /// the estimate. `None` if no scale is within the limits.
    pub fn choose_probe(
        &mut self,
        e: &HardwareEstimate,
        played: &[(Vec<f64>, Vec<f64>, u32)],
        design: (&[f64], &[f64]),
        averages: u32,
        noise_sd: f64,
        console: &super::ConsoleProfile,
    ) -> Result<Option<ProbeChoice>, PhysicsError> {
        let (limits, tr_s) = (&console.limits, console.tr_s);
        let dt = self.calibrator.dt();
        let err = |e: crate::calibrate::CalibrateError| PhysicsError::Numerical(e.to_string());
        let mut base: Vec<Probe> = played
            .iter()
            .map(|(ux, uy, a)| Probe {
                ux: ux.clone(),
                uy: uy.clone(),
                averages: *a,
            })
            .collect();
        let mut best: Option<ProbeChoice> = None;
        for &scale in &PROBE_SCALES {
            let (ux, uy) = probe_waveform(design.0, design.1, scale).map_err(err)?;
            if limits
                .hardware()
                .check_waveform(&ux, &uy, dt, Some(tr_s))
                .is_err()
            {
                continue;
            }
            base.push(Probe {
                ux: ux.clone(),
                uy: uy.clone(),
                averages,
            });
            let sd = self
                .calibrator
                .expected_std_errors(e, &base, noise_sd, &FitOptions::default())
                .map_err(err)?;
            base.pop();
            let sigma = sd.b1_scale.unwrap_or(f64::INFINITY);
            if best.as_ref().is_none_or(|b| sigma < b.expected_b1_sigma) {
                best = Some(ProbeChoice {
                    scale,
                    ux,
                    uy,
                    expected_b1_sigma: sigma,
                });
            }
        }
        Ok(best)
    }

    /// The noise-free FID a console with hardware `e` returns for a waveform (for simulated
    /// consoles and tests).
    pub fn predict(
        &mut self,
        e: &HardwareEstimate,
        ux: &[f64],
        uy: &[f64],
    ) -> Result<Vec<num_complex::Complex64>, PhysicsError> {
        self.calibrator
            .predict(e, ux, uy)
            .map_err(|err| PhysicsError::Numerical(err.to_string()))
    }
}
