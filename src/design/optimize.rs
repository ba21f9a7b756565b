//! Gradient-based optimizers over a flat parameter vector: L-BFGS with a backtracking
//! (Armijo) line search. Deterministic: same start, same iterates.

use crate::physics::PhysicsError;

/// Stop rules and memory of L-BFGS.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LbfgsOptions {
    /// Maximum iterations.
    pub max_iterations: usize,
    /// History length.
    pub memory: usize,
    /// Stop when ‖∇L‖∞ falls below this.
    pub gradient_tolerance: f64,
    /// Stop when the relative decrease of L over one iteration falls below this.
    pub relative_tolerance: f64,
}

impl Default for LbfgsOptions {
    fn default() -> Self {
        LbfgsOptions {
            max_iterations: 100,
            memory: 10,
            gradient_tolerance: 1e-8,
            relative_tolerance: 1e-10,
        }
    }
}

/// Why an optimization stopped.
#[derive(Debug, Clone, PartialEq)]
pub enum StopReason {
    /// Gradient below tolerance.
    Gradient,
    /// Relative decrease below tolerance.
    Stalled,
    /// Iteration budget used.
    MaxIterations,
    /// The line search found no decrease along a descent direction.
    LineSearch,
}

/// Record of one iteration.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Iteration {
    /// Iteration number (0 = start).
    pub iteration: usize,
    /// Loss.
    pub loss: f64,
    /// ‖∇L‖₂.
    pub grad_norm: f64,
    /// Objective evaluations so far.
    pub evaluations: usize,
}

/// Result of an optimization.
#[derive(Debug, Clone)]
pub struct OptimizeResult {
    /// Best parameters.
    pub x: Vec<f64>,
    /// Loss at `x`.
    pub loss: f64,
    /// History, one entry per accepted iterate.
    pub history: Vec<Iteration>,
    /// Why it stopped.
    pub reason: StopReason,
}

fn dot(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

/// Minimizes `f` (returning value and gradient) from `x0` with L-BFGS. `progress` sees every
/// accepted iterate. A non-finite value or gradient stops with an error that keeps the last
/// good point in the message.
pub fn lbfgs(
    x0: &[f64],
    options: LbfgsOptions,
    mut f: impl FnMut(&[f64]) -> Result<(f64, Vec<f64>), PhysicsError>,
    mut progress: impl FnMut(&Iteration),
) -> Result<OptimizeResult, PhysicsError> {
    let n = x0.len();
    let mut x = x0.to_vec();
    let (mut fx, mut g) = f(&x)?;
    let mut evals = 1;
    let check = |v: f64, g: &[f64]| -> Result<(), PhysicsError> {
        if !v.is_finite() || g.iter().any(|x| !x.is_finite()) {
            return Err(PhysicsError::Numerical(
                "optimizer: non-finite loss or gradient".into(),
            ));
        }
        Ok(())
    };
    check(fx, &g)?;
    let mut s_hist: Vec<Vec<f64>> = Vec::new();
    let mut y_hist: Vec<Vec<f64>> = Vec::new();
    let mut history = vec![Iteration {
        iteration: 0,
        loss: fx,
        grad_norm: dot(&g, &g).sqrt(),
        evaluations: evals,
    }];
    progress(&history[0]);
    let mut reason = StopReason::MaxIterations;
    for it in 1..=options.max_iterations {
        if g.iter().fold(0.0f64, |m, v| m.max(v.abs())) < options.gradient_tolerance {
            reason = StopReason::Gradient;
            break;
        }
        // Two-loop recursion.
        let mut q = g.clone();
        let k = s_hist.len();
        let mut alpha = vec![0.0; k];
        for i in (0..k).rev() {
            let rho = 1.0 / dot(&y_hist[i], &s_hist[i]);
            alpha[i] = rho * dot(&s_hist[i], &q);
            for (qj, yj) in q.iter_mut().zip(&y_hist[i]) {
                *qj -= alpha[i] * yj;
            }
        }
        let gamma = if k > 0 {
            dot(&s_hist[k - 1], &y_hist[k - 1]) / dot(&y_hist[k - 1], &y_hist[k - 1])
        } else {
            1.0 / dot(&g, &g).sqrt().max(1e-300)
        };
        for qj in q.iter_mut() {
            *qj *= gamma;
        }
        for i in 0..k {
            let rho = 1.0 / dot(&y_hist[i], &s_hist[i]);
            let beta = rho * dot(&y_hist[i], &q);
            for (qj, sj) in q.iter_mut().zip(&s_hist[i]) {
                *qj += (alpha[i] - beta) * sj;
            }
        }
        let mut dir: Vec<f64> = q.iter().map(|v| -v).collect();
        let mut slope = dot(&g, &dir);
        if slope >= 0.0 {
            // Not a descent direction: restart from steepest descent.
            s_hist.clear();
            y_hist.clear();
            let scale = 1.0 / dot(&g, &g).sqrt().max(1e-300);
            dir = g.iter().map(|v| -v * scale).collect();
            slope = dot(&g, &dir);
        }
        // Backtracking Armijo line search.
        let mut step = 1.0;
        let mut accepted = None;
        for _ in 0..40 {
            let xn: Vec<f64> = x.iter().zip(&dir).map(|(a, d)| a + step * d).collect();
            let (fnew, gnew) = f(&xn)?;
            evals += 1;
            if fnew.is_finite()
                && gnew.iter().all(|v| v.is_finite())
                && fnew <= fx + 1e-4 * step * slope
            {
                accepted = Some((xn, fnew, gnew));
                break;
            }
            step *= 0.5;
        }
        let Some((xn, fnew, gnew)) = accepted else {
            reason = StopReason::LineSearch;
            break;
        };
        let s: Vec<f64> = xn.iter().zip(&x).map(|(a, b)| a - b).collect();
        let y: Vec<f64> = gnew.iter().zip(&g).map(|(a, b)| a - b).collect();
        if dot(&s, &y) > 1e-12 * dot(&y, &y).sqrt() * dot(&s, &s).sqrt() {
            s_hist.push(s);
            y_hist.push(y);
            if s_hist.len() > options.memory {
                s_hist.remove(0);
                y_hist.remove(0);
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
        };
        progress(&rec);
        history.push(rec);
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
