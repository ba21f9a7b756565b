//! Citrate at 11.7 T (500.13 MHz): spectrum-driven pulse design toward two different target
//! spectra of the strongly coupled AB quartet — inner lines only, and outer lines inverted —
//! from the problem files `tests/problems/citrate_11p7t_{inner,outer_inverted}.toml`.
//!
//! The CI tests run each problem with a reduced iteration budget and check the optimizer
//! (large loss decrease, a convergence stop or a small loss, peak B1 within the limit) and,
//! independently of the objective code, the physics: the optimized pulse, simulated on its own
//! (pulse then acquisition, narrow lines), gives the intended pattern of the four lines at
//! every B1 of the ensemble, measured as integrals in small windows around the analytic AB line
//! positions relative to those of an ideal hard 90°y pulse.
//!
//! The ignored test `citrate_full_runs` is the documented benchmark (tests/demos/citrate_11p7t.md):
//! `cargo test --release --test design_citrate -- --ignored --nocapture`.

use std::f64::consts::FRAC_PI_2;

use spinloop::design::optimize::{Control, Iteration, StopReason};
use spinloop::design::problem::{DesignProblem, DesignResult, ProblemSpec};
use spinloop::physics::{Block, Experiment, Field, Member, SimOptions, Simulator, library};
use spinloop::sequence::builders::acquisition;
use spinloop::spectrum::processing::integral;
use spinloop::spectrum::{SpectrumPlan, ppm_axis};

/// Citrate's library parameters (HA, HB in ppm; J in Hz) — the AB line positions below are
/// computed from them analytically, not taken from the simulator.
const SHIFT_A: f64 = 2.54;
const SHIFT_B: f64 = 2.65;
const J_HZ: f64 = 15.1;

/// Half width (ppm) of the integration window around each line (±6 Hz; the lines are 15.1 Hz
/// apart).
const HALF_WINDOW_PPM: f64 = 0.012;

fn spec(name: &str) -> ProblemSpec {
    let path = format!("{}/tests/problems/{name}.toml", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    ProblemSpec::from_toml(&text, &path).unwrap()
}

/// The AB quartet at `f0_mhz`: [outer low, inner low, inner high, outer high] in ppm.
fn ab_lines(f0_mhz: f64) -> [f64; 4] {
    let centre = 0.5 * (SHIFT_A + SHIFT_B);
    let dnu = (SHIFT_B - SHIFT_A) * f0_mhz;
    let d = (dnu * dnu + J_HZ * J_HZ).sqrt();
    let outer = 0.5 * (d + J_HZ) / f0_mhz;
    let inner = 0.5 * (d - J_HZ) / f0_mhz;
    [
        centre - outer,
        centre - inner,
        centre + inner,
        centre + outer,
    ]
}

/// Integrals of the real citrate spectrum around the four lines after `first_block` (then
/// acquisition), for each B1 scale: simulated here with narrow lines (0.5 Hz, 4096 points) so
/// that the windows do not see their neighbours' tails.
fn line_integrals(field: Field, carrier: f64, first_block: Block, b1: &[f64]) -> Vec<[f64; 4]> {
    let members: Vec<Member> = b1.iter().map(|&b| Member { b1: b, b0_hz: 0.0 }).collect();
    let mut sim = Simulator::new(
        vec![library::by_name("Cit").unwrap()],
        field,
        carrier,
        members,
        SimOptions::default(),
    )
    .unwrap();
    let (points, dwell) = (4096, 1e-3);
    let experiment = Experiment {
        blocks: vec![first_block],
        acquisition: acquisition(points, dwell, 0.5).unwrap(),
    };
    let signals = sim.simulate(&experiment).unwrap();
    let plan = SpectrumPlan::new(points).unwrap();
    let ppm = ppm_axis(points, dwell, carrier, field.f0_mhz);
    let lines = ab_lines(field.f0_mhz);
    (0..b1.len())
        .map(|m| {
            let spectrum = plan.spectrum(signals.fid(m, 0)).unwrap();
            lines.map(|l| {
                integral(&spectrum, &ppm, l - HALF_WINDOW_PPM, l + HALF_WINDOW_PPM).unwrap()
            })
        })
        .collect()
}

/// Builds a problem from its file, optimizes it and returns the problem, the result and the
/// peak of the optimized waveform.
fn run(mut spec: ProblemSpec, method: &str, budget: usize) -> (DesignProblem, DesignResult) {
    spec.optimizer.method = method.to_string();
    spec.optimizer.max_iterations = budget;
    let mut problem = DesignProblem::build(spec).unwrap();
    let result = problem.optimize(|_: &Iteration| Control::Continue).unwrap();
    (problem, result)
}

fn peak(ux: &[f64], uy: &[f64]) -> f64 {
    ux.iter()
        .zip(uy)
        .map(|(x, y)| x.hypot(*y))
        .fold(0.0, f64::max)
}

/// The target pattern: gain of [outer, inner, inner, outer].
fn check_pattern(problem: &DesignProblem, result: &DesignResult, outer_gain: f64) {
    let carrier = problem.spec.carrier_ppm;
    let b1 = problem.spec.ensemble.b1.clone();
    let (ux, uy) = result.optimized.clone();
    let designed = line_integrals(
        problem.field,
        carrier,
        Block::Pulse {
            dt: problem.param.dt,
            ux,
            uy,
        },
        &b1,
    );
    let ideal = line_integrals(
        problem.field,
        carrier,
        Block::Hard {
            flip: FRAC_PI_2,
            phase: FRAC_PI_2,
        },
        &[1.0],
    )[0];
    // Ideal 90°: all four lines positive, inner:outer = (D+J)/(D−J) = 1.72 at 500.13 MHz.
    let ratio = (ideal[1] + ideal[2]) / (ideal[0] + ideal[3]);
    assert!(
        ideal.iter().all(|&v| v > 0.0) && (ratio - 1.72).abs() < 0.05,
        "ideal 90° line integrals {ideal:?} (inner:outer {ratio})"
    );
    for (b, lines) in b1.iter().zip(&designed) {
        let rel: Vec<f64> = lines.iter().zip(&ideal).map(|(d, i)| d / i).collect();
        let inner = 0.5 * (lines[1] + lines[2]);
        eprintln!(
            "B1 {b}: line integrals / ideal 90° = [{:.4}, {:.4}, {:.4}, {:.4}]",
            rel[0], rel[1], rel[2], rel[3]
        );
        for k in [1, 2] {
            assert!(
                (rel[k] - 1.0).abs() < 0.1,
                "B1 {b}: inner line {k} at {:.3} of the ideal 90° (want 1)",
                rel[k]
            );
        }
        for k in [0, 3] {
            if outer_gain == 0.0 {
                assert!(
                    (lines[k] / inner).abs() < 0.05,
                    "B1 {b}: outer line {k} is {:.3} of the inner lines (want < 0.05)",
                    lines[k] / inner
                );
            } else {
                assert!(
                    lines[k] < 0.0 && (rel[k] - outer_gain).abs() < 0.1,
                    "B1 {b}: outer line {k} at {:.3} of the ideal 90° (want {outer_gain})",
                    rel[k]
                );
            }
        }
    }
}

fn check_run(name: &str, outer_gain: f64, budget: usize, max_loss: f64) {
    let spec = spec(name);
    let limit = spec.limits.peak_b1_hz;
    let (problem, result) = run(spec, "lbfgs", budget);
    let h = &result.optimizer.history;
    let (start, end) = (h[0].loss, result.optimizer.loss);
    let fidelity = result.parts_optimized[0].1;
    eprintln!(
        "{name}: loss {start:.4} -> {end:.3e} (fidelity {fidelity:.3e}) in {} iterations, {:?}, {:.2} s",
        h.len() - 1,
        result.optimizer.reason,
        result.seconds
    );
    assert!(end < start / 1000.0, "loss {start} -> {end}");
    assert!(
        fidelity < max_loss,
        "fidelity loss {fidelity} >= {max_loss}"
    );
    assert!(
        matches!(
            result.optimizer.reason,
            StopReason::Gradient | StopReason::Stalled
        ) || end < max_loss / 4.0,
        "stopped {:?} at loss {end}",
        result.optimizer.reason
    );
    let p = peak(&result.optimized.0, &result.optimized.1);
    assert!(p <= limit, "peak {p} Hz > limit {limit} Hz");
    check_pattern(&problem, &result, outer_gain);
}

/// Inner lines only: the full problem (35 ms, 700 segments, B1 0.95/1/1.05) with a budget of
/// 150 iterations; the full run stops (Stalled) after ~50 at fidelity loss ~2e-4.
#[test]
fn citrate_inner_lines_only() {
    check_run("citrate_11p7t_inner", 0.0, 150, 1e-3);
}

/// Outer lines inverted: the full problem with a budget of 200 iterations; the full run stops
/// (Stalled) after ~150 at fidelity loss ~2e-5.
#[test]
fn citrate_outer_lines_inverted() {
    check_run("citrate_11p7t_outer_inverted", -1.0, 200, 1e-3);
}

/// First iteration whose loss is within 1 % of the final loss.
fn within_one_percent(history: &[Iteration], final_loss: f64) -> usize {
    history
        .iter()
        .find(|it| it.loss <= final_loss * 1.01)
        .map_or(history.len() - 1, |it| it.iteration)
}

/// The documented full runs: both problems × both optimizers with the files' budget (400), plus
/// Adam with a 2000-iteration budget and nominal-B1 L-BFGS for context.
#[test]
#[ignore = "benchmark: run with --release --ignored --nocapture"]
fn citrate_full_runs() {
    println!(
        "| problem | method | budget | it. to 1 % of final | stop it. | evals | reason | wall (s) | final loss |"
    );
    println!("| --- | --- | ---: | ---: | ---: | ---: | --- | ---: | ---: |");
    for name in ["citrate_11p7t_inner", "citrate_11p7t_outer_inverted"] {
        for (label, method, budget, nominal) in [
            ("L-BFGS", "lbfgs", 400, false),
            ("Adam", "adam", 400, false),
            ("Adam", "adam", 2000, false),
            ("L-BFGS, nominal B1 only", "lbfgs", 400, true),
        ] {
            let mut s = spec(name);
            if nominal {
                s.ensemble.b1 = vec![1.0];
            }
            let (_, r) = run(s, method, budget);
            let h = &r.optimizer.history;
            let mut extra = String::new();
            if nominal {
                // The nominal-only design's fidelity over the file's B1 ensemble.
                let mut full = DesignProblem::build(spec(name)).unwrap();
                let parts = full.part_values(&r.optimized.0, &r.optimized.1).unwrap();
                extra = format!(" (over B1 0.95/1/1.05: {:.3e})", parts[0].1);
            }
            println!(
                "| {name} | {label} | {budget} | {} | {} | {} | {:?} | {:.2} | {:.3e}{extra} |",
                within_one_percent(h, r.optimizer.loss),
                h.len() - 1,
                h.last().map_or(0, |i| i.evaluations),
                r.optimizer.reason,
                r.seconds,
                r.parts_optimized[0].1
            );
        }
    }
}
