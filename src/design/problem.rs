//! Design problems: the plain-data problem file (`spinloop optimize PROBLEM.toml`, documented
//! in the README) and its compiled form — the sequence the designed pulse plays in, the
//! ensemble, the weighted objectives, the hardware limits and penalties, and the map from
//! optimizer parameters to loss and exact gradient.
//!
//! Everything a problem can get wrong is checked in [`DesignProblem::build`], before any
//! optimization starts: unknown metabolites, windows outside the spectral width, a pulse longer
//! than the console allows or off its raster, a reference pulse over the peak-B1 limit,
//! timings the sequence cannot fit.

use std::f64::consts::FRAC_PI_2;

use num_complex::Complex64 as C64;
use serde::{Deserialize, Serialize};

use super::constraints::{HardwareLimits, Penalties};
use super::objectives::{Composite, Enhancement, Fidelity, Hinge, Part, Suppression};
use super::optimize::{AdamOptions, LbfgsOptions, Optimizer};
use super::parameterization::{ParamKind, Parameterization};
use super::quantification::{FitModel, Measure, Quantification};
use crate::physics::{
    Block, Experiment, Field, Member, PhysicsError, SignalLoss, Signals, SimOptions, Simulator,
    library,
};
use crate::sequence::builders::{PulseSpec, acquisition};
use crate::sequence::protocols::{Protocol, PulseStyle, SequenceKind};
use crate::sequence::shapes::Shape;
use crate::spectrum::compare::{CompareOptions, reference_noise_sd};

/// The problem file.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProblemSpec {
    /// Name (used in file names and titles).
    pub name: String,
    /// Field: `3T`, `11.7T`, `500.13MHz`, …
    pub field: String,
    /// Carrier (transmitter frequency) in ppm.
    #[serde(default = "default_carrier")]
    pub carrier_ppm: f64,
    /// Library metabolites simulated (names as `spinloop molecules` lists them).
    pub molecules: Vec<String>,
    /// Concentrations (mM) of the molecules, for mixture objectives (default: all 1).
    #[serde(default)]
    pub concentrations: Option<Vec<f64>>,
    /// The acquisition.
    pub acquisition: AcquisitionSpec,
    /// The sequence the designed pulse plays in.
    pub sequence: SequenceSpec,
    /// The designed pulse.
    pub pulse: PulseSpecFile,
    /// The console's hard limits.
    pub limits: HardwareLimits,
    /// Soft penalties.
    #[serde(default)]
    pub penalties: Penalties,
    /// Hardware ensemble the design must be robust over.
    #[serde(default)]
    pub ensemble: EnsembleSpec,
    /// Objective parts (summed with their weights).
    #[serde(rename = "objective")]
    pub objectives: Vec<ObjectiveSpec>,
    /// The fit the quantification objectives anticipate.
    #[serde(default)]
    pub quantification: QuantificationSpec,
    /// The optimizer.
    #[serde(default)]
    pub optimizer: OptimizerSpec,
}

fn default_carrier() -> f64 {
    3.0
}

/// Acquisition of the simulated FIDs.
#[derive(Debug, Clone, Copy, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AcquisitionSpec {
    /// Complex points.
    pub points: usize,
    /// Dwell (ms).
    pub dwell_ms: f64,
    /// Lorentzian linewidth (Hz).
    pub linewidth_hz: f64,
}

/// The sequence around the designed pulse.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SequenceSpec {
    /// `pulse_acquire`, `spin_echo`, `press` or `steam`.
    pub kind: String,
    /// Echo time (ms) for spin echo and STEAM.
    #[serde(default)]
    pub te_ms: Option<f64>,
    /// PRESS first echo period (ms).
    #[serde(default)]
    pub te1_ms: Option<f64>,
    /// PRESS second echo period (ms).
    #[serde(default)]
    pub te2_ms: Option<f64>,
    /// STEAM mixing time (ms).
    #[serde(default)]
    pub tm_ms: Option<f64>,
    /// The other pulses: `vendor` (shaped, slice-selective over the grid) or `ideal`.
    #[serde(default = "default_pulses")]
    pub pulses: String,
    /// Grid points per axis for slice-selective pulses.
    #[serde(default = "default_grid_points")]
    pub grid_points: usize,
    /// Grid half width (slice units; the nominal slice is ±0.5).
    #[serde(default = "default_grid_half_width")]
    pub grid_half_width: f64,
}

fn default_pulses() -> String {
    "vendor".into()
}
fn default_grid_points() -> usize {
    7
}
fn default_grid_half_width() -> f64 {
    1.2
}

/// The designed pulse: it replaces the sequence's excitation.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PulseSpecFile {
    /// Number of segments.
    pub segments: usize,
    /// Segment duration (µs).
    pub dt_us: f64,
    /// `cartesian`, `amplitude_phase` or `sine`.
    #[serde(default = "default_parameterization")]
    pub parameterization: String,
    /// Sine-basis terms (for `sine`).
    #[serde(default)]
    pub sine_terms: Option<usize>,
    /// Segments at each edge held at zero.
    #[serde(default)]
    pub fixed_edges: usize,
    /// Start: `reference` (the reference pulse), `random` (seeded) or a JSON waveform file.
    #[serde(default = "default_init")]
    pub init: String,
    /// Seed of a random start.
    #[serde(default)]
    pub seed: u64,
    /// Scale of a random start's parameters.
    #[serde(default = "default_init_scale")]
    pub init_scale: f64,
}

fn default_parameterization() -> String {
    "cartesian".into()
}
fn default_init() -> String {
    "reference".into()
}
fn default_init_scale() -> f64 {
    0.1
}

/// The hardware ensemble: every combination of B1 scale and B0 offset (and, for
/// slice-selective sequences, every grid position).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EnsembleSpec {
    /// B1 scales.
    #[serde(default = "default_b1")]
    pub b1: Vec<f64>,
    /// B0 offsets (Hz).
    #[serde(default = "default_b0")]
    pub b0_hz: Vec<f64>,
}

fn default_b1() -> Vec<f64> {
    vec![1.0]
}
fn default_b0() -> Vec<f64> {
    vec![0.0]
}

impl Default for EnsembleSpec {
    fn default() -> Self {
        EnsembleSpec {
            b1: default_b1(),
            b0_hz: default_b0(),
        }
    }
}

/// One objective part.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum ObjectiveSpec {
    /// Signal of `metabolite` in the window relative to the reference pulse (reward).
    Enhancement {
        /// Metabolite.
        metabolite: String,
        /// Window (ppm).
        window_ppm: (f64, f64),
        /// Weight (the part is −signal/reference, so a positive weight rewards signal).
        #[serde(default = "one")]
        weight: f64,
    },
    /// Power of `metabolite` in the window relative to the reference pulse (penalty).
    Suppression {
        /// Metabolite.
        metabolite: String,
        /// Window (ppm).
        window_ppm: (f64, f64),
        /// Weight.
        #[serde(default = "one")]
        weight: f64,
    },
    /// Fidelity of the mixture spectrum to a target made from the reference pulse's lines.
    Fidelity {
        /// Window (ppm) compared.
        window_ppm: (f64, f64),
        /// Gain of lines outside every band.
        #[serde(default)]
        default_gain: f64,
        /// Bands `[lo_ppm, hi_ppm, gain]`: lines inside get `gain`.
        #[serde(default)]
        bands: Vec<(f64, f64, f64)>,
        /// Weight.
        #[serde(default = "one")]
        weight: f64,
    },
    /// CRLB (% of concentration) of `metabolite`; with `above`, only the excess over it counts,
    /// squared (a soft constraint: max(0, CRLB − above)²).
    Crlb {
        /// Metabolite.
        metabolite: String,
        /// Weight.
        #[serde(default = "one")]
        weight: f64,
        /// Threshold of a one-sided objective.
        #[serde(default)]
        above: Option<f64>,
    },
    /// Squared correlation of the estimates of `a` and `b`; with `above`, max(0, corr² −
    /// above)².
    Correlation {
        /// First metabolite.
        a: String,
        /// Second metabolite.
        b: String,
        /// Weight.
        #[serde(default = "one")]
        weight: f64,
        /// Threshold of a one-sided objective.
        #[serde(default)]
        above: Option<f64>,
    },
}

fn one() -> f64 {
    1.0
}

/// The fit anticipated by CRLB and correlation objectives.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QuantificationSpec {
    /// Fit window (ppm).
    #[serde(default = "default_fit_window")]
    pub window_ppm: (f64, f64),
    /// Legendre baseline terms.
    #[serde(default = "default_baseline_terms")]
    pub baseline_terms: usize,
    /// SNR of the NAA singlet on the reference acquisition (as `spinloop compare`).
    #[serde(default = "default_snr")]
    pub snr: f64,
}

fn default_fit_window() -> (f64, f64) {
    (1.8, 4.2)
}
fn default_baseline_terms() -> usize {
    3
}
fn default_snr() -> f64 {
    100.0
}

impl Default for QuantificationSpec {
    fn default() -> Self {
        QuantificationSpec {
            window_ppm: default_fit_window(),
            baseline_terms: default_baseline_terms(),
            snr: default_snr(),
        }
    }
}

/// The optimizer.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OptimizerSpec {
    /// `lbfgs` or `adam`.
    #[serde(default = "default_method")]
    pub method: String,
    /// Iteration budget.
    #[serde(default = "default_iterations")]
    pub max_iterations: usize,
    /// Adam learning rate.
    #[serde(default = "default_learning_rate")]
    pub learning_rate: f64,
    /// Stop when the relative decrease of the loss falls below this (L-BFGS: over one
    /// iteration; Adam: no improvement by this fraction over `patience` iterations).
    #[serde(default = "default_relative_tolerance")]
    pub relative_tolerance: f64,
    /// Stop when ‖∇L‖∞ falls below this (default 1e-8).
    #[serde(default)]
    pub gradient_tolerance: Option<f64>,
    /// L-BFGS history length (default 10).
    #[serde(default)]
    pub memory: Option<usize>,
    /// Adam: iterations without improvement before stopping (default 100; 0 disables).
    #[serde(default)]
    pub patience: Option<usize>,
}

fn default_method() -> String {
    "lbfgs".into()
}
fn default_iterations() -> usize {
    200
}
fn default_learning_rate() -> f64 {
    0.02
}
fn default_relative_tolerance() -> f64 {
    1e-9
}

impl Default for OptimizerSpec {
    fn default() -> Self {
        OptimizerSpec {
            method: default_method(),
            max_iterations: default_iterations(),
            learning_rate: default_learning_rate(),
            relative_tolerance: default_relative_tolerance(),
            gradient_tolerance: None,
            memory: None,
            patience: None,
        }
    }
}

impl ProblemSpec {
    /// Parses a problem file's text; `source` names it in errors.
    pub fn from_toml(text: &str, source: &str) -> Result<ProblemSpec, PhysicsError> {
        toml::from_str(text).map_err(|e| PhysicsError::Parse(format!("problem file {source}: {e}")))
    }

    /// The optimizer the spec asks for.
    pub fn optimizer(&self) -> Result<Optimizer, PhysicsError> {
        let o = &self.optimizer;
        if o.max_iterations == 0 {
            return Err(PhysicsError::invalid(
                "optimizer.max_iterations",
                0,
                "must be >= 1",
            ));
        }
        if let Some(g) = o.gradient_tolerance
            && !(g.is_finite() && g >= 0.0)
        {
            return Err(PhysicsError::invalid(
                "optimizer.gradient_tolerance",
                g,
                "must be finite and >= 0",
            ));
        }
        if o.memory == Some(0) {
            return Err(PhysicsError::invalid("optimizer.memory", 0, "must be >= 1"));
        }
        if !(o.relative_tolerance.is_finite() && o.relative_tolerance >= 0.0) {
            return Err(PhysicsError::invalid(
                "optimizer.relative_tolerance",
                o.relative_tolerance,
                "must be finite and >= 0",
            ));
        }
        match o.method.trim().to_ascii_lowercase().as_str() {
            "lbfgs" | "l-bfgs" => {
                let d = LbfgsOptions::default();
                Ok(Optimizer::Lbfgs(LbfgsOptions {
                    max_iterations: o.max_iterations,
                    relative_tolerance: o.relative_tolerance,
                    gradient_tolerance: o.gradient_tolerance.unwrap_or(d.gradient_tolerance),
                    memory: o.memory.unwrap_or(d.memory),
                    ..d
                }))
            }
            "adam" => {
                if !(o.learning_rate.is_finite() && o.learning_rate > 0.0) {
                    return Err(PhysicsError::invalid(
                        "optimizer.learning_rate",
                        o.learning_rate,
                        "must be > 0",
                    ));
                }
                let d = AdamOptions::default();
                Ok(Optimizer::Adam(AdamOptions {
                    max_iterations: o.max_iterations,
                    learning_rate: o.learning_rate,
                    relative_tolerance: o.relative_tolerance,
                    gradient_tolerance: o.gradient_tolerance.unwrap_or(d.gradient_tolerance),
                    patience: o.patience.unwrap_or(d.patience),
                    ..d
                }))
            }
            other => Err(PhysicsError::invalid(
                "optimizer.method",
                other,
                "expected `lbfgs` or `adam`",
            )),
        }
    }
}

/// A compiled design problem: evaluate loss and gradient for optimizer parameters.
pub struct DesignProblem {
    /// The spec it was built from.
    pub spec: ProblemSpec,
    /// Field.
    pub field: Field,
    /// The parameterization of the designed pulse.
    pub param: Parameterization,
    /// The reference pulse (same duration and raster): sinc-Hanning, 2 zero crossings per
    /// side, 90° about y — the conventional excitation the design is compared against.
    pub reference: (Vec<f64>, Vec<f64>),
    /// The protocol (sequence kind, timings, pulse style, design grid).
    pub protocol: Protocol,
    /// Template experiment; block `designed_block` is replaced by the designed pulse.
    pub experiment: Experiment,
    /// Index of the designed pulse's block.
    pub designed_block: usize,
    /// The objective.
    pub objective: Composite,
    /// Simulator over the ensemble and grid.
    pub simulator: Simulator,
    /// Ensemble members (B1 × B0).
    pub members: Vec<Member>,
    /// Grid positions per member (1 without a grid).
    pub positions: usize,
}

impl std::fmt::Debug for DesignProblem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DesignProblem")
            .field("name", &self.spec.name)
            .field("members", &self.members.len())
            .field("positions", &self.positions)
            .finish_non_exhaustive()
    }
}

/// One evaluation: loss, gradient with respect to the parameters, and the waveform.
#[derive(Debug, Clone)]
pub struct Evaluation {
    /// Total loss (objective + penalties).
    pub loss: f64,
    /// ∂loss/∂θ.
    pub gradient: Vec<f64>,
}

fn sequence_kind(s: &SequenceSpec) -> Result<SequenceKind, PhysicsError> {
    let ms = |name: &str, v: Option<f64>| {
        v.map(|x| x * 1e-3).ok_or_else(|| {
            PhysicsError::invalid(
                format!("sequence.{name}"),
                "missing",
                format!("required for `{}`", s.kind),
            )
        })
    };
    match s.kind.trim().to_ascii_lowercase().as_str() {
        "pulse_acquire" => Ok(SequenceKind::PulseAcquire),
        "spin_echo" => Ok(SequenceKind::SpinEcho {
            te: ms("te_ms", s.te_ms)?,
        }),
        "press" => Ok(SequenceKind::Press {
            te1: ms("te1_ms", s.te1_ms)?,
            te2: ms("te2_ms", s.te2_ms)?,
        }),
        "steam" => Ok(SequenceKind::Steam {
            te: ms("te_ms", s.te_ms)?,
            tm: ms("tm_ms", s.tm_ms)?,
        }),
        other => Err(PhysicsError::invalid(
            "sequence.kind",
            other,
            "expected pulse_acquire, spin_echo, press or steam",
        )),
    }
}

fn param_kind(p: &PulseSpecFile) -> Result<ParamKind, PhysicsError> {
    match p.parameterization.trim().to_ascii_lowercase().as_str() {
        "cartesian" | "xy" => Ok(ParamKind::Cartesian),
        "amplitude_phase" | "polar" => Ok(ParamKind::AmplitudePhase),
        "sine" | "smooth" => Ok(ParamKind::SineBasis {
            terms: p.sine_terms.ok_or_else(|| {
                PhysicsError::invalid(
                    "pulse.sine_terms",
                    "missing",
                    "required for the sine parameterization",
                )
            })?,
        }),
        other => Err(PhysicsError::invalid(
            "pulse.parameterization",
            other,
            "expected cartesian, amplitude_phase or sine",
        )),
    }
}

/// A waveform file: `{"dt": s, "ux": [Hz…], "uy": [Hz…]}` (what `spinloop optimize` writes).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WaveformFile {
    /// Segment duration (s).
    pub dt: f64,
    /// x controls (Hz).
    pub ux: Vec<f64>,
    /// y controls (Hz).
    pub uy: Vec<f64>,
    /// Peak B1 limit the waveform was designed under (Hz).
    #[serde(default)]
    pub peak_b1_hz: Option<f64>,
    /// Free-form provenance.
    #[serde(default)]
    pub name: Option<String>,
}

impl DesignProblem {
    /// Compiles a problem, checking everything before any optimization.
    pub fn build(spec: ProblemSpec) -> Result<DesignProblem, PhysicsError> {
        let field = Field::parse(&spec.field)?;
        let carrier = spec.carrier_ppm;
        crate::physics::error::finite("carrier_ppm", carrier)?;
        if spec.molecules.is_empty() {
            return Err(PhysicsError::invalid(
                "molecules",
                "[]",
                "need at least one",
            ));
        }
        let molecules = spec
            .molecules
            .iter()
            .map(|n| library::by_name(n))
            .collect::<Result<Vec<_>, _>>()?;
        let index = |name: &str| -> Result<usize, PhysicsError> {
            spec.molecules
                .iter()
                .position(|m| m.eq_ignore_ascii_case(name))
                .ok_or_else(|| {
                    PhysicsError::invalid(
                        "objective metabolite",
                        name,
                        format!("not among the simulated molecules {:?}", spec.molecules),
                    )
                })
        };
        let concentrations = match &spec.concentrations {
            None => vec![1.0; molecules.len()],
            Some(c) if c.len() != molecules.len() => {
                return Err(PhysicsError::SizeMismatch {
                    what: "concentrations".into(),
                    expected: molecules.len(),
                    got: c.len(),
                });
            }
            Some(c) => c.clone(),
        };
        let acq_spec = spec.acquisition;
        let acq = acquisition(
            acq_spec.points,
            acq_spec.dwell_ms * 1e-3,
            acq_spec.linewidth_hz,
        )?;
        spec.optimizer()?;
        // Names and windows of every objective, before any simulation.
        let probe = |i: usize, w: (f64, f64)| {
            super::objectives::WindowLoss::new(
                acq.points,
                acq.dwell,
                carrier,
                field.f0_mhz,
                w,
                Vec::new(),
            )
            .map(|_| ())
            .map_err(|e| {
                PhysicsError::invalid(format!("objective[{i}]"), "window_ppm", e.to_string())
            })
        };
        for (i, o) in spec.objectives.iter().enumerate() {
            match o {
                ObjectiveSpec::Enhancement {
                    metabolite,
                    window_ppm,
                    ..
                }
                | ObjectiveSpec::Suppression {
                    metabolite,
                    window_ppm,
                    ..
                } => {
                    index(metabolite)?;
                    probe(i, *window_ppm)?;
                }
                ObjectiveSpec::Fidelity { window_ppm, .. } => probe(i, *window_ppm)?,
                ObjectiveSpec::Crlb { metabolite, .. } => {
                    index(metabolite)?;
                    probe(i, spec.quantification.window_ppm)?;
                }
                ObjectiveSpec::Correlation { a, b, .. } => {
                    index(a)?;
                    index(b)?;
                    probe(i, spec.quantification.window_ppm)?;
                }
            }
        }

        // The designed pulse and the console's limits.
        let p = &spec.pulse;
        let dt = p.dt_us * 1e-6;
        let param = Parameterization::new(
            p.segments,
            dt,
            spec.limits.peak_b1_hz,
            param_kind(p)?,
            p.fixed_edges,
        )?;
        spec.limits.check_design(&param, None)?;
        let shape = Shape::sinc_hanning(param.duration(), p.segments, 2)?;
        let reference = PulseSpec::shaped(&shape, FRAC_PI_2, FRAC_PI_2)?;
        let PulseSpec::Waveform {
            ux: ref_ux,
            uy: ref_uy,
            ..
        } = reference
        else {
            return Err(PhysicsError::Numerical(
                "reference pulse is not a waveform".into(),
            ));
        };
        spec.limits
            .check_waveform(&ref_ux, &ref_uy, dt, None)
            .map_err(|e| {
                PhysicsError::invalid(
                    "limits.peak_b1_hz",
                    spec.limits.peak_b1_hz,
                    format!(
                        "the reference 90° pulse of this duration does not fit the limits ({e}); lengthen the pulse or raise the limit"
                    ),
                )
            })?;

        // The sequence.
        let style = PulseStyle::parse(&spec.sequence.pulses)?;
        let protocol = Protocol::new(sequence_kind(&spec.sequence)?, style)
            .with_grid(spec.sequence.grid_points, spec.sequence.grid_half_width)
            .with_excitation(
                "designed pulse",
                PulseSpec::Waveform {
                    dt,
                    ux: ref_ux.clone(),
                    uy: ref_uy.clone(),
                },
            );
        let compiled = protocol.compile(field, carrier, acq)?;
        let experiment = compiled.sequence.experiment.clone();
        let designed_block = experiment
            .blocks
            .iter()
            .position(|b| matches!(b, Block::Pulse { .. }))
            .ok_or_else(|| PhysicsError::Numerical("the sequence has no designed pulse".into()))?;

        // Ensemble.
        if spec.ensemble.b1.is_empty() || spec.ensemble.b0_hz.is_empty() {
            return Err(PhysicsError::invalid(
                "ensemble",
                "[]",
                "b1 and b0_hz need at least one value each",
            ));
        }
        let mut members = Vec::new();
        for &b1 in &spec.ensemble.b1 {
            for &b0 in &spec.ensemble.b0_hz {
                members.push(Member { b1, b0_hz: b0 });
            }
        }
        let mut simulator = Simulator::new(
            molecules,
            field,
            carrier,
            members.clone(),
            SimOptions::default(),
        )?;
        let (positions, signal_scale) = match &compiled.grid {
            Some(g) => {
                simulator.set_spatial_grid(g)?;
                (
                    g.axes.iter().map(|a| a.len()).product(),
                    (2.0 * spec.sequence.grid_half_width).powi(g.axes.len() as i32),
                )
            }
            None => (1, 1.0),
        };

        // Reference signals (nominal hardware, same grid) for the normalized objectives.
        let mut nominal = Simulator::new(
            simulator.molecules().to_vec(),
            field,
            carrier,
            vec![Member::NOMINAL],
            SimOptions::default(),
        )?;
        if let Some(g) = &compiled.grid {
            nominal.set_spatial_grid(g)?;
        }
        let ref_signals = nominal.simulate(&experiment)?;

        let dwell = acq.dwell;
        let mut objective = Composite::default();
        let mut quant_model: Option<FitModel> = None;
        // A CRLB or correlation part; the fit model (and its noise level) is built once.
        let mut quantification_part =
            |name: String,
             weight: f64,
             measure: Measure,
             above: Option<f64>|
             -> Result<(String, f64, Box<dyn SignalLoss + Send>), PhysicsError> {
                let model = match &quant_model {
                    Some(m) => m.clone(),
                    None => {
                        let m = fit_model(&spec, field, acq, &concentrations, signal_scale)?;
                        quant_model = Some(m.clone());
                        m
                    }
                };
                one_sided(
                    name,
                    weight,
                    Box::new(Quantification::new(model, measure)?),
                    above,
                )
            };
        for (i, o) in spec.objectives.iter().enumerate() {
            let (name, weight, loss): (String, f64, Box<dyn SignalLoss + Send>) = match o {
                ObjectiveSpec::Enhancement {
                    metabolite,
                    window_ppm,
                    weight,
                } => {
                    let m = index(metabolite)?;
                    let reference = window_sum(
                        &ref_signals,
                        m,
                        acq.points,
                        dwell,
                        carrier,
                        field,
                        *window_ppm,
                    )?
                    .0;
                    (
                        format!("enhancement({metabolite})"),
                        *weight,
                        Box::new(Enhancement::new(
                            acq.points,
                            dwell,
                            carrier,
                            field.f0_mhz,
                            *window_ppm,
                            m,
                            reference,
                        )?),
                    )
                }
                ObjectiveSpec::Suppression {
                    metabolite,
                    window_ppm,
                    weight,
                } => {
                    let m = index(metabolite)?;
                    let reference = window_sum(
                        &ref_signals,
                        m,
                        acq.points,
                        dwell,
                        carrier,
                        field,
                        *window_ppm,
                    )?
                    .1;
                    (
                        format!("suppression({metabolite})"),
                        *weight,
                        Box::new(Suppression::new(
                            acq.points,
                            dwell,
                            carrier,
                            field.f0_mhz,
                            *window_ppm,
                            m,
                            reference,
                        )?),
                    )
                }
                ObjectiveSpec::Fidelity {
                    window_ppm,
                    default_gain,
                    bands,
                    weight,
                } => {
                    let target = line_target(
                        &nominal,
                        &concentrations,
                        acq,
                        carrier,
                        field,
                        *default_gain,
                        bands,
                    )
                    .map_err(|e| {
                        PhysicsError::invalid(format!("objective[{i}]"), "fidelity", e.to_string())
                    })?;
                    (
                        "fidelity".to_string(),
                        *weight,
                        Box::new(Fidelity::new(
                            dwell,
                            carrier,
                            field.f0_mhz,
                            *window_ppm,
                            concentrations.clone(),
                            &target,
                        )?),
                    )
                }
                ObjectiveSpec::Crlb {
                    metabolite,
                    weight,
                    above,
                } => {
                    let measure = Measure::CrlbPercent {
                        metabolite: index(metabolite)?,
                    };
                    let name = format!("crlb%({metabolite})");
                    quantification_part(name, *weight, measure, *above)?
                }
                ObjectiveSpec::Correlation {
                    a,
                    b,
                    weight,
                    above,
                } => {
                    let measure = Measure::CorrelationSquared {
                        a: index(a)?,
                        b: index(b)?,
                    };
                    quantification_part(format!("corr²({a},{b})"), *weight, measure, *above)?
                }
            };
            if !weight.is_finite() {
                return Err(PhysicsError::invalid(
                    format!("objective[{i}].weight"),
                    weight,
                    "must be finite",
                ));
            }
            objective.parts.push(Part { name, weight, loss });
        }
        if objective.parts.is_empty() {
            return Err(PhysicsError::invalid(
                "objective",
                "[]",
                "a problem needs at least one [[objective]]",
            ));
        }
        Ok(DesignProblem {
            spec,
            field,
            param,
            reference: (ref_ux, ref_uy),
            protocol,
            experiment,
            designed_block,
            objective,
            simulator,
            members,
            positions,
        })
    }

    /// Number of simulations per evaluation: members × grid positions (× fragments inside).
    pub fn ensemble_size(&self) -> usize {
        self.members.len() * self.positions
    }

    /// The experiment with `ux`, `uy` as the designed pulse.
    pub fn experiment_with(&self, ux: Vec<f64>, uy: Vec<f64>) -> Experiment {
        let mut e = self.experiment.clone();
        e.blocks[self.designed_block] = Block::Pulse {
            dt: self.param.dt,
            ux,
            uy,
        };
        e
    }

    /// Loss and gradient at parameters `theta`.
    pub fn evaluate(&mut self, theta: &[f64]) -> Result<Evaluation, PhysicsError> {
        let (ux, uy) = self.param.waveform(theta)?;
        let experiment = self.experiment_with(ux.clone(), uy.clone());
        let (value, grad) =
            self.simulator
                .loss_and_pulse_gradient(&experiment, &self.objective, &[0])?;
        let mut gux = grad.ux[0].clone();
        let mut guy = grad.uy[0].clone();
        let penalty = self.spec.penalties.evaluate(
            &ux,
            &uy,
            self.param.dt,
            self.param.peak_hz,
            self.spec.limits.max_energy_hz2s,
            &mut gux,
            &mut guy,
        )?;
        let gradient = self.param.pullback(theta, &gux, &guy)?;
        Ok(Evaluation {
            loss: value + penalty,
            gradient,
        })
    }

    /// Signals of the ensemble for a waveform (no gradient).
    pub fn signals(&mut self, ux: &[f64], uy: &[f64]) -> Result<Signals, PhysicsError> {
        let e = self.experiment_with(ux.to_vec(), uy.to_vec());
        self.simulator.simulate(&e)
    }

    /// Unweighted value of each objective part for a waveform, with the part names.
    pub fn part_values(
        &mut self,
        ux: &[f64],
        uy: &[f64],
    ) -> Result<Vec<(String, f64)>, PhysicsError> {
        let s = self.signals(ux, uy)?;
        let v = self.objective.values(&s)?;
        Ok(self
            .objective
            .parts
            .iter()
            .map(|p| p.name.clone())
            .zip(v)
            .collect())
    }

    /// Start parameters: from the reference pulse, a seeded random point, or a waveform file
    /// (warm start).
    pub fn initial_parameters(&self) -> Result<Vec<f64>, PhysicsError> {
        let p = &self.spec.pulse;
        match p.init.trim() {
            "reference" => self
                .param
                .from_waveform(&self.reference.0, &self.reference.1),
            "random" => Ok(self.param.random(p.seed, p.init_scale)),
            path => {
                let w = read_waveform(std::path::Path::new(path))?;
                self.warm_start(&w)
            }
        }
    }

    /// Parameters reproducing a given waveform (it must match the segment count and raster).
    pub fn warm_start(&self, w: &WaveformFile) -> Result<Vec<f64>, PhysicsError> {
        if w.ux.len() != self.param.segments {
            return Err(PhysicsError::SizeMismatch {
                what: "warm-start waveform segments".into(),
                expected: self.param.segments,
                got: w.ux.len(),
            });
        }
        if (w.dt - self.param.dt).abs() > 1e-9 * self.param.dt {
            return Err(PhysicsError::invalid(
                "warm-start waveform dt",
                w.dt,
                format!("the problem's raster is {} s", self.param.dt),
            ));
        }
        self.param.from_waveform(&w.ux, &w.uy)
    }

    /// The protocol with a waveform as its excitation (for basis sets and comparisons), on a
    /// grid of `grid_points` per axis.
    pub fn protocol_with(
        &self,
        ux: &[f64],
        uy: &[f64],
        label: &str,
        grid_points: usize,
    ) -> Protocol {
        let mut p = self
            .protocol
            .clone()
            .with_grid(grid_points, self.protocol.grid_half_width);
        p.excitation = Some((
            label.to_string(),
            PulseSpec::Waveform {
                dt: self.param.dt,
                ux: ux.to_vec(),
                uy: uy.to_vec(),
            },
        ));
        p
    }
}

/// A part, wrapped in a [`Hinge`] when it has a threshold.
fn one_sided(
    name: String,
    weight: f64,
    loss: Box<dyn SignalLoss + Send>,
    above: Option<f64>,
) -> Result<(String, f64, Box<dyn SignalLoss + Send>), PhysicsError> {
    match above {
        None => Ok((name, weight, loss)),
        Some(t) => {
            crate::physics::error::finite(format!("{name}.above"), t)?;
            Ok((
                format!("max(0, {name} − {t})²"),
                weight,
                Box::new(Hinge {
                    inner: loss,
                    target: t,
                }),
            ))
        }
    }
}

/// Reads a waveform JSON file.
pub fn read_waveform(path: &std::path::Path) -> Result<WaveformFile, PhysicsError> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| PhysicsError::Io(format!("{}: {e}", path.display())))?;
    let w: WaveformFile = serde_json::from_str(&text)
        .map_err(|e| PhysicsError::Parse(format!("waveform file {}: {e}", path.display())))?;
    if w.ux.len() != w.uy.len() {
        return Err(PhysicsError::SizeMismatch {
            what: format!("{}: uy", path.display()),
            expected: w.ux.len(),
            got: w.uy.len(),
        });
    }
    crate::physics::error::positive("waveform dt", w.dt)?;
    for (k, (x, y)) in w.ux.iter().zip(&w.uy).enumerate() {
        if !(x.is_finite() && y.is_finite()) {
            return Err(PhysicsError::invalid(
                format!("{}: sample {k}", path.display()),
                format!("({x}, {y})"),
                "must be finite",
            ));
        }
    }
    Ok(w)
}

/// (Σ_W Re S, Σ_W |S|²) of molecule m, nominal member, in a ppm window.
fn window_sum(
    signals: &Signals,
    m: usize,
    points: usize,
    dwell: f64,
    carrier: f64,
    field: Field,
    window_ppm: (f64, f64),
) -> Result<(f64, f64), PhysicsError> {
    let probe = super::objectives::WindowLoss::new(
        points,
        dwell,
        carrier,
        field.f0_mhz,
        window_ppm,
        Vec::new(),
    )?;
    let plan = crate::spectrum::SpectrumPlan::new(points)?;
    let spec = plan.spectrum(signals.fid(0, m))?;
    Ok(probe.window().iter().fold((0.0, 0.0), |(a, b), &j| {
        (a + spec[j].re, b + spec[j].norm_sqr())
    }))
}

/// The target FID of a fidelity objective: the lines of an ideal 90°y pulse–acquire of the
/// mixture, each multiplied by the gain of the band its ppm falls in (`default_gain` outside).
fn line_target(
    nominal: &Simulator,
    concentrations: &[f64],
    acq: crate::physics::Acquisition,
    carrier: f64,
    field: Field,
    default_gain: f64,
    bands: &[(f64, f64, f64)],
) -> Result<Vec<C64>, PhysicsError> {
    for (i, &(lo, hi, g)) in bands.iter().enumerate() {
        if !(lo.is_finite() && hi.is_finite() && g.is_finite() && lo < hi) {
            return Err(PhysicsError::invalid(
                format!("bands[{i}]"),
                format!("[{lo}, {hi}, {g}]"),
                "need finite lo < hi and a finite gain",
            ));
        }
    }
    let mut ideal = Simulator::new(
        nominal.molecules().to_vec(),
        field,
        carrier,
        vec![Member::NOMINAL],
        SimOptions::default(),
    )?;
    let experiment = Experiment {
        blocks: vec![Block::Hard {
            flip: FRAC_PI_2,
            phase: FRAC_PI_2,
        }],
        acquisition: acq,
    };
    ideal.simulate(&experiment)?;
    let mut fid = vec![C64::new(0.0, 0.0); acq.points];
    let pi = std::f64::consts::PI;
    for fragment in 0..ideal.fragment_count() {
        let mol = ideal.fragment_molecule(fragment).unwrap_or(0);
        let c = concentrations.get(mol).copied().unwrap_or(0.0);
        for line in ideal.lines(0, fragment).unwrap_or_default() {
            let ppm = carrier + line.freq_hz / field.f0_mhz;
            let gain = bands
                .iter()
                .find(|(lo, hi, _)| ppm >= *lo && ppm <= *hi)
                .map_or(default_gain, |b| b.2);
            if gain == 0.0 {
                continue;
            }
            let rate = C64::new(-pi * acq.linewidth_hz, 2.0 * pi * line.freq_hz);
            for (k, o) in fid.iter_mut().enumerate() {
                *o += line.amplitude * (c * gain) * (rate * (k as f64 * acq.dwell)).exp();
            }
        }
    }
    Ok(fid)
}

fn fit_model(
    spec: &ProblemSpec,
    field: Field,
    acq: crate::physics::Acquisition,
    concentrations: &[f64],
    signal_scale: f64,
) -> Result<FitModel, PhysicsError> {
    let q = &spec.quantification;
    let noise_sd = reference_noise_sd(&CompareOptions {
        field,
        carrier_ppm: spec.carrier_ppm,
        points: acq.points,
        dwell: acq.dwell,
        linewidth_hz: acq.linewidth_hz,
        basis_linewidth_hz: acq.linewidth_hz,
        snr: q.snr,
        ..CompareOptions::default()
    })?;
    Ok(FitModel {
        points: acq.points,
        dwell: acq.dwell,
        carrier_ppm: spec.carrier_ppm,
        f0_mhz: field.f0_mhz,
        window_ppm: q.window_ppm,
        baseline_terms: q.baseline_terms,
        pivot_ppm: spec.carrier_ppm,
        concentrations: concentrations.to_vec(),
        noise_sd,
        signal_scale,
    })
}

/// The outcome of [`DesignProblem::optimize`].
#[derive(Debug, Clone)]
pub struct DesignResult {
    /// Start waveform (ux, uy).
    pub initial: (Vec<f64>, Vec<f64>),
    /// Optimized waveform (the last good one if the optimizer stopped on a non-finite value).
    pub optimized: (Vec<f64>, Vec<f64>),
    /// Optimizer parameters of the optimized waveform (a warm start for the next run).
    pub parameters: Vec<f64>,
    /// Optimizer record: history and stop reason.
    pub optimizer: super::optimize::OptimizeResult,
    /// Objective parts (unweighted) for the start waveform.
    pub parts_initial: Vec<(String, f64)>,
    /// Objective parts for the optimized waveform.
    pub parts_optimized: Vec<(String, f64)>,
    /// Wall time of the optimization (s).
    pub seconds: f64,
}

impl DesignProblem {
    /// Optimizes from [`DesignProblem::initial_parameters`] with the spec's optimizer.
    /// `progress` sees every accepted iterate and may cancel. A non-finite loss or gradient
    /// stops the run with the last good waveform and the reason in
    /// `optimizer.reason`; the optimized waveform passed the hardware interlock.
    pub fn optimize<R: Into<super::optimize::Control>>(
        &mut self,
        progress: impl FnMut(&super::optimize::Iteration) -> R,
    ) -> Result<DesignResult, PhysicsError> {
        let x0 = self.initial_parameters()?;
        self.optimize_from(&x0, progress)
    }

    /// Optimizes from parameters `x0` (a warm start).
    pub fn optimize_from<R: Into<super::optimize::Control>>(
        &mut self,
        x0: &[f64],
        progress: impl FnMut(&super::optimize::Iteration) -> R,
    ) -> Result<DesignResult, PhysicsError> {
        let optimizer = self.spec.optimizer()?;
        let initial = self.param.waveform(x0)?;
        let parts_initial = self.part_values(&initial.0, &initial.1)?;
        let start = std::time::Instant::now();
        let result = super::optimize::minimize(
            x0,
            &optimizer,
            |x| {
                let e = self.evaluate(x)?;
                Ok((e.loss, e.gradient))
            },
            progress,
        )?;
        let seconds = start.elapsed().as_secs_f64();
        let optimized = self.param.waveform(&result.x)?;
        self.spec
            .limits
            .check_waveform(&optimized.0, &optimized.1, self.param.dt, None)?;
        let parts_optimized = self.part_values(&optimized.0, &optimized.1)?;
        Ok(DesignResult {
            initial,
            optimized,
            parameters: result.x.clone(),
            optimizer: result,
            parts_initial,
            parts_optimized,
            seconds,
        })
    }
}
