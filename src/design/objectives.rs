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

/// A named, weighted part of a composite objective.
pub struct Part {
    /// Name for reports (e.g. `crlb(Gln)`).
    pub name: String,
    /// Multiplier.
    pub weight: f64,
    /// The loss.
    pub loss: Box<dyn SignalLoss + Send>,
}

impl std::fmt::Debug for Part {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Part")
            .field("name", &self.name)
            .field("weight", &self.weight)
            .finish_non_exhaustive()
    }
}

/// L = Σ weight·part: objectives compose by weighted sums; each part is itself a mean over
/// ensemble members.
#[derive(Debug, Default)]
pub struct Composite {
    /// The parts.
    pub parts: Vec<Part>,
}

impl Composite {
    /// Unweighted value of every part (for reports).
    pub fn values(&self, signals: &Signals) -> Result<Vec<f64>, PhysicsError> {
        self.parts
            .iter()
            .map(|p| p.loss.evaluate(signals, None))
            .collect()
    }
}

impl SignalLoss for Composite {
    fn evaluate(
        &self,
        signals: &Signals,
        mut grad: Option<&mut Signals>,
    ) -> Result<f64, PhysicsError> {
        if let Some(g) = grad.as_deref_mut() {
            g.fill_zero();
        }
        let mut part_grad = grad
            .as_ref()
            .map(|_| Signals::zeros(signals.members(), signals.molecules(), signals.points()));
        let mut total = 0.0;
        for p in &self.parts {
            let v = p.loss.evaluate(signals, part_grad.as_mut())?;
            if !v.is_finite() {
                return Err(PhysicsError::Numerical(format!(
                    "objective part {} is {v}",
                    p.name
                )));
            }
            total += p.weight * v;
            if let (Some(g), Some(pg)) = (grad.as_deref_mut(), part_grad.as_ref()) {
                for member in 0..signals.members() {
                    for mol in 0..signals.molecules() {
                        for (o, x) in g.fid_mut(member, mol).iter_mut().zip(pg.fid(member, mol)) {
                            *o += x * p.weight;
                        }
                    }
                }
            }
        }
        Ok(total)
    }
}

/// Interferometric enhancement: L = −(Σ_W Re S_m) / reference, the absorption signal of
/// molecule m in a ppm window relative to what a reference pulse gives there (so −1.3 means 30 %
/// more signal than the reference). Mean over members.
#[derive(Debug, Clone)]
pub struct Enhancement {
    window: WindowLoss,
    reference: f64,
}

impl Enhancement {
    /// `reference` is Σ_W Re S_m of the reference pulse (nonzero).
    pub fn new(
        points: usize,
        dwell: f64,
        carrier_ppm: f64,
        f0_mhz: f64,
        window_ppm: (f64, f64),
        molecule: usize,
        reference: f64,
    ) -> Result<Enhancement, PhysicsError> {
        if !reference.is_finite() || reference.abs() < 1e-300 {
            return Err(PhysicsError::invalid(
                "enhancement reference",
                reference,
                "the reference pulse gives no absorption signal in the window",
            ));
        }
        let window = WindowLoss::new(
            points,
            dwell,
            carrier_ppm,
            f0_mhz,
            window_ppm,
            vec![Term {
                molecule,
                kind: TermKind::RealSum,
                weight: -1.0 / reference,
            }],
        )?;
        Ok(Enhancement { window, reference })
    }

    /// Σ_W Re S of the reference pulse.
    pub fn reference(&self) -> f64 {
        self.reference
    }
}

impl SignalLoss for Enhancement {
    fn evaluate(&self, signals: &Signals, grad: Option<&mut Signals>) -> Result<f64, PhysicsError> {
        self.window.evaluate(signals, grad)
    }
}

/// Suppression: L = (Σ_W |S_m|²) / reference, the power of molecule m in a ppm window relative
/// to what the reference pulse leaves there (0 = none left, 1 = as much as the reference).
#[derive(Debug, Clone)]
pub struct Suppression {
    window: WindowLoss,
}

impl Suppression {
    /// `reference` is Σ_W |S_m|² of the reference pulse (positive).
    pub fn new(
        points: usize,
        dwell: f64,
        carrier_ppm: f64,
        f0_mhz: f64,
        window_ppm: (f64, f64),
        molecule: usize,
        reference: f64,
    ) -> Result<Suppression, PhysicsError> {
        if !reference.is_finite() || reference <= 1e-300 {
            return Err(PhysicsError::invalid(
                "suppression reference",
                reference,
                "the reference pulse gives no signal in the window",
            ));
        }
        Ok(Suppression {
            window: WindowLoss::new(
                points,
                dwell,
                carrier_ppm,
                f0_mhz,
                window_ppm,
                vec![Term {
                    molecule,
                    kind: TermKind::Power,
                    weight: 1.0 / reference,
                }],
            )?,
        })
    }
}

impl SignalLoss for Suppression {
    fn evaluate(&self, signals: &Signals, grad: Option<&mut Signals>) -> Result<f64, PhysicsError> {
        self.window.evaluate(signals, grad)
    }
}

/// Fidelity to a target spectrum: L = Σ_W |Σ_m w_m S_m − T|² / Σ_W |T|² over a ppm window
/// (0 = exact, 1 = as far as no signal at all), mean over members. `w_m` weighs the molecules
/// (concentrations of a mixture, or 1 for a single molecule).
#[derive(Debug, Clone)]
pub struct Fidelity {
    plan: SpectrumPlan,
    window: Vec<usize>,
    weights: Vec<f64>,
    target: Vec<C64>,
    norm: f64,
}

impl Fidelity {
    /// `target_fid` is the FID whose spectrum is the target (same points as the simulation).
    pub fn new(
        dwell: f64,
        carrier_ppm: f64,
        f0_mhz: f64,
        window_ppm: (f64, f64),
        weights: Vec<f64>,
        target_fid: &[C64],
    ) -> Result<Fidelity, PhysicsError> {
        let points = target_fid.len();
        let probe = WindowLoss::new(points, dwell, carrier_ppm, f0_mhz, window_ppm, Vec::new())?;
        let plan = SpectrumPlan::new(points)?;
        let spec = plan.spectrum(target_fid)?;
        let window = probe.window().to_vec();
        let target: Vec<C64> = window.iter().map(|&j| spec[j]).collect();
        let norm: f64 = target.iter().map(|z| z.norm_sqr()).sum();
        if !norm.is_finite() || norm <= 0.0 {
            return Err(PhysicsError::invalid(
                "fidelity target",
                norm,
                "the target spectrum is zero (or not finite) in the window",
            ));
        }
        for (i, w) in weights.iter().enumerate() {
            if !w.is_finite() {
                return Err(PhysicsError::invalid(
                    format!("fidelity weights[{i}]"),
                    w,
                    "must be finite",
                ));
            }
        }
        Ok(Fidelity {
            plan,
            window,
            weights,
            target,
            norm,
        })
    }
}

impl SignalLoss for Fidelity {
    fn evaluate(
        &self,
        signals: &Signals,
        mut grad: Option<&mut Signals>,
    ) -> Result<f64, PhysicsError> {
        if signals.molecules() != self.weights.len() {
            return Err(PhysicsError::SizeMismatch {
                what: "fidelity weights".into(),
                expected: signals.molecules(),
                got: self.weights.len(),
            });
        }
        if let Some(g) = grad.as_deref_mut() {
            g.fill_zero();
        }
        let members = signals.members();
        let mean = 1.0 / members as f64;
        let mut total = 0.0;
        for member in 0..members {
            let mix = signals.mixture(member, &self.weights)?;
            let spec = self.plan.spectrum(&mix)?;
            let mut gspec = vec![C64::new(0.0, 0.0); spec.len()];
            let mut v = 0.0;
            for (&j, t) in self.window.iter().zip(&self.target) {
                let r = spec[j] - t;
                v += r.norm_sqr();
                gspec[j] = r * (2.0 * mean / self.norm);
            }
            total += v / self.norm;
            if let Some(g) = grad.as_deref_mut() {
                let gfid = self.plan.spectrum_adjoint(&gspec)?;
                for (mol, &w) in self.weights.iter().enumerate() {
                    for (o, x) in g.fid_mut(member, mol).iter_mut().zip(&gfid) {
                        *o += x * w;
                    }
                }
            }
        }
        Ok(total * mean)
    }
}

/// A one-sided objective: L = max(0, f − target)², zero while the inner objective f is at or
/// below `target` — a soft constraint ("Glu CRLB no worse than 1.8 %") that leaves the optimizer
/// free inside it. The gradient is 2·max(0, f − target)·∇f.
pub struct Hinge {
    /// The inner objective.
    pub inner: Box<dyn SignalLoss + Send>,
    /// The threshold.
    pub target: f64,
}

impl std::fmt::Debug for Hinge {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Hinge")
            .field("target", &self.target)
            .finish_non_exhaustive()
    }
}

impl SignalLoss for Hinge {
    fn evaluate(
        &self,
        signals: &Signals,
        mut grad: Option<&mut Signals>,
    ) -> Result<f64, PhysicsError> {
        let v = self.inner.evaluate(signals, grad.as_deref_mut())?;
        let excess = (v - self.target).max(0.0);
        if let Some(g) = grad {
            for member in 0..signals.members() {
                for mol in 0..signals.molecules() {
                    for x in g.fid_mut(member, mol) {
                        *x *= 2.0 * excess;
                    }
                }
            }
        }
        Ok(excess * excess)
    }
}
