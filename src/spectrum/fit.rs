//! Linear-combination fitting of a spectrum with a basis set, as LCModel and FSL-MRS do it, with
//! Cramér–Rao lower bounds and the full correlation matrix.
//!
//! # Model (frequency domain, over a ppm window)
//! S(f) = e^{i(φ0 + φ1·(ppm − pivot))} · Σ_m c_m · B̃_m(f; δf, lw) + Σ_j b_j·P_j(ppm)
//! where B̃_m is the spectrum (s\[0\] halved, FFT, fftshift) of the basis FID
//! B_m(t)·e^{(i2π·δf − π·lw)·t} — every basis line shifted by δf Hz and broadened by a
//! Lorentzian of lw Hz — and P_j are Legendre polynomials on the window with complex
//! coefficients b_j (a smooth baseline). Concentrations c_m are real. Parameters are fitted by
//! Levenberg–Marquardt on the stacked real and imaginary residuals with the analytic Jacobian.
//!
//! # Uncertainties
//! The noise variance of one real spectral component is estimated from the residual
//! (σ² = Σ|r|²/(2N − P)) unless given; the Fisher matrix is JᵀJ/σ²; its inverse is the
//! covariance; CRLB(c_m) = √Cov_mm (reported also as % of c_m) and the correlation matrix is
//! Cov_ij/√(Cov_ii·Cov_jj). Fit FIDs without zero filling, so spectral noise is white.
//! Concentrations are not constrained to be ≥ 0 (an unbiased estimator, whose spread the CRLB
//! describes).

use num_complex::Complex64 as C64;

use super::{SpectrumPlan, ppm_axis, window_indices};
use crate::physics::PhysicsError;
use crate::physics::error::{finite, positive};

/// A basis set: one FID per metabolite on a common time grid.
#[derive(Debug, Clone)]
pub struct Basis {
    /// Metabolite names.
    pub names: Vec<String>,
    /// FIDs, each `points` long.
    pub fids: Vec<Vec<C64>>,
    /// Dwell time (s).
    pub dwell: f64,
    /// Spectrometer frequency (MHz).
    pub f0_mhz: f64,
    /// Carrier (ppm) of the FIDs' rotating frame.
    pub carrier_ppm: f64,
}

/// Fit options.
#[derive(Debug, Clone, PartialEq)]
pub struct FitOptions {
    /// Fitting window (ppm, inclusive).
    pub window_ppm: (f64, f64),
    /// Number of baseline polynomial terms (0 = no baseline).
    pub baseline_terms: usize,
    /// Pivot of the first-order phase (ppm).
    pub pivot_ppm: f64,
    /// Starting extra linewidth (Hz).
    pub initial_linewidth_hz: f64,
    /// Maximum Levenberg–Marquardt iterations.
    pub max_iterations: usize,
    /// Known noise standard deviation of one real FID component (None: estimate from the
    /// residual).
    pub noise_sd: Option<f64>,
}

impl Default for FitOptions {
    fn default() -> Self {
        FitOptions {
            window_ppm: (0.2, 4.2),
            baseline_terms: 3,
            pivot_ppm: 3.0,
            initial_linewidth_hz: 2.0,
            max_iterations: 200,
            noise_sd: None,
        }
    }
}

/// The result of a fit.
#[derive(Debug, Clone)]
pub struct FitResult {
    /// Metabolite names.
    pub names: Vec<String>,
    /// Concentrations (units of the basis).
    pub concentrations: Vec<f64>,
    /// CRLB of each concentration (same units).
    pub crlb: Vec<f64>,
    /// CRLB in % of the concentration (infinite for a zero estimate).
    pub crlb_percent: Vec<f64>,
    /// Correlation matrix of the concentrations (row-major, n×n).
    pub correlation: Vec<f64>,
    /// Zero-order phase (rad).
    pub phase0: f64,
    /// First-order phase (rad/ppm).
    pub phase1: f64,
    /// Frequency shift (Hz).
    pub shift_hz: f64,
    /// Extra Lorentzian linewidth (Hz).
    pub linewidth_hz: f64,
    /// Baseline coefficients.
    pub baseline: Vec<C64>,
    /// Noise SD of one real spectral component used for the CRLBs.
    pub spectral_noise_sd: f64,
    /// Σ|residual|² over the window.
    pub residual_norm2: f64,
    /// Iterations used.
    pub iterations: usize,
    /// The fitted model spectrum over the whole axis (for plots).
    pub model: Vec<C64>,
}

impl FitResult {
    /// Correlation between concentrations i and j.
    pub fn correlation(&self, i: usize, j: usize) -> f64 {
        self.correlation[i * self.names.len() + j]
    }

    /// Index of a metabolite by name.
    pub fn index(&self, name: &str) -> Option<usize> {
        self.names.iter().position(|n| n == name)
    }
}

struct Problem<'a> {
    basis: &'a Basis,
    plan: SpectrumPlan,
    idx: Vec<usize>,
    ppm: Vec<f64>,
    legendre: Vec<Vec<f64>>,
    opts: &'a FitOptions,
}

/// Spectra of every basis FID (one row per metabolite).
type Spectra = Vec<Vec<C64>>;

/// Parameter layout: [c_0..c_{M−1}, φ0, φ1, δf, lw, Re b_0, Im b_0, …].
const NONLIN: usize = 4;

impl Problem<'_> {
    fn n_metab(&self) -> usize {
        self.basis.fids.len()
    }

    fn n_params(&self) -> usize {
        self.n_metab() + NONLIN + 2 * self.opts.baseline_terms
    }

    /// Spectra of the broadened, shifted basis and of t·(that) (for the δf and lw derivatives).
    fn basis_spectra(&self, shift: f64, lw: f64) -> Result<(Spectra, Spectra), PhysicsError> {
        let dwell = self.basis.dwell;
        let mut spec = Vec::with_capacity(self.n_metab());
        let mut tspec = Vec::with_capacity(self.n_metab());
        for fid in &self.basis.fids {
            let mut mod_fid = fid.clone();
            let mut t_fid = fid.clone();
            for (m, (a, b)) in mod_fid.iter_mut().zip(t_fid.iter_mut()).enumerate() {
                let t = m as f64 * dwell;
                let w = C64::new(
                    -std::f64::consts::PI * lw * t,
                    2.0 * std::f64::consts::PI * shift * t,
                )
                .exp();
                *a *= w;
                *b *= w * t;
            }
            spec.push(self.plan.spectrum(&mod_fid)?);
            tspec.push(self.plan.spectrum(&t_fid)?);
        }
        Ok((spec, tspec))
    }

    /// Model over the whole axis, and (if asked) the Jacobian rows over the window:
    /// jac[k][p] = ∂S(f_idx[k])/∂θ_p (complex).
    fn evaluate(
        &self,
        theta: &[f64],
        want_jac: bool,
    ) -> Result<(Vec<C64>, Vec<Vec<C64>>), PhysicsError> {
        let nm = self.n_metab();
        let (phi0, phi1, shift, lw) = (theta[nm], theta[nm + 1], theta[nm + 2], theta[nm + 3]);
        let (spec, tspec) = self.basis_spectra(shift, lw)?;
        let points = self.ppm.len();
        let mut model = vec![C64::new(0.0, 0.0); points];
        let mut metab = vec![C64::new(0.0, 0.0); points];
        for j in 0..points {
            let ph = C64::from_polar(1.0, phi0 + phi1 * (self.ppm[j] - self.opts.pivot_ppm));
            let s: C64 = (0..nm).map(|m| spec[m][j] * theta[m]).sum();
            metab[j] = ph * s;
            model[j] = metab[j];
        }
        for (k, &j) in self.idx.iter().enumerate() {
            for b in 0..self.opts.baseline_terms {
                let coef = C64::new(theta[nm + NONLIN + 2 * b], theta[nm + NONLIN + 2 * b + 1]);
                model[j] += coef * self.legendre[b][k];
            }
        }
        let mut jac = Vec::new();
        if want_jac {
            let two_pi = 2.0 * std::f64::consts::PI;
            for (k, &j) in self.idx.iter().enumerate() {
                let ph = C64::from_polar(1.0, phi0 + phi1 * (self.ppm[j] - self.opts.pivot_ppm));
                let mut row = vec![C64::new(0.0, 0.0); self.n_params()];
                // Σ c_m·FT[t·B_m(t)·w(t)]: ∂/∂δf multiplies it by i2π, ∂/∂lw by −π.
                let mut tsum = C64::new(0.0, 0.0);
                for m in 0..nm {
                    row[m] = ph * spec[m][j];
                    tsum += tspec[m][j] * theta[m];
                }
                row[nm] = C64::new(0.0, 1.0) * metab[j];
                row[nm + 1] = C64::new(0.0, self.ppm[j] - self.opts.pivot_ppm) * metab[j];
                row[nm + 2] = ph * C64::new(0.0, two_pi) * tsum;
                row[nm + 3] = ph * (-std::f64::consts::PI) * tsum;
                for b in 0..self.opts.baseline_terms {
                    row[nm + NONLIN + 2 * b] = C64::new(self.legendre[b][k], 0.0);
                    row[nm + NONLIN + 2 * b + 1] = C64::new(0.0, self.legendre[b][k]);
                }
                jac.push(row);
            }
        }
        Ok((model, jac))
    }
}

/// The baseline polynomials of the model: Legendre P_0..P_{terms−1} on the window `idx` of the
/// ppm axis, mapped to [−1, 1] (one row per polynomial, one column per window point).
pub(crate) fn legendre_rows(ppm: &[f64], idx: &[usize], terms: usize) -> Vec<Vec<f64>> {
    let (Some(&first), Some(&last)) = (idx.first(), idx.last()) else {
        return vec![Vec::new(); terms];
    };
    let (pl, ph) = (ppm[first], ppm[last]);
    let xs: Vec<f64> = idx
        .iter()
        .map(|&j| 2.0 * (ppm[j] - pl) / (ph - pl) - 1.0)
        .collect();
    (0..terms)
        .map(|b| {
            xs.iter()
                .map(|&x| match b {
                    0 => 1.0,
                    1 => x,
                    _ => {
                        let (mut p0, mut p1) = (1.0, x);
                        for k in 1..b {
                            let p2 = ((2 * k + 1) as f64 * x * p1 - k as f64 * p0) / (k + 1) as f64;
                            p0 = p1;
                            p1 = p2;
                        }
                        p1
                    }
                })
                .collect()
        })
        .collect()
}

/// Solves the symmetric positive (semi)definite system A x = b by Gauss–Jordan elimination with
/// partial pivoting; returns None if A is singular.
fn solve(a: &[f64], b: &[f64], n: usize) -> Option<Vec<f64>> {
    let mut m: Vec<f64> = a.to_vec();
    let mut x: Vec<f64> = b.to_vec();
    for col in 0..n {
        let piv =
            (col..n).max_by(|&i, &j| m[i * n + col].abs().total_cmp(&m[j * n + col].abs()))?;
        if m[piv * n + col].abs() < 1e-300 {
            return None;
        }
        if piv != col {
            for c in 0..n {
                m.swap(piv * n + c, col * n + c);
            }
            x.swap(piv, col);
        }
        let d = m[col * n + col];
        for r in 0..n {
            if r != col {
                let f = m[r * n + col] / d;
                if f != 0.0 {
                    for c in col..n {
                        m[r * n + c] -= f * m[col * n + c];
                    }
                    x[r] -= f * x[col];
                }
            }
        }
    }
    Some((0..n).map(|i| x[i] / m[i * n + i]).collect())
}

pub(crate) fn inverse(a: &[f64], n: usize) -> Option<Vec<f64>> {
    let mut inv = vec![0.0; n * n];
    for c in 0..n {
        let mut e = vec![0.0; n];
        e[c] = 1.0;
        let col = solve(a, &e, n)?;
        for r in 0..n {
            inv[r * n + c] = col[r];
        }
    }
    Some(inv)
}

/// Normal equations JᵀJ and Jᵀr of the stacked real system.
fn normal(jac: &[Vec<C64>], resid: &[C64], n: usize) -> (Vec<f64>, Vec<f64>) {
    let mut jtj = vec![0.0; n * n];
    let mut jtr = vec![0.0; n];
    for (row, r) in jac.iter().zip(resid) {
        for p in 0..n {
            jtr[p] += row[p].re * r.re + row[p].im * r.im;
            for q in p..n {
                jtj[p * n + q] += row[p].re * row[q].re + row[p].im * row[q].im;
            }
        }
    }
    for p in 0..n {
        for q in 0..p {
            jtj[p * n + q] = jtj[q * n + p];
        }
    }
    (jtj, jtr)
}

/// Fits `fid` (same dwell and length as the basis) with the basis.
pub fn fit(fid: &[C64], basis: &Basis, opts: &FitOptions) -> Result<FitResult, PhysicsError> {
    let nm = basis.fids.len();
    if nm == 0 {
        return Err(PhysicsError::invalid(
            "basis",
            "[]",
            "needs at least one metabolite",
        ));
    }
    if basis.names.len() != nm {
        return Err(PhysicsError::SizeMismatch {
            what: "basis names".into(),
            expected: nm,
            got: basis.names.len(),
        });
    }
    positive("basis.dwell", basis.dwell)?;
    positive("basis.f0_mhz", basis.f0_mhz)?;
    finite("basis.carrier_ppm", basis.carrier_ppm)?;
    for (i, f) in basis.fids.iter().enumerate() {
        if f.len() != fid.len() {
            return Err(PhysicsError::SizeMismatch {
                what: format!("basis FID {} ({})", i, basis.names[i]),
                expected: fid.len(),
                got: f.len(),
            });
        }
    }
    if fid.iter().any(|z| !z.re.is_finite() || !z.im.is_finite()) {
        return Err(PhysicsError::invalid(
            "fid",
            "non-finite sample",
            "every sample must be finite",
        ));
    }
    let points = fid.len();
    let plan = SpectrumPlan::new(points)?;
    let ppm = ppm_axis(points, basis.dwell, basis.carrier_ppm, basis.f0_mhz);
    let (lo, hi) = opts.window_ppm;
    let idx = window_indices(&ppm, lo.min(hi), lo.max(hi));
    let n_params = nm + NONLIN + 2 * opts.baseline_terms;
    if idx.len() * 2 <= n_params {
        return Err(PhysicsError::invalid(
            "window_ppm",
            format!("[{lo}, {hi}]"),
            format!(
                "holds {} points, too few for {n_params} parameters",
                idx.len()
            ),
        ));
    }
    // Legendre polynomials on the window, x ∈ [−1, 1].
    let legendre = legendre_rows(&ppm, &idx, opts.baseline_terms);
    let problem = Problem {
        basis,
        plan: plan.clone(),
        idx,
        ppm,
        legendre,
        opts,
    };
    let data = plan.spectrum(fid)?;

    // Start: zero phase and shift, initial linewidth; linear parameters by least squares.
    let mut theta = vec![0.0; n_params];
    theta[nm + 3] = opts.initial_linewidth_hz;
    let resid_of =
        |model: &[C64]| -> Vec<C64> { problem.idx.iter().map(|&j| data[j] - model[j]).collect() };
    {
        let (model, jac) = problem.evaluate(&theta, true)?;
        let r = resid_of(&model);
        let (jtj, jtr) = normal(&jac, &r, n_params);
        // Solve only for the linear parameters (concentrations and baseline).
        let lin: Vec<usize> = (0..nm).chain(nm + NONLIN..n_params).collect();
        let k = lin.len();
        let a: Vec<f64> = lin
            .iter()
            .flat_map(|&p| lin.iter().map(move |&q| (p, q)))
            .map(|(p, q)| jtj[p * n_params + q])
            .collect();
        let b: Vec<f64> = lin.iter().map(|&p| jtr[p]).collect();
        if let Some(step) = solve(&a, &b, k) {
            for (i, &p) in lin.iter().enumerate() {
                theta[p] += step[i];
            }
        }
    }
    let cost = |model: &[C64]| -> f64 { resid_of(model).iter().map(|r| r.norm_sqr()).sum() };
    let (mut model, mut jac) = problem.evaluate(&theta, true)?;
    let mut current = cost(&model);
    let mut mu = 1e-3;
    let mut iterations = 0;
    for it in 0..opts.max_iterations {
        iterations = it + 1;
        let r = resid_of(&model);
        let (jtj, jtr) = normal(&jac, &r, n_params);
        let mut improved = false;
        for _ in 0..30 {
            let mut a = jtj.clone();
            for p in 0..n_params {
                a[p * n_params + p] += mu * jtj[p * n_params + p].max(1e-12);
            }
            let Some(step) = solve(&a, &jtr, n_params) else {
                mu *= 10.0;
                continue;
            };
            let trial: Vec<f64> = theta.iter().zip(&step).map(|(t, s)| t + s).collect();
            let (m2, _) = problem.evaluate(&trial, false)?;
            let c2 = cost(&m2);
            if c2.is_finite() && c2 < current {
                let rel = (current - c2) / current.max(1e-300);
                theta = trial;
                current = c2;
                let (m3, j3) = problem.evaluate(&theta, true)?;
                model = m3;
                jac = j3;
                mu = (mu / 3.0).max(1e-12);
                improved = true;
                if rel < 1e-12 {
                    return finish(&problem, theta, model, jac, current, iterations);
                }
                break;
            }
            mu *= 4.0;
        }
        if !improved {
            break;
        }
    }
    finish(&problem, theta, model, jac, current, iterations)
}

fn finish(
    problem: &Problem,
    theta: Vec<f64>,
    model: Vec<C64>,
    jac: Vec<Vec<C64>>,
    cost: f64,
    iterations: usize,
) -> Result<FitResult, PhysicsError> {
    let nm = problem.n_metab();
    let n = problem.n_params();
    let dof = (2 * problem.idx.len()).saturating_sub(n).max(1);
    let sigma2 = match problem.opts.noise_sd {
        // A real FID component of SD σ gives spectral components of variance M·σ².
        Some(sd) => sd * sd * problem.ppm.len() as f64,
        None => cost / dof as f64,
    };
    let zero = vec![C64::new(0.0, 0.0); jac.len()];
    let (jtj, _) = normal(&jac, &zero, n);
    let fisher: Vec<f64> = jtj.iter().map(|v| v / sigma2).collect();
    let cov = inverse(&fisher, n).ok_or_else(|| {
        PhysicsError::Numerical("fit: singular Fisher matrix (degenerate basis?)".into())
    })?;
    let crlb: Vec<f64> = (0..nm).map(|m| cov[m * n + m].max(0.0).sqrt()).collect();
    let conc: Vec<f64> = theta[..nm].to_vec();
    let mut corr = vec![0.0; nm * nm];
    for i in 0..nm {
        for j in 0..nm {
            corr[i * nm + j] = cov[i * n + j] / (crlb[i] * crlb[j]).max(f64::MIN_POSITIVE);
        }
    }
    Ok(FitResult {
        names: problem.basis.names.clone(),
        crlb_percent: conc
            .iter()
            .zip(&crlb)
            .map(|(c, s)| {
                if *c != 0.0 {
                    100.0 * s / c.abs()
                } else {
                    f64::INFINITY
                }
            })
            .collect(),
        concentrations: conc,
        crlb,
        correlation: corr,
        phase0: theta[nm],
        phase1: theta[nm + 1],
        shift_hz: theta[nm + 2],
        linewidth_hz: theta[nm + 3],
        baseline: (0..problem.opts.baseline_terms)
            .map(|b| C64::new(theta[nm + NONLIN + 2 * b], theta[nm + NONLIN + 2 * b + 1]))
            .collect(),
        spectral_noise_sd: sigma2.sqrt(),
        residual_norm2: cost,
        iterations,
        model,
    })
}
