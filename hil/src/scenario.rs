//! Scenario files (TOML, `hil/scenarios/*.toml`): which console, its hidden truth, the
//! phantom, SNR and seed, the session an operator creates, and the tolerances the run must
//! meet. Parsing rejects unknown keys and validates every range before anything runs.
//!
//! ```toml
//! name = "3t-brain-b1-low"          # defaults to the file stem
//! description = "…"
//! seed = 7                           # noise seed (same seed → bit-identical FIDs)
//! snr = 1000.0                       # per transient; see crate::console (omit: noiseless)
//!
//! [console]
//! kind = "3t-clinical"               # or "11t7-spectrometer"
//! id = "hil-3t-b1-low"               # default "hil-<name>"
//!
//! [truth]                            # crate::hardware::HiddenTruth; every key optional
//! b1_scale = 0.8
//! b0_offset_hz = 3.0
//! b0_drift_hz_per_s = 0.0            # Hz per second of session time (acquisition k at k·TR)
//! am_am_sat_hz = 4000.0
//! am_pm_max_rad = 0.3
//! am_pm_sat_hz = 2000.0
//! tx_group_delay_s = 2e-6
//! rx_phase_rad = 0.4
//! rx_delay_s = 0.0
//! extra_linewidth_hz = 1.0
//! amplitude = 1.0
//!
//! [phantom]                          # optional: the console kind's default phantom
//! metabolites = ["NAA", "Cr"]
//! concentrations = [12.0, 8.0]
//!
//! [session]                          # what the operator asks (spinloop's SessionSpec)
//! label = "…"
//! targets = ["NAA", "Cr"]            # default: the phantom's metabolites and concentrations
//! carrier_ppm = 3.0
//! linewidth_hz = 4.0
//! sequence = { kind = "pulse_acquire" }
//! pulse = { segments = 40, dt_s = 20e-6 }
//! constraints = { energy_weight = 0.05, smoothness_weight = 1e-3 }
//! budget = { max_acquisitions = 8, max_rounds = 5, optimizer_iterations = 25,
//!            acquisitions_per_round = 1, averages = 1 }
//! convergence = { objective_tolerance = 0.02, probe_b1_sigma = 0.02 }
//! [[session.objective]]
//! kind = "enhancement"
//! metabolite = "NAA"
//! window_ppm = [1.9, 2.1]
//!
//! [expect]                           # tolerances; each optional (unchecked when absent)
//! state = "converged"                # the default; or "failed", "any"
//! b1_rel_tol = 0.02                  # |fitted − true| / true
//! b0_tol_hz = 0.5                    # |fitted − true B0 at the last acquisition|
//! max_acquisitions = 6
//! min_oracle_ratio = 0.95            # closed-loop / oracle performance (crate::evaluate)
//! ```

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use spinloop::control::{
    Budget, ConsoleProfile, ConstraintSpec, Convergence, EnsembleSpec, ObjectivePart, PulseSpec,
    SequenceSpec, SessionSpec,
};
use spinloop::daemon::pb;
use spinloop::design::problem::ProblemSpec;

use crate::HilError;
use crate::console::{ConsoleKind, Phantom, SimulatedConsole};
use crate::hardware::HiddenTruth;

/// The console of a scenario.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConsoleSection {
    /// Its kind.
    pub kind: ConsoleKind,
    /// Its id (default `hil-<scenario name>`).
    #[serde(default)]
    pub id: Option<String>,
}

/// The session an operator creates (the fields of spinloop's `SessionSpec` but the console).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SessionSection {
    /// Label.
    #[serde(default)]
    pub label: String,
    /// Metabolites the session models (default: the phantom's).
    #[serde(default)]
    pub targets: Option<Vec<String>>,
    /// Their concentrations (default: the phantom's when `targets` is absent).
    #[serde(default)]
    pub concentrations: Option<Vec<f64>>,
    /// Objective parts.
    pub objective: Vec<ObjectivePart>,
    /// Sequence.
    pub sequence: SequenceSpec,
    /// Designed pulse.
    pub pulse: PulseSpec,
    /// Soft constraints.
    #[serde(default)]
    pub constraints: ConstraintSpec,
    /// Ensemble relative to the estimate.
    #[serde(default)]
    pub ensemble: EnsembleSpec,
    /// Budget.
    #[serde(default)]
    pub budget: Budget,
    /// Convergence.
    #[serde(default)]
    pub convergence: Convergence,
    /// Carrier (ppm).
    #[serde(default)]
    pub carrier_ppm: Option<f64>,
    /// Nominal linewidth (Hz).
    #[serde(default)]
    pub linewidth_hz: Option<f64>,
}

/// What the run must achieve.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Expect {
    /// Final state: `converged` (the default), `failed`, or `any`.
    #[serde(default)]
    pub state: Option<String>,
    /// Largest |fitted B1 − true| / true.
    #[serde(default)]
    pub b1_rel_tol: Option<f64>,
    /// Largest |fitted B0 − true B0 at the last acquisition| (Hz).
    #[serde(default)]
    pub b0_tol_hz: Option<f64>,
    /// Most acquisitions.
    #[serde(default)]
    pub max_acquisitions: Option<u32>,
    /// Smallest closed-loop / oracle performance ratio.
    #[serde(default)]
    pub min_oracle_ratio: Option<f64>,
}

/// A scenario file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Scenario {
    /// Name (default: the file stem).
    #[serde(default)]
    pub name: String,
    /// What it exercises.
    #[serde(default)]
    pub description: String,
    /// Noise seed.
    #[serde(default)]
    pub seed: u64,
    /// SNR per transient (crate::console); absent = noiseless.
    #[serde(default)]
    pub snr: Option<f64>,
    /// The console.
    pub console: ConsoleSection,
    /// Its hidden truth.
    #[serde(default)]
    pub truth: HiddenTruth,
    /// The phantom (default: the console kind's).
    #[serde(default)]
    pub phantom: Option<Phantom>,
    /// The session.
    pub session: SessionSection,
    /// Tolerances.
    #[serde(default)]
    pub expect: Expect,
}

impl Scenario {
    /// Parses and validates a scenario's text (`source` names it in errors).
    pub fn from_toml(text: &str, source: &str) -> Result<Scenario, HilError> {
        let mut s: Scenario = toml::from_str(text).map_err(|e| HilError::Scenario {
            source_name: source.to_string(),
            message: e.to_string(),
        })?;
        if s.name.is_empty() {
            s.name = Path::new(source)
                .file_stem()
                .map_or_else(|| "scenario".into(), |n| n.to_string_lossy().into_owned());
        }
        s.validate().map_err(|e| HilError::Scenario {
            source_name: source.to_string(),
            message: e.to_string(),
        })?;
        Ok(s)
    }

    /// Reads, parses and validates a scenario file.
    pub fn load(path: &Path) -> Result<Scenario, HilError> {
        let text = std::fs::read_to_string(path).map_err(|e| HilError::Io {
            path: path.to_path_buf(),
            message: e.to_string(),
        })?;
        Scenario::from_toml(&text, &path.display().to_string())
    }

    /// Checks ranges and that the session compiles on this console against the phantom.
    pub fn validate(&self) -> Result<(), HilError> {
        spinloop::control::check_id("name", &self.name, 64)?;
        spinloop::control::check_id("console.id", &self.console_id(), 64)?;
        if let Some(s) = self.snr
            && !(s.is_finite() && s > 0.0)
        {
            return Err(HilError::invalid("snr", s, "must be finite and > 0"));
        }
        self.truth.validate()?;
        self.phantom().validate()?;
        let e = &self.expect;
        if let Some(st) = &e.state
            && !matches!(st.as_str(), "converged" | "failed" | "any")
        {
            return Err(HilError::invalid(
                "expect.state",
                st,
                "expected converged, failed or any",
            ));
        }
        for (f, v) in [
            ("expect.b1_rel_tol", e.b1_rel_tol),
            ("expect.b0_tol_hz", e.b0_tol_hz),
            ("expect.min_oracle_ratio", e.min_oracle_ratio),
        ] {
            if let Some(v) = v
                && !(v.is_finite() && v > 0.0)
            {
                return Err(HilError::invalid(f, v, "must be finite and > 0"));
            }
        }
        if e.max_acquisitions == Some(0) {
            return Err(HilError::invalid(
                "expect.max_acquisitions",
                0,
                "must be ≥ 1",
            ));
        }
        // Everything the daemon will check, checked now.
        self.problem()?;
        self.phantom_problem()?;
        Ok(())
    }

    /// The console's id.
    pub fn console_id(&self) -> String {
        self.console
            .id
            .clone()
            .unwrap_or_else(|| format!("hil-{}", self.name))
    }

    /// The console's declared profile.
    pub fn profile(&self) -> ConsoleProfile {
        self.console.kind.profile(&self.console_id())
    }

    /// The phantom.
    pub fn phantom(&self) -> Phantom {
        self.phantom
            .clone()
            .unwrap_or_else(|| self.console.kind.default_phantom())
    }

    /// The session spec as spinloop stores it.
    pub fn session_spec(&self) -> SessionSpec {
        let s = &self.session;
        let ph = self.phantom();
        let (targets, concentrations) = match (&s.targets, &s.concentrations) {
            (Some(t), c) => (t.clone(), c.clone().unwrap_or_default()),
            (None, _) => (ph.metabolites, ph.concentrations),
        };
        SessionSpec {
            console_id: self.console_id(),
            problem_toml: None,
            targets,
            concentrations,
            objective: s.objective.clone(),
            sequence: Some(s.sequence.clone()),
            pulse: Some(s.pulse.clone()),
            constraints: s.constraints,
            ensemble: s.ensemble.clone(),
            budget: s.budget,
            convergence: s.convergence,
            carrier_ppm: s.carrier_ppm,
            linewidth_hz: s.linewidth_hz,
            label: if s.label.is_empty() {
                format!("hil {}", self.name)
            } else {
                s.label.clone()
            },
        }
    }

    /// The session spec as the gRPC API takes it.
    pub fn session_pb(&self) -> pb::SessionSpec {
        spec_to_pb(&self.session_spec())
    }

    /// The design problem the daemon will compile for this session on this console (through
    /// the same conversion the daemon applies to the request).
    pub fn problem(&self) -> Result<ProblemSpec, HilError> {
        let spec = spinloop::daemon::sessions::spec_from_pb(self.session_pb())
            .map_err(|s| HilError::invalid("session", "spec", s.message().to_string()))?;
        Ok(spec.problem(&self.profile())?)
    }

    /// The phantom as a design problem: the session's problem with the phantom's molecules
    /// and concentrations.
    pub fn phantom_problem(&self) -> Result<ProblemSpec, HilError> {
        let mut spec = self.problem()?;
        let ph = self.phantom();
        spec.molecules = ph.metabolites;
        spec.concentrations = Some(ph.concentrations);
        spinloop::design::problem::DesignProblem::build(spec.clone())?;
        Ok(spec)
    }

    /// The simulated console of this scenario.
    pub fn console(&self) -> Result<SimulatedConsole, HilError> {
        SimulatedConsole::new(
            self.profile(),
            self.phantom_problem()?,
            self.truth,
            self.snr,
            self.seed,
        )
    }
}

/// spinloop's `SessionSpec` as the gRPC message: the daemon's own inverse of `spec_from_pb`.
pub use spinloop::daemon::sessions::spec_to_pb;

/// The scenario files of a directory (`*.toml`), sorted by name.
pub fn list(dir: &Path) -> Result<Vec<PathBuf>, HilError> {
    let rd = std::fs::read_dir(dir).map_err(|e| HilError::Io {
        path: dir.to_path_buf(),
        message: e.to_string(),
    })?;
    let mut v: Vec<PathBuf> = rd
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "toml"))
        .collect();
    v.sort();
    Ok(v)
}

/// The scenarios shipped with the crate (`hil/scenarios`).
pub fn builtin_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("scenarios")
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINIMAL: &str = r#"
[console]
kind = "3t-clinical"
[phantom]
metabolites = ["NAA", "Cr"]
concentrations = [12.0, 8.0]
[session]
sequence = { kind = "pulse_acquire" }
pulse = { segments = 40, dt_s = 20e-6 }
[[session.objective]]
kind = "enhancement"
metabolite = "NAA"
window_ppm = [1.9, 2.1]
"#;

    fn err(text: &str) -> String {
        Scenario::from_toml(text, "t.toml")
            .expect_err("must be refused")
            .to_string()
    }

    #[test]
    fn the_built_in_scenarios_parse_and_compile() {
        let files = list(&builtin_dir()).expect("scenarios dir");
        let names: Vec<String> = files
            .iter()
            .map(|p| Scenario::load(p).expect("valid scenario").name)
            .collect();
        for want in ["3t-brain-b1-low", "3t-brain-drift-ampm", "11t7-citrate"] {
            assert!(names.iter().any(|n| n == want), "{want} in {names:?}");
        }
    }

    #[test]
    fn defaults_name_id_and_targets() {
        let s = Scenario::from_toml(MINIMAL, "dir/my-case.toml").expect("valid");
        assert_eq!(s.name, "my-case");
        assert_eq!(s.console_id(), "hil-my-case");
        let spec = s.session_spec();
        assert_eq!(spec.targets, vec!["NAA", "Cr"]);
        assert_eq!(spec.concentrations, vec![12.0, 8.0]);
        assert_eq!(s.truth, HiddenTruth::default());
        assert_eq!(s.profile().f0_hz, 123.2e6);
    }

    #[test]
    fn the_grpc_spec_round_trips_through_the_daemons_conversion() {
        let text = MINIMAL.replace(
            "[session]\n",
            "[session]\nensemble = { b1 = [0.95, 1.0, 1.05], b0_hz = [0.0] }\n\
             budget = { max_acquisitions = 9, max_rounds = 4, optimizer_iterations = 11, \
             acquisitions_per_round = 2, averages = 3 }\ncarrier_ppm = 2.5\nlinewidth_hz = 3.0\n",
        );
        let s = Scenario::from_toml(&text, "t.toml").expect("valid");
        let back = spinloop::daemon::sessions::spec_from_pb(s.session_pb()).expect("daemon side");
        // The exact inverse: unset optional fields stay unset.
        assert_eq!(back, s.session_spec());
    }

    #[test]
    fn unknown_keys_are_refused_with_their_name() {
        let e = err(&format!("{MINIMAL}\n[truth]\nb1_scal = 0.9\n"));
        assert!(e.contains("b1_scal"), "{e}");
        let e = err(&MINIMAL.replace("[console]\n", "colour = 1\n[console]\n"));
        assert!(e.contains("colour"), "{e}");
        let e = err(&format!("{MINIMAL}\n[expect]\nb1_tol = 0.1\n"));
        assert!(e.contains("b1_tol"), "{e}");
    }

    #[test]
    fn ranges_are_validated_with_the_field() {
        for (extra, field) in [
            ("[truth]\nb1_scale = 0.0\n", "truth.b1_scale"),
            (
                "[truth]\nb0_drift_hz_per_s = 1e9\n",
                "truth.b0_drift_hz_per_s",
            ),
            ("[truth]\nam_pm_max_rad = 0.3\n", "truth.am_pm_sat_hz"),
            (
                "[truth]\ntx_group_delay_s = -1e-6\n",
                "truth.tx_group_delay_s",
            ),
            ("[expect]\nb1_rel_tol = -0.1\n", "expect.b1_rel_tol"),
            ("[expect]\nstate = \"done\"\n", "expect.state"),
        ] {
            let e = err(&format!("{MINIMAL}\n{extra}"));
            assert!(e.contains(field), "{field}: {e}");
        }
        let e = err(&format!("snr = -3.0\n{MINIMAL}"));
        assert!(e.contains("snr"), "{e}");
        let e = err(&MINIMAL.replace("3t-clinical", "7t-research"));
        assert!(e.contains("7t-research"), "{e}");
        let e = err(&MINIMAL.replace("[12.0, 8.0]", "[12.0]"));
        assert!(e.contains("phantom.concentrations"), "{e}");
        let e = err(&MINIMAL.replace("\"NAA\", \"Cr\"]", "\"NAA\", \"Unobtainium\"]"));
        assert!(e.contains("Unobtainium"), "{e}");
        // The session is compiled against the console before anything runs.
        let e = err(&MINIMAL.replace("segments = 40", "segments = 4000"));
        assert!(e.contains("t.toml"), "{e}");
    }
}
