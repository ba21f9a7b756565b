//! Quantification-aware objectives: the Cramér–Rao lower bound of a metabolite, or the
//! correlation between two metabolites' estimates, as the linear-combination fit of
//! [`crate::spectrum::fit`] would report them for a spectrum acquired with the designed pulse —
//! computed from the Fisher matrix of the simulated basis set, with exact gradients back to the
//! simulated FIDs.
//!
//! # Model
//! For each ensemble member the simulated FIDs b_m (one per molecule, the member's signals, times
//! `signal_scale`) are the basis, and the mixture with the known concentrations c_m is the
//! truth. The Jacobian of the fit model at the truth, over the fit window, has the columns of
//! the fit ([`crate::spectrum::fit`], same order): ∂S/∂c_m = B̃_m; ∂S/∂φ0 = i·S; ∂S/∂φ1 =
//! i(ppm − pivot)·S; ∂S/∂δf = FT[i2πt·Σc_m b_m]; ∂S/∂lw = FT[−πt·Σc_m b_m]; and the Legendre
//! baseline columns P_j and i·P_j, where B̃ = FT (first point halved, FFT, fftshift) and
//! S = Σ c_m B̃_m. The Fisher matrix is F = Re(JᴴJ)/σ² with σ² = N·σ_fid² (the spectral noise
//! of white FID noise of SD σ_fid per real component), the covariance C = F⁻¹, and
//! - CRLB%(t) = 100·√C_tt / c_t,
//! - corr(a, b) = C_ab / √(C_aa·C_bb) (the objective is its square).
//!
//! The value is the mean over members. Gradient: for f(C), with G = ∂f/∂C and M = C·G·C,
//! ∂f/∂J = −(2/σ²)·J·M (in the complex-gradient convention of [`SignalLoss`]); each column is a
//! linear map of the FIDs, so its adjoint carries the gradient to ∂f/∂b_m.

use num_complex::Complex64 as C64;

use crate::physics::error::{finite, positive};
use crate::physics::{PhysicsError, SignalLoss, Signals};
use crate::spectrum::fit::{inverse, legendre_rows};
use crate::spectrum::{SpectrumPlan, ppm_axis, window_indices};

/// What the objective measures.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Measure {
    /// CRLB of one metabolite in % of its concentration.
    CrlbPercent {
        /// Index of the metabolite (simulation order).
        metabolite: usize,
    },
    /// Squared correlation between the estimates of two metabolites.
    CorrelationSquared {
        /// First metabolite.
        a: usize,
        /// Second metabolite.
        b: usize,
    },
}

/// Settings shared by the quantification objectives: the fit they anticipate.
#[derive(Debug, Clone, PartialEq)]
pub struct FitModel {
    /// Points of the FIDs.
    pub points: usize,
    /// Dwell (s).
    pub dwell: f64,
    /// Carrier (ppm) of the rotating frame.
    pub carrier_ppm: f64,
    /// Spectrometer frequency (MHz).
    pub f0_mhz: f64,
    /// Fit window (ppm).
    pub window_ppm: (f64, f64),
    /// Legendre baseline terms of the fit.
    pub baseline_terms: usize,
    /// Pivot of the first-order phase (ppm).
    pub pivot_ppm: f64,
    /// True concentrations, one per simulated molecule.
    pub concentrations: Vec<f64>,
    /// Noise SD of one real FID component (same units as the scaled signals).
    pub noise_sd: f64,
    /// Factor applied to the simulated signals (e.g. the grid volume, so signals are per
    /// nominal voxel like [`crate::spectrum::basis::protocol_basis`]).
    pub signal_scale: f64,
}

/// A CRLB or correlation objective (see the module doc).
#[derive(Debug, Clone)]
pub struct Quantification {
    model: FitModel,
    measure: Measure,
    plan: SpectrumPlan,
    idx: Vec<usize>,
    /// ppm − pivot at each window point.
    x_pivot: Vec<f64>,
    legendre: Vec<Vec<f64>>,
}

/// Number of nonlinear parameters of the fit (φ0, φ1, δf, lw).
const NONLIN: usize = 4;

/// Per-member pieces: the Jacobian (column-major, W × P) and the covariance.
struct MemberFisher {
    jac: Vec<C64>,
    cov: Vec<f64>,
}

impl Quantification {
    /// Builds the objective; errors name what is inconsistent (window outside the spectral
    /// width, too few points, a metabolite index out of range, bad numbers).
    pub fn new(model: FitModel, measure: Measure) -> Result<Quantification, PhysicsError> {
        let plan = SpectrumPlan::new(model.points)?;
        positive("dwell", model.dwell)?;
        positive("f0_mhz", model.f0_mhz)?;
        positive("noise_sd", model.noise_sd)?;
        positive("signal_scale", model.signal_scale)?;
        finite("pivot_ppm", model.pivot_ppm)?;
        let nm = model.concentrations.len();
        for (i, &c) in model.concentrations.iter().enumerate() {
            positive(format!("concentrations[{i}]"), c)?;
        }
        let check = |name: &str, m: usize| {
            if m >= nm {
                Err(PhysicsError::invalid(
                    name,
                    m,
                    format!("only {nm} metabolites are simulated"),
                ))
            } else {
                Ok(())
            }
        };
        match measure {
            Measure::CrlbPercent { metabolite } => check("metabolite", metabolite)?,
            Measure::CorrelationSquared { a, b } => {
                check("a", a)?;
                check("b", b)?;
                if a == b {
                    return Err(PhysicsError::invalid(
                        "correlation",
                        a,
                        "needs two different metabolites",
                    ));
                }
            }
        }
        let ppm = ppm_axis(model.points, model.dwell, model.carrier_ppm, model.f0_mhz);
        let (lo, hi) = model.window_ppm;
        if !(lo.is_finite() && hi.is_finite() && lo < hi) {
            return Err(PhysicsError::invalid(
                "window_ppm",
                format!("[{lo}, {hi}]"),
                "need finite lo < hi",
            ));
        }
        let idx = window_indices(&ppm, lo, hi);
        let n_params = nm + NONLIN + 2 * model.baseline_terms;
        if idx.len() * 2 <= n_params {
            let (a, b) = (ppm[0], ppm[ppm.len() - 1]);
            return Err(PhysicsError::invalid(
                "window_ppm",
                format!("[{lo}, {hi}]"),
                format!(
                    "holds {} spectral points (the spectral width spans {a:.3}..{b:.3} ppm), too few for {n_params} fit parameters",
                    idx.len()
                ),
            ));
        }
        let x_pivot = idx.iter().map(|&j| ppm[j] - model.pivot_ppm).collect();
        let legendre = legendre_rows(&ppm, &idx, model.baseline_terms);
        Ok(Quantification {
            model,
            measure,
            plan,
            idx,
            x_pivot,
            legendre,
        })
    }

    /// The fit model.
    pub fn model(&self) -> &FitModel {
        &self.model
    }

    fn n_params(&self) -> usize {
        self.model.concentrations.len() + NONLIN + 2 * self.model.baseline_terms
    }

    /// Window samples of the spectrum of `fid` (scaled).
    fn window(&self, fid: &[C64]) -> Result<Vec<C64>, PhysicsError> {
        let spec = self.plan.spectrum(fid)?;
        Ok(self
            .idx
            .iter()
            .map(|&j| spec[j] * self.model.signal_scale)
            .collect())
    }

    /// Jacobian and covariance of one member.
    fn member(&self, signals: &Signals, member: usize) -> Result<MemberFisher, PhysicsError> {
        let nm = self.model.concentrations.len();
        if signals.molecules() != nm {
            return Err(PhysicsError::SizeMismatch {
                what: "quantification: simulated molecules".into(),
                expected: nm,
                got: signals.molecules(),
            });
        }
        let w = self.idx.len();
        let p = self.n_params();
        let mut jac = vec![C64::new(0.0, 0.0); w * p];
        let dwell = self.model.dwell;
        let mut mix = vec![C64::new(0.0, 0.0); signals.points()];
        for m in 0..nm {
            let fid = signals.fid(member, m);
            let col = self.window(fid)?;
            jac[m * w..(m + 1) * w].copy_from_slice(&col);
            let c = self.model.concentrations[m];
            for (o, s) in mix.iter_mut().zip(fid) {
                *o += c * s;
            }
        }
        let s_mix = self.window(&mix)?;
        let t_mix: Vec<C64> = mix
            .iter()
            .enumerate()
            .map(|(k, s)| s * (k as f64 * dwell))
            .collect();
        let ts = self.window(&t_mix)?;
        let two_pi = 2.0 * std::f64::consts::PI;
        for k in 0..w {
            jac[nm * w + k] = C64::new(0.0, 1.0) * s_mix[k];
            jac[(nm + 1) * w + k] = C64::new(0.0, self.x_pivot[k]) * s_mix[k];
            jac[(nm + 2) * w + k] = C64::new(0.0, two_pi) * ts[k];
            jac[(nm + 3) * w + k] = -std::f64::consts::PI * ts[k];
        }
        for (b, row) in self.legendre.iter().enumerate() {
            let c0 = nm + NONLIN + 2 * b;
            for (k, &v) in row.iter().enumerate() {
                jac[c0 * w + k] = C64::new(v, 0.0);
                jac[(c0 + 1) * w + k] = C64::new(0.0, v);
            }
        }
        let sigma2 = self.sigma2();
        let mut fisher = vec![0.0; p * p];
        for a in 0..p {
            for b in a..p {
                let ca = &jac[a * w..(a + 1) * w];
                let cb = &jac[b * w..(b + 1) * w];
                let v: f64 = ca.iter().zip(cb).map(|(x, y)| (x.conj() * y).re).sum();
                fisher[a * p + b] = v / sigma2;
                fisher[b * p + a] = v / sigma2;
            }
        }
        let cov = inverse(&fisher, p).ok_or_else(|| {
            PhysicsError::Numerical(
                "quantification objective: singular Fisher matrix (a metabolite gives no signal in the window?)"
                    .into(),
            )
        })?;
        Ok(MemberFisher { jac, cov })
    }

    fn sigma2(&self) -> f64 {
        self.model.noise_sd * self.model.noise_sd * self.model.points as f64
    }

    /// The measure and ∂measure/∂C (row-major P × P) for one member's covariance.
    fn measure(&self, cov: &[f64]) -> Result<(f64, Vec<f64>), PhysicsError> {
        let p = self.n_params();
        let mut g = vec![0.0; p * p];
        let value = match self.measure {
            Measure::CrlbPercent { metabolite: t } => {
                let ctt = cov[t * p + t];
                if ctt <= 0.0 {
                    return Err(PhysicsError::Numerical(format!(
                        "quantification objective: covariance C[{t},{t}] = {ctt} is not positive"
                    )));
                }
                let c = self.model.concentrations[t];
                let v = 100.0 * ctt.sqrt() / c;
                g[t * p + t] = 100.0 / (2.0 * c * ctt.sqrt());
                v
            }
            Measure::CorrelationSquared { a, b } => {
                let (caa, cbb, cab) = (cov[a * p + a], cov[b * p + b], cov[a * p + b]);
                if caa <= 0.0 || cbb <= 0.0 {
                    return Err(PhysicsError::Numerical(
                        "quantification objective: covariance diagonal is not positive".into(),
                    ));
                }
                let s = (caa * cbb).sqrt();
                let r = cab / s;
                // f = r²: ∂f/∂C_ab = ∂f/∂C_ba = r/s (symmetric split), ∂f/∂C_aa = −r²/C_aa.
                g[a * p + b] = r / s;
                g[b * p + a] = r / s;
                g[a * p + a] = -r * r / caa;
                g[b * p + b] = -r * r / cbb;
                r * r
            }
        };
        Ok((value, g))
    }

    /// Per-member values (CRLB % or correlation², as the measure says) without gradients.
    pub fn member_values(&self, signals: &Signals) -> Result<Vec<f64>, PhysicsError> {
        (0..signals.members())
            .map(|m| {
                let mf = self.member(signals, m)?;
                Ok(self.measure(&mf.cov)?.0)
            })
            .collect()
    }

    /// Adjoint of the window map: a window gradient → the FID gradient (scaled).
    fn window_adjoint(&self, g: &[C64]) -> Result<Vec<C64>, PhysicsError> {
        let mut full = vec![C64::new(0.0, 0.0); self.model.points];
        for (&j, v) in self.idx.iter().zip(g) {
            full[j] = v * self.model.signal_scale;
        }
        self.plan.spectrum_adjoint(&full)
    }
}

impl SignalLoss for Quantification {
    fn evaluate(
        &self,
        signals: &Signals,
        mut grad: Option<&mut Signals>,
    ) -> Result<f64, PhysicsError> {
        let members = signals.members();
        let nm = self.model.concentrations.len();
        let w = self.idx.len();
        let p = self.n_params();
        let sigma2 = self.sigma2();
        let mean = 1.0 / members as f64;
        if let Some(g) = grad.as_deref_mut() {
            g.fill_zero();
        }
        let mut total = 0.0;
        for member in 0..members {
            let mf = self.member(signals, member)?;
            let (value, gc) = self.measure(&mf.cov)?;
            total += value;
            let Some(g) = grad.as_deref_mut() else {
                continue;
            };
            // M = C·G·C (P × P, row-major; C symmetric).
            let mut cg = vec![0.0; p * p];
            for i in 0..p {
                for k in 0..p {
                    let c = mf.cov[i * p + k];
                    if c == 0.0 {
                        continue;
                    }
                    for j in 0..p {
                        cg[i * p + j] += c * gc[k * p + j];
                    }
                }
            }
            let mut mm = vec![0.0; p * p];
            for i in 0..p {
                for k in 0..p {
                    let c = cg[i * p + k];
                    if c == 0.0 {
                        continue;
                    }
                    for j in 0..p {
                        mm[i * p + j] += c * mf.cov[k * p + j];
                    }
                }
            }
            // ∂f/∂J = −(2/σ²)·J·M, column by column (times the member mean).
            let scale = -2.0 / sigma2 * mean;
            let mut gj = vec![C64::new(0.0, 0.0); w * p];
            for b in 0..p {
                let out = &mut gj[b * w..(b + 1) * w];
                for a in 0..p {
                    let m = mm[a * p + b];
                    if m == 0.0 {
                        continue;
                    }
                    for (o, x) in out.iter_mut().zip(&mf.jac[a * w..(a + 1) * w]) {
                        *o += x * (m * scale);
                    }
                }
            }
            // Columns → FIDs. Concentration columns: B̃_m directly.
            for m in 0..nm {
                let gfid = self.window_adjoint(&gj[m * w..(m + 1) * w])?;
                for (o, x) in g.fid_mut(member, m).iter_mut().zip(&gfid) {
                    *o += x;
                }
            }
            // Phase columns i·S and i·x·S with S = Σ c_m B̃_m: adjoint −i·(x)·G, then c_m·B̃ᴴ.
            let mut g_mix: Vec<C64> = (0..w)
                .map(|k| {
                    C64::new(0.0, -1.0) * gj[nm * w + k]
                        + C64::new(0.0, -self.x_pivot[k]) * gj[(nm + 1) * w + k]
                })
                .collect();
            let g_mix_fid = self.window_adjoint(&g_mix)?;
            // δf and lw columns: FT[(i2π − π)·t·Σ c b]: adjoint (−i2π·G_δf − π·G_lw) then ·t.
            let two_pi = 2.0 * std::f64::consts::PI;
            for (k, v) in g_mix.iter_mut().enumerate() {
                *v = C64::new(0.0, -two_pi) * gj[(nm + 2) * w + k]
                    - std::f64::consts::PI * gj[(nm + 3) * w + k];
            }
            let g_t_fid = self.window_adjoint(&g_mix)?;
            let dwell = self.model.dwell;
            for m in 0..nm {
                let c = self.model.concentrations[m];
                for (k, o) in g.fid_mut(member, m).iter_mut().enumerate() {
                    *o += c * (g_mix_fid[k] + g_t_fid[k] * (k as f64 * dwell));
                }
            }
        }
        Ok(total * mean)
    }
}
