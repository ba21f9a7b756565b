//! Gradient-based optimizers over a flat parameter vector, for pulse design.
//!
//! * [`lbfgs`]: limited-memory BFGS (two-loop recursion) with a strong-Wolfe line search
//!   ([`line_search_wolfe`]: Nocedal & Wright, *Numerical Optimization*, 2nd ed., Alg. 3.5
//!   with the zoom of Alg. 3.6 and safeguarded cubic interpolation). If the Wolfe search cannot
//!   produce a point satisfying both conditions within its budget, it falls back to the best
//!   sufficient-decrease (Armijo) point it has seen, or to Armijo backtracking (halving).
//! * [`adam`]: Adam (Kingma & Ba, 2015), the optimizer of arXiv:2604.01722, kept for comparison.
//!   It returns the best iterate seen, not the last.
//! * [`minimize`]: either of them, chosen by an [`Optimizer`] value.
//!
//! # Determinism, seeds and warm starts
//! Both optimizers are deterministic: they draw no random numbers, and the same start point,
//! options and objective give bit-identical iterates and histories. Any "seed" of a design
//! lives in the start point `x0` (e.g. a randomly perturbed initial pulse drawn by the caller
//! from a seeded generator); a warm start is simply passing a previous result's `x` as `x0`.
//!
//! # Objective contract
//! The objective `f(x)` returns the loss and its gradient (same length as `x`). At the start
//! point a non-finite loss or gradient, or any error, is returned as an `Err`. After the start
//! point a non-finite loss or gradient, or an `Err(PhysicsError::Numerical(..))`, does not fail
//! the run: the optimizer stops with [`StopReason::NonFinite`] and returns the last good point
//! (L-BFGS first treats such a trial point as a too-long step and shrinks it). Other error
//! kinds are propagated.
//!
//! # Progress and cancellation
//! `progress` sees every accepted iterate (including the start, iteration 0) and returns a
//! [`Control`]; [`Control::Stop`] ends the run with [`StopReason::Cancelled`]. A closure
//! returning `()` is accepted too and means [`Control::Continue`].

use std::collections::VecDeque;

use crate::physics::PhysicsError;

/// Options of the strong-Wolfe line search ([`line_search_wolfe`]).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LineSearchOptions {
    /// Sufficient-decrease (Armijo) constant c₁: φ(α) ≤ φ(0) + c₁ α φ′(0). Default 1e-4.
    pub c1: f64,
    /// Curvature constant c₂ of the strong Wolfe condition |φ′(α)| ≤ c₂ |φ′(0)|. Default 0.9
    /// (the usual choice for quasi-Newton methods). Must satisfy 0 < c₁ < c₂ < 1.
    pub c2: f64,
    /// Objective evaluations allowed for bracketing and zoom (Alg. 3.5/3.6). Default 25.
    pub max_evaluations: usize,
    /// Further evaluations allowed for the Armijo backtracking fallback. Default 40.
    pub max_backtracks: usize,
    /// Largest step length α tried (α_max of Alg. 3.5). Default `f64::INFINITY`.
    pub max_step: f64,
}

impl Default for LineSearchOptions {
    fn default() -> Self {
        LineSearchOptions {
            c1: 1e-4,
            c2: 0.9,
            max_evaluations: 25,
            max_backtracks: 40,
            max_step: f64::INFINITY,
        }
    }
}

impl LineSearchOptions {
    fn validate(&self) -> Result<(), PhysicsError> {
        if !(self.c1 > 0.0 && self.c1 < 1.0) {
            return Err(PhysicsError::invalid(
                "LineSearchOptions.c1",
                self.c1,
                "must lie in (0, 1)",
            ));
        }
        if !(self.c2 > self.c1 && self.c2 < 1.0) {
            return Err(PhysicsError::invalid(
                "LineSearchOptions.c2",
                self.c2,
                "must lie in (c1, 1)",
            ));
        }
        if self.max_evaluations == 0 {
            return Err(PhysicsError::invalid(
                "LineSearchOptions.max_evaluations",
                0,
                "must be at least 1",
            ));
        }
        if self.max_step.is_nan() || self.max_step <= 0.0 {
            return Err(PhysicsError::invalid(
                "LineSearchOptions.max_step",
                self.max_step,
                "must be > 0",
            ));
        }
        Ok(())
    }
}

/// Stop rules, memory and line search of L-BFGS.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LbfgsOptions {
    /// Maximum iterations (accepted steps). Default 100.
    pub max_iterations: usize,
    /// History length (number of (s, y) pairs), at least 1. Default 10.
    pub memory: usize,
    /// Stop when ‖∇L‖∞ falls below this. Default 1e-8.
    pub gradient_tolerance: f64,
    /// Stop when the relative decrease of L over one iteration, |ΔL| / |L|, falls below this.
    /// Default 1e-10.
    pub relative_tolerance: f64,
    /// The line search. Default [`LineSearchOptions::default`] (c₁ = 1e-4, c₂ = 0.9).
    pub line_search: LineSearchOptions,
}

impl Default for LbfgsOptions {
    fn default() -> Self {
        LbfgsOptions {
            max_iterations: 100,
            memory: 10,
            gradient_tolerance: 1e-8,
            relative_tolerance: 1e-10,
            line_search: LineSearchOptions::default(),
        }
    }
}

/// Options of Adam. Defaults: 1000 iterations, learning rate 1e-3, β₁ = 0.9, β₂ = 0.999,
/// ε = 1e-8 (Kingma & Ba), gradient tolerance 1e-8, relative tolerance 1e-6 over a patience
/// of 100 iterations.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AdamOptions {
    /// Maximum iterations (one objective evaluation each).
    pub max_iterations: usize,
    /// Learning rate (step size) α.
    pub learning_rate: f64,
    /// Exponential decay of the first-moment estimate, in [0, 1).
    pub beta1: f64,
    /// Exponential decay of the second-moment estimate, in [0, 1).
    pub beta2: f64,
    /// Added to √v̂ in the denominator of the update.
    pub epsilon: f64,
    /// Stop when ‖∇L‖∞ at the current iterate falls below this.
    pub gradient_tolerance: f64,
    /// An iterate counts as an improvement when its loss is below the reference loss (the
    /// best loss at the last improvement) by more than `relative_tolerance` × |reference|.
    pub relative_tolerance: f64,
    /// Stop after this many consecutive iterations without an improvement; 0 disables the rule.
    pub patience: usize,
}

impl Default for AdamOptions {
    fn default() -> Self {
        AdamOptions {
            max_iterations: 1000,
            learning_rate: 1e-3,
            beta1: 0.9,
            beta2: 0.999,
            epsilon: 1e-8,
            gradient_tolerance: 1e-8,
            relative_tolerance: 1e-6,
            patience: 100,
        }
    }
}

/// An optimizer and its options, for [`minimize`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Optimizer {
    /// L-BFGS with a strong-Wolfe line search ([`lbfgs`]).
    Lbfgs(LbfgsOptions),
    /// Adam ([`adam`]).
    Adam(AdamOptions),
}

impl Default for Optimizer {
    fn default() -> Self {
        Optimizer::Lbfgs(LbfgsOptions::default())
    }
}

/// What the `progress` callback asks the optimizer to do next.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Control {
    /// Keep going.
    #[default]
    Continue,
    /// Stop now; the result carries [`StopReason::Cancelled`].
    Stop,
}

/// A callback returning `()` means "continue", so plain logging closures work unchanged.
impl From<()> for Control {
    fn from(_: ()) -> Self {
        Control::Continue
    }
}

/// Why an optimization stopped.
#[derive(Debug, Clone, PartialEq)]
pub enum StopReason {
    /// Gradient ∞-norm below tolerance.
    Gradient,
    /// Relative decrease below tolerance (L-BFGS: over one iteration; Adam: no improvement
    /// over `patience` iterations).
    Stalled,
    /// Iteration budget used.
    MaxIterations,
    /// The line search found no sufficient decrease along a descent direction.
    LineSearch,
    /// The objective returned a non-finite loss or gradient (or a numerical error) after the
    /// start point; the message says at which iteration and why. The result holds the last
    /// good point (Adam: the best point).
    NonFinite(String),
    /// The `progress` callback returned [`Control::Stop`].
    Cancelled,
}

/// Record of one iteration.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Iteration {
    /// Iteration number (0 = start).
    pub iteration: usize,
    /// Loss at this iterate.
    pub loss: f64,
    /// ‖∇L‖₂ at this iterate.
    pub grad_norm: f64,
    /// Objective evaluations so far (including the start point).
    pub evaluations: usize,
    /// Step: L-BFGS, the accepted step length α along the search direction; Adam, the learning
    /// rate. 0 at iteration 0.
    pub step: f64,
}

/// Result of an optimization.
#[derive(Debug, Clone)]
pub struct OptimizeResult {
    /// Final parameters: L-BFGS, the last accepted iterate (which has the lowest loss, since
    /// every accepted step decreases it); Adam, the best iterate seen.
    pub x: Vec<f64>,
    /// Loss at `x`.
    pub loss: f64,
    /// History, one entry per accepted iterate (entry 0 is the start point).
    pub history: Vec<Iteration>,
    /// Why it stopped.
    pub reason: StopReason,
}

/// A point of the line search: step α, φ(α) = L(x + α d) and φ′(α) = ∇L(x + α d) · d.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LineSearchPoint {
    /// Step length α.
    pub alpha: f64,
    /// φ(α).
    pub value: f64,
    /// φ′(α).
    pub slope: f64,
}

/// How a line search ended.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum LineSearchOutcome {
    /// A step satisfying the strong Wolfe conditions.
    StrongWolfe(LineSearchPoint),
    /// Fallback: the bracketing/zoom phase did not find a strong-Wolfe step within its budget;
    /// this step satisfies the sufficient-decrease (Armijo) condition only.
    Armijo(LineSearchPoint),
    /// Finite trial points were found, but none with sufficient decrease.
    NoDecrease,
    /// Every trial point was non-finite (or raised a numerical error).
    NonFinite,
}

/// Result of [`line_search_wolfe`].
#[derive(Debug, Clone, PartialEq)]
pub struct LineSearchResult {
    /// How it ended (and the accepted point, if any).
    pub outcome: LineSearchOutcome,
    /// Evaluations of φ made.
    pub evaluations: usize,
    /// How many of them were non-finite (or numerical errors).
    pub non_finite: usize,
    /// Why the last non-finite trial was rejected, e.g. `"loss is NaN at step 2"`.
    pub last_non_finite: Option<String>,
}

fn dot(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

fn inf_norm(g: &[f64]) -> f64 {
    g.iter().fold(0.0f64, |m, v| m.max(v.abs()))
}

/// Minimizer of the cubic interpolating (a, fa, da) and (b, fb, db) (Nocedal & Wright eq.
/// 3.59), safeguarded: if the cubic has no minimizer, the quadratic through fa, da, fb; if that
/// is not finite or lies outside the middle 80 % of the interval, the midpoint.
fn interpolate(a: f64, fa: f64, da: f64, b: f64, fb: f64, db: f64) -> f64 {
    let (lo, hi) = (a.min(b), a.max(b));
    let width = hi - lo;
    let d1 = da + db - 3.0 * (fa - fb) / (a - b);
    let disc = d1 * d1 - da * db;
    let mut candidate = if disc >= 0.0 {
        let d2 = (b - a).signum() * disc.sqrt();
        b - (b - a) * (db + d2 - d1) / (db - da + 2.0 * d2)
    } else {
        f64::NAN
    };
    if !candidate.is_finite() {
        let h = b - a;
        candidate = a - da * h * h / (2.0 * (fb - fa - da * h));
    }
    if candidate.is_finite() && candidate >= lo + 0.1 * width && candidate <= hi - 0.1 * width {
        candidate
    } else {
        lo + 0.5 * width
    }
}

/// One trial of the line search, classified.
enum Trial {
    Finite(LineSearchPoint),
    NonFinite,
}

/// Strong-Wolfe line search along one direction: finds α > 0 with
/// φ(α) ≤ φ(0) + c₁ α φ′(0) and |φ′(α)| ≤ c₂ |φ′(0)|, by bracketing (Nocedal & Wright
/// Alg. 3.5, doubling the step while φ keeps decreasing steeply) and zoom (Alg. 3.6, safeguarded
/// cubic interpolation). `phi(α)` returns (φ(α), φ′(α)); `phi0`, `dphi0` are φ(0), φ′(0) (which
/// must be negative), `alpha_init` the first trial step.
///
/// A trial with a non-finite value or slope, or for which `phi` returns
/// `Err(PhysicsError::Numerical(..))`, counts as "step too long": the step is shrunk toward the
/// last finite one (and never grows past it again). Other errors are returned.
///
/// Fallback: if bracketing/zoom do not produce a strong-Wolfe step within
/// `options.max_evaluations` evaluations (e.g. the zoom interval collapses in round-off, or the
/// step keeps growing), the lowest trial point seen that satisfies sufficient decrease is
/// returned as [`LineSearchOutcome::Armijo`]; if there is none, Armijo backtracking halves the
/// smallest step tried for up to `options.max_backtracks` more evaluations. Failing that, the
/// outcome is [`LineSearchOutcome::NoDecrease`], or [`LineSearchOutcome::NonFinite`] when no
/// finite trial point was found at all.
pub fn line_search_wolfe(
    mut phi: impl FnMut(f64) -> Result<(f64, f64), PhysicsError>,
    phi0: f64,
    dphi0: f64,
    alpha_init: f64,
    options: &LineSearchOptions,
) -> Result<LineSearchResult, PhysicsError> {
    options.validate()?;
    if !phi0.is_finite() {
        return Err(PhysicsError::invalid(
            "line_search_wolfe.phi0",
            phi0,
            "must be finite",
        ));
    }
    if !(dphi0 < 0.0 && dphi0.is_finite()) {
        return Err(PhysicsError::invalid(
            "line_search_wolfe.dphi0",
            dphi0,
            "must be finite and < 0 (a descent direction)",
        ));
    }
    if !(alpha_init > 0.0 && alpha_init.is_finite()) {
        return Err(PhysicsError::invalid(
            "line_search_wolfe.alpha_init",
            alpha_init,
            "must be finite and > 0",
        ));
    }
    let (c1, c2) = (options.c1, options.c2);
    // Sufficient decrease; the strict `< phi0` rejects steps so short that φ(α) rounds to φ(0)
    // (where c₁ α φ′(0) is below the round-off of φ(0)).
    let armijo = |p: &LineSearchPoint| p.value <= phi0 + c1 * p.alpha * dphi0 && p.value < phi0;
    let curvature = |p: &LineSearchPoint| p.slope.abs() <= -c2 * dphi0;

    let mut evaluations = 0usize;
    let mut non_finite = 0usize;
    let mut last_non_finite: Option<String> = None;
    let mut any_finite = false;
    // Lowest finite trial satisfying sufficient decrease, and the smallest step tried.
    let mut best_armijo: Option<LineSearchPoint> = None;
    let mut smallest_tried = f64::INFINITY;

    let mut eval = |alpha: f64,
                    evaluations: &mut usize,
                    non_finite: &mut usize,
                    last_non_finite: &mut Option<String>|
     -> Result<Trial, PhysicsError> {
        *evaluations += 1;
        let why = match phi(alpha) {
            Ok((value, slope)) if value.is_finite() && slope.is_finite() => {
                return Ok(Trial::Finite(LineSearchPoint {
                    alpha,
                    value,
                    slope,
                }));
            }
            Ok((value, slope)) if value.is_finite() => {
                format!("gradient (directional derivative {slope}) is not finite at step {alpha:e}")
            }
            Ok((value, _)) => format!("loss is {value} at step {alpha:e}"),
            Err(e @ PhysicsError::Numerical(_)) => format!("{e} at step {alpha:e}"),
            Err(e) => return Err(e),
        };
        *non_finite += 1;
        *last_non_finite = Some(why);
        Ok(Trial::NonFinite)
    };

    let note = |p: &LineSearchPoint, best: &mut Option<LineSearchPoint>| {
        if armijo(p) && best.is_none_or(|b| p.value < b.value) {
            *best = Some(*p);
        }
    };

    // Bracketing phase (Alg. 3.5).
    let origin = LineSearchPoint {
        alpha: 0.0,
        value: phi0,
        slope: dphi0,
    };
    let mut prev = origin;
    // Smallest step known to give a non-finite value: never step beyond it again.
    let mut ceiling = options.max_step;
    let mut ceiling_is_bad = false;
    let mut alpha = alpha_init.min(options.max_step);
    let mut first = true;
    // Bracket [lo, hi] for the zoom: lo satisfies sufficient decrease with the lowest value.
    let mut bracket: Option<(LineSearchPoint, LineSearchPoint)> = None;
    let mut accepted: Option<LineSearchOutcome> = None;
    while evaluations < options.max_evaluations {
        smallest_tried = smallest_tried.min(alpha);
        let trial = eval(
            alpha,
            &mut evaluations,
            &mut non_finite,
            &mut last_non_finite,
        )?;
        let p = match trial {
            Trial::NonFinite => {
                ceiling = alpha;
                ceiling_is_bad = true;
                alpha = prev.alpha + 0.5 * (alpha - prev.alpha);
                if alpha <= prev.alpha {
                    break;
                }
                continue;
            }
            Trial::Finite(p) => p,
        };
        any_finite = true;
        note(&p, &mut best_armijo);
        if !armijo(&p) || (!first && p.value >= prev.value) {
            bracket = Some((prev, p));
            break;
        }
        if curvature(&p) {
            accepted = Some(LineSearchOutcome::StrongWolfe(p));
            break;
        }
        if p.slope >= 0.0 {
            bracket = Some((p, prev));
            break;
        }
        first = false;
        prev = p;
        if alpha >= ceiling {
            // At α_max (or just below a non-finite region) and still descending steeply.
            break;
        }
        alpha = if ceiling_is_bad {
            alpha + 0.5 * (ceiling - alpha)
        } else {
            (2.0 * alpha).min(ceiling)
        };
    }

    // Zoom phase (Alg. 3.6). `hi_finite`: whether hi carries a finite value and slope.
    if let (None, Some((mut lo, mut hi))) = (accepted, bracket) {
        let mut hi_finite = true;
        while evaluations < options.max_evaluations {
            let width = (hi.alpha - lo.alpha).abs();
            if width <= 4.0 * f64::EPSILON * hi.alpha.abs().max(lo.alpha.abs()) {
                break;
            }
            let alpha_j = if hi_finite {
                interpolate(lo.alpha, lo.value, lo.slope, hi.alpha, hi.value, hi.slope)
            } else {
                0.5 * (lo.alpha + hi.alpha)
            };
            if alpha_j == lo.alpha || alpha_j == hi.alpha {
                break;
            }
            smallest_tried = smallest_tried.min(alpha_j);
            let trial = eval(
                alpha_j,
                &mut evaluations,
                &mut non_finite,
                &mut last_non_finite,
            )?;
            let p = match trial {
                Trial::NonFinite => {
                    hi = LineSearchPoint {
                        alpha: alpha_j,
                        value: f64::NAN,
                        slope: f64::NAN,
                    };
                    hi_finite = false;
                    continue;
                }
                Trial::Finite(p) => p,
            };
            any_finite = true;
            note(&p, &mut best_armijo);
            if !armijo(&p) || p.value >= lo.value {
                hi = p;
                hi_finite = true;
            } else {
                if curvature(&p) {
                    accepted = Some(LineSearchOutcome::StrongWolfe(p));
                    break;
                }
                if p.slope * (hi.alpha - lo.alpha) >= 0.0 {
                    hi = lo;
                    hi_finite = true;
                }
                lo = p;
            }
        }
    }

    // Fallbacks: best sufficient-decrease point seen, then Armijo backtracking.
    if accepted.is_none() {
        if let Some(p) = best_armijo {
            accepted = Some(LineSearchOutcome::Armijo(p));
        } else {
            let mut alpha = 0.5 * smallest_tried.min(alpha_init);
            for _ in 0..options.max_backtracks {
                let trial = eval(
                    alpha,
                    &mut evaluations,
                    &mut non_finite,
                    &mut last_non_finite,
                )?;
                if let Trial::Finite(p) = trial {
                    any_finite = true;
                    if armijo(&p) {
                        accepted = Some(LineSearchOutcome::Armijo(p));
                        break;
                    }
                }
                alpha *= 0.5;
            }
        }
    }
    let outcome = match accepted {
        Some(o) => o,
        None if any_finite => LineSearchOutcome::NoDecrease,
        None => LineSearchOutcome::NonFinite,
    };
    Ok(LineSearchResult {
        outcome,
        evaluations,
        non_finite,
        last_non_finite,
    })
}

/// Evaluates `f` at the start point and checks it: any error, a wrong gradient length or a
/// non-finite loss or gradient is an `Err`.
fn evaluate_start(
    x0: &[f64],
    f: &mut impl FnMut(&[f64]) -> Result<(f64, Vec<f64>), PhysicsError>,
    who: &str,
) -> Result<(f64, Vec<f64>), PhysicsError> {
    if let Some(i) = x0.iter().position(|v| !v.is_finite()) {
        return Err(PhysicsError::invalid(
            format!("{who}.x0[{i}]"),
            x0[i],
            "must be finite",
        ));
    }
    let (fx, g) = f(x0)?;
    check_gradient_len(who, x0.len(), &g)?;
    if let Some(why) = non_finite_reason(fx, &g) {
        return Err(PhysicsError::Numerical(format!(
            "{who}: at the start point the {why}"
        )));
    }
    Ok((fx, g))
}

fn check_gradient_len(who: &str, n: usize, g: &[f64]) -> Result<(), PhysicsError> {
    if g.len() != n {
        return Err(PhysicsError::SizeMismatch {
            what: format!("{who}: gradient returned by the objective"),
            expected: n,
            got: g.len(),
        });
    }
    Ok(())
}

/// Why (loss, gradient) is not finite, or None.
fn non_finite_reason(fx: f64, g: &[f64]) -> Option<String> {
    if !fx.is_finite() {
        return Some(format!("loss is {fx}"));
    }
    g.iter()
        .position(|v| !v.is_finite())
        .map(|i| format!("gradient is {} at index {i}", g[i]))
}

fn stop_requested<R: Into<Control>>(
    progress: &mut impl FnMut(&Iteration) -> R,
    rec: &Iteration,
) -> bool {
    progress(rec).into() == Control::Stop
}

/// Minimizes `f` (returning loss and gradient) from `x0` with L-BFGS and a strong-Wolfe line
/// search ([`line_search_wolfe`], initial step 1; on the first iteration, and after a restart,
/// the steepest-descent direction is scaled to unit length, so the first trial moves `x` by 1
/// in the 2-norm). `progress` sees every accepted iterate and may cancel.
///
/// Stops on: ‖∇L‖∞ < `gradient_tolerance` ([`StopReason::Gradient`]); relative decrease over one
/// iteration < `relative_tolerance` ([`StopReason::Stalled`]); `max_iterations` accepted steps
/// ([`StopReason::MaxIterations`]); a failed line search ([`StopReason::LineSearch`]); no
/// finite trial point along the search direction ([`StopReason::NonFinite`], with the last good
/// point); or [`Control::Stop`] ([`StopReason::Cancelled`]).
///
/// # Errors
/// Invalid options or start point; an error, or a non-finite loss or gradient, at `x0`; a
/// gradient of the wrong length; errors of `f` other than [`PhysicsError::Numerical`].
pub fn lbfgs<R: Into<Control>>(
    x0: &[f64],
    options: LbfgsOptions,
    mut f: impl FnMut(&[f64]) -> Result<(f64, Vec<f64>), PhysicsError>,
    mut progress: impl FnMut(&Iteration) -> R,
) -> Result<OptimizeResult, PhysicsError> {
    if options.memory == 0 {
        return Err(PhysicsError::invalid(
            "LbfgsOptions.memory",
            0,
            "must be at least 1",
        ));
    }
    options.line_search.validate()?;
    let n = x0.len();
    let mut x = x0.to_vec();
    let (mut fx, mut g) = evaluate_start(x0, &mut f, "lbfgs")?;
    let mut evals = 1;
    // (s, y, ρ = 1 / y·s), oldest first.
    let mut pairs: VecDeque<(Vec<f64>, Vec<f64>, f64)> = VecDeque::new();
    let mut history = vec![Iteration {
        iteration: 0,
        loss: fx,
        grad_norm: dot(&g, &g).sqrt(),
        evaluations: evals,
        step: 0.0,
    }];
    if stop_requested(&mut progress, &history[0]) {
        return Ok(OptimizeResult {
            x,
            loss: fx,
            history,
            reason: StopReason::Cancelled,
        });
    }
    let mut reason = StopReason::MaxIterations;
    for it in 1..=options.max_iterations {
        if inf_norm(&g) < options.gradient_tolerance {
            reason = StopReason::Gradient;
            break;
        }
        // Two-loop recursion: q ← H g.
        let mut q = g.clone();
        let mut alpha = vec![0.0; pairs.len()];
        for (i, (s, y, rho)) in pairs.iter().enumerate().rev() {
            alpha[i] = rho * dot(s, &q);
            for (qj, yj) in q.iter_mut().zip(y) {
                *qj -= alpha[i] * yj;
            }
        }
        let gamma = match pairs.back() {
            Some((s, y, _)) => dot(s, y) / dot(y, y),
            None => 1.0 / dot(&g, &g).sqrt().max(1e-300),
        };
        for qj in q.iter_mut() {
            *qj *= gamma;
        }
        for (i, (s, y, rho)) in pairs.iter().enumerate() {
            let beta = rho * dot(y, &q);
            for (qj, sj) in q.iter_mut().zip(s) {
                *qj += (alpha[i] - beta) * sj;
            }
        }
        let mut dir: Vec<f64> = q.iter().map(|v| -v).collect();
        let mut slope = dot(&g, &dir);
        if !(slope < 0.0 && slope.is_finite()) {
            // Not a descent direction: restart from (unit-length) steepest descent.
            pairs.clear();
            let scale = 1.0 / dot(&g, &g).sqrt().max(1e-300);
            dir = g.iter().map(|v| -v * scale).collect();
            slope = dot(&g, &dir);
            if slope.is_nan() || slope >= 0.0 {
                // Zero gradient (with tolerance 0), or a norm that over/underflows.
                reason = if g.iter().all(|&v| v == 0.0) {
                    StopReason::Gradient
                } else {
                    StopReason::LineSearch
                };
                break;
            }
        }
        // Strong-Wolfe line search; trial points are cached so the accepted one is reused.
        let mut trials: Vec<(f64, Vec<f64>, f64, Vec<f64>)> = Vec::new();
        let search = line_search_wolfe(
            |a| {
                let xn: Vec<f64> = x.iter().zip(&dir).map(|(xi, d)| xi + a * d).collect();
                let (fv, gv) = f(&xn)?;
                check_gradient_len("lbfgs", n, &gv)?;
                if !fv.is_finite() || gv.iter().any(|v| !v.is_finite()) {
                    return Ok((fv, f64::NAN));
                }
                let dv = dot(&gv, &dir);
                trials.push((a, xn, fv, gv));
                Ok((fv, dv))
            },
            fx,
            slope,
            1.0,
            &options.line_search,
        )?;
        evals += search.evaluations;
        let point = match search.outcome {
            LineSearchOutcome::StrongWolfe(p) | LineSearchOutcome::Armijo(p) => p,
            LineSearchOutcome::NoDecrease => {
                reason = StopReason::LineSearch;
                break;
            }
            LineSearchOutcome::NonFinite => {
                reason = StopReason::NonFinite(format!(
                    "iteration {it}: no finite trial point along the search direction in {} \
                     evaluations (last: {})",
                    search.evaluations,
                    search
                        .last_non_finite
                        .as_deref()
                        .unwrap_or("non-finite value")
                ));
                break;
            }
        };
        let Some(idx) = trials
            .iter()
            .position(|t| t.0.to_bits() == point.alpha.to_bits())
        else {
            return Err(PhysicsError::Numerical(
                "lbfgs: accepted line-search step was not evaluated".into(),
            ));
        };
        let (_, xn, fnew, gnew) = trials.swap_remove(idx);
        let s: Vec<f64> = xn.iter().zip(&x).map(|(a, b)| a - b).collect();
        let y: Vec<f64> = gnew.iter().zip(&g).map(|(a, b)| a - b).collect();
        let sy = dot(&s, &y);
        if sy > 1e-12 * dot(&y, &y).sqrt() * dot(&s, &s).sqrt() {
            pairs.push_back((s, y, 1.0 / sy));
            if pairs.len() > options.memory {
                pairs.pop_front();
            }
        }
        let rel = (fx - fnew).abs() / fx.abs().max(1e-300);
        x = xn;
        fx = fnew;
        g = gnew;
        let rec = Iteration {
            iteration: it,
            loss: fx,
            grad_norm: dot(&g, &g).sqrt(),
            evaluations: evals,
            step: point.alpha,
        };
        history.push(rec);
        if stop_requested(&mut progress, &rec) {
            reason = StopReason::Cancelled;
            break;
        }
        if rel < options.relative_tolerance {
            reason = StopReason::Stalled;
            break;
        }
    }
    debug_assert_eq!(x.len(), n);
    Ok(OptimizeResult {
        x,
        loss: fx,
        history,
        reason,
    })
}

/// Minimizes `f` (returning loss and gradient) from `x0` with Adam (Kingma & Ba 2015,
/// bias-corrected moments): m ← β₁m + (1−β₁)g, v ← β₂v + (1−β₂)g², x ← x − α m̂ / (√v̂ + ε).
/// One objective evaluation per iteration. Returns the best iterate seen (lowest loss) and its
/// loss, whatever the stop reason. `progress` sees every iterate and may cancel.
///
/// Stops on: `max_iterations` ([`StopReason::MaxIterations`]); ‖∇L‖∞ < `gradient_tolerance` at
/// the current iterate ([`StopReason::Gradient`]); `patience` consecutive iterations without
/// improving the reference loss by more than `relative_tolerance` (relative;
/// [`StopReason::Stalled`]); a non-finite loss or gradient, or a numerical error
/// ([`StopReason::NonFinite`]); or [`Control::Stop`] ([`StopReason::Cancelled`]).
///
/// # Errors
/// Invalid options or start point; an error, or a non-finite loss or gradient, at `x0`; a
/// gradient of the wrong length; errors of `f` other than [`PhysicsError::Numerical`].
pub fn adam<R: Into<Control>>(
    x0: &[f64],
    options: AdamOptions,
    mut f: impl FnMut(&[f64]) -> Result<(f64, Vec<f64>), PhysicsError>,
    mut progress: impl FnMut(&Iteration) -> R,
) -> Result<OptimizeResult, PhysicsError> {
    if !(options.learning_rate > 0.0 && options.learning_rate.is_finite()) {
        return Err(PhysicsError::invalid(
            "AdamOptions.learning_rate",
            options.learning_rate,
            "must be finite and > 0",
        ));
    }
    for (name, b) in [("beta1", options.beta1), ("beta2", options.beta2)] {
        if !(0.0..1.0).contains(&b) {
            return Err(PhysicsError::invalid(
                format!("AdamOptions.{name}"),
                b,
                "must lie in [0, 1)",
            ));
        }
    }
    if !(options.epsilon > 0.0 && options.epsilon.is_finite()) {
        return Err(PhysicsError::invalid(
            "AdamOptions.epsilon",
            options.epsilon,
            "must be finite and > 0",
        ));
    }
    let n = x0.len();
    let mut x = x0.to_vec();
    let (mut fx, mut g) = evaluate_start(x0, &mut f, "adam")?;
    let mut evals = 1;
    let mut best_x = x.clone();
    let mut best_loss = fx;
    let mut reference = fx;
    let mut since_improvement = 0usize;
    let mut m = vec![0.0; n];
    let mut v = vec![0.0; n];
    let (b1, b2) = (options.beta1, options.beta2);
    let (mut b1t, mut b2t) = (1.0f64, 1.0f64);
    let mut history = vec![Iteration {
        iteration: 0,
        loss: fx,
        grad_norm: dot(&g, &g).sqrt(),
        evaluations: evals,
        step: 0.0,
    }];
    let mut reason = StopReason::MaxIterations;
    if stop_requested(&mut progress, &history[0]) {
        reason = StopReason::Cancelled;
    } else {
        for it in 1..=options.max_iterations {
            if inf_norm(&g) < options.gradient_tolerance {
                reason = StopReason::Gradient;
                break;
            }
            b1t *= b1;
            b2t *= b2;
            for i in 0..n {
                m[i] = b1 * m[i] + (1.0 - b1) * g[i];
                v[i] = b2 * v[i] + (1.0 - b2) * g[i] * g[i];
                let mhat = m[i] / (1.0 - b1t);
                let vhat = v[i] / (1.0 - b2t);
                x[i] -= options.learning_rate * mhat / (vhat.sqrt() + options.epsilon);
            }
            evals += 1;
            let (fnew, gnew) = match f(&x) {
                Ok(r) => r,
                Err(PhysicsError::Numerical(msg)) => {
                    reason = StopReason::NonFinite(format!(
                        "iteration {it}: numerical failure in {msg}"
                    ));
                    break;
                }
                Err(e) => return Err(e),
            };
            check_gradient_len("adam", n, &gnew)?;
            if let Some(why) = non_finite_reason(fnew, &gnew) {
                reason = StopReason::NonFinite(format!("iteration {it}: {why}"));
                break;
            }
            fx = fnew;
            g = gnew;
            if fx < best_loss {
                best_loss = fx;
                best_x.copy_from_slice(&x);
            }
            let rec = Iteration {
                iteration: it,
                loss: fx,
                grad_norm: dot(&g, &g).sqrt(),
                evaluations: evals,
                step: options.learning_rate,
            };
            history.push(rec);
            if stop_requested(&mut progress, &rec) {
                reason = StopReason::Cancelled;
                break;
            }
            if fx < reference - options.relative_tolerance * reference.abs() {
                reference = fx;
                since_improvement = 0;
            } else {
                since_improvement += 1;
                if options.patience > 0 && since_improvement >= options.patience {
                    reason = StopReason::Stalled;
                    break;
                }
            }
        }
    }
    Ok(OptimizeResult {
        x: best_x,
        loss: best_loss,
        history,
        reason,
    })
}

/// Minimizes `f` from `x0` with the chosen optimizer ([`lbfgs`] or [`adam`]); same contract
/// as those. Deterministic: the start point carries any seed, and a warm start is a previous
/// result's `x` passed as `x0`.
///
/// # Errors
/// As [`lbfgs`] / [`adam`].
pub fn minimize<R: Into<Control>>(
    x0: &[f64],
    optimizer: &Optimizer,
    f: impl FnMut(&[f64]) -> Result<(f64, Vec<f64>), PhysicsError>,
    progress: impl FnMut(&Iteration) -> R,
) -> Result<OptimizeResult, PhysicsError> {
    match optimizer {
        Optimizer::Lbfgs(o) => lbfgs(x0, *o, f, progress),
        Optimizer::Adam(o) => adam(x0, *o, f, progress),
    }
}
