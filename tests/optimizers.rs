//! Optimizers of `design::optimize`: L-BFGS with the strong-Wolfe line search and Adam on
//! Rosenbrock and quadratics; line-search conditions; determinism; non-finite objectives;
//! cancellation; iteration budgets.

use spinloop::design::optimize::{
    AdamOptions, Control, Iteration, LbfgsOptions, LineSearchOptions, LineSearchOutcome, Optimizer,
    StopReason, adam, lbfgs, line_search_wolfe, minimize,
};
use spinloop::physics::PhysicsError;

type Eval = Result<(f64, Vec<f64>), PhysicsError>;

/// Extended Rosenbrock: Σ 100 (x₂ᵢ₊₁ − x₂ᵢ²)² + (1 − x₂ᵢ)²; minimum 0 at x = 1.
fn rosenbrock(x: &[f64]) -> Eval {
    let mut f = 0.0;
    let mut g = vec![0.0; x.len()];
    for i in (0..x.len()).step_by(2) {
        let (a, b) = (x[i], x[i + 1]);
        let t = b - a * a;
        f += 100.0 * t * t + (1.0 - a) * (1.0 - a);
        g[i] = -400.0 * t * a - 2.0 * (1.0 - a);
        g[i + 1] = 200.0 * t;
    }
    Ok((f, g))
}

fn rosenbrock_start(n: usize) -> Vec<f64> {
    (0..n)
        .map(|i| if i % 2 == 0 { -1.2 } else { 1.0 })
        .collect()
}

fn tight_lbfgs(max_iterations: usize) -> LbfgsOptions {
    LbfgsOptions {
        max_iterations,
        gradient_tolerance: 1e-10,
        relative_tolerance: 0.0,
        ..LbfgsOptions::default()
    }
}

#[test]
fn lbfgs_rosenbrock_2d_and_10d() {
    for n in [2, 10] {
        let r = lbfgs(&rosenbrock_start(n), tight_lbfgs(200), rosenbrock, |_| {}).unwrap();
        let iters = r.history.len() - 1;
        let err = r.x.iter().map(|v| (v - 1.0).abs()).fold(0.0, f64::max);
        println!(
            "L-BFGS Rosenbrock {n}-D: {iters} iterations, {} evaluations, loss {:e}, |x-1|inf {err:e}, {:?}",
            r.history.last().unwrap().evaluations,
            r.loss,
            r.reason
        );
        assert_eq!(r.reason, StopReason::Gradient);
        assert!(iters < 200, "{iters} iterations");
        assert!(err < 1e-6, "max |x - 1| = {err}");
        // Every accepted step decreases the loss.
        for w in r.history.windows(2) {
            assert!(w[1].loss < w[0].loss);
            assert!(w[1].step > 0.0);
        }
    }
}

#[test]
fn adam_rosenbrock_reduces_loss() {
    // Start with L ≈ 1e2; Adam's steps are ~learning rate per coordinate.
    let x0 = vec![0.0, -1.0];
    let options = AdamOptions {
        max_iterations: 20_000,
        learning_rate: 2e-2,
        gradient_tolerance: 1e-10,
        relative_tolerance: 0.0,
        patience: 0,
        ..AdamOptions::default()
    };
    let r = adam(&x0, options, rosenbrock, |_| {}).unwrap();
    let start = r.history[0].loss;
    println!(
        "Adam Rosenbrock 2-D: {} iterations, loss {start:e} -> {:e}, x {:?}, {:?}",
        r.history.len() - 1,
        r.loss,
        r.x,
        r.reason
    );
    assert!(start > 50.0);
    assert!(r.loss < 1e-3, "final loss {}", r.loss);
    // The result is the best iterate seen.
    let best = r
        .history
        .iter()
        .map(|h| h.loss)
        .fold(f64::INFINITY, f64::min);
    assert_eq!(r.loss.to_bits(), best.to_bits());
    assert_eq!(rosenbrock(&r.x).unwrap().0.to_bits(), r.loss.to_bits());
    assert!(r.history.iter().skip(1).all(|h| h.step == 2e-2));
}

/// f(x) = ½ xᵀ A x − bᵀ x with A = diag(1, 10, 100) + off-diagonal coupling.
fn quadratic(x: &[f64]) -> Eval {
    let a = [[2.0, 0.5, 0.0], [0.5, 10.0, 1.0], [0.0, 1.0, 100.0]];
    let b = [1.0, -2.0, 3.0];
    let mut ax = [0.0; 3];
    for i in 0..3 {
        for j in 0..3 {
            ax[i] += a[i][j] * x[j];
        }
    }
    let f =
        0.5 * (0..3).map(|i| x[i] * ax[i]).sum::<f64>() - (0..3).map(|i| b[i] * x[i]).sum::<f64>();
    let g = (0..3).map(|i| ax[i] - b[i]).collect();
    Ok((f, g))
}

/// Runs L-BFGS on `f` from `x0`, logging every evaluation, and checks that each accepted step
/// s = x₊ − x satisfies f(x₊) ≤ f(x) + c₁ g·s and |g₊·s| ≤ c₂ |g·s|. Returns the result and
/// the accepted step lengths.
fn check_wolfe_steps(
    f: fn(&[f64]) -> Eval,
    x0: &[f64],
    options: LbfgsOptions,
) -> (spinloop::design::optimize::OptimizeResult, Vec<f64>) {
    let (c1, c2) = (options.line_search.c1, options.line_search.c2);
    let mut log: Vec<(Vec<f64>, f64, Vec<f64>)> = Vec::new();
    let mut hist: Vec<Iteration> = Vec::new();
    let r = lbfgs(
        x0,
        options,
        |x| {
            let (v, g) = f(x)?;
            log.push((x.to_vec(), v, g.clone()));
            Ok((v, g))
        },
        |it| hist.push(*it),
    )
    .unwrap();
    assert_eq!(hist, r.history);
    assert_eq!(log.len(), r.history.last().unwrap().evaluations);
    // The accepted point of iteration k is the evaluation (within its line search) with its
    // loss.
    let mut accepted = vec![log[0].clone()];
    for w in r.history.windows(2) {
        let range = w[0].evaluations..w[1].evaluations;
        let e = log[range]
            .iter()
            .find(|e| e.1.to_bits() == w[1].loss.to_bits())
            .expect("accepted point among the line search's evaluations");
        accepted.push(e.clone());
    }
    for (k, w) in accepted.windows(2).enumerate() {
        let (x, fx, g) = &w[0];
        let (xn, fnew, gnew) = &w[1];
        let s: Vec<f64> = xn.iter().zip(x).map(|(a, b)| a - b).collect();
        let gs: f64 = g.iter().zip(&s).map(|(a, b)| a * b).sum();
        let gns: f64 = gnew.iter().zip(&s).map(|(a, b)| a * b).sum();
        assert!(gs < 0.0, "iteration {}: not a descent step", k + 1);
        assert!(*fnew <= fx + c1 * gs, "iteration {}: Armijo fails", k + 1);
        assert!(
            gns.abs() <= c2 * gs.abs(),
            "iteration {}: curvature fails: {gns} vs {gs}",
            k + 1
        );
    }
    let steps = r.history.iter().skip(1).map(|h| h.step).collect();
    (r, steps)
}

#[test]
fn lbfgs_accepted_steps_satisfy_strong_wolfe() {
    let options = LbfgsOptions {
        max_iterations: 100,
        // Stop before steps reach round-off, where g·s is noise.
        gradient_tolerance: 1e-8,
        relative_tolerance: 0.0,
        ..LbfgsOptions::default()
    };
    // Quadratic with known Hessian, started far away: the unit first step is too short, so the
    // line search extrapolates.
    let (r, steps) = check_wolfe_steps(quadratic, &[500.0, -300.0, 200.0], options);
    println!("quadratic: steps {steps:?}");
    assert!(steps[0] > 1.0, "first step {}", steps[0]);
    // Known minimizer: A x = b.
    let (_, g) = quadratic(&r.x).unwrap();
    assert!(g.iter().all(|v| v.abs() < 1e-8), "gradient {g:?}");
    assert!(
        steps.len() <= 30,
        "{} iterations on a 3-D quadratic",
        steps.len()
    );
    // Rosenbrock: curved valley, some steps need the zoom (α < 1).
    let (r, steps) = check_wolfe_steps(rosenbrock, &rosenbrock_start(2), options);
    println!("rosenbrock: steps {steps:?}");
    assert!(steps.iter().any(|&a| a < 1.0));
    assert!(r.x.iter().all(|v| (v - 1.0).abs() < 1e-6));
}

#[test]
fn line_search_wolfe_on_1d_functions() {
    let opts = LineSearchOptions::default();
    // φ(α) = (α − 3)²: φ(0) = 9, φ′(0) = −6. Step 1 already satisfies the strong Wolfe
    // conditions with c₂ = 0.9? |φ′(1)| = 4 ≤ 5.4: yes.
    let phi = |a: f64| Ok(((a - 3.0) * (a - 3.0), 2.0 * (a - 3.0)));
    let r = line_search_wolfe(phi, 9.0, -6.0, 1.0, &opts).unwrap();
    assert_eq!(
        r.outcome,
        LineSearchOutcome::StrongWolfe(spinloop::design::optimize::LineSearchPoint {
            alpha: 1.0,
            value: 4.0,
            slope: -4.0
        })
    );
    assert_eq!(r.evaluations, 1);
    // A tight c₂ forces the zoom to the minimum at α = 3, from too short and too long starts.
    let tight = LineSearchOptions { c2: 0.01, ..opts };
    for start in [0.1, 1.0, 10.0, 1000.0] {
        let r = line_search_wolfe(phi, 9.0, -6.0, start, &tight).unwrap();
        let LineSearchOutcome::StrongWolfe(p) = r.outcome else {
            panic!("start {start}: {:?}", r.outcome);
        };
        assert!(p.value <= 9.0 + 1e-4 * p.alpha * -6.0);
        assert!(p.slope.abs() <= 0.01 * 6.0);
        assert!(
            (p.alpha - 3.0).abs() < 0.03,
            "start {start}: alpha {}",
            p.alpha
        );
        assert!(
            r.evaluations <= 12,
            "start {start}: {} evaluations",
            r.evaluations
        );
    }
    // Non-quadratic: φ(α) = −α e^{−α} has its minimum at α = 1.
    let phi2 = |a: f64| Ok((-a * (-a).exp(), (a - 1.0) * (-a).exp()));
    let r = line_search_wolfe(phi2, 0.0, -1.0, 0.05, &tight).unwrap();
    let LineSearchOutcome::StrongWolfe(p) = r.outcome else {
        panic!("{:?}", r.outcome);
    };
    assert!((p.alpha - 1.0).abs() < 0.05, "alpha {}", p.alpha);
    // Non-finite beyond α = 2: treated as "too long", the search shrinks and succeeds.
    let phi3 = |a: f64| {
        if a > 2.0 {
            Ok((f64::NAN, f64::NAN))
        } else {
            Ok(((a - 1.5) * (a - 1.5), 2.0 * (a - 1.5)))
        }
    };
    let r = line_search_wolfe(phi3, 2.25, -3.0, 8.0, &opts).unwrap();
    assert!(r.non_finite >= 1);
    assert!(r.last_non_finite.as_deref().unwrap().contains("NaN"));
    let (LineSearchOutcome::StrongWolfe(p) | LineSearchOutcome::Armijo(p)) = r.outcome else {
        panic!("{:?}", r.outcome);
    };
    assert!(p.alpha <= 2.0 && p.value < 2.25);
    // Numerical errors count as non-finite; everywhere non-finite → NonFinite.
    let r = line_search_wolfe(
        |_| Err(PhysicsError::Numerical("test kernel".into())),
        1.0,
        -1.0,
        1.0,
        &opts,
    )
    .unwrap();
    assert_eq!(r.outcome, LineSearchOutcome::NonFinite);
    assert_eq!(r.evaluations, opts.max_evaluations + opts.max_backtracks);
    assert!(r.last_non_finite.unwrap().contains("test kernel"));
    // Ascent "direction": no decrease anywhere → NoDecrease (via Armijo backtracking).
    let r = line_search_wolfe(|a| Ok((1.0 + a, 1.0)), 1.0, -1.0, 1.0, &opts).unwrap();
    assert_eq!(r.outcome, LineSearchOutcome::NoDecrease);
    // Other errors propagate; bad inputs are rejected.
    assert!(
        line_search_wolfe(|_| Err(PhysicsError::Io("x".into())), 1.0, -1.0, 1.0, &opts).is_err()
    );
    assert!(line_search_wolfe(phi, 9.0, 6.0, 1.0, &opts).is_err());
    let bad = LineSearchOptions { c2: 1e-5, ..opts };
    assert!(line_search_wolfe(phi, 9.0, -6.0, 1.0, &bad).is_err());
}

#[test]
fn runs_are_bit_identical() {
    let x0 = rosenbrock_start(10);
    for opt in [
        Optimizer::Lbfgs(tight_lbfgs(100)),
        Optimizer::Adam(AdamOptions {
            max_iterations: 500,
            learning_rate: 1e-2,
            ..AdamOptions::default()
        }),
    ] {
        let run = || {
            let mut h = Vec::new();
            let r = minimize(&x0, &opt, rosenbrock, |it: &Iteration| h.push(*it)).unwrap();
            (r, h)
        };
        let (r1, h1) = run();
        let (r2, h2) = run();
        let bits = |h: &[Iteration]| -> Vec<[u64; 5]> {
            h.iter()
                .map(|i| {
                    [
                        i.iteration as u64,
                        i.loss.to_bits(),
                        i.grad_norm.to_bits(),
                        i.evaluations as u64,
                        i.step.to_bits(),
                    ]
                })
                .collect()
        };
        assert_eq!(bits(&h1), bits(&h2));
        assert_eq!(bits(&r1.history), bits(&h1));
        assert_eq!(
            r1.x.iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
            r2.x.iter().map(|v| v.to_bits()).collect::<Vec<_>>()
        );
        assert_eq!(r1.reason, r2.reason);
        assert!(h1.len() > 10);
    }
}

/// (x₀ − 5)² + x₁², but NaN when x₀ > 2: the minimum lies beyond the NaN boundary.
fn nan_beyond_two(x: &[f64]) -> Eval {
    if x[0] > 2.0 {
        return Ok((f64::NAN, vec![f64::NAN; 2]));
    }
    Ok((
        (x[0] - 5.0).powi(2) + x[1] * x[1],
        vec![2.0 * (x[0] - 5.0), 2.0 * x[1]],
    ))
}

#[test]
fn non_finite_objective_stops_with_last_good_point() {
    let x0 = [0.0, 1.0];
    let options = LbfgsOptions {
        max_iterations: 100,
        ..LbfgsOptions::default()
    };
    let r = lbfgs(&x0, options, nan_beyond_two, |_| {}).unwrap();
    println!(
        "L-BFGS NaN region: {:?}, x {:?}, loss {}",
        r.reason, r.x, r.loss
    );
    assert!(r.loss.is_finite() && r.x[0] <= 2.0);
    assert_eq!(nan_beyond_two(&r.x).unwrap().0, r.loss);
    assert!(r.x[0] > 1.9, "did not approach the boundary: {:?}", r.x);
    assert!(r.loss < nan_beyond_two(&x0).unwrap().0);
    assert!(
        matches!(
            r.reason,
            StopReason::NonFinite(_) | StopReason::LineSearch | StopReason::Stalled
        ),
        "{:?}",
        r.reason
    );
    assert!(r.history.iter().all(|h| h.loss.is_finite()));

    let aopts = AdamOptions {
        max_iterations: 1000,
        learning_rate: 0.1,
        ..AdamOptions::default()
    };
    let r = adam(&x0, aopts, nan_beyond_two, |_| {}).unwrap();
    println!(
        "Adam NaN region: {:?}, x {:?}, loss {}",
        r.reason, r.x, r.loss
    );
    let StopReason::NonFinite(msg) = &r.reason else {
        panic!("{:?}", r.reason);
    };
    assert!(msg.contains("iteration") && msg.contains("NaN"), "{msg}");
    assert!(r.loss.is_finite() && r.x[0] <= 2.0 && r.x[0] > 1.5);
    assert_eq!(nan_beyond_two(&r.x).unwrap().0, r.loss);

    // Numerical errors after the start behave like non-finite values.
    let numerical = |x: &[f64]| -> Eval {
        if x[0] > 2.0 {
            Err(PhysicsError::Numerical("eigensolver".into()))
        } else {
            nan_beyond_two(x)
        }
    };
    let r = adam(&x0, aopts, numerical, |_| {}).unwrap();
    assert!(matches!(&r.reason, StopReason::NonFinite(m) if m.contains("eigensolver")));
    let r = lbfgs(&x0, options, numerical, |_| {}).unwrap();
    assert!(r.loss.is_finite() && r.x[0] <= 2.0 && r.x[0] > 1.9);

    // Everything non-finite beyond the start: L-BFGS reports NonFinite with the reason.
    let only_start = |x: &[f64]| -> Eval {
        if x == [0.0, 1.0] {
            nan_beyond_two(x)
        } else {
            Ok((f64::INFINITY, vec![0.0; 2]))
        }
    };
    let r = lbfgs(&x0, options, only_start, |_| {}).unwrap();
    let StopReason::NonFinite(msg) = &r.reason else {
        panic!("{:?}", r.reason);
    };
    assert!(
        msg.starts_with("iteration 1") && msg.contains("inf"),
        "{msg}"
    );
    assert_eq!(r.x, x0);
    assert_eq!(r.history.len(), 1);

    // Non-finite (or failing) at x0 is an error, for both.
    let at_start = |_: &[f64]| -> Eval { Ok((f64::NAN, vec![0.0; 2])) };
    assert!(matches!(
        lbfgs(&x0, options, at_start, |_| {}),
        Err(PhysicsError::Numerical(_))
    ));
    assert!(adam(&x0, aopts, at_start, |_| {}).is_err());
    let grad_at_start = |_: &[f64]| -> Eval { Ok((1.0, vec![f64::NAN, 0.0])) };
    assert!(lbfgs(&x0, options, grad_at_start, |_| {}).is_err());
    assert!(adam(&x0, aopts, grad_at_start, |_| {}).is_err());
    let fails = |_: &[f64]| -> Eval { Err(PhysicsError::Numerical("x".into())) };
    assert!(lbfgs(&x0, options, fails, |_| {}).is_err());
    // A wrong gradient length is an error.
    let short = |_: &[f64]| -> Eval { Ok((1.0, vec![1.0])) };
    assert!(matches!(
        adam(&x0, aopts, short, |_| {}),
        Err(PhysicsError::SizeMismatch { .. })
    ));
}

#[test]
fn progress_can_cancel() {
    let x0 = rosenbrock_start(2);
    for opt in [
        Optimizer::Lbfgs(tight_lbfgs(100)),
        Optimizer::Adam(AdamOptions::default()),
    ] {
        let mut seen = 0;
        let r = minimize(&x0, &opt, rosenbrock, |it: &Iteration| {
            seen += 1;
            if it.iteration == 3 {
                Control::Stop
            } else {
                Control::Continue
            }
        })
        .unwrap();
        assert_eq!(r.reason, StopReason::Cancelled);
        assert_eq!(r.history.len(), 4);
        assert_eq!(seen, 4);
        assert!(r.loss.is_finite());
        // Cancel at the start point.
        let r = minimize(&x0, &opt, rosenbrock, |_: &Iteration| Control::Stop).unwrap();
        assert_eq!(r.reason, StopReason::Cancelled);
        assert_eq!(r.history.len(), 1);
        assert_eq!(r.x, x0);
    }
}

#[test]
fn max_iterations_respected() {
    let x0 = rosenbrock_start(10);
    for k in [0, 1, 7] {
        let r = lbfgs(&x0, tight_lbfgs(k), rosenbrock, |_| {}).unwrap();
        assert_eq!(r.reason, StopReason::MaxIterations);
        assert_eq!(r.history.len(), k + 1);
        let a = AdamOptions {
            max_iterations: k,
            ..AdamOptions::default()
        };
        let r = adam(&x0, a, rosenbrock, |_| {}).unwrap();
        assert_eq!(r.reason, StopReason::MaxIterations);
        assert_eq!(r.history.len(), k + 1);
        assert_eq!(r.history.last().unwrap().evaluations, k + 1);
    }
}

#[test]
fn adam_stalls_after_patience() {
    // A flat objective never improves: stop after `patience` iterations.
    let flat = |x: &[f64]| -> Eval { Ok((1.0 + 1e-14 * x[0], vec![1.0])) };
    let a = AdamOptions {
        patience: 5,
        relative_tolerance: 1e-6,
        ..AdamOptions::default()
    };
    let r = adam(&[0.0], a, flat, |_| {}).unwrap();
    assert_eq!(r.reason, StopReason::Stalled);
    assert_eq!(r.history.len(), 6);
    // Gradient tolerance at the start stops immediately.
    let r = adam(&[1.0, 1.0], a, rosenbrock, |_| {}).unwrap();
    assert_eq!(r.reason, StopReason::Gradient);
    assert_eq!(r.history.len(), 1);
}

#[test]
fn invalid_options_rejected() {
    let x0 = [0.0, 0.0];
    let bad_lbfgs = LbfgsOptions {
        memory: 0,
        ..LbfgsOptions::default()
    };
    assert!(lbfgs(&x0, bad_lbfgs, rosenbrock, |_| {}).is_err());
    for bad in [
        AdamOptions {
            learning_rate: 0.0,
            ..AdamOptions::default()
        },
        AdamOptions {
            beta1: 1.0,
            ..AdamOptions::default()
        },
        AdamOptions {
            epsilon: -1.0,
            ..AdamOptions::default()
        },
    ] {
        assert!(adam(&x0, bad, rosenbrock, |_| {}).is_err());
    }
    assert!(
        lbfgs(
            &[f64::NAN, 0.0],
            LbfgsOptions::default(),
            rosenbrock,
            |_| {}
        )
        .is_err()
    );
}
