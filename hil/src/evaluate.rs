//! How good a pulse is on the *true* hardware: the objective of a waveform under the hidden
//! truth ([`TrueHardware`]), the **oracle** pulse (designed knowing the true B1, B0 and
//! linewidth) and the performance ratio of two objective values.
//!
//! # Like with like
//! Every pulse is scored by the same evaluator: the waveform goes through the truth's transmit
//! chain (filter, AM/AM, AM/PM — [`HiddenTruth::transmit`]), then the session's objective
//! (without penalties) is evaluated by spinloop's [`LoopModel::objective`] with a single
//! ensemble member at the true B1 scale, the true B0 at the evaluation time and the true
//! linewidth. The oracle is designed by the same designer as the session
//! ([`LoopModel::design`]: same problem, same ensemble around the estimate, same optimizer
//! iterations per design) with the true B1/B0/linewidth as the estimate from the start, and
//! as many warm-started designs in a row as the session made, so it never has fewer optimizer
//! iterations than the closed loop. Neither designer models the transmit filter or AM/PM, so
//! the oracle is "perfect calibration of what the daemon can model".
//!
//! # Performance ratio
//! Objectives are losses (lower is better; an enhancement is −signal/reference). The ratio of
//! a pulse to the oracle is L/L_oracle when L_oracle < 0 (signal relative to the oracle's
//! signal: 0.95 = 95 % of the oracle's enhancement) and L_oracle/L when L_oracle > 0.

use spinloop::control::{CancelToken, Design, EnsembleSpec, LoopModel};
use spinloop::design::problem::ProblemSpec;

use crate::HilError;
use crate::hardware::HiddenTruth;

/// Scores waveforms under the true hardware (module doc).
pub struct TrueHardware {
    model: LoopModel,
    truth: HiddenTruth,
    dt: f64,
}

impl std::fmt::Debug for TrueHardware {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TrueHardware")
            .field("truth", &self.truth)
            .finish_non_exhaustive()
    }
}

impl TrueHardware {
    /// An evaluator of the session's `problem` under `truth`.
    pub fn new(problem: ProblemSpec, truth: HiddenTruth) -> Result<TrueHardware, HilError> {
        truth.validate()?;
        let dt = problem.pulse.dt_us * 1e-6;
        let model = LoopModel::new(problem, EnsembleSpec::default())?;
        Ok(TrueHardware { model, truth, dt })
    }

    /// The objective of the waveform played at session time `t_s` on the true hardware.
    pub fn objective(&mut self, ux: &[f64], uy: &[f64], t_s: f64) -> Result<f64, HilError> {
        let (tx, ty) = self.truth.transmit(ux, uy, self.dt)?;
        Ok(self.model.objective(&self.truth.model_at(t_s), &tx, &ty)?)
    }
}

/// The oracle pulse: `designs` designs in a row (the first from the problem's start, the
/// others warm-started) under the true B1/B0(t_s)/linewidth with the session's `ensemble`.
pub fn oracle(
    problem: ProblemSpec,
    ensemble: EnsembleSpec,
    truth: &HiddenTruth,
    t_s: f64,
    designs: usize,
) -> Result<Design, HilError> {
    let mut model = LoopModel::new(problem, ensemble)?;
    let estimate = truth.model_at(t_s);
    let cancel = CancelToken::default();
    let mut d = model.design(&estimate, None, &cancel)?;
    for _ in 1..designs.max(1) {
        d = model.design(&estimate, Some(&d.theta), &cancel)?;
    }
    Ok(d)
}

/// Performance of a pulse with objective `value` relative to the oracle's `oracle` (module
/// doc); NaN when the oracle's objective is 0 or either is not finite.
pub fn ratio(value: f64, oracle: f64) -> f64 {
    if !(value.is_finite() && oracle.is_finite()) || oracle == 0.0 {
        f64::NAN
    } else if oracle < 0.0 {
        value / oracle
    } else {
        oracle / value
    }
}
