//! The design-problem layer against independent expectations: the whole-chain gradient of
//! `DesignProblem::evaluate` (simulation, objectives, penalties, parameterization) equals
//! Richardson-extrapolated central finite differences of its own loss for every
//! parameterization; every waveform the optimizer ever evaluates (line-search trials included)
//! is within the hard peak-B1 limit while the objective pushes against it; bad problem files
//! are rejected by `build` with a message naming the problem; a NaN during optimization stops
//! the run with the last good waveform and the reason; warm starts reproduce a previous
//! result and reject waveforms the problem cannot take.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use spinloop::design::constraints::peak;
use spinloop::design::objectives::Part;
use spinloop::design::optimize::{Control, StopReason, minimize};
use spinloop::design::problem::{DesignProblem, ObjectiveSpec, ProblemSpec, WaveformFile};
use spinloop::physics::{PhysicsError, SignalLoss, Signals};

/// Vendor PRESS on a 3×3 grid, Glu + Gln + NAA, 2 members, 80 segments, crlb + correlation +
/// enhancement + suppression, smoothness and energy penalties.
const SMALL: &str = include_str!("problems/small_glu_gln_press.toml");

fn small_spec() -> ProblemSpec {
    ProblemSpec::from_toml(SMALL, "small_glu_gln_press.toml").unwrap()
}

/// `SMALL` with its `[[objective]]` tables replaced by `objectives` (TOML text).
fn with_objectives(text: &str, objectives: &str) -> String {
    let (cut, end) = (
        text.find("[[objective]]").unwrap(),
        text.find("[quantification]").unwrap(),
    );
    format!("{}{objectives}\n{}", &text[..cut], &text[end..])
}

/// One objective as the problem file states it.
fn objective(toml: &str) -> ObjectiveSpec {
    let text = with_objectives(SMALL, &format!("[[objective]]\n{toml}\n"));
    ProblemSpec::from_toml(&text, "objective")
        .unwrap()
        .objectives
        .remove(0)
}

/// A cheap problem (pulse–acquire, NAA + Glu, one member, 60 segments) for the optimizer
/// runs: an enhancement objective with a big weight pushes for signal, and the B1 scale 0.25
/// asks for four times the nominal flip.
fn pushing_spec() -> ProblemSpec {
    let text = SMALL
        .replace(
            "molecules = [\"Glu\", \"Gln\", \"NAA\"]\nconcentrations = [11.6, 3.5, 12.0]",
            "molecules = [\"NAA\", \"Glu\"]",
        )
        .replace("kind = \"press\"", "kind = \"pulse_acquire\"")
        .replace("segments = 80", "segments = 60")
        .replace("b1 = [0.9, 1.1]", "b1 = [0.25]");
    let text = with_objectives(
        &text,
        "[[objective]]\nkind = \"enhancement\"\nmetabolite = \"NAA\"\n\
         window_ppm = [1.9, 2.1]\nweight = 100.0\n",
    );
    ProblemSpec::from_toml(&text, "pushing").unwrap()
}

/// splitmix64 → uniform in [−1, 1).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> f64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^= z >> 31;
        (z >> 11) as f64 / (1u64 << 53) as f64 * 2.0 - 1.0
    }

    fn vec(&mut self, n: usize) -> Vec<f64> {
        (0..n).map(|_| self.next()).collect()
    }
}

fn axpy(x: &[f64], a: f64, d: &[f64]) -> Vec<f64> {
    x.iter().zip(d).map(|(x, d)| x + a * d).collect()
}

fn dot(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(a, b)| a * b).sum()
}

/// Richardson-extrapolated central difference of `f` along `d` at `x`:
/// (4·D(h/2) − D(h))/3 with D(h) = (f(x + hd) − f(x − hd))/(2h), error O(h⁴).
/// Returns (extrapolated, D(h), D(h/2)).
fn richardson(f: &mut impl FnMut(&[f64]) -> f64, x: &[f64], d: &[f64], h: f64) -> [f64; 3] {
    let mut central = |h: f64| (f(&axpy(x, h, d)) - f(&axpy(x, -h, d))) / (2.0 * h);
    let (d1, d2) = (central(h), central(h / 2.0));
    [(4.0 * d2 - d1) / 3.0, d1, d2]
}

/// The whole-chain check for one parameterization: the analytic directional derivative
/// ∇L·d against Richardson finite differences of L along two random unit directions and two
/// single coordinates (the largest gradient component and one in the middle of the pulse).
fn check_gradient(parameterization: &str, sine_terms: Option<usize>, seed: u64) {
    let mut spec = small_spec();
    spec.pulse.parameterization = parameterization.into();
    spec.pulse.sine_terms = sine_terms;
    let mut problem = DesignProblem::build(spec).unwrap();
    let n = problem.param.len();
    // Away from the reference pulse (a point with no special structure), well inside the
    // peak limit so the squash is far from saturation.
    let mut rng = Rng(seed);
    let x0: Vec<f64> = axpy(&problem.initial_parameters().unwrap(), 0.2, &rng.vec(n));
    let e = problem.evaluate(&x0).unwrap();
    assert!(e.loss.is_finite(), "{parameterization}: loss {}", e.loss);
    assert_eq!(e.gradient.len(), n);

    let mut dirs: Vec<(String, Vec<f64>)> = Vec::new();
    for k in 0..2 {
        let d = rng.vec(n);
        let norm = dot(&d, &d).sqrt();
        dirs.push((
            format!("random direction {k}"),
            d.iter().map(|x| x / norm).collect(),
        ));
    }
    let largest = (0..n)
        .max_by(|&a, &b| e.gradient[a].abs().total_cmp(&e.gradient[b].abs()))
        .unwrap();
    for i in [largest, n / 2 + 1] {
        let mut d = vec![0.0; n];
        d[i] = 1.0;
        dirs.push((format!("coordinate {i}"), d));
    }

    let mut loss = |x: &[f64]| problem.evaluate(x).unwrap().loss;
    for (what, d) in &dirs {
        let analytic = dot(&e.gradient, d);
        let [fd, d1, d2] = richardson(&mut loss, &x0, d, 1e-3);
        let rel = (analytic - fd).abs() / analytic.abs();
        println!(
            "{parameterization} {what}: analytic {analytic:+.12e}, Richardson {fd:+.12e} \
             (rel {rel:.2e}); central h {:.2e}, h/2 {:.2e}",
            (analytic - d1).abs() / analytic.abs(),
            (analytic - d2).abs() / analytic.abs()
        );
        assert!(
            analytic.abs() > 1e-8 * e.loss.abs(),
            "{parameterization} {what}: derivative {analytic} too small to compare"
        );
        assert!(
            rel < 1e-6,
            "{parameterization} {what}: analytic {analytic:e} vs finite differences {fd:e}: \
             relative error {rel:.3e}"
        );
    }
}

#[test]
fn gradient_matches_finite_differences_cartesian() {
    check_gradient("cartesian", None, 11);
}

#[test]
fn gradient_matches_finite_differences_amplitude_phase() {
    check_gradient("amplitude_phase", None, 12);
}

#[test]
fn gradient_matches_finite_differences_sine() {
    check_gradient("sine", Some(8), 13);
}

/// Runs `minimize` over `problem.evaluate`, asserting the hard peak limit on every waveform
/// the optimizer asks for (start, line-search trials, Adam steps); returns the result and the
/// largest peak seen.
fn run_checking_peak(
    problem: &mut DesignProblem,
    optimizer: &spinloop::design::optimize::Optimizer,
) -> (spinloop::design::optimize::OptimizeResult, f64, usize) {
    let limit = problem.spec.limits.peak_b1_hz;
    let x0 = problem.initial_parameters().unwrap();
    let mut highest = 0.0f64;
    let mut evaluations = 0usize;
    let result = minimize(
        &x0,
        optimizer,
        |x| {
            let (ux, uy) = problem.param.waveform(x).unwrap();
            let p = peak(&ux, &uy);
            assert!(
                p <= limit,
                "evaluation {evaluations}: peak {p} Hz over the limit {limit} Hz"
            );
            highest = highest.max(p);
            evaluations += 1;
            let e = problem.evaluate(x)?;
            Ok((e.loss, e.gradient))
        },
        |_: &spinloop::design::optimize::Iteration| Control::Continue,
    )
    .unwrap();
    (result, highest, evaluations)
}

#[test]
fn every_iterate_respects_the_peak_limit() {
    // B1 scale 0.12 on a 1.2 ms pulse: the NAA enhancement wants 90°, i.e. 2.08 cycles of
    // nominal nutation, but a hard pulse at the 1500 Hz limit gives only 1.8 — the optimum
    // sits on the limit, so the optimizer drives the squash into saturation.
    for method in ["lbfgs", "adam"] {
        let mut spec = pushing_spec();
        spec.ensemble.b1 = vec![0.12];
        spec.optimizer.method = method.into();
        spec.optimizer.max_iterations = 25;
        spec.optimizer.learning_rate = 0.3;
        let limit = spec.limits.peak_b1_hz;
        let mut problem = DesignProblem::build(spec).unwrap();
        let reference_peak = peak(&problem.reference.0, &problem.reference.1);
        let optimizer = problem.spec.optimizer().unwrap();
        let (result, highest, evaluations) = run_checking_peak(&mut problem, &optimizer);
        let (ux, uy) = problem.param.waveform(&result.x).unwrap();
        let final_peak = peak(&ux, &uy);
        println!(
            "{method}: {evaluations} evaluations, {} iterations ({:?}), loss {:.4} -> {:.4}, \
             reference peak {reference_peak:.1} Hz, highest evaluated peak {highest:.9} Hz, \
             final peak {final_peak:.9} Hz, limit {limit} Hz",
            result.history.len() - 1,
            result.reason,
            result.history[0].loss,
            result.loss
        );
        // The limit is active: the search went to it (not just stayed near the reference).
        assert!(
            highest > 0.999 * limit && highest > 1.3 * reference_peak,
            "{method}: highest peak {highest} Hz; the limit {limit} Hz was never approached"
        );
        assert!(
            result.loss < result.history[0].loss,
            "{method}: no progress"
        );
        problem
            .spec
            .limits
            .check_waveform(&ux, &uy, problem.param.dt, None)
            .unwrap();
    }
}

fn build_err(spec: ProblemSpec) -> String {
    match DesignProblem::build(spec) {
        Ok(p) => panic!("{p:?} should have been rejected"),
        Err(e) => e.to_string(),
    }
}

fn assert_names(err: &str, needles: &[&str]) {
    for n in needles {
        assert!(err.contains(n), "error {err:?} lacks {n:?}");
    }
}

#[test]
fn bad_problems_are_rejected_by_build_with_a_clear_message() {
    type Edit = fn(&mut ProblemSpec);
    let cases: Vec<(&str, Edit, &[&str])> = vec![
        (
            "unknown metabolite",
            |s| s.molecules[2] = "Unobtainium".into(),
            &["Unobtainium", "unknown metabolite"],
        ),
        (
            "objective metabolite not simulated",
            |s| {
                s.objectives
                    .push(objective("kind = \"crlb\"\nmetabolite = \"GABA\""))
            },
            &["GABA", "not among the simulated molecules"],
        ),
        (
            "window outside the spectral width",
            |s| {
                s.objectives.push(objective(
                    "kind = \"enhancement\"\nmetabolite = \"NAA\"\nwindow_ppm = [40.0, 45.0]",
                ))
            },
            &["window_ppm", "[40, 45]", "spectral width"],
        ),
        (
            "zero-length pulse",
            |s| s.pulse.segments = 0,
            &["segments", "0"],
        ),
        (
            "pulse longer than the console allows",
            |s| s.limits.max_duration_s = 1e-3,
            &[
                "duration",
                "exceeds the hardware maximum pulse duration 0.001 s",
                "80 segments",
            ],
        ),
        (
            "dt off the RF raster",
            |s| s.pulse.dt_us = 15.0,
            &["dt", "raster", "0.00001"],
        ),
        (
            "peak limit too low for the reference 90° pulse",
            |s| s.limits.peak_b1_hz = 100.0,
            &["limits.peak_b1_hz", "100", "reference 90°"],
        ),
        (
            "TE1 too short for the pulse",
            |s| s.sequence.te1_ms = Some(1.0),
            &["TE1", "-2.9", "does not fit"],
        ),
        (
            "missing te for press",
            |s| s.sequence.te2_ms = None,
            &["te2_ms", "missing", "press"],
        ),
        (
            "no objectives",
            |s| s.objectives.clear(),
            &["objective", "at least one"],
        ),
    ];
    for (what, edit, needles) in cases {
        let mut spec = small_spec();
        edit(&mut spec);
        let started = std::time::Instant::now();
        let err = build_err(spec);
        println!("{what}: {err} ({:.2} s)", started.elapsed().as_secs_f64());
        assert_names(&err, needles);
    }
}

#[test]
fn unknown_optimizer_is_rejected_by_build() {
    let mut spec = small_spec();
    spec.optimizer.method = "bfgs".into();
    assert_names(&build_err(spec), &["optimizer.method", "bfgs", "lbfgs"]);
}

#[test]
fn bad_optimizer_settings_are_rejected_by_build() {
    let mut spec = small_spec();
    spec.optimizer.memory = Some(0);
    assert_names(&build_err(spec), &["optimizer.memory", ">= 1"]);
    let mut spec = small_spec();
    spec.optimizer.gradient_tolerance = Some(f64::NAN);
    assert_names(&build_err(spec), &["optimizer.gradient_tolerance"]);
    let mut spec = small_spec();
    spec.optimizer.relative_tolerance = -1.0;
    assert_names(&build_err(spec), &["optimizer.relative_tolerance"]);
    let mut spec = small_spec();
    spec.optimizer.method = "adam".into();
    spec.optimizer.learning_rate = 0.0;
    assert_names(&build_err(spec), &["optimizer.learning_rate"]);
}

#[test]
fn unknown_optimizer_is_rejected_before_optimizing() {
    let mut spec = pushing_spec();
    spec.optimizer.method = "bfgs".into();
    let err = spec.optimizer().unwrap_err().to_string();
    assert_names(&err, &["optimizer.method", "bfgs", "lbfgs"]);
    if let Ok(mut problem) = DesignProblem::build(spec) {
        let x0 = problem.initial_parameters().unwrap();
        let err = problem
            .optimize_from(&x0, |_: &spinloop::design::optimize::Iteration| ())
            .unwrap_err()
            .to_string();
        assert_names(&err, &["optimizer.method", "bfgs"]);
    }
}

#[test]
fn bad_problem_files_are_rejected_by_the_parser() {
    // Unknown field (deny_unknown_fields), at the top level and inside a table.
    let err = ProblemSpec::from_toml(
        &SMALL.replace("carrier_ppm = 3.0", "carrier_ppm = 3.0\ncarier = 4.7"),
        "typo.toml",
    )
    .unwrap_err()
    .to_string();
    assert_names(&err, &["typo.toml", "unknown field", "carier"]);
    let err = ProblemSpec::from_toml(
        &SMALL.replace("segments = 80", "segments = 80\nsegment_us = 20"),
        "typo2.toml",
    )
    .unwrap_err()
    .to_string();
    assert_names(&err, &["typo2.toml", "unknown field", "segment_us"]);
    // A misspelt objective field.
    let err = ProblemSpec::from_toml(
        &SMALL.replace("metabolite = \"Gln\"", "metabolit = \"Gln\""),
        "typo3.toml",
    )
    .unwrap_err()
    .to_string();
    assert_names(&err, &["typo3.toml", "metabolit"]);
    // No [[objective]] at all.
    let err = ProblemSpec::from_toml(&with_objectives(SMALL, ""), "none.toml")
        .unwrap_err()
        .to_string();
    assert_names(&err, &["none.toml", "objective"]);
    // PRESS without te1: the parser accepts (the field is optional), build names it.
    let spec = ProblemSpec::from_toml(&SMALL.replace("te1_ms = 12.0\n", ""), "note1.toml").unwrap();
    assert_names(&build_err(spec), &["sequence.te1_ms", "missing", "press"]);
}

#[derive(Clone, Copy, Debug)]
enum Failure {
    NanValue,
    NumericalError,
    NanGradient,
}

/// A zero-valued objective part that fails from its `from`-th gradient evaluation on (the
/// optimizer's evaluations; reports evaluate without a gradient and see 0).
struct FailAfter {
    calls: Arc<AtomicUsize>,
    from: usize,
    failure: Failure,
}

impl SignalLoss for FailAfter {
    fn evaluate(&self, _: &Signals, grad: Option<&mut Signals>) -> Result<f64, PhysicsError> {
        let Some(g) = grad else {
            return Ok(0.0);
        };
        g.fill_zero();
        let k = self.calls.fetch_add(1, Ordering::SeqCst) + 1;
        if k < self.from {
            return Ok(0.0);
        }
        match self.failure {
            Failure::NanValue => Ok(f64::NAN),
            Failure::NumericalError => Err(PhysicsError::Numerical(
                "fail_probe: simulated overflow".into(),
            )),
            Failure::NanGradient => {
                for m in 0..g.members() {
                    g.fid_mut(m, 0)[3] = num_complex::Complex64::new(f64::NAN, 0.0);
                }
                Ok(0.0)
            }
        }
    }
}

#[test]
fn non_finite_during_optimization_stops_with_the_last_good_waveform() {
    for (failure, needles) in [
        (Failure::NanValue, &["fail_probe", "NaN"][..]),
        (Failure::NumericalError, &["simulated overflow"][..]),
        (Failure::NanGradient, &["not finite"][..]),
    ] {
        let mut spec = pushing_spec();
        spec.optimizer.max_iterations = 50;
        let mut problem = DesignProblem::build(spec).unwrap();
        let calls = Arc::new(AtomicUsize::new(0));
        let from = 6;
        problem.objective.parts.push(Part {
            name: "fail_probe".into(),
            weight: 1.0,
            loss: Box::new(FailAfter {
                calls: calls.clone(),
                from,
                failure,
            }),
        });
        let x0 = problem.initial_parameters().unwrap();
        let result = problem
            .optimize_from(&x0, |_: &spinloop::design::optimize::Iteration| ())
            .unwrap();
        let StopReason::NonFinite(msg) = &result.optimizer.reason else {
            panic!("{failure:?}: stopped with {:?}", result.optimizer.reason);
        };
        println!(
            "{failure:?}: {} gradient calls, {} iterations, reason: {msg}",
            calls.load(Ordering::SeqCst),
            result.optimizer.history.len() - 1
        );
        assert!(calls.load(Ordering::SeqCst) >= from);
        assert_names(msg, &["iteration"]);
        assert_names(msg, needles);
        // Iterations were accepted before the failure, so the last good point is not the start.
        let h = &result.optimizer.history;
        assert!(
            h.len() >= 2,
            "{failure:?}: no accepted iterate before the failure"
        );
        assert_ne!(result.parameters, x0);
        // The returned waveform is that of the returned parameters, finite and within limits.
        let (ux, uy) = &result.optimized;
        assert!(ux.iter().chain(uy).all(|v| v.is_finite()));
        assert_eq!(
            problem.param.waveform(&result.parameters).unwrap(),
            result.optimized
        );
        problem
            .spec
            .limits
            .check_waveform(ux, uy, problem.param.dt, None)
            .unwrap();
        // Its loss is the last accepted one: recompute without the failing part (0 before it
        // failed).
        assert_eq!(result.optimizer.loss, h.last().unwrap().loss);
        problem.objective.parts.pop();
        let again = problem.evaluate(&result.parameters).unwrap().loss;
        assert!(
            (again - result.optimizer.loss).abs() <= 1e-12 * again.abs(),
            "{failure:?}: loss {again} vs reported {}",
            result.optimizer.loss
        );
        assert!(result.optimizer.loss < h[0].loss);
    }
}

#[test]
fn warm_start_reproduces_a_previous_result_and_rejects_what_does_not_fit() {
    // A previous result: a few iterations on the pushing problem (its waveform saturates
    // segments at the peak limit, the hardest case for the inverse).
    let mut spec = pushing_spec();
    spec.ensemble.b1 = vec![0.12];
    spec.optimizer.max_iterations = 12;
    let mut problem = DesignProblem::build(spec).unwrap();
    let x0 = problem.initial_parameters().unwrap();
    let result = problem
        .optimize_from(&x0, |_: &spinloop::design::optimize::Iteration| ())
        .unwrap();
    let limit = problem.param.peak_hz;
    let file = |ux: &[f64], uy: &[f64], dt: f64| WaveformFile {
        dt,
        ux: ux.to_vec(),
        uy: uy.to_vec(),
        peak_b1_hz: Some(limit),
        name: Some("previous".into()),
    };
    let max_diff = |a: &(Vec<f64>, Vec<f64>), b: &(Vec<f64>, Vec<f64>)| {
        a.0.iter()
            .zip(&b.0)
            .chain(a.1.iter().zip(&b.1))
            .map(|(x, y)| (x - y).abs())
            .fold(0.0, f64::max)
    };
    let (ux, uy) = result.optimized.clone();
    let dt = problem.param.dt;
    let theta = problem.warm_start(&file(&ux, &uy, dt)).unwrap();
    let again = problem.param.waveform(&theta).unwrap();
    let diff = max_diff(&again, &result.optimized);
    println!(
        "previous result (peak {:.6} Hz): reproduced to {diff:.2e} Hz",
        peak(&ux, &uy)
    );
    assert!(diff <= 1e-9 * limit, "warm start off by {diff} Hz");

    // Every parameterization reproduces its own waveforms (random, some near saturation).
    for (kind, terms) in [
        ("cartesian", None),
        ("amplitude_phase", None),
        ("sine", Some(9)),
    ] {
        let mut spec = pushing_spec();
        spec.pulse.parameterization = kind.into();
        spec.pulse.sine_terms = terms;
        spec.pulse.fixed_edges = 2;
        let p = DesignProblem::build(spec).unwrap();
        let mut rng = Rng(99);
        let theta: Vec<f64> = rng.vec(p.param.len()).iter().map(|v| 3.0 * v).collect();
        let w = p.param.waveform(&theta).unwrap();
        let back = p
            .param
            .waveform(&p.warm_start(&file(&w.0, &w.1, dt)).unwrap())
            .unwrap();
        let diff = max_diff(&back, &w);
        println!("{kind}: reproduced to {diff:.2e} Hz");
        assert!(diff <= 1e-9 * limit, "{kind}: warm start off by {diff} Hz");
    }

    // Over the peak limit.
    let scale = 1.01 * limit / peak(&ux, &uy);
    let (sx, sy): (Vec<f64>, Vec<f64>) = ux
        .iter()
        .zip(&uy)
        .map(|(x, y)| (x * scale, y * scale))
        .unzip();
    let k = (0..ux.len())
        .find(|&k| sx[k].hypot(sy[k]) >= limit)
        .unwrap();
    let err = problem
        .warm_start(&file(&sx, &sy, dt))
        .unwrap_err()
        .to_string();
    assert_names(&err, &[&format!("u[{k}]"), "peak", "1500"]);
    // Wrong length.
    let err = problem
        .warm_start(&file(&ux[1..], &uy[1..], dt))
        .unwrap_err()
        .to_string();
    assert_names(&err, &["warm-start", "segments", "60", "59"]);
    // Wrong raster.
    let err = problem
        .warm_start(&file(&ux, &uy, 2.0 * dt))
        .unwrap_err()
        .to_string();
    assert_names(&err, &["warm-start waveform dt", "raster"]);
}
