//! Spectral objectives: losses defined on windows of the simulated spectra of each molecule,
//! averaged over ensemble members, with exact gradients back to the FIDs.

use num_complex::Complex64 as C64;

use crate::physics::{PhysicsError, SignalLoss, Signals};
use crate::spectrum::{SpectrumPlan, ppm_axis, window_indices};

/// How one molecule's spectrum in the window enters the loss.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum TermKind {
    /// weight · Σ_W Re S (use a negative weight to reward absorption signal).
    RealSum,
    /// weight · Σ_W |S|² (penalize any signal, whatever its phase).
    Power,
}

/// One term of a window loss.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Term {
    /// Molecule index in the simulator's order.
    pub molecule: usize,
    /// Kind of term.
    pub kind: TermKind,
    /// Multiplier.
    pub weight: f64,
}

/// L = mean over members of Σ_terms weight·(term over the ppm window [lo, hi]).
///
/// The golden problem `glu_gln_3t` is this loss with terms (Glu, RealSum, −1) and
/// (Gln, Power, 1/1000) over 2.25–2.50 ppm.
#[derive(Debug, Clone)]
pub struct WindowLoss {
    plan: SpectrumPlan,
    window: Vec<usize>,
    terms: Vec<Term>,
}

impl WindowLoss {
    /// Builds the loss for FIDs of `points` samples at `dwell`, observed at `f0_mhz` with the
    /// carrier at `carrier_ppm`, on the window [lo, hi] ppm.
    pub fn new(
        points: usize,
        dwell: f64,
        carrier_ppm: f64,
        f0_mhz: f64,
        window_ppm: (f64, f64),
        terms: Vec<Term>,
    ) -> Result<WindowLoss, PhysicsError> {
        let plan = SpectrumPlan::new(points)?;
        let ppm = ppm_axis(points, dwell, carrier_ppm, f0_mhz);
        let (lo, hi) = window_ppm;
        if !(lo.is_finite() && hi.is_finite() && lo < hi) {
            return Err(PhysicsError::invalid(
                "window_ppm",
                format!("[{lo}, {hi}]"),
                "need finite lo < hi",
            ));
        }
        let window = window_indices(&ppm, lo, hi);
        if window.is_empty() {
            let (a, b) = (ppm[0], ppm[ppm.len() - 1]);
            return Err(PhysicsError::invalid(
                "window_ppm",
                format!("[{lo}, {hi}]"),
                format!("no spectral point inside; the spectral width spans {a:.3}..{b:.3} ppm"),
            ));
        }
        for (i, t) in terms.iter().enumerate() {
            if !t.weight.is_finite() {
                return Err(PhysicsError::invalid(
                    format!("terms[{i}].weight"),
                    t.weight,
                    "must be finite",
                ));
            }
        }
        Ok(WindowLoss {
            plan,
            window,
            terms,
        })
    }

    /// Indices of the window in the shifted spectrum.
    pub fn window(&self) -> &[usize] {
        &self.window
    }

    /// Per-term values for one member (for reporting): Σ_W Re S or Σ_W |S|², unweighted.
    pub fn term_values(&self, signals: &Signals, member: usize) -> Result<Vec<f64>, PhysicsError> {
        self.terms
            .iter()
            .map(|t| {
                let spec = self.plan.spectrum(signals.fid(member, t.molecule))?;
                Ok(match t.kind {
                    TermKind::RealSum => self.window.iter().map(|&j| spec[j].re).sum(),
                    TermKind::Power => self.window.iter().map(|&j| spec[j].norm_sqr()).sum(),
                })
            })
            .collect()
    }
}

impl SignalLoss for WindowLoss {
    fn evaluate(
        &self,
        signals: &Signals,
        mut grad: Option<&mut Signals>,
    ) -> Result<f64, PhysicsError> {
        for t in &self.terms {
            if t.molecule >= signals.molecules() {
                return Err(PhysicsError::invalid(
                    "term.molecule",
                    t.molecule,
                    format!("only {} molecules are simulated", signals.molecules()),
                ));
            }
        }
        let members = signals.members();
        let mean = 1.0 / members as f64;
        if let Some(g) = grad.as_deref_mut() {
            g.fill_zero();
        }
        let mut total = 0.0;
        for member in 0..members {
            let mut lm = 0.0;
            for t in &self.terms {
                let spec = self.plan.spectrum(signals.fid(member, t.molecule))?;
                let mut gspec = vec![C64::new(0.0, 0.0); spec.len()];
                match t.kind {
                    TermKind::RealSum => {
                        let s: f64 = self.window.iter().map(|&j| spec[j].re).sum();
                        lm += t.weight * s;
                        for &j in &self.window {
                            gspec[j] = C64::new(t.weight * mean, 0.0);
                        }
                    }
                    TermKind::Power => {
                        let s: f64 = self.window.iter().map(|&j| spec[j].norm_sqr()).sum();
                        lm += t.weight * s;
                        for &j in &self.window {
                            gspec[j] = spec[j] * (2.0 * t.weight * mean);
                        }
                    }
                }
                if let Some(g) = grad.as_deref_mut() {
                    let gfid = self.plan.spectrum_adjoint(&gspec)?;
                    for (o, x) in g.fid_mut(member, t.molecule).iter_mut().zip(&gfid) {
                        *o += x;
                    }
                }
            }
            total += lm;
        }
        Ok(total / members as f64)
    }
}
