//! The calibrator: a problem's sequence, molecules and grid in a simulator of its own; the
//! forward model of a console with given hardware ([`Calibrator::predict`]), the weighted
//! frequency-domain residual and its Jacobian ([`Calibrator::linearize`]: analytic columns
//! for the receiver parameters, central differences for B1, B0 and a_sat) and the exact adjoint
//! gradient of the cost ([`Calibrator::exact_gradient`]).

use std::collections::HashSet;
use std::f64::consts::PI;

use num_complex::Complex64 as C64;

use super::CalibrateError;
use super::lm::FitOptions;
use super::model::{
    HardwareModel, Measurement, PARAMETER_NAMES, check_waveform, compress, compress_derivative,
};
use crate::design::problem::{DesignProblem, ProblemSpec};
use crate::physics::{
    Acquisition, Block, Experiment, Field, GradientRequest, Member, Molecule, PhysicsError,
    SignalLoss, Signals, SimOptions, Simulator, SpatialGrid,
};
use crate::spectrum::{SpectrumPlan, frequency_axis, ppm_axis, window_indices};

/// Relative central-difference step of the B1 scale.
pub(crate) const H_B1: f64 = 1e-4;
/// Central-difference step of the B0 offset (Hz).
pub(crate) const H_B0: f64 = 1e-4;
/// Relative central-difference step of a_sat.
pub(crate) const H_SAT: f64 = 1e-4;
/// Distinct B0 offsets after which the simulator is rebuilt (its tables grow per offset).
const MAX_OFFSETS: usize = 64;

/// Indices into the parameter vector.
pub(crate) const B1: usize = 0;
pub(crate) const B0: usize = 1;
pub(crate) const PHASE0: usize = 2;
pub(crate) const PHASE1: usize = 3;
pub(crate) const LINEWIDTH: usize = 4;
pub(crate) const AMPLITUDE: usize = 5;
pub(crate) const COMPRESSION: usize = 6;

/// The residual and Jacobian of the fit at one hardware model, over the free parameters.
/// Rows are the stacked (real, imaginary) parts of √averages·(Y − D) on the window bins of every
/// measurement in turn.
#[derive(Debug, Clone, PartialEq)]
pub struct Linearization {
    /// Names of the free parameters, in column order.
    pub names: Vec<&'static str>,
    /// Indices of the free parameters in [`PARAMETER_NAMES`].
    pub parameters: Vec<usize>,
    /// Residual r (model − data), real rows.
    pub residual: Vec<f64>,
    /// Jacobian columns ∂r/∂θ_p, one per free parameter.
    pub columns: Vec<Vec<f64>>,
}

impl Linearization {
    /// ½‖r‖².
    pub fn cost(&self) -> f64 {
        0.5 * self.residual.iter().map(|r| r * r).sum::<f64>()
    }

    /// Jᵀr: the gradient of [`Linearization::cost`] from the Jacobian.
    pub fn gradient(&self) -> Vec<f64> {
        self.columns
            .iter()
            .map(|c| dot(c, &self.residual))
            .collect()
    }

    /// JᵀJ, row-major.
    pub fn normal_matrix(&self) -> Vec<f64> {
        let n = self.columns.len();
        let mut a = vec![0.0; n * n];
        for p in 0..n {
            for q in p..n {
                let v = dot(&self.columns[p], &self.columns[q]);
                a[p * n + q] = v;
                a[q * n + p] = v;
            }
        }
        a
    }
}

pub(crate) fn dot(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

/// Fits the hardware model of a console to measured FIDs of a design problem's sequence.
pub struct Calibrator {
    molecules: Vec<Molecule>,
    field: Field,
    carrier_ppm: f64,
    grid: Option<SpatialGrid>,
    template: Experiment,
    designed_block: usize,
    designed_pulse: usize,
    dt: f64,
    segments: usize,
    concentrations: Vec<f64>,
    default_window: (f64, f64),
    plan: SpectrumPlan,
    freq: Vec<f64>,
    ppm: Vec<f64>,
    sim: Simulator,
    offsets: HashSet<u64>,
}

impl std::fmt::Debug for Calibrator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Calibrator")
            .field("molecules", &self.molecules.len())
            .field("segments", &self.segments)
            .field("points", &self.plan.points())
            .finish_non_exhaustive()
    }
}

/// What the residual of one measurement needs besides the simulation.
struct Target {
    /// Data spectrum on the window bins.
    data: Vec<C64>,
    /// √averages.
    weight: f64,
}

impl Calibrator {
    /// A calibrator for a compiled problem: its molecules, field, carrier, sequence (with the
    /// designed pulse's block replaced by each measurement's waveform), spatial grid,
    /// concentrations and quantification window (the default fit window).
    pub fn new(problem: &DesignProblem) -> Result<Calibrator, CalibrateError> {
        let spec = &problem.spec;
        let molecules = problem.simulator.molecules().to_vec();
        let concentrations = match &spec.concentrations {
            None => vec![1.0; molecules.len()],
            Some(c) => c.clone(),
        };
        if concentrations.len() != molecules.len() {
            return Err(CalibrateError::Length {
                field: "problem concentrations".into(),
                expected: molecules.len(),
                got: concentrations.len(),
            });
        }
        let acq = problem.experiment.acquisition;
        let compiled = problem
            .protocol
            .compile(problem.field, spec.carrier_ppm, acq)?;
        let grid = compiled.grid;
        let designed_block = problem.designed_block;
        let designed_pulse = problem.experiment.blocks[..designed_block]
            .iter()
            .filter(|b| matches!(b, Block::Pulse { .. } | Block::SlicePulse { .. }))
            .count();
        let sim = new_simulator(&molecules, problem.field, spec.carrier_ppm, grid.as_ref())?;
        Ok(Calibrator {
            field: problem.field,
            carrier_ppm: spec.carrier_ppm,
            grid,
            template: problem.experiment.clone(),
            designed_block,
            designed_pulse,
            dt: problem.param.dt,
            segments: problem.param.segments,
            concentrations,
            default_window: spec.quantification.window_ppm,
            plan: SpectrumPlan::new(acq.points)?,
            freq: frequency_axis(acq.points, acq.dwell),
            ppm: ppm_axis(
                acq.points,
                acq.dwell,
                spec.carrier_ppm,
                problem.field.f0_mhz,
            ),
            sim,
            molecules,
            offsets: HashSet::new(),
        })
    }

    /// A calibrator for a problem file's spec (compiles the problem first).
    pub fn from_spec(spec: ProblemSpec) -> Result<Calibrator, CalibrateError> {
        Calibrator::new(&DesignProblem::build(spec)?)
    }

    /// The acquisition (points, dwell, nominal linewidth).
    pub fn acquisition(&self) -> Acquisition {
        self.template.acquisition
    }

    /// Segments of the designed pulse.
    pub fn segments(&self) -> usize {
        self.segments
    }

    /// Segment duration of the designed pulse (s).
    pub fn dt(&self) -> f64 {
        self.dt
    }

    /// The default fit window (the problem's quantification window, ppm).
    pub fn default_window_ppm(&self) -> (f64, f64) {
        self.default_window
    }

    /// Rebuilds the simulator (drops its tables).
    pub(crate) fn reset_simulator(&mut self) -> Result<(), CalibrateError> {
        self.sim = new_simulator(
            &self.molecules,
            self.field,
            self.carrier_ppm,
            self.grid.as_ref(),
        )?;
        self.offsets.clear();
        Ok(())
    }

    /// Checks a waveform against the designed pulse's segment count.
    fn check_pulse(&self, what: &str, ux: &[f64], uy: &[f64]) -> Result<(), CalibrateError> {
        if ux.len() != self.segments {
            return Err(CalibrateError::Length {
                field: format!("{what}.ux"),
                expected: self.segments,
                got: ux.len(),
            });
        }
        check_waveform(what, ux, uy)
    }

    /// Validates measurements against the problem: non-empty, lengths, finite samples, raster,
    /// dwell, averages.
    pub fn validate(&self, data: &[Measurement]) -> Result<(), CalibrateError> {
        if data.is_empty() {
            return Err(CalibrateError::EmptyData);
        }
        let acq = self.template.acquisition;
        for (i, m) in data.iter().enumerate() {
            let what = format!("data[{i}]");
            self.check_pulse(&what, &m.ux, &m.uy)?;
            if !(m.dt.is_finite() && (m.dt - self.dt).abs() <= 1e-9 * self.dt) {
                return Err(CalibrateError::invalid(
                    format!("{what}.dt"),
                    m.dt,
                    format!("the problem's pulse raster is {} s", self.dt),
                ));
            }
            if m.fid.len() != acq.points {
                return Err(CalibrateError::Length {
                    field: format!("{what}.fid"),
                    expected: acq.points,
                    got: m.fid.len(),
                });
            }
            if let Some((k, z)) = m
                .fid
                .iter()
                .enumerate()
                .find(|(_, z)| !(z.re.is_finite() && z.im.is_finite()))
            {
                return Err(CalibrateError::NonFinite {
                    field: format!("{what}.fid"),
                    index: k,
                    value: z.to_string(),
                });
            }
            if !(m.dwell_s.is_finite() && (m.dwell_s - acq.dwell).abs() <= 1e-9 * acq.dwell) {
                return Err(CalibrateError::invalid(
                    format!("{what}.dwell_s"),
                    m.dwell_s,
                    format!("the problem's dwell is {} s", acq.dwell),
                ));
            }
            if m.averages == 0 {
                return Err(CalibrateError::invalid(
                    format!("{what}.averages"),
                    0,
                    "must be >= 1",
                ));
            }
        }
        Ok(())
    }

    /// Window bins of the fit.
    pub(crate) fn window(&self, options: &FitOptions) -> Result<Vec<usize>, CalibrateError> {
        let (lo, hi) = options.window_ppm.unwrap_or(self.default_window);
        if !(lo.is_finite() && hi.is_finite()) {
            return Err(CalibrateError::invalid(
                "options.window_ppm",
                format!("[{lo}, {hi}]"),
                "must be finite",
            ));
        }
        let idx = window_indices(&self.ppm, lo.min(hi), lo.max(hi));
        if idx.is_empty() {
            return Err(CalibrateError::invalid(
                "options.window_ppm",
                format!("[{lo}, {hi}]"),
                "contains no spectral point",
            ));
        }
        Ok(idx)
    }

    fn experiment_with(&self, ux: Vec<f64>, uy: Vec<f64>) -> Experiment {
        let mut e = self.template.clone();
        e.blocks[self.designed_block] = Block::Pulse {
            dt: self.dt,
            ux,
            uy,
        };
        e
    }

    fn set_members(&mut self, members: Vec<Member>) -> Result<(), CalibrateError> {
        for m in &members {
            self.offsets.insert(m.b0_hz.to_bits());
        }
        if self.offsets.len() > MAX_OFFSETS {
            self.reset_simulator()?;
            for m in &members {
                self.offsets.insert(m.b0_hz.to_bits());
            }
        }
        self.sim.set_members(members)?;
        Ok(())
    }

    /// Mixture FIDs Σ c_m s_m (grid mean, nominal linewidth) for each member.
    fn mixtures(
        &mut self,
        ux: Vec<f64>,
        uy: Vec<f64>,
        members: Vec<Member>,
    ) -> Result<Vec<Vec<C64>>, CalibrateError> {
        let n = members.len();
        self.set_members(members)?;
        let exp = self.experiment_with(ux, uy);
        let signals = self.sim.simulate(&exp)?;
        (0..n)
            .map(|m| {
                signals
                    .mixture(m, &self.concentrations)
                    .map_err(CalibrateError::from)
            })
            .collect()
    }

    /// A·e^{−π·Δlw·t}·mix.
    fn receiver(&self, mix: &[C64], amplitude: f64, linewidth: f64) -> Vec<C64> {
        let dwell = self.template.acquisition.dwell;
        mix.iter()
            .enumerate()
            .map(|(k, z)| z * (amplitude * (-PI * linewidth * k as f64 * dwell).exp()))
            .collect()
    }

    /// e^{i(φ0 + 2πfτ)} on the window bins.
    fn phases(&self, idx: &[usize], phase0: f64, tau: f64) -> Vec<C64> {
        idx.iter()
            .map(|&j| C64::from_polar(1.0, phase0 + 2.0 * PI * self.freq[j] * tau))
            .collect()
    }

    /// e^{iΦ}·spectrum(x) on the window bins.
    fn phased(&self, x: &[C64], idx: &[usize], ph: &[C64]) -> Result<Vec<C64>, CalibrateError> {
        let s = self.plan.spectrum(x)?;
        Ok(idx.iter().zip(ph).map(|(&j, p)| p * s[j]).collect())
    }

    /// The noise-free FID a console with this hardware returns for the waveform `ux`, `uy`
    /// played as the designed pulse (module doc: AM/AM, B1, B0, amplitude, broadening, phases).
    pub fn predict(
        &mut self,
        model: &HardwareModel,
        ux: &[f64],
        uy: &[f64],
    ) -> Result<Vec<C64>, CalibrateError> {
        model.validate("model")?;
        self.check_pulse("waveform", ux, uy)?;
        let (cx, cy) = compress(ux, uy, model.compression);
        let mix = self.mixtures(cx, cy, vec![member(model)])?.swap_remove(0);
        let mut x = self.receiver(&mix, model.amplitude, model.linewidth_hz);
        if model.phase1_s == 0.0 {
            let p = C64::from_polar(1.0, model.phase0_rad);
            for z in &mut x {
                *z *= p;
            }
            return Ok(x);
        }
        let all: Vec<usize> = (0..x.len()).collect();
        let ph = self.phases(&all, model.phase0_rad, model.phase1_s);
        let spectrum = self.phased(&x, &all, &ph)?;
        self.inverse_spectrum(&spectrum)
    }

    /// The FID whose spectrum (first point halved, FFT, fftshift) is `spectrum`: the adjoint
    /// map (ifftshift, unnormalised inverse FFT, halving) divided by M, first point × 4.
    fn inverse_spectrum(&self, spectrum: &[C64]) -> Result<Vec<C64>, CalibrateError> {
        let mut x = self.plan.spectrum_adjoint(spectrum)?;
        let scale = 1.0 / x.len() as f64;
        for z in &mut x {
            *z *= scale;
        }
        x[0] *= 4.0;
        Ok(x)
    }

    /// Spectra of the data on the window, with weights.
    fn targets(&self, data: &[Measurement], idx: &[usize]) -> Result<Vec<Target>, CalibrateError> {
        data.iter()
            .map(|m| {
                let s = self.plan.spectrum(&m.fid)?;
                Ok(Target {
                    data: idx.iter().map(|&j| s[j]).collect(),
                    weight: f64::from(m.averages).sqrt(),
                })
            })
            .collect()
    }

    /// Checks data, model and options; the free parameter indices and window bins.
    fn setup(
        &self,
        data: &[Measurement],
        model: &HardwareModel,
        options: &FitOptions,
    ) -> Result<(Vec<usize>, Vec<usize>), CalibrateError> {
        self.validate(data)?;
        model.validate("model")?;
        let free = options.free.indices();
        if free.contains(&COMPRESSION) && model.compression.is_none() {
            return Err(CalibrateError::invalid(
                "model.compression",
                "None",
                "compression is free: start from Some(a_sat)",
            ));
        }
        Ok((free, self.window(options)?))
    }

    /// ½‖r‖² at `model` (one simulation per measurement).
    pub fn cost(
        &mut self,
        data: &[Measurement],
        model: &HardwareModel,
        options: &FitOptions,
    ) -> Result<f64, CalibrateError> {
        let (_, idx) = self.setup(data, model, options)?;
        let targets = self.targets(data, &idx)?;
        self.cost_with(data, &targets, &idx, model)
    }

    fn cost_with(
        &mut self,
        data: &[Measurement],
        targets: &[Target],
        idx: &[usize],
        model: &HardwareModel,
    ) -> Result<f64, CalibrateError> {
        let ph = self.phases(idx, model.phase0_rad, model.phase1_s);
        let mut cost = 0.0;
        for (m, t) in data.iter().zip(targets) {
            let (cx, cy) = compress(&m.ux, &m.uy, model.compression);
            let mix = self.mixtures(cx, cy, vec![member(model)])?.swap_remove(0);
            let x = self.receiver(&mix, model.amplitude, model.linewidth_hz);
            let y = self.phased(&x, idx, &ph)?;
            cost += 0.5
                * t.weight
                * t.weight
                * y.iter()
                    .zip(&t.data)
                    .map(|(a, b)| (a - b).norm_sqr())
                    .sum::<f64>();
        }
        Ok(cost)
    }

    /// Residual and Jacobian at `model` over the parameters `options.free` leaves free (module
    /// doc: which columns are exact and which are central differences).
    pub fn linearize(
        &mut self,
        data: &[Measurement],
        model: &HardwareModel,
        options: &FitOptions,
    ) -> Result<Linearization, CalibrateError> {
        let (free, idx) = self.setup(data, model, options)?;
        let targets = self.targets(data, &idx)?;
        self.linearize_with(data, &targets, &idx, &free, model)
    }

    fn linearize_with(
        &mut self,
        data: &[Measurement],
        targets: &[Target],
        idx: &[usize],
        free: &[usize],
        model: &HardwareModel,
    ) -> Result<Linearization, CalibrateError> {
        let dwell = self.template.acquisition.dwell;
        let ph = self.phases(idx, model.phase0_rad, model.phase1_s);
        let base = member(model);
        let h1 = H_B1 * model.b1_scale;
        let mut members = vec![base];
        if free.contains(&B1) {
            members.push(Member {
                b1: base.b1 + h1,
                ..base
            });
            members.push(Member {
                b1: base.b1 - h1,
                ..base
            });
        }
        if free.contains(&B0) {
            members.push(Member {
                b0_hz: base.b0_hz + H_B0,
                ..base
            });
            members.push(Member {
                b0_hz: base.b0_hz - H_B0,
                ..base
            });
        }
        let (a, lw) = (model.amplitude, model.linewidth_hz);
        let mut residual = Vec::new();
        let mut columns: Vec<Vec<f64>> = vec![Vec::new(); free.len()];
        let push = |col: &mut Vec<f64>, w: f64, v: &[C64]| {
            for z in v {
                col.push(w * z.re);
                col.push(w * z.im);
            }
        };
        for (m, t) in data.iter().zip(targets) {
            let w = t.weight;
            let (cx, cy) = compress(&m.ux, &m.uy, model.compression);
            let mixes = self.mixtures(cx, cy, members.clone())?;
            let x = self.receiver(&mixes[0], a, lw);
            let y = self.phased(&x, idx, &ph)?;
            let r: Vec<C64> = y.iter().zip(&t.data).map(|(a, b)| a - b).collect();
            push(&mut residual, w, &r);
            let difference = |p: &[C64], q: &[C64], h: f64| -> Vec<C64> {
                p.iter().zip(q).map(|(a, b)| (a - b) / (2.0 * h)).collect()
            };
            let mut next = 1;
            for (col, &p) in columns.iter_mut().zip(free) {
                let v: Vec<C64> = match p {
                    B1 => {
                        let d = difference(&mixes[next], &mixes[next + 1], h1);
                        next += 2;
                        self.phased(&self.receiver(&d, a, lw), idx, &ph)?
                    }
                    B0 => {
                        let d = difference(&mixes[next], &mixes[next + 1], H_B0);
                        next += 2;
                        self.phased(&self.receiver(&d, a, lw), idx, &ph)?
                    }
                    PHASE0 => y.iter().map(|z| z * C64::i()).collect(),
                    PHASE1 => y
                        .iter()
                        .zip(idx)
                        .map(|(z, &j)| z * C64::new(0.0, 2.0 * PI * self.freq[j]))
                        .collect(),
                    LINEWIDTH => {
                        let xt: Vec<C64> = x
                            .iter()
                            .enumerate()
                            .map(|(k, z)| z * (-PI * k as f64 * dwell))
                            .collect();
                        self.phased(&xt, idx, &ph)?
                    }
                    AMPLITUDE => self.phased(&self.receiver(&mixes[0], 1.0, lw), idx, &ph)?,
                    _ => {
                        // COMPRESSION: checked to be Some in setup.
                        let s = model.compression.unwrap_or(f64::INFINITY);
                        let hs = H_SAT * s;
                        let (px, py) = compress(&m.ux, &m.uy, Some(s + hs));
                        let (qx, qy) = compress(&m.ux, &m.uy, Some(s - hs));
                        let plus = self.mixtures(px, py, vec![base])?.swap_remove(0);
                        let minus = self.mixtures(qx, qy, vec![base])?.swap_remove(0);
                        let d = difference(&plus, &minus, hs);
                        self.phased(&self.receiver(&d, a, lw), idx, &ph)?
                    }
                };
                push(col, w, &v);
            }
        }
        Ok(Linearization {
            names: free.iter().map(|&p| PARAMETER_NAMES[p]).collect(),
            parameters: free.to_vec(),
            residual,
            columns,
        })
    }

    /// ½‖r‖² and its exact gradient over the free parameters: adjoint gradients through the
    /// simulator ([`Simulator::loss_and_gradient`]) for B1, B0 and a_sat (by the chain rule
    /// through the AM/AM map), analytic ones for the receiver parameters.
    pub fn exact_gradient(
        &mut self,
        data: &[Measurement],
        model: &HardwareModel,
        options: &FitOptions,
    ) -> Result<(f64, Vec<f64>), CalibrateError> {
        let (free, idx) = self.setup(data, model, options)?;
        let targets = self.targets(data, &idx)?;
        // The receiver parameters' columns are exact: reuse them.
        let receiver_free: Vec<usize> = free
            .iter()
            .copied()
            .filter(|p| ![B1, B0, COMPRESSION].contains(p))
            .collect();
        let lin = self.linearize_with(data, &targets, &idx, &receiver_free, model)?;
        let receiver_grad = lin.gradient();
        let mut grad = vec![0.0; free.len()];
        for (g, p) in receiver_grad.iter().zip(&receiver_free) {
            if let Some(i) = free.iter().position(|q| q == p) {
                grad[i] = *g;
            }
        }
        let ph = self.phases(&idx, model.phase0_rad, model.phase1_s);
        let dwell = self.template.acquisition.dwell;
        let factor: Vec<f64> = (0..self.plan.points())
            .map(|k| model.amplitude * (-PI * model.linewidth_hz * k as f64 * dwell).exp())
            .collect();
        let want_sim = free.iter().any(|p| [B1, B0, COMPRESSION].contains(p));
        let mut cost = 0.0;
        for (m, t) in data.iter().zip(&targets) {
            if !want_sim {
                break;
            }
            let (cx, cy) = compress(&m.ux, &m.uy, model.compression);
            self.set_members(vec![member(model)])?;
            let exp = self.experiment_with(cx, cy);
            let loss = ResidualLoss {
                plan: &self.plan,
                idx: &idx,
                data: &t.data,
                weight: t.weight,
                phases: &ph,
                factor: &factor,
                concentrations: &self.concentrations,
            };
            let request = GradientRequest {
                b0: free.contains(&B0),
            };
            let (value, g) = self.sim.loss_and_gradient(&exp, &loss, request)?;
            cost += value;
            for (gi, &p) in grad.iter_mut().zip(&free) {
                match p {
                    B1 => *gi += g.b1[0],
                    B0 => *gi += g.b0[0],
                    COMPRESSION => {
                        let s = model.compression.unwrap_or(f64::INFINITY);
                        let (dx, dy) = compress_derivative(&m.ux, &m.uy, s);
                        let (gx, gy) = (&g.ux[self.designed_pulse], &g.uy[self.designed_pulse]);
                        *gi += dot(gx, &dx) + dot(gy, &dy);
                    }
                    _ => {}
                }
            }
        }
        if !want_sim {
            cost = lin.cost();
        }
        Ok((cost, grad))
    }
}

fn member(model: &HardwareModel) -> Member {
    Member {
        b1: model.b1_scale,
        b0_hz: model.b0_offset_hz,
    }
}

fn new_simulator(
    molecules: &[Molecule],
    field: Field,
    carrier_ppm: f64,
    grid: Option<&SpatialGrid>,
) -> Result<Simulator, PhysicsError> {
    let mut sim = Simulator::new(
        molecules.to_vec(),
        field,
        carrier_ppm,
        vec![Member::NOMINAL],
        SimOptions::default(),
    )?;
    if let Some(g) = grid {
        sim.set_spatial_grid(g)?;
    }
    Ok(sim)
}

/// ½‖√w·(e^{iΦ}·spectrum(A·e^{−πΔlw t}·Σ c_m s_m) − D)‖² on the window, as a loss of the
/// simulated signals (member 0), with its exact gradient (module doc of `signals`).
struct ResidualLoss<'a> {
    plan: &'a SpectrumPlan,
    idx: &'a [usize],
    data: &'a [C64],
    weight: f64,
    phases: &'a [C64],
    /// A·e^{−πΔlw·t_k}.
    factor: &'a [f64],
    concentrations: &'a [f64],
}

impl SignalLoss for ResidualLoss<'_> {
    fn evaluate(&self, signals: &Signals, grad: Option<&mut Signals>) -> Result<f64, PhysicsError> {
        let mix = signals.mixture(0, self.concentrations)?;
        let x: Vec<C64> = mix.iter().zip(self.factor).map(|(z, f)| z * f).collect();
        let s = self.plan.spectrum(&x)?;
        let w = self.weight;
        let mut value = 0.0;
        let mut g = vec![C64::new(0.0, 0.0); s.len()];
        for ((&j, p), d) in self.idx.iter().zip(self.phases).zip(self.data) {
            let r = w * (p * s[j] - d);
            value += 0.5 * r.norm_sqr();
            g[j] = w * p.conj() * r;
        }
        if let Some(out) = grad {
            let gx = self.plan.spectrum_adjoint(&g)?;
            for (mol, c) in self.concentrations.iter().enumerate() {
                for ((o, gk), f) in out.fid_mut(0, mol).iter_mut().zip(&gx).zip(self.factor) {
                    *o = gk * (c * f);
                }
            }
        }
        Ok(value)
    }
}
