//! What an operator asks of a session ([`SessionSpec`], stored as the session's JSON) and its
//! compilation against a console's profile into the design problem the loop optimizes.
//!
//! The console's facts win over the request: the field comes from its f0, the acquisition
//! (points, dwell) from its hello, and the hard limits from its declared limits (a requested
//! peak B1 may only be lower). Everything is validated before a session starts, through the
//! same [`DesignProblem::build`] checks as `spinloop optimize`.

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::ConsoleProfile;
use crate::design::constraints::HardwareLimits;
use crate::design::problem::{DesignProblem, ProblemSpec};
use crate::physics::PhysicsError;

/// One objective part (the kinds of a problem file's `[[objective]]`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ObjectivePart {
    /// `enhancement`, `suppression`, `fidelity`, `crlb` or `correlation`.
    pub kind: String,
    /// Metabolite (enhancement, suppression, crlb).
    #[serde(default)]
    pub metabolite: String,
    /// Window (ppm), for enhancement, suppression and fidelity.
    #[serde(default)]
    pub window_ppm: Option<(f64, f64)>,
    /// Weight (default 1).
    #[serde(default)]
    pub weight: Option<f64>,
    /// One-sided threshold (crlb, correlation).
    #[serde(default)]
    pub above: Option<f64>,
    /// First metabolite of a correlation.
    #[serde(default)]
    pub a: String,
    /// Second metabolite of a correlation.
    #[serde(default)]
    pub b: String,
}

/// The sequence around the designed pulse.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct SequenceSpec {
    /// `pulse_acquire`, `spin_echo`, `press` or `steam`.
    pub kind: String,
    /// Echo time (ms).
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
    /// `ideal` (default) or `vendor`.
    #[serde(default)]
    pub pulses: Option<String>,
    /// Grid points per axis (slice-selective pulses).
    #[serde(default)]
    pub grid_points: Option<usize>,
}

/// The designed pulse.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PulseSpec {
    /// Segments.
    pub segments: usize,
    /// Segment duration (s).
    pub dt_s: f64,
    /// `cartesian` (default), `amplitude_phase`, `sine`.
    #[serde(default)]
    pub parameterization: Option<String>,
    /// Sine-basis terms.
    #[serde(default)]
    pub sine_terms: Option<usize>,
    /// Segments held at zero at each edge.
    #[serde(default)]
    pub fixed_edges: usize,
}

/// Soft constraints; the hard ones are the console's.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct ConstraintSpec {
    /// Peak B1 the design may use (Hz); `None` = the console's limit.
    #[serde(default)]
    pub peak_b1_hz: Option<f64>,
    /// Energy penalty weight.
    #[serde(default)]
    pub energy_weight: f64,
    /// Smoothness penalty weight.
    #[serde(default)]
    pub smoothness_weight: f64,
}

/// Hardware ensemble (around the current hardware estimate).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EnsembleSpec {
    /// B1 scales relative to the estimate.
    pub b1: Vec<f64>,
    /// B0 offsets (Hz) relative to the estimate.
    pub b0_hz: Vec<f64>,
}

impl Default for EnsembleSpec {
    fn default() -> Self {
        EnsembleSpec {
            b1: vec![1.0],
            b0_hz: vec![0.0],
        }
    }
}

/// Budget of a session.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Budget {
    /// Most acquisitions (default 32).
    pub max_acquisitions: u32,
    /// Most design/fit rounds (default 8).
    pub max_rounds: u32,
    /// Optimizer iterations per (re-)optimization (default 40).
    pub optimizer_iterations: u32,
    /// Acquisitions per waveform before a fit (default 1).
    pub acquisitions_per_round: u32,
    /// Averages per acquisition (default 1).
    pub averages: u32,
}

impl Default for Budget {
    fn default() -> Self {
        Budget {
            max_acquisitions: 32,
            max_rounds: 8,
            optimizer_iterations: 40,
            acquisitions_per_round: 1,
            averages: 1,
        }
    }
}

/// When a session has converged, and when it probes.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Convergence {
    /// Relative tolerance on the objective (default 0.02).
    pub objective_tolerance: f64,
    /// Probe when σ(B1 scale) exceeds this (default 0.02).
    pub probe_b1_sigma: f64,
}

impl Default for Convergence {
    fn default() -> Self {
        Convergence {
            objective_tolerance: 0.02,
            probe_b1_sigma: 0.02,
        }
    }
}

/// A session request (the stored spec).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SessionSpec {
    /// Console to run on.
    pub console_id: String,
    /// A whole problem file (TOML) instead of the structured fields below.
    #[serde(default)]
    pub problem_toml: Option<String>,
    /// Metabolites simulated.
    #[serde(default)]
    pub targets: Vec<String>,
    /// Their concentrations (default all 1).
    #[serde(default)]
    pub concentrations: Vec<f64>,
    /// Objective parts.
    #[serde(default)]
    pub objective: Vec<ObjectivePart>,
    /// Sequence.
    #[serde(default)]
    pub sequence: Option<SequenceSpec>,
    /// Designed pulse.
    #[serde(default)]
    pub pulse: Option<PulseSpec>,
    /// Soft constraints.
    #[serde(default)]
    pub constraints: ConstraintSpec,
    /// Ensemble (relative to the hardware estimate).
    #[serde(default)]
    pub ensemble: EnsembleSpec,
    /// Budget.
    #[serde(default)]
    pub budget: Budget,
    /// Convergence and probing.
    #[serde(default)]
    pub convergence: Convergence,
    /// Carrier (ppm; default 3.0).
    #[serde(default)]
    pub carrier_ppm: Option<f64>,
    /// Linewidth of the nominal model (Hz; default 4).
    #[serde(default)]
    pub linewidth_hz: Option<f64>,
    /// Free-form label.
    #[serde(default)]
    pub label: String,
}

fn bad(field: &str, value: impl std::fmt::Display, reason: &str) -> PhysicsError {
    PhysicsError::invalid(field, value, reason)
}

impl SessionSpec {
    /// Checks the session-level fields (budget, convergence, ids); the design part is checked
    /// by [`SessionSpec::problem`].
    pub fn validate(&self) -> Result<(), PhysicsError> {
        super::check_id("console_id", &self.console_id, 64)?;
        let b = &self.budget;
        for (f, v) in [
            ("budget.max_acquisitions", b.max_acquisitions),
            ("budget.max_rounds", b.max_rounds),
            ("budget.optimizer_iterations", b.optimizer_iterations),
            ("budget.acquisitions_per_round", b.acquisitions_per_round),
            ("budget.averages", b.averages),
        ] {
            if v == 0 {
                return Err(bad(f, v, "must be ≥ 1"));
            }
        }
        if b.acquisitions_per_round > b.max_acquisitions {
            return Err(bad(
                "budget.acquisitions_per_round",
                b.acquisitions_per_round,
                "exceeds budget.max_acquisitions",
            ));
        }
        let c = &self.convergence;
        for (f, v) in [
            ("convergence.objective_tolerance", c.objective_tolerance),
            ("convergence.probe_b1_sigma", c.probe_b1_sigma),
        ] {
            crate::physics::error::positive(f, v)?;
        }
        if self.label.len() > 256 {
            return Err(bad("label", self.label.len(), "longer than 256 bytes"));
        }
        let structured = !self.targets.is_empty()
            || !self.objective.is_empty()
            || self.sequence.is_some()
            || self.pulse.is_some();
        match (&self.problem_toml, structured) {
            (Some(_), true) => Err(bad(
                "problem_toml",
                "set",
                "give either a problem file or the structured fields (targets, objective, \
                 sequence, pulse), not both",
            )),
            (None, false) => Err(bad(
                "targets",
                "[]",
                "a session needs targets, an objective, a sequence and a pulse (or a problem \
                 file)",
            )),
            _ => Ok(()),
        }
    }

    /// The design problem under the nominal hardware model for `console`: validated (every
    /// [`DesignProblem::build`] check) but not built.
    pub fn problem(&self, console: &ConsoleProfile) -> Result<ProblemSpec, PhysicsError> {
        self.validate()?;
        console.validate()?;
        let mut spec = match &self.problem_toml {
            Some(text) => ProblemSpec::from_toml(text, "problem_toml")?,
            None => serde_json::from_value::<ProblemSpec>(self.structured_problem(console)?)
                .map_err(|e| PhysicsError::Parse(format!("session spec: {e}")))?,
        };
        // The console's facts.
        spec.field = format!("{}MHz", console.f0_hz * 1e-6);
        spec.acquisition.points = console.sample_count;
        spec.acquisition.dwell_ms = console.dwell_s * 1e3;
        let peak = match self.constraints.peak_b1_hz {
            Some(p) if self.problem_toml.is_none() => {
                crate::physics::error::positive("constraints.peak_b1_hz", p)?;
                p.min(console.limits.peak_b1_hz)
            }
            _ => spec.limits.peak_b1_hz.min(console.limits.peak_b1_hz),
        };
        spec.limits = HardwareLimits {
            peak_b1_hz: peak,
            max_energy_hz2s: Some(console.limits.max_energy_hz2s),
            max_duration_s: console.limits.max_duration_s,
            raster_s: console.rf_raster_s,
            // The duty cycle is the interlock's (it knows the console's TR).
            max_duty_cycle: None,
        };
        spec.optimizer.max_iterations = self.budget.optimizer_iterations as usize;
        // Checks everything the design checks (metabolites, windows, timings, limits).
        DesignProblem::build(spec.clone())?;
        Ok(spec)
    }

    fn structured_problem(&self, console: &ConsoleProfile) -> Result<Value, PhysicsError> {
        let seq = self
            .sequence
            .clone()
            .ok_or_else(|| bad("sequence", "missing", "required"))?;
        let pulse = self
            .pulse
            .clone()
            .ok_or_else(|| bad("pulse", "missing", "required"))?;
        if self.objective.is_empty() {
            return Err(bad("objective", "[]", "at least one part is required"));
        }
        if !self.concentrations.is_empty() && self.concentrations.len() != self.targets.len() {
            return Err(bad(
                "concentrations",
                self.concentrations.len(),
                "must have one entry per target",
            ));
        }
        let mut objective = Vec::new();
        for (i, o) in self.objective.iter().enumerate() {
            let weight = o.weight.unwrap_or(1.0);
            let window = |o: &ObjectivePart| {
                o.window_ppm.ok_or_else(|| {
                    bad(
                        &format!("objective[{i}].window_ppm"),
                        "missing",
                        "required for this kind",
                    )
                })
            };
            let part = match o.kind.as_str() {
                "enhancement" | "suppression" => json!({
                    "kind": o.kind, "metabolite": o.metabolite,
                    "window_ppm": window(o)?, "weight": weight,
                }),
                "fidelity" => {
                    json!({"kind": "fidelity", "window_ppm": window(o)?, "weight": weight})
                }
                "crlb" => json!({
                    "kind": "crlb", "metabolite": o.metabolite, "weight": weight, "above": o.above,
                }),
                "correlation" => json!({
                    "kind": "correlation", "a": o.a, "b": o.b, "weight": weight, "above": o.above,
                }),
                other => {
                    return Err(bad(
                        &format!("objective[{i}].kind"),
                        other,
                        "expected enhancement, suppression, fidelity, crlb or correlation",
                    ));
                }
            };
            objective.push(part);
        }
        let mut sequence = json!({
            "kind": seq.kind,
            "pulses": seq.pulses.clone().unwrap_or_else(|| "ideal".into()),
        });
        for (k, v) in [
            ("te_ms", seq.te_ms),
            ("te1_ms", seq.te1_ms),
            ("te2_ms", seq.te2_ms),
            ("tm_ms", seq.tm_ms),
        ] {
            if let Some(v) = v {
                sequence[k] = json!(v);
            }
        }
        if let Some(g) = seq.grid_points {
            sequence["grid_points"] = json!(g);
        }
        let mut pulse_v = json!({
            "segments": pulse.segments,
            "dt_us": pulse.dt_s * 1e6,
            "parameterization": pulse.parameterization.clone().unwrap_or_else(|| "cartesian".into()),
            "fixed_edges": pulse.fixed_edges,
        });
        if let Some(t) = pulse.sine_terms {
            pulse_v["sine_terms"] = json!(t);
        }
        let mut v = json!({
            "name": if self.label.is_empty() { "session".to_string() } else { self.label.clone() },
            "field": format!("{}MHz", console.f0_hz * 1e-6),
            "carrier_ppm": self.carrier_ppm.unwrap_or(3.0),
            "molecules": self.targets,
            "acquisition": {
                "points": console.sample_count,
                "dwell_ms": console.dwell_s * 1e3,
                "linewidth_hz": self.linewidth_hz.unwrap_or(4.0),
            },
            "sequence": sequence,
            "pulse": pulse_v,
            "limits": {
                "peak_b1_hz": console.limits.peak_b1_hz,
                "max_duration_s": console.limits.max_duration_s,
                "raster_s": console.rf_raster_s,
            },
            "penalties": {
                "energy_weight": self.constraints.energy_weight,
                "smoothness_weight": self.constraints.smoothness_weight,
                // Keep designs below the console's energy limit (the interlock refuses more).
                "energy_limit_weight": 10.0,
            },
            "ensemble": {"b1": self.ensemble.b1, "b0_hz": self.ensemble.b0_hz},
            "objective": objective,
        });
        if !self.concentrations.is_empty() {
            v["concentrations"] = json!(self.concentrations);
        }
        Ok(v)
    }
}
