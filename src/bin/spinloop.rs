//! spinloop: the command-line tool. The main job (`run`: the closed loop against a built-in
//! simulated console), the daemon's client (`sessions`, `consoles`), and the offline physics
//! and spectroscopy tools (`golden`, `bench`, `molecules`, `simulate`, `basis`, `fit`,
//! `compare`, `optimize`).

#[path = "spinloop/client.rs"]
mod client;
#[path = "spinloop/design_cmd.rs"]
mod design_cmd;
#[path = "spinloop/offline.rs"]
mod offline;
#[path = "spinloop/plots.rs"]
mod plots;

use anyhow::{Context, Result, bail};
use clap::{Parser, Subcommand, ValueEnum};

use spinloop::bench::{basis_bench, golden_bench};
use spinloop::design::golden::{self, Variant};
use spinloop::design::optimize::{LbfgsOptions, lbfgs};
use spinloop::physics::{GradientRequest, Molecule, SimOptions, library};

#[derive(Parser)]
#[command(
    name = "spinloop",
    version,
    about = "Spectrum-driven RF pulse design for MR consoles"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, ValueEnum)]
enum VariantArg {
    Single,
    B1,
}

impl From<VariantArg> for Variant {
    fn from(v: VariantArg) -> Variant {
        match v {
            VariantArg::Single => Variant::Single,
            VariantArg::B1 => Variant::B1,
        }
    }
}

#[derive(Subcommand)]
enum Command {
    /// The main job: run the closed loop against a built-in simulated 3 T console with a hidden
    /// B1 error — a daemon in this process, the console and an operator session over gRPC —
    /// print every decision, the fitted hardware against the hidden truth, and export it.
    Run {
        /// Data directory of the in-process daemon (default: a temporary directory).
        #[arg(long)]
        data_dir: Option<std::path::PathBuf>,
        /// Where to write the session's export (default: under the temporary directory).
        #[arg(long)]
        export: Option<std::path::PathBuf>,
        /// Where to write the plots of each iteration (waveform; measured, fitted and
        /// nominal spectra) (default: under the temporary directory).
        #[arg(long)]
        plots: Option<std::path::PathBuf>,
        /// Noise seed of the simulated console.
        #[arg(long, default_value_t = 42)]
        seed: u64,
    },
    /// The daemon's sessions: list, show, watch, export, cancel, create.
    Sessions {
        #[command(flatten)]
        conn: client::Connection,
        #[command(subcommand)]
        cmd: client::SessionsCmd,
    },
    /// The consoles the daemon knows.
    Consoles {
        #[command(flatten)]
        conn: client::Connection,
        #[command(subcommand)]
        cmd: client::ConsolesCmd,
    },
    /// Simulate the golden Glu/Gln 3 T problem, optimize its pulse with exact gradients, and
    /// print the result.
    Golden {
        /// Problem variant.
        #[arg(long, value_enum, default_value = "b1")]
        variant: VariantArg,
        /// L-BFGS iterations.
        #[arg(long, default_value_t = 30)]
        iterations: usize,
        /// Write the optimized waveform as JSON here.
        #[arg(long)]
        output: Option<std::path::PathBuf>,
    },
    /// Benchmark loss+gradient of the golden problem.
    Bench {
        /// Variants to run.
        #[arg(long, value_enum, default_values_t = [VariantArg::Single, VariantArg::B1])]
        variant: Vec<VariantArg>,
        /// Thread counts to run.
        #[arg(long, default_values_t = [1usize, 2])]
        threads: Vec<usize>,
        /// Timed evaluations per configuration.
        #[arg(long, default_value_t = 7)]
        evals: usize,
        /// Amplitude-family interval parameter η (smaller: more, lower-degree intervals).
        #[arg(long, default_value_t = SimOptions::default().family_eta)]
        family_eta: f64,
        /// Instead: time a PRESS basis set of 10 metabolites with slice-selective sinc
        /// refocusing over an N×N grid.
        #[arg(long, value_name = "N")]
        basis_grid: Option<usize>,
        /// Instead: time loss+gradient of a design problem file (e.g.
        /// tests/problems/glu_gln_3t_press.toml).
        #[arg(long, value_name = "PROBLEM.toml")]
        design: Option<std::path::PathBuf>,
        /// With --design: also time one full-path gradient (every pulse, B1, B0) for
        /// comparison, and check it agrees with the design path on the designed pulse.
        #[arg(long)]
        full_gradient: bool,
        /// Instead: durable ingestion of N 2048-point acquisitions into a fresh store in a
        /// temporary directory (one commit each, then `--batch` per commit).
        #[arg(long, value_name = "N")]
        store: Option<usize>,
        /// Acquisitions per commit for the batched store run.
        #[arg(long, default_value_t = 32)]
        batch: usize,
        /// Instead: daemon ingestion through gRPC — an in-process daemon on a Unix socket and N
        /// concurrent consoles streaming 2048-point FIDs (saturated, then paced at --rate).
        #[arg(long, value_name = "N")]
        daemon: Option<usize>,
        /// Acquisitions in the saturated daemon run (all consoles together).
        #[arg(long, default_value_t = 20_000)]
        acquisitions: usize,
        /// Total rate of the paced daemon run (acquisitions/s).
        #[arg(long, default_value_t = 100.0)]
        rate: f64,
    },
    /// Simulate metabolites under a sequence: the mixture FID (NIfTI-MRS, Bruker), spectra
    /// (CSV) and a plot.
    Simulate(offline::SimulateArgs),
    /// Simulate a basis set (one FID per metabolite) for a sequence and field.
    Basis(offline::BasisArgs),
    /// Fit a measured spectrum (NIfTI-MRS or Bruker fid/acqus) with a basis set: concentrations,
    /// CRLBs and the correlation matrix.
    Fit(offline::FitArgs),
    /// Glu/Gln CRLBs and correlation for PRESS TE 30, PRESS TE 80 and STEAM TE 10: the
    /// baseline table optimized pulses must beat.
    Compare(offline::CompareArgs),
    /// Design a pulse: optimize the problem file's objective under its hardware limits and
    /// write the waveform (JSON, Pulseq, Bruker shape), plots, the product-operator report and
    /// the comparison with the baselines.
    Optimize(design_cmd::OptimizeArgs),
    /// List the built-in metabolite library, or print one molecule in the file format.
    Molecules {
        /// Print this molecule as TOML (the documented spin-system file format).
        #[arg(long)]
        show: Option<String>,
        /// Validate a spin-system file (.toml or .json) and print its summary.
        #[arg(long)]
        check: Option<std::path::PathBuf>,
    },
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Command::Run {
            data_dir,
            export,
            plots,
            seed,
        } => runtime()?.block_on(client::run_demo(data_dir, export, plots, seed)),
        Command::Sessions { conn, cmd } => runtime()?.block_on(client::sessions(conn, cmd)),
        Command::Consoles { conn, cmd } => runtime()?.block_on(client::consoles(conn, cmd)),
        Command::Golden {
            variant,
            iterations,
            output,
        } => run(variant.into(), iterations, output),
        Command::Bench {
            variant,
            threads,
            evals,
            family_eta,
            basis_grid,
            design,
            full_gradient,
            store,
            batch,
            daemon,
            acquisitions,
            rate,
        } => {
            if let Some(n) = daemon {
                let r = spinloop::bench::daemon::daemon_bench(
                    &spinloop::bench::daemon::DaemonBenchOptions {
                        consoles: n,
                        acquisitions,
                        rate,
                        points: 2048,
                    },
                )
                .context("daemon benchmark")?;
                println!("{r}");
                return Ok(());
            }
            if let Some(n) = store {
                let dir = std::env::temp_dir()
                    .join(format!("spinloop-store-bench-{}", std::process::id()));
                for b in [1, batch] {
                    let r = spinloop::bench::store_bench(&dir, n, 2048, b)
                        .context("store benchmark")?;
                    let q =
                        |f: f64| r.latencies[((r.latencies.len() - 1) as f64 * f).round() as usize];
                    println!(
                        "store: {} acquisitions x {} points, {} per commit: {:.0} acquisitions/s, commit latency p50 {:.2} ms, p99 {:.2} ms",
                        r.acquisitions,
                        r.points,
                        r.batch,
                        r.acquisitions as f64 / r.seconds,
                        q(0.5) * 1e3,
                        q(0.99) * 1e3
                    );
                }
                return Ok(());
            }
            if let Some(path) = design {
                let text = std::fs::read_to_string(&path)
                    .with_context(|| format!("reading {}", path.display()))?;
                let spec = spinloop::design::problem::ProblemSpec::from_toml(
                    &text,
                    &path.display().to_string(),
                )?;
                for &t in &threads {
                    let r = spinloop::bench::design_bench(&spec, t, evals, full_gradient)
                        .context("design benchmark")?;
                    let mut s = r.seconds.clone();
                    s.sort_by(f64::total_cmp);
                    println!(
                        "{}: {} molecules ({} fragments) x {} members x {} positions, {} parameters, {} thread(s): build {:.2} s, first loss+grad {:.2} s, loss+grad min {:.3} s / median {:.3} s over {}",
                        r.name,
                        r.molecules,
                        r.fragments,
                        r.members,
                        r.positions,
                        r.parameters,
                        r.threads,
                        r.build_seconds,
                        r.cold_seconds,
                        s.first().copied().unwrap_or(f64::NAN),
                        s.get(s.len() / 2).copied().unwrap_or(f64::NAN),
                        s.len()
                    );
                    if let Some((secs, rel)) = r.full_gradient {
                        println!(
                            "  full-path loss+grad (every pulse, B1, B0): {secs:.2} s; designed-pulse gradient differs from the design path by {rel:.1e} of its largest component"
                        );
                    }
                }
                return Ok(());
            }
            if let Some(n) = basis_grid {
                if n == 0 {
                    bail!("--basis-grid must be >= 1");
                }
                for &t in &threads {
                    let r = basis_bench(n, t).context("basis benchmark")?;
                    println!(
                        "PRESS basis: {} metabolites ({} fragments), {}x{} grid, {} thread(s): {:.2} s",
                        r.metabolites, r.fragments, n, n, r.threads, r.seconds
                    );
                }
                return Ok(());
            }
            if evals == 0 {
                bail!("--evals must be >= 1");
            }
            println!(
                "{:<8} {:>7} {:>11} {:>11} {:>11} {:>9} {:>13}",
                "variant",
                "threads",
                "cold [s]",
                "median [s]",
                "min [s]",
                "GFLOP/s",
                "bit-identical"
            );
            for v in &variant {
                for &t in &threads {
                    let r = golden_bench((*v).into(), t, evals, SimOptions { family_eta })
                        .context("benchmark")?;
                    println!(
                        "{:<8} {:>7} {:>11.4} {:>11.4} {:>11.4} {:>9.1} {:>13}",
                        r.variant,
                        r.threads,
                        r.cold_seconds,
                        r.median_seconds,
                        r.min_seconds,
                        r.gflops,
                        r.bit_identical
                    );
                }
            }
            Ok(())
        }
        Command::Simulate(a) => offline::simulate(a),
        Command::Basis(a) => offline::basis(a),
        Command::Fit(a) => offline::fit_cmd(a),
        Command::Compare(a) => offline::compare(a),
        Command::Optimize(a) => design_cmd::optimize(a),
        Command::Molecules { show, check } => {
            if let Some(path) = check {
                let m = Molecule::from_path(&path)
                    .with_context(|| format!("checking {}", path.display()))?;
                print_summary(&m);
            } else if let Some(name) = show {
                let m = library::by_name(&name)?;
                print!("{}", m.to_toml()?);
            } else {
                for m in library::all() {
                    print_summary(&m);
                }
            }
            Ok(())
        }
    }
}

fn print_summary(m: &Molecule) {
    let frags: Vec<String> = m
        .fragments
        .iter()
        .map(|f| format!("{}({} spins, w {})", f.name, f.n_spins(), f.weight))
        .collect();
    let singlets: Vec<String> = m
        .singlets
        .iter()
        .map(|s| format!("{} {:.4} ppm ({}H)", s.label, s.shift_ppm, s.protons))
        .collect();
    println!(
        "{:<10} {:>5.0} H  fragments: [{}]  singlets: [{}]  {}",
        m.name,
        m.proton_count(),
        frags.join(", "),
        singlets.join(", "),
        m.description
    );
}

fn runtime() -> Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")
}

fn run(variant: Variant, iterations: usize, output: Option<std::path::PathBuf>) -> Result<()> {
    let mut sim = golden::simulator(variant, SimOptions::default())?;
    let loss = golden::loss()?;
    let (ux0, uy0) = golden::test_pulse();
    let n = ux0.len();
    println!(
        "glu_gln_3t ({:?}): Glu + Gln at 123.2 MHz, {} segments x {} us, {} simulation(s) per evaluation",
        variant,
        n,
        golden::DT * 1e6,
        sim.task_count()
    );
    let x0: Vec<f64> = ux0.iter().chain(&uy0).copied().collect();
    let start = std::time::Instant::now();
    let result = lbfgs(
        &x0,
        LbfgsOptions {
            max_iterations: iterations,
            ..LbfgsOptions::default()
        },
        |x| {
            let exp = golden::experiment(x[..n].to_vec(), x[n..].to_vec());
            let (l, g) = sim.loss_and_gradient(&exp, &loss, GradientRequest::default())?;
            Ok((l, g.ux[0].iter().chain(&g.uy[0]).copied().collect()))
        },
        |it| {
            println!(
                "iter {:>4}  loss {:>+14.6}  |grad| {:>10.4e}  evals {:>4}",
                it.iteration, it.loss, it.grad_norm, it.evaluations
            )
        },
    )?;
    let secs = start.elapsed().as_secs_f64();
    let exp = golden::experiment(result.x[..n].to_vec(), result.x[n..].to_vec());
    let signals = sim.simulate(&exp)?;
    let exp0 = golden::experiment(ux0.clone(), uy0.clone());
    let signals0 = sim.simulate(&exp0)?;
    println!("stopped: {:?} after {:.2} s", result.reason, secs);
    println!("{:<28} {:>14} {:>14}", "", "test pulse", "optimized");
    let l0 = result.history[0].loss;
    println!("{:<28} {:>14.4} {:>14.4}", "loss", l0, result.loss);
    let members = signals.members();
    let mean_terms = |s: &spinloop::physics::Signals| -> Result<(f64, f64)> {
        let (mut a, mut b) = (0.0, 0.0);
        for m in 0..members {
            let t = loss.term_values(s, m)?;
            a += t[0] / members as f64;
            b += t[1] / members as f64;
        }
        Ok((a, b))
    };
    let (g0, q0) = mean_terms(&signals0)?;
    let (g1, q1) = mean_terms(&signals)?;
    println!(
        "{:<28} {:>14.4} {:>14.4}",
        "Glu sum Re S (2.25-2.50)", g0, g1
    );
    println!(
        "{:<28} {:>14.4} {:>14.4}",
        "Gln sum |S|^2 (2.25-2.50)", q0, q1
    );
    let peak = result.x.chunks(n).next().map(|_| {
        (0..n)
            .map(|k| result.x[k].hypot(result.x[n + k]))
            .fold(0.0, f64::max)
    });
    println!(
        "{:<28} {:>14.1} {:>14.1}",
        "peak |B1| [Hz]",
        (0..n).map(|k| ux0[k].hypot(uy0[k])).fold(0.0, f64::max),
        peak.unwrap_or(0.0)
    );
    if let Some(path) = output {
        let json = serde_json::json!({
            "problem": "glu_gln_3t",
            "dt_s": golden::DT,
            "ux_hz": &result.x[..n],
            "uy_hz": &result.x[n..],
            "loss": result.loss,
        });
        std::fs::write(&path, serde_json::to_string_pretty(&json)?)
            .with_context(|| format!("writing {}", path.display()))?;
        println!("waveform written to {}", path.display());
    }
    Ok(())
}
