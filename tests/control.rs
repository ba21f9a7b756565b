//! The closed-loop session state machine, driven with no sockets and no clocks: a simulated
//! console with hidden hardware answers every waveform the session sends. Every path:
//! convergence with a hidden B1 error (and the probe that identifies it), cancel, budget,
//! timeouts and resends, a reconnect, the interlock refusing, restore from a checkpoint,
//! foreign and duplicate acquisitions, and invalid specs.

use spinloop::calibrate::HardwareModel;
use spinloop::control::{
    AcquisitionInput, Budget, ConsoleProfile, Convergence, MAX_SENDS, ObjectivePart, Outcome,
    Output, PulseSpec, SequenceSpec, Session, SessionSpec, SimConsole,
};
use spinloop::design::problem::ProblemSpec;
use spinloop::safety::{ConsoleLimits, EnergyWindow, Interlock};

fn profile() -> ConsoleProfile {
    ConsoleProfile {
        id: "sim-3t".into(),
        nucleus: "1H".into(),
        f0_hz: 123.2e6,
        rf_raster_s: 10e-6,
        sample_count: 512,
        dwell_s: 2.5e-4,
        tr_s: 2.0,
        limits: ConsoleLimits {
            peak_b1_hz: 2500.0,
            max_energy_hz2s: 1000.0,
            max_duration_s: 0.01,
            raster_s: 10e-6,
            max_duty_cycle: 0.1,
            window: None,
        },
        software: "test".into(),
    }
}

fn spec() -> SessionSpec {
    SessionSpec {
        console_id: "sim-3t".into(),
        problem_toml: None,
        targets: vec!["NAA".into(), "Cr".into()],
        concentrations: vec![12.0, 8.0],
        objective: vec![ObjectivePart {
            kind: "enhancement".into(),
            metabolite: "NAA".into(),
            window_ppm: Some((1.9, 2.1)),
            weight: None,
            above: None,
            a: String::new(),
            b: String::new(),
        }],
        sequence: Some(SequenceSpec {
            kind: "pulse_acquire".into(),
            ..SequenceSpec::default()
        }),
        pulse: Some(PulseSpec {
            segments: 40,
            dt_s: 20e-6,
            parameterization: None,
            sine_terms: None,
            fixed_edges: 0,
        }),
        constraints: spinloop::control::ConstraintSpec {
            peak_b1_hz: None,
            energy_weight: 0.05,
            smoothness_weight: 1e-3,
        },
        ensemble: Default::default(),
        budget: Budget {
            max_acquisitions: 12,
            max_rounds: 5,
            optimizer_iterations: 25,
            acquisitions_per_round: 1,
            averages: 1,
        },
        convergence: Convergence {
            objective_tolerance: 0.02,
            probe_b1_sigma: 0.02,
        },
        carrier_ppm: None,
        linewidth_hz: Some(4.0),
        label: "test".into(),
    }
}

fn truth() -> HardwareModel {
    HardwareModel {
        b1_scale: 0.8,
        b0_offset_hz: 2.0,
        phase0_rad: 0.3,
        linewidth_hz: 1.0,
        amplitude: 1.0,
        ..HardwareModel::NOMINAL
    }
}

fn console(spec: &SessionSpec, truth: HardwareModel, seed: u64) -> SimConsole {
    let p = profile();
    let phantom: ProblemSpec = spec.problem(&p).expect("phantom problem");
    SimConsole::new(p, phantom, truth, 0.05, seed).expect("sim console")
}

/// Everything a session emitted while driven to the end (or until `stop` says so).
#[derive(Default)]
struct Run {
    sends: Vec<(String, bool, bool)>,
    events: Vec<(String, serde_json::Value)>,
    fits: usize,
    checkpoints: Vec<serde_json::Value>,
    outcome: Option<(Outcome, String)>,
    acquisitions: Vec<AcquisitionInput>,
}

fn drain(s: &mut Session, run: &mut Run, pending: &mut Vec<(String, Vec<f64>, Vec<f64>)>) {
    while let Some(o) = s.poll_output() {
        match o {
            Output::Send(o) => {
                let limits = profile().limits;
                let a = &o.approved;
                assert!(a.peak_hz() <= limits.peak_b1_hz * (1.0 + 1e-12));
                assert!(a.energy_hz2s() <= limits.max_energy_hz2s * (1.0 + 1e-12));
                run.sends.push((o.waveform_id.clone(), o.probe, o.repeat));
                pending.push((o.waveform_id, a.ux().to_vec(), a.uy().to_vec()));
            }
            Output::Event { kind, payload } => run.events.push((kind, payload)),
            Output::Fit { .. } => run.fits += 1,
            Output::Checkpoint(c) => run.checkpoints.push(c),
            Output::Finished { outcome, reason } => {
                assert!(run.outcome.is_none(), "finished twice");
                run.outcome = Some((outcome, reason));
            }
        }
    }
}

/// Drives `s` against `sim` until it finishes or `max_steps` acquisitions were played.
fn drive(
    s: &mut Session,
    sim: &mut SimConsole,
    il: &mut Interlock,
    run: &mut Run,
    t: &mut f64,
    next_id: &mut i64,
    max_steps: usize,
) {
    let mut pending = Vec::new();
    drain(s, run, &mut pending);
    let mut steps = 0;
    while run.outcome.is_none() && steps < max_steps {
        let Some((wid, ux, uy)) = pending.pop() else {
            break;
        };
        pending.clear();
        let fid = sim.acquire(&ux, &uy, 1).expect("acquire");
        *t += 2.0;
        let a = AcquisitionInput {
            id: *next_id,
            waveform_id: wid,
            fid,
            dwell_s: 2.5e-4,
            averages: 1,
        };
        *next_id += 1;
        run.acquisitions.push(a.clone());
        s.handle_acquisition(a, *t, il);
        steps += 1;
        drain(s, run, &mut pending);
    }
}

fn estimate(cp: &serde_json::Value) -> HardwareModel {
    serde_json::from_value(cp["estimate"].clone()).expect("estimate")
}

#[test]
fn converges_on_a_hidden_b1_error() {
    let spec = spec();
    let mut sim = console(&spec, truth(), 7);
    let mut s = Session::new("s1", spec, profile()).expect("session");
    let mut il = Interlock::new(profile().limits).expect("interlock");
    let (mut run, mut t, mut id) = (Run::default(), 0.0, 1);
    s.start(t, &mut il);
    drive(&mut s, &mut sim, &mut il, &mut run, &mut t, &mut id, 12);
    let (outcome, reason) = run.outcome.clone().expect("finished");
    assert_eq!(outcome, Outcome::Converged, "{reason}");
    let kinds: Vec<&str> = run.events.iter().map(|(k, _)| k.as_str()).collect();
    for k in [
        "started",
        "designed",
        "waveform_sent",
        "acquisition",
        "fit",
        "objective",
        "converged",
    ] {
        assert!(kinds.contains(&k), "event {k} missing from {kinds:?}");
    }
    let est = estimate(run.checkpoints.last().expect("checkpoint"));
    // The last fit's B1 scale and its standard error.
    let fit = run
        .events
        .iter()
        .rev()
        .find(|(k, _)| k == "fit")
        .expect("fit")
        .1
        .clone();
    let b1 = fit["parameters"]
        .as_array()
        .and_then(|a| a.iter().find(|p| p["name"] == "b1_scale"))
        .expect("b1 parameter")
        .clone();
    let sigma = b1["std_error"].as_f64().expect("σ");
    assert!(sigma < 0.02, "σ(b1) = {sigma}");
    assert!(
        (est.b1_scale - 0.8).abs() < 4.0 * sigma.max(1e-4),
        "b1 {} vs truth 0.8 (σ {sigma})",
        est.b1_scale
    );
    assert!(
        (est.b0_offset_hz - 2.0).abs() < 0.2,
        "b0 {}",
        est.b0_offset_hz
    );
    // The objective event: measured vs predicted reported for every design round.
    let objective = run.events.iter().filter(|(k, _)| k == "objective").count();
    assert!(objective >= 1);
    assert!(s.is_done());
    assert!(s.poll_output().is_none());
}

#[test]
fn probes_when_the_b1_scale_is_poorly_identified() {
    // A threshold no fit meets: the session probes (half-amplitude design) up to MAX_PROBES
    // times, fits jointly with the probes' FIDs, and still converges, saying why.
    let mut spec = spec();
    spec.convergence.probe_b1_sigma = 1e-9;
    let mut sim = console(&spec, truth(), 5);
    let mut s = Session::new("s10", spec, profile()).expect("session");
    let mut il = Interlock::new(profile().limits).expect("interlock");
    let (mut run, mut t, mut id) = (Run::default(), 0.0, 1);
    s.start(t, &mut il);
    drive(&mut s, &mut sim, &mut il, &mut run, &mut t, &mut id, 12);
    let probes: Vec<_> = run.sends.iter().filter(|(_, p, _)| *p).collect();
    assert_eq!(
        probes.len() as u32,
        spinloop::control::MAX_PROBES,
        "{:?}",
        run.events
    );
    let probe_events: Vec<_> = run.events.iter().filter(|(k, _)| k == "probe").collect();
    assert_eq!(probe_events.len() as u32, spinloop::control::MAX_PROBES);
    for (_, p) in &probe_events {
        // The scale with the smaller predicted σ(B1), within the peak limit.
        let scale = p["scale"].as_f64().expect("scale");
        assert!(
            spinloop::calibrate::PROBE_SCALES.contains(&scale),
            "{scale}"
        );
        let expected = p["expected_b1_sigma"].as_f64().expect("expected σ");
        assert!(expected.is_finite() && expected > 0.0, "{expected}");
    }
    // Every fit after a probe used the probe's FID too (joint fit).
    let used: Vec<u64> = run
        .events
        .iter()
        .filter(|(k, _)| k == "fit")
        .map(|(_, p)| p["acquisitions_used"].as_u64().expect("used"))
        .collect();
    assert!(used.windows(2).all(|w| w[1] > w[0]), "{used:?}");
    let (outcome, reason) = run.outcome.expect("finished");
    assert_eq!(outcome, Outcome::Converged, "{reason}");
    assert!(reason.contains("poorly identified"), "{reason}");
}

#[test]
fn cancel_ends_the_session_once() {
    let spec = spec();
    let mut s = Session::new("s2", spec, profile()).expect("session");
    let mut il = Interlock::new(profile().limits).expect("interlock");
    let mut run = Run::default();
    s.start(0.0, &mut il);
    let mut pending = Vec::new();
    drain(&mut s, &mut run, &mut pending);
    assert_eq!(run.sends.len(), 1);
    s.handle_cancel("operator says stop");
    drain(&mut s, &mut run, &mut pending);
    assert_eq!(
        run.outcome,
        Some((Outcome::Cancelled, "operator says stop".to_string()))
    );
    // Nothing after the end: a late acquisition, another cancel, a timeout.
    s.handle_cancel("again");
    s.handle_timeout(1e9, &mut il);
    drain(&mut s, &mut run, &mut pending);
    assert_eq!(run.sends.len(), 1);
}

#[test]
fn timeouts_resend_then_fail() {
    let spec = spec();
    let mut s = Session::new("s3", spec, profile()).expect("session");
    let mut il = Interlock::new(profile().limits).expect("interlock");
    let mut run = Run::default();
    let mut pending = Vec::new();
    s.start(0.0, &mut il);
    drain(&mut s, &mut run, &mut pending);
    let mut t = 0.0;
    // Before the deadline nothing happens.
    let d = s.poll_timeout().expect("deadline");
    s.handle_timeout(d - 1.0, &mut il);
    drain(&mut s, &mut run, &mut pending);
    assert_eq!(run.sends.len(), 1);
    for _ in 0..10 {
        let Some(d) = s.poll_timeout() else { break };
        t = d.max(t);
        s.handle_timeout(t, &mut il);
        drain(&mut s, &mut run, &mut pending);
    }
    assert_eq!(run.sends.len() as u32, MAX_SENDS);
    assert!(
        run.sends[1..]
            .iter()
            .all(|(id, _, repeat)| *repeat && *id == run.sends[0].0)
    );
    let (o, reason) = run.outcome.expect("finished");
    assert_eq!(o, Outcome::Failed);
    assert!(reason.contains("no acquisitions"), "{reason}");
}

#[test]
fn a_reconnect_resends_the_current_waveform() {
    let mut s = Session::new("s4", spec(), profile()).expect("session");
    let mut il = Interlock::new(profile().limits).expect("interlock");
    let mut run = Run::default();
    let mut pending = Vec::new();
    s.start(0.0, &mut il);
    s.handle_console_connected(5.0, &mut il);
    drain(&mut s, &mut run, &mut pending);
    assert_eq!(run.sends.len(), 2);
    assert_eq!(run.sends[0].0, run.sends[1].0);
    assert!(run.sends[1].2, "marked as a repeat");
}

#[test]
fn the_acquisition_budget_ends_the_session() {
    let mut spec = spec();
    spec.budget.max_acquisitions = 1;
    let mut sim = console(&spec, truth(), 3);
    let mut s = Session::new("s5", spec, profile()).expect("session");
    let mut il = Interlock::new(profile().limits).expect("interlock");
    let (mut run, mut t, mut id) = (Run::default(), 0.0, 1);
    s.start(t, &mut il);
    drive(&mut s, &mut sim, &mut il, &mut run, &mut t, &mut id, 5);
    let (o, reason) = run.outcome.expect("finished");
    assert_eq!(o, Outcome::Failed);
    assert!(reason.contains("budget"), "{reason}");
    assert_eq!(run.acquisitions.len(), 1);
}

#[test]
fn the_interlock_refusing_fails_the_session_and_nothing_is_sent() {
    let mut p = profile();
    p.limits.window = Some(EnergyWindow {
        window_s: 10.0,
        max_energy_hz2s: 1e-6,
    });
    let mut s = Session::new("s6", spec(), p.clone()).expect("session");
    let mut il = Interlock::new(p.limits).expect("interlock");
    let mut run = Run::default();
    let mut pending = Vec::new();
    s.start(0.0, &mut il);
    drain(&mut s, &mut run, &mut pending);
    assert!(run.sends.is_empty());
    assert!(run.events.iter().any(|(k, _)| k == "rejected"));
    assert_eq!(run.outcome.expect("finished").0, Outcome::Failed);
}

#[test]
fn restore_from_a_checkpoint_continues_identically() {
    let spec = spec();
    // Uninterrupted run.
    let mut sim = console(&spec, truth(), 11);
    let mut s = Session::new("s7", spec.clone(), profile()).expect("session");
    let mut il = Interlock::new(profile().limits).expect("interlock");
    let (mut run, mut t, mut id) = (Run::default(), 0.0, 1);
    s.start(t, &mut il);
    drive(&mut s, &mut sim, &mut il, &mut run, &mut t, &mut id, 12);
    let full = run.outcome.clone().expect("finished");

    // Interrupted after the first acquisition, restored from the last checkpoint.
    let mut sim2 = console(&spec, truth(), 11);
    let mut s2 = Session::new("s7", spec.clone(), profile()).expect("session");
    let mut il2 = Interlock::new(profile().limits).expect("interlock");
    let (mut run2, mut t2, mut id2) = (Run::default(), 0.0, 1);
    s2.start(t2, &mut il2);
    drive(
        &mut s2, &mut sim2, &mut il2, &mut run2, &mut t2, &mut id2, 1,
    );
    let cp = run2.checkpoints.last().expect("checkpoint").clone();
    let used = run2.acquisitions.clone();
    drop(s2);
    let mut s3 =
        Session::restore("s7", spec.clone(), profile(), &cp, used.clone()).expect("restore");
    // A mismatched acquisition list is refused.
    assert!(Session::restore("s7", spec, profile(), &cp, Vec::new()).is_err());
    // The console reconnects: the current waveform is sent again, then the loop goes on.
    let mut run3 = Run::default();
    s3.handle_console_connected(t2, &mut il2);
    drive(
        &mut s3, &mut sim2, &mut il2, &mut run3, &mut t2, &mut id2, 12,
    );
    let resumed = run3.outcome.clone().expect("finished");
    assert_eq!(resumed.0, full.0);
    let a = estimate(run.checkpoints.last().expect("cp"));
    let b = estimate(run3.checkpoints.last().expect("cp"));
    assert_eq!(a, b, "the resumed session ends with the same estimate");
}

#[test]
fn foreign_and_duplicate_acquisitions_are_ignored() {
    let mut s = Session::new("s8", spec(), profile()).expect("session");
    let mut il = Interlock::new(profile().limits).expect("interlock");
    let mut run = Run::default();
    let mut pending = Vec::new();
    s.start(0.0, &mut il);
    drain(&mut s, &mut run, &mut pending);
    let foreign = AcquisitionInput {
        id: 99,
        waveform_id: "other-w1".into(),
        fid: vec![Default::default(); 512],
        dwell_s: 2.5e-4,
        averages: 1,
    };
    s.handle_acquisition(foreign, 1.0, &mut il);
    drain(&mut s, &mut run, &mut pending);
    assert_eq!(run.events.last().map(|e| e.0.as_str()), Some("ignored"));
    assert!(s.used().is_empty());
    let wrong_len = AcquisitionInput {
        id: 100,
        waveform_id: run.sends[0].0.clone(),
        fid: vec![Default::default(); 10],
        dwell_s: 2.5e-4,
        averages: 1,
    };
    s.handle_acquisition(wrong_len, 1.0, &mut il);
    drain(&mut s, &mut run, &mut pending);
    assert_eq!(run.events.last().map(|e| e.0.as_str()), Some("ignored"));
    assert!(s.used().is_empty());
}

#[test]
fn invalid_specs_are_refused_before_anything_starts() {
    let mut bad = spec();
    bad.targets = vec!["Unobtainium".into()];
    bad.concentrations.clear();
    let e = Session::new("s9", bad, profile()).expect_err("unknown metabolite");
    assert!(e.to_string().contains("Unobtainium"), "{e}");

    let mut bad = spec();
    bad.budget.max_rounds = 0;
    let e = Session::new("s9", bad, profile()).expect_err("zero rounds");
    assert!(e.to_string().contains("budget.max_rounds"), "{e}");

    let mut bad = spec();
    bad.pulse = Some(PulseSpec {
        segments: 40,
        dt_s: 15e-6,
        parameterization: None,
        sine_terms: None,
        fixed_edges: 0,
    });
    let e = Session::new("s9", bad, profile()).expect_err("off raster");
    assert!(e.to_string().contains("raster"), "{e}");

    let mut bad = spec();
    bad.problem_toml = Some("name = \"x\"".into());
    let e = Session::new("s9", bad, profile()).expect_err("both forms");
    assert!(e.to_string().contains("problem_toml"), "{e}");

    let e = Session::new("bad id!", spec(), profile()).expect_err("id");
    assert!(e.to_string().contains("session_id"), "{e}");
}

#[test]
fn a_cancel_token_stops_a_design_in_progress() {
    // The shell sets the token when an operator cancels while the session computes; the
    // optimizer stops at its next iteration and nothing is sent.
    let mut s = Session::new("s11", spec(), profile()).expect("session");
    let mut il = Interlock::new(profile().limits).expect("interlock");
    let token = s.cancel_token();
    token.cancel("operator: wrong coil");
    token.cancel("a second reason is ignored");
    let mut run = Run::default();
    let mut pending = Vec::new();
    s.start(0.0, &mut il);
    drain(&mut s, &mut run, &mut pending);
    assert!(run.sends.is_empty());
    assert_eq!(
        run.outcome,
        Some((Outcome::Cancelled, "operator: wrong coil".to_string()))
    );
    assert!(s.is_done());
}

#[test]
fn a_fault_fails_the_session() {
    let mut s = Session::new("s12", spec(), profile()).expect("session");
    let mut il = Interlock::new(profile().limits).expect("interlock");
    let mut run = Run::default();
    let mut pending = Vec::new();
    s.start(0.0, &mut il);
    s.handle_fault("the console's limits are invalid");
    s.handle_fault("twice");
    drain(&mut s, &mut run, &mut pending);
    assert_eq!(
        run.outcome,
        Some((
            Outcome::Failed,
            "the console's limits are invalid".to_string()
        ))
    );
}
