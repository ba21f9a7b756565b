//! `spinloop optimize PROBLEM.toml`: argument parsing, the progress bar and printing; the work
//! is in `spinloop::design::{problem, outputs}`.

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};

use spinloop::design::optimize::{Control, Iteration};
use spinloop::design::outputs::{OutputOptions, write_outputs};
use spinloop::design::problem::{DesignProblem, ProblemSpec, read_waveform};

/// Arguments of `spinloop optimize`.
#[derive(Args)]
pub struct OptimizeArgs {
    /// The problem file (TOML; see the README).
    pub problem: PathBuf,
    /// Output directory.
    #[arg(long, short, default_value = "design-out")]
    pub out: PathBuf,
    /// Override the iteration budget of the problem file.
    #[arg(long)]
    pub iterations: Option<usize>,
    /// Override the optimizer (`lbfgs` or `adam`).
    #[arg(long)]
    pub method: Option<String>,
    /// Warm start from this waveform JSON (as written by a previous run).
    #[arg(long)]
    pub warm_start: Option<PathBuf>,
    /// Grid points per axis of the comparison table (0 skips it).
    #[arg(long, default_value_t = 25)]
    pub compare_grid: usize,
    /// No progress bar (print one line per 10 iterations instead).
    #[arg(long)]
    pub quiet: bool,
}

pub fn optimize(a: OptimizeArgs) -> Result<()> {
    let text = std::fs::read_to_string(&a.problem)
        .with_context(|| format!("reading {}", a.problem.display()))?;
    let mut spec = ProblemSpec::from_toml(&text, &a.problem.display().to_string())?;
    if let Some(n) = a.iterations {
        spec.optimizer.max_iterations = n;
    }
    if let Some(m) = a.method {
        spec.optimizer.method = m;
    }
    let budget = spec.optimizer.max_iterations;
    let mut problem =
        DesignProblem::build(spec).with_context(|| format!("problem {}", a.problem.display()))?;
    println!(
        "{}: {} molecules, pulse {} x {:.1} us (peak <= {:.0} Hz), ensemble {} members x {} positions, {} parameters",
        problem.spec.name,
        problem.spec.molecules.len(),
        problem.param.segments,
        problem.param.dt * 1e6,
        problem.param.peak_hz,
        problem.members.len(),
        problem.positions,
        problem.param.len()
    );
    let x0 = match &a.warm_start {
        Some(p) => problem.warm_start(&read_waveform(p)?)?,
        None => problem.initial_parameters()?,
    };
    let bar = if a.quiet {
        ProgressBar::hidden()
    } else {
        let b = ProgressBar::new(budget as u64);
        b.set_style(
            ProgressStyle::with_template(
                "{spinner} [{elapsed_precise}] {bar:30} {pos}/{len} it  {msg}",
            )
            .context("progress template")?,
        );
        b
    };
    let quiet = a.quiet;
    let result = problem.optimize_from(&x0, |it: &Iteration| {
        bar.set_position(it.iteration as u64);
        bar.set_message(format!("loss {:+.6}  evals {}", it.loss, it.evaluations));
        if quiet && it.iteration.is_multiple_of(10) {
            println!(
                "iter {:>4}  loss {:>+14.6}  |grad| {:>10.3e}  evals {:>4}",
                it.iteration, it.loss, it.grad_norm, it.evaluations
            );
        }
        Control::Continue
    })?;
    bar.finish_and_clear();
    let (paths, report) = write_outputs(
        &mut problem,
        &result,
        &a.out,
        &OutputOptions {
            compare_grid: a.compare_grid,
            ..OutputOptions::default()
        },
    )?;
    println!("{report}");
    println!("wrote:");
    for p in paths {
        println!("  {}", p.display());
    }
    Ok(())
}
