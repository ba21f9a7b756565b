//! `spinloop-hil`: runs hardware-in-the-loop scenarios — a simulated console with hidden
//! hardware truth against a real `spinloopd` — and says how the closed loop converged.
//!
//! - `spinloop-hil list [--dir DIR]` — the scenarios.
//! - `spinloop-hil run SCENARIO [--daemon unix:PATH|tcp:ADDR] [--external-console] [--json]
//!   [--serial]` — without `--daemon`, starts `spinloopd` as a child process on a temporary
//!   state dir; with `--serial` the console reaches it over a pseudo-terminal with the firmware
//!   protocol (a `[[serial_console]]` of the child daemon) instead of gRPC.
//!   Exit 0 if every tolerance of the scenario holds, 1 if one is missed, 2 on an error.
//! - `spinloop-hil console SCENARIO --daemon ADDR [--ack-log FILE] [--start-index N]` — only
//!   the simulated console (until killed, or the daemon is gone for `--reconnect-for-s`);
//!   `--serial LINK` serves it on a pty instead and prints the daemon's `[[serial_console]]`.
//!
//! SCENARIO is a file, or the name of one in the crate's `scenarios/` directory.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use clap::{Parser, Subcommand};
use spinloop_hil::Scenario;
use spinloop_hil::grpc::{DaemonAddr, LinkOptions, LinkStats, run_console};
use spinloop_hil::run::{ChildDaemon, RunOptions, find_spinloopd, run_scenario};
use spinloop_hil::scenario::{builtin_dir, list};
use spinloop_hil::serial::SerialConsole;

#[derive(Parser)]
#[command(
    name = "spinloop-hil",
    version,
    about = "Hardware-in-the-loop scenarios for spinloop"
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// List the scenarios of a directory (default: the built-in ones).
    List {
        /// Directory of `*.toml` scenarios.
        #[arg(long)]
        dir: Option<PathBuf>,
    },
    /// Run a scenario to the end and score it against the hidden truth.
    Run {
        /// Scenario file or built-in name.
        scenario: String,
        /// The daemon (`unix:PATH` or `tcp:HOST:PORT`); default: start `spinloopd` as a child.
        #[arg(long)]
        daemon: Option<String>,
        /// The `spinloopd` binary to start (default: next to this one, then PATH).
        #[arg(long)]
        spinloopd: Option<PathBuf>,
        /// Keep the child daemon's state here (default: a temporary directory, removed).
        #[arg(long)]
        state_dir: Option<PathBuf>,
        /// The console runs elsewhere (`spinloop-hil console`): only create and follow the
        /// session.
        #[arg(long)]
        external_console: bool,
        /// Print the report as JSON on stdout (events go to stderr).
        #[arg(long)]
        json: bool,
        /// Give up after this many seconds.
        #[arg(long, default_value_t = 600)]
        timeout_s: u64,
        /// Connect the console over a pseudo-terminal with the firmware protocol (the child
        /// daemon opens it as a `[[serial_console]]`) instead of gRPC.
        #[arg(long, conflicts_with_all = ["daemon", "external_console"])]
        serial: bool,
    },
    /// Run only the scenario's simulated console: against a daemon over gRPC (`--daemon`), or
    /// on a pseudo-terminal with the firmware protocol (`--serial LINK`: LINK becomes a symlink
    /// to the pty's device; the `[[serial_console]]` table a daemon needs is printed).
    Console {
        /// Scenario file or built-in name.
        scenario: String,
        /// The daemon (`unix:PATH` or `tcp:HOST:PORT`).
        #[arg(long, required_unless_present = "serial")]
        daemon: Option<String>,
        /// Serve on a pty whose device LINK points at, until interrupted.
        #[arg(long, conflicts_with = "daemon")]
        serial: Option<PathBuf>,
        /// Append a JSON line per ack to this file.
        #[arg(long)]
        ack_log: Option<PathBuf>,
        /// Index of the first acquisition on the session clock (t = index·TR).
        #[arg(long, default_value_t = 0)]
        start_index: u64,
        /// Stop when no connection succeeds for this long (s).
        #[arg(long, default_value_t = 60)]
        reconnect_for_s: u64,
        /// After N acks, ignore waveforms until the next reconnect (a stalled console).
        #[arg(long)]
        pause_after: Option<u64>,
    },
}

fn load(s: &str) -> Result<Scenario> {
    let p = Path::new(s);
    let path = if p.exists() {
        p.to_path_buf()
    } else {
        let b = builtin_dir().join(format!("{s}.toml"));
        if !b.exists() {
            bail!(
                "no scenario file {s:?} and no built-in scenario of that name (see `spinloop-hil list`)"
            );
        }
        b
    };
    Scenario::load(&path).with_context(|| format!("loading scenario {}", path.display()))
}

fn main() {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .init();
    let code = match real_main(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("spinloop-hil: {e:#}");
            2
        }
    };
    std::process::exit(code);
}

fn real_main(cli: Cli) -> Result<i32> {
    match cli.cmd {
        Cmd::List { dir } => {
            let dir = dir.unwrap_or_else(builtin_dir);
            for p in list(&dir).with_context(|| format!("listing {}", dir.display()))? {
                match Scenario::load(&p) {
                    Ok(s) => println!(
                        "{:<24} {:<18} B1 ×{:.3} B0 {:+.1} Hz ({:+.2} Hz/s)  {}",
                        s.name,
                        format!("{:?}", s.console.kind),
                        s.truth.b1_scale,
                        s.truth.b0_offset_hz,
                        s.truth.b0_drift_hz_per_s,
                        s.description
                    ),
                    Err(e) => println!("{:<24} INVALID: {e}", p.display()),
                }
            }
            Ok(0)
        }
        Cmd::Console {
            scenario,
            daemon,
            serial,
            ack_log,
            start_index,
            reconnect_for_s,
            pause_after,
        } => {
            let s = load(&scenario)?;
            let physics = s.console().context("building the simulated console")?;
            if let Some(link) = serial {
                let segment_dt = physics.dt();
                let console = SerialConsole::start(physics, segment_dt, &link)
                    .with_context(|| format!("serving on {}", link.display()))?;
                let table = spinloop::daemon::config::ConfigFile {
                    serial_consoles: vec![console.config()],
                    ..Default::default()
                };
                println!("{}", toml::to_string(&table).context("the config table")?);
                eprintln!(
                    "console {} on {} (firmware protocol); Ctrl-C ends it",
                    s.console_id(),
                    link.display()
                );
                loop {
                    std::thread::sleep(Duration::from_secs(3600));
                }
            }
            let Some(daemon) = daemon else {
                bail!("--daemon or --serial is required");
            };
            let addr: DaemonAddr = daemon.parse().context("--daemon")?;
            let rt = tokio::runtime::Runtime::new().context("tokio runtime")?;
            let stats = Arc::new(LinkStats::default());
            let options = LinkOptions {
                start_index,
                reconnect: true,
                reconnect_for: Duration::from_secs(reconnect_for_s),
                ack_log,
                key_prefix: None,
                pause_after,
            };
            rt.block_on(run_console(addr.clone(), physics, options, stats.clone()))
                .with_context(|| format!("console {} on {addr}", s.console_id()))?;
            eprintln!("{}", spinloop_hil::run::stats_line(&stats));
            Ok(0)
        }
        Cmd::Run {
            scenario,
            daemon,
            spinloopd,
            state_dir,
            external_console,
            json,
            timeout_s,
            serial,
        } => {
            let s = load(&scenario)?;
            let rt = tokio::runtime::Runtime::new().context("tokio runtime")?;
            let _child;
            let mut _serial_console = None;
            let addr = match daemon {
                Some(d) => d.parse::<DaemonAddr>().context("--daemon")?,
                None => {
                    let bin = match spinloopd.or_else(find_spinloopd) {
                        Some(b) => b,
                        None => bail!(
                            "spinloopd not found next to spinloop-hil or on PATH: build it \
                             (`cargo build --bin spinloopd`) or pass --spinloopd / --daemon"
                        ),
                    };
                    let keep = state_dir.is_some();
                    let dir = state_dir.unwrap_or_else(|| {
                        std::env::temp_dir().join(format!(
                            "spinloop-hil-{}-{}",
                            s.name,
                            std::process::id()
                        ))
                    });
                    let link = dir.join(format!("tty-{}", s.console_id()));
                    let mut extra = Vec::new();
                    if serial {
                        std::fs::create_dir_all(&dir)
                            .with_context(|| format!("creating {}", dir.display()))?;
                        let table = spinloop::daemon::config::ConfigFile {
                            serial_consoles: vec![SerialConsole::config_for(&s.profile(), &link)],
                            ..Default::default()
                        };
                        let path = dir.join("spinloopd.toml");
                        std::fs::write(&path, toml::to_string(&table).context("config")?)
                            .with_context(|| format!("writing {}", path.display()))?;
                        extra = vec!["--config".to_string(), path.to_string_lossy().into_owned()];
                    }
                    let extra: Vec<&str> = extra.iter().map(String::as_str).collect();
                    let d = ChildDaemon::spawn_with(&bin, &dir, keep, &extra)
                        .with_context(|| format!("starting {}", bin.display()))?;
                    if serial {
                        // After the daemon (which keeps trying the path until it exists), so
                        // the daemon inherits nothing of the pty.
                        let physics = s.console().context("building the simulated console")?;
                        let segment_dt = physics.dt();
                        _serial_console = Some(
                            SerialConsole::start(physics, segment_dt, &link)
                                .with_context(|| format!("serving on {}", link.display()))?,
                        );
                        eprintln!(
                            "simulated console on {} (firmware protocol)",
                            link.display()
                        );
                    }
                    eprintln!(
                        "spinloopd (child): {}; state in {}",
                        d.addr(),
                        dir.display()
                    );
                    let a = d.addr();
                    _child = d;
                    a
                }
            };
            let options = RunOptions {
                external_console: external_console || serial,
                timeout: Duration::from_secs(timeout_s),
            };
            let t0 = std::time::Instant::now();
            let mut print = |l: &str| {
                let l = format!("[{:>7.2} s] {l}", t0.elapsed().as_secs_f64());
                if json {
                    eprintln!("{l}");
                } else {
                    println!("{l}");
                }
            };
            let report = rt
                .block_on(run_scenario(&s, &addr, &options, &mut print))
                .with_context(|| format!("scenario {} on {addr}", s.name))?;
            print("scored against the hidden truth");
            if json {
                println!(
                    "{}",
                    serde_json::to_string_pretty(&report).context("report as JSON")?
                );
            } else {
                print!("{}", report.summary());
            }
            Ok(if report.passed() { 0 } else { 1 })
        }
    }
}
