//! One scenario against a daemon, start to end: the simulated console connects (unless it
//! runs elsewhere), the operator's session is created over the `Sessions` API, its events are
//! followed to the end (reconnecting if the daemon restarts), the session is exported, and
//! the result is scored against the hidden truth ([`Report`]).
//!
//! # What is scored
//! - **fitted vs truth**: the session's latest fit (B1 scale, B0 offset) against the true B1
//!   and the true B0 at the session time of the last acquisition, t = (acquisitions − 1)·TR
//!   (the console's clock, [`crate::grpc`]).
//! - **closed loop**: the last non-probe waveform the session sent (the one its final
//!   measurement confirmed) under the true hardware at that time ([`crate::evaluate`]).
//! - **oracle**: the pulse designed knowing the true B1/B0/linewidth, same designer and
//!   budget ([`crate::evaluate::oracle`]), same evaluator.
//! - **open loop**: the session's first waveform (the design under the nominal hardware)
//!   under the true hardware, same evaluator.
//!
//! Also here: [`ChildDaemon`] (a `spinloopd` child process on a temporary state directory).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use serde::Serialize;
use spinloop::daemon::pb;
use tokio_stream::StreamExt;

use crate::HilError;
use crate::evaluate::{TrueHardware, oracle, ratio};
use crate::grpc::{DaemonAddr, LinkOptions, LinkStats, run_console};
use crate::scenario::Scenario;

/// A `spinloopd` child process with its own state directory and socket; killed (SIGKILL) and
/// its directory removed on drop.
#[derive(Debug)]
pub struct ChildDaemon {
    child: Option<Child>,
    dir: PathBuf,
    keep: bool,
    /// The socket it listens on.
    pub socket: PathBuf,
}

impl ChildDaemon {
    /// Starts `binary` with `--data-dir DIR/data --socket DIR/spinloopd.sock` and waits (up
    /// to 30 s) until the socket accepts connections. Its log filter is `warn`, or
    /// `$HIL_DAEMON_LOG` when set (e.g. `info` to follow the daemon in a failing test). `keep` leaves `dir` in place on drop.
    pub fn spawn(binary: &Path, dir: &Path, keep: bool) -> Result<ChildDaemon, HilError> {
        ChildDaemon::spawn_with(binary, dir, keep, &[])
    }

    /// [`ChildDaemon::spawn`] with extra flags (e.g. `--tcp 127.0.0.1:PORT`).
    pub fn spawn_with(
        binary: &Path,
        dir: &Path,
        keep: bool,
        extra: &[&str],
    ) -> Result<ChildDaemon, HilError> {
        let io = |e: std::io::Error| HilError::Io {
            path: dir.to_path_buf(),
            message: e.to_string(),
        };
        std::fs::create_dir_all(dir).map_err(io)?;
        let socket = dir.join("spinloopd.sock");
        let _ = std::fs::remove_file(&socket);
        let child = Command::new(binary)
            .arg("--data-dir")
            .arg(dir.join("data"))
            .arg("--socket")
            .arg(&socket)
            .args(extra)
            .env(
                "RUST_LOG",
                std::env::var("HIL_DAEMON_LOG").unwrap_or_else(|_| "warn".into()),
            )
            .env_remove("NOTIFY_SOCKET")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .map_err(|e| HilError::Io {
                path: binary.to_path_buf(),
                message: format!("spawning the daemon: {e}"),
            })?;
        let mut d = ChildDaemon {
            child: Some(child),
            dir: dir.to_path_buf(),
            keep,
            socket,
        };
        let t0 = Instant::now();
        while std::os::unix::net::UnixStream::connect(&d.socket).is_err() {
            if let Some(c) = d.child.as_mut()
                && let Ok(Some(status)) = c.try_wait()
            {
                return Err(HilError::Link(format!(
                    "spinloopd exited at start: {status}"
                )));
            }
            if t0.elapsed() > Duration::from_secs(30) {
                return Err(HilError::Link(
                    "spinloopd did not listen within 30 s".into(),
                ));
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        Ok(d)
    }

    /// Its address.
    pub fn addr(&self) -> DaemonAddr {
        DaemonAddr::Unix(self.socket.clone())
    }
}

impl Drop for ChildDaemon {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        if !self.keep {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

/// Finds `spinloopd`: next to the running executable (or its parent directory, for test
/// executables in `target/*/deps`), else on `PATH`.
pub fn find_spinloopd() -> Option<PathBuf> {
    let exe = std::env::current_exe().ok()?;
    let mut dirs: Vec<PathBuf> = exe
        .ancestors()
        .skip(1)
        .take(2)
        .map(Path::to_path_buf)
        .collect();
    if let Some(path) = std::env::var_os("PATH") {
        dirs.extend(std::env::split_paths(&path));
    }
    dirs.into_iter()
        .map(|d| d.join("spinloopd"))
        .find(|p| p.is_file())
}

/// Options of [`run_scenario`].
#[derive(Debug, Clone)]
pub struct RunOptions {
    /// The console runs elsewhere (e.g. a `spinloop-hil console` process): do not start one.
    pub external_console: bool,
    /// Give up after this long.
    pub timeout: Duration,
}

impl Default for RunOptions {
    fn default() -> Self {
        RunOptions {
            external_console: false,
            timeout: Duration::from_secs(600),
        }
    }
}

/// One fit of the session.
#[derive(Debug, Clone, Serialize)]
pub struct FitRow {
    /// Acquisitions it used.
    pub acquisitions: u32,
    /// Fitted B1 scale and its standard error.
    pub b1: (f64, f64),
    /// Fitted B0 offset (Hz) and its standard error.
    pub b0_hz: (f64, f64),
    /// True B0 (Hz) at the fit's last acquisition.
    pub true_b0_hz: f64,
}

/// One tolerance check.
#[derive(Debug, Clone, Serialize)]
pub struct Check {
    /// What was checked.
    pub name: String,
    /// Whether it held.
    pub ok: bool,
    /// Measured vs allowed.
    pub detail: String,
}

/// The outcome of a scenario run.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// Scenario name.
    pub scenario: String,
    /// Session id.
    pub session_id: String,
    /// Final state (`converged`, `failed`, `cancelled`).
    pub state: String,
    /// Acquisitions stored.
    pub acquisitions: u32,
    /// Waveforms sent (probes included).
    pub waveforms: u32,
    /// Designs the session made.
    pub designs: usize,
    /// Every fit, in order.
    pub fits: Vec<FitRow>,
    /// True B1 scale.
    pub true_b1: f64,
    /// True B0 (Hz) at the last acquisition.
    pub true_b0_hz: f64,
    /// Final fitted B1 scale.
    pub fitted_b1: f64,
    /// Final fitted B0 (Hz).
    pub fitted_b0_hz: f64,
    /// Objective of the closed-loop pulse under the true hardware.
    pub closed_loop: f64,
    /// Objective of the oracle pulse under the true hardware.
    pub oracle: f64,
    /// Objective of the open-loop (nominal) pulse under the true hardware.
    pub open_loop: f64,
    /// closed / oracle performance.
    pub closed_ratio: f64,
    /// open / oracle performance.
    pub open_ratio: f64,
    /// Tolerance checks of the scenario.
    pub checks: Vec<Check>,
}

impl Report {
    /// Every check held.
    pub fn passed(&self) -> bool {
        self.checks.iter().all(|c| c.ok)
    }

    /// The human summary (several lines).
    pub fn summary(&self) -> String {
        let mut s = String::new();
        let mut line = |t: String| {
            s.push_str(&t);
            s.push('\n');
        };
        line(format!(
            "scenario {}: session {} {} after {} acquisitions ({} waveforms, {} designs)",
            self.scenario,
            self.session_id,
            self.state,
            self.acquisitions,
            self.waveforms,
            self.designs
        ));
        line("  fits vs hidden truth (acquisitions used: B1 scale, B0 Hz):".into());
        for f in &self.fits {
            line(format!(
                "    {:>2}: B1 {:.5} ± {:.1e} ({:+.2} %)  B0 {:+.3} ± {:.1e} Hz ({:+.3} Hz)",
                f.acquisitions,
                f.b1.0,
                f.b1.1,
                100.0 * (f.b1.0 - self.true_b1) / self.true_b1,
                f.b0_hz.0,
                f.b0_hz.1,
                f.b0_hz.0 - f.true_b0_hz
            ));
        }
        line(format!(
            "  B1 scale  fitted {:.5}  truth {:.5}  error {:+.2} %",
            self.fitted_b1,
            self.true_b1,
            100.0 * (self.fitted_b1 - self.true_b1) / self.true_b1
        ));
        line(format!(
            "  B0 (Hz)   fitted {:+.3}  truth {:+.3}  error {:+.3} Hz",
            self.fitted_b0_hz,
            self.true_b0_hz,
            self.fitted_b0_hz - self.true_b0_hz
        ));
        line("  objective under the TRUE hardware (lower is better):".into());
        line(format!(
            "    closed loop {:+.5}   oracle {:+.5}   open loop {:+.5}",
            self.closed_loop, self.oracle, self.open_loop
        ));
        line(format!(
            "    closed/oracle {:.4}   open/oracle {:.4}",
            self.closed_ratio, self.open_ratio
        ));
        for c in &self.checks {
            line(format!(
                "  [{}] {}: {}",
                if c.ok { "ok" } else { "MISS" },
                c.name,
                c.detail
            ));
        }
        s
    }
}

/// One event as a line.
pub fn event_line(e: &pb::SessionEvent) -> String {
    use pb::session_event::Detail;
    let param = |ps: &[pb::Parameter], n: &str| {
        ps.iter()
            .find(|p| p.name == n)
            .map_or_else(String::new, |p| {
                format!(" {n} {:.5}±{:.1e}", p.value, p.std_error)
            })
    };
    let detail = match &e.detail {
        Some(Detail::Fit(f)) => format!(
            "fit of {} FIDs:{}{}{}",
            f.acquisitions_used,
            param(&f.parameters, "b1_scale"),
            param(&f.parameters, "b0_offset_hz"),
            param(&f.parameters, "phase0_rad")
        ),
        Some(Detail::Objective(o)) => format!(
            "{}: measured {:+.5} vs predicted {:+.5}",
            o.waveform_id, o.measured, o.predicted
        ),
        Some(Detail::Waveform(w)) => format!(
            "{}{}: peak {:.0} Hz, energy {:.1} Hz²s",
            w.waveform_id,
            if w.probe { " (probe)" } else { "" },
            w.peak_b1_hz,
            w.energy_hz2s
        ),
        Some(Detail::State(s)) => s.reason.clone(),
        None => {
            let mut p = e.payload_json.clone();
            if p.len() > 140 {
                let mut cut = 140;
                while !p.is_char_boundary(cut) {
                    cut -= 1;
                }
                p.truncate(cut);
                p.push('…');
            }
            p
        }
    };
    format!("#{:<4} {:<14} {detail}", e.seq, e.kind)
}

/// What the watcher collected.
#[derive(Default)]
struct Seen {
    last_seq: i64,
    /// (waveform id, probe) in the order sent.
    waveforms: Vec<(String, bool)>,
    designs: usize,
    fits: Vec<FitRow>,
    final_kind: Option<String>,
}

const FINAL: [&str; 3] = ["converged", "failed", "cancelled"];

fn fit_row(f: &pb::FitEvent) -> FitRow {
    let get = |n: &str| {
        f.parameters
            .iter()
            .find(|p| p.name == n)
            .map_or((f64::NAN, f64::NAN), |p| (p.value, p.std_error))
    };
    FitRow {
        acquisitions: f.acquisitions_used,
        b1: get("b1_scale"),
        b0_hz: get("b0_offset_hz"),
        true_b0_hz: f64::NAN,
    }
}

async fn sessions_client(
    addr: &DaemonAddr,
) -> Result<pb::sessions_client::SessionsClient<tonic::transport::Channel>, HilError> {
    Ok(pb::sessions_client::SessionsClient::new(
        addr.channel().await?,
    ))
}

/// Follows a session's events to its final one, reconnecting (for up to `timeout` overall)
/// when the daemon goes away; `print` gets every event line once.
async fn follow(
    addr: &DaemonAddr,
    session_id: &str,
    deadline: Instant,
    print: &mut (dyn FnMut(&str) + Send),
) -> Result<Seen, HilError> {
    let mut seen = Seen::default();
    loop {
        if Instant::now() > deadline {
            return Err(HilError::Link(format!(
                "session {session_id} did not end in time (last event #{})",
                seen.last_seq
            )));
        }
        let stream = async {
            let mut c = sessions_client(addr).await?;
            Ok::<_, HilError>(
                c.watch_session(pb::WatchSessionRequest {
                    session_id: session_id.to_string(),
                    after_seq: seen.last_seq,
                    until_done: true,
                })
                .await?
                .into_inner(),
            )
        }
        .await;
        let mut stream = match stream {
            Ok(s) => s,
            Err(e) if retryable(&e) => {
                tokio::time::sleep(Duration::from_millis(200)).await;
                continue;
            }
            Err(e) => return Err(e),
        };
        while let Some(e) = stream.next().await {
            let e = match e {
                Ok(e) => e,
                Err(s) if retryable(&HilError::from(s.clone())) => break,
                Err(s) => return Err(s.into()),
            };
            if e.seq <= seen.last_seq {
                continue;
            }
            seen.last_seq = e.seq;
            print(&event_line(&e));
            match e.detail {
                Some(pb::session_event::Detail::Waveform(ref w)) => {
                    seen.waveforms.push((w.waveform_id.clone(), w.probe));
                }
                Some(pb::session_event::Detail::Fit(ref f)) => seen.fits.push(fit_row(f)),
                _ => {}
            }
            if e.kind == "designed" {
                seen.designs += 1;
            }
            if FINAL.contains(&e.kind.as_str()) {
                seen.final_kind = Some(e.kind.clone());
                return Ok(seen);
            }
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Whether an error is the daemon being away (retry) rather than a refusal (give up).
fn retryable(e: &HilError) -> bool {
    match e {
        HilError::Transport(_) => true,
        HilError::Status(code, _) => matches!(
            code,
            tonic::Code::Unavailable
                | tonic::Code::Unknown
                | tonic::Code::Cancelled
                | tonic::Code::Aborted
                | tonic::Code::Internal
        ),
        _ => false,
    }
}

/// Waits until the daemon lists `console_id` as connected.
pub async fn wait_connected(
    addr: &DaemonAddr,
    console_id: &str,
    within: Duration,
) -> Result<(), HilError> {
    let t0 = Instant::now();
    loop {
        if let Ok(mut c) = sessions_client(addr).await
            && let Ok(r) = c.list_consoles(pb::ListConsolesRequest {}).await
            && r.into_inner()
                .consoles
                .iter()
                .any(|x| x.console_id == console_id && x.connected)
        {
            return Ok(());
        }
        if t0.elapsed() > within {
            return Err(HilError::Link(format!(
                "console {console_id} did not connect within {within:?}"
            )));
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// The session's files from `ExportSession` (path → bytes).
pub async fn export(
    addr: &DaemonAddr,
    session_id: &str,
) -> Result<HashMap<String, Vec<u8>>, HilError> {
    let mut c = sessions_client(addr).await?;
    let mut chunks = c
        .export_session(pb::ExportSessionRequest {
            session_id: session_id.to_string(),
        })
        .await?
        .into_inner();
    let mut files: HashMap<String, Vec<u8>> = HashMap::new();
    while let Some(ch) = chunks.next().await {
        let ch = ch?;
        files
            .entry(ch.path)
            .or_default()
            .extend_from_slice(&ch.data);
    }
    Ok(files)
}

fn waveform_of(
    files: &HashMap<String, Vec<u8>>,
    id: &str,
) -> Result<(Vec<f64>, Vec<f64>), HilError> {
    let path = format!("waveforms/{id}.json");
    let bytes = files
        .get(&path)
        .ok_or_else(|| HilError::Link(format!("export has no {path}")))?;
    let w: spinloop::design::problem::WaveformFile =
        serde_json::from_slice(bytes).map_err(|e| HilError::Link(format!("export {path}: {e}")))?;
    Ok((w.ux, w.uy))
}

/// Creates the scenario's session on the daemon at `addr` (with its simulated console in this
/// process unless `external_console`), follows it to the end and scores it. `print` gets a
/// line per event.
pub async fn run_scenario(
    scenario: &Scenario,
    addr: &DaemonAddr,
    options: &RunOptions,
    print: &mut (dyn FnMut(&str) + Send),
) -> Result<Report, HilError> {
    let deadline = Instant::now() + options.timeout;
    let console_id = scenario.console_id();
    let stats = Arc::new(LinkStats::default());
    let link = if options.external_console {
        None
    } else {
        let physics = scenario.console()?;
        print(&format!(
            "simulated console {console_id} ({:?}): noise SD {:.4e} per component (SNR {} → reference peak {:.1})",
            scenario.console.kind,
            physics.noise_sd(),
            scenario.snr.map_or_else(|| "∞".into(), |s| s.to_string()),
            physics.reference_peak()
        ));
        Some(tokio::spawn(run_console(
            addr.clone(),
            physics,
            LinkOptions::default(),
            stats.clone(),
        )))
    };
    let result = async {
        wait_connected(addr, &console_id, Duration::from_secs(60)).await?;
        let mut c = sessions_client(addr).await?;
        let created = c
            .create_session(pb::CreateSessionRequest {
                spec: Some(scenario.session_pb()),
            })
            .await?
            .into_inner();
        print(&format!("session {}: {}", created.id, created.label));
        let seen = follow(addr, &created.id, deadline, print).await?;
        let mut c = sessions_client(addr).await?;
        let s = c
            .get_session(pb::GetSessionRequest {
                session_id: created.id.clone(),
            })
            .await?
            .into_inner();
        let files = export(addr, &created.id).await?;
        Ok::<_, HilError>((created.id, seen, s, files))
    }
    .await;
    if let Some(l) = link {
        l.abort();
    }
    let (session_id, seen, s, files) = result?;
    score(scenario, session_id, seen, &s, &files).await
}

async fn score(
    scenario: &Scenario,
    session_id: String,
    seen: Seen,
    s: &pb::Session,
    files: &HashMap<String, Vec<u8>>,
) -> Result<Report, HilError> {
    let param = |n: &str| {
        s.hardware
            .iter()
            .find(|p| p.name == n)
            .map_or(f64::NAN, |p| p.value)
    };
    let truth = scenario.truth;
    let tr = scenario.profile().tr_s;
    let t_last = f64::from(s.acquisitions.saturating_sub(1)) * tr;
    let first = seen
        .waveforms
        .iter()
        .find(|(_, probe)| !probe)
        .map(|(id, _)| id.clone());
    let last = seen
        .waveforms
        .iter()
        .rev()
        .find(|(_, probe)| !probe)
        .map(|(id, _)| id.clone());
    let (Some(first), Some(last)) = (first, last) else {
        return Err(HilError::Link(format!(
            "session {session_id} sent no design waveform"
        )));
    };
    let closed_w = waveform_of(files, &last)?;
    let open_w = waveform_of(files, &first)?;
    let problem = scenario.problem()?;
    let ensemble = scenario.session.ensemble.clone();
    let designs = seen.designs;
    let (closed, open, orac) = tokio::task::spawn_blocking(move || {
        let mut ev = TrueHardware::new(problem.clone(), truth)?;
        let closed = ev.objective(&closed_w.0, &closed_w.1, t_last)?;
        let open = ev.objective(&open_w.0, &open_w.1, t_last)?;
        let d = oracle(problem, ensemble, &truth, t_last, designs)?;
        let orac = ev.objective(&d.ux, &d.uy, t_last)?;
        Ok::<_, HilError>((closed, open, orac))
    })
    .await
    .map_err(|e| HilError::Link(format!("evaluation task: {e}")))??;
    let state = seen.final_kind.clone().unwrap_or_else(|| "open".into());
    let mut fits = seen.fits;
    for f in &mut fits {
        f.true_b0_hz = truth.b0_at(f64::from(f.acquisitions.saturating_sub(1)) * tr);
    }
    let mut r = Report {
        scenario: scenario.name.clone(),
        session_id,
        state,
        acquisitions: s.acquisitions,
        waveforms: s.waveforms,
        designs,
        fits,
        true_b1: truth.b1_scale,
        true_b0_hz: truth.b0_at(t_last),
        fitted_b1: param("b1_scale"),
        fitted_b0_hz: param("b0_offset_hz"),
        closed_loop: closed,
        oracle: orac,
        open_loop: open,
        closed_ratio: ratio(closed, orac),
        open_ratio: ratio(open, orac),
        checks: Vec::new(),
    };
    r.checks = checks(scenario, &r);
    Ok(r)
}

fn checks(scenario: &Scenario, r: &Report) -> Vec<Check> {
    let e = &scenario.expect;
    let mut v = Vec::new();
    let want = e.state.clone().unwrap_or_else(|| "converged".into());
    if want != "any" {
        v.push(Check {
            name: "final state".into(),
            ok: r.state == want,
            detail: format!("{} (expected {want})", r.state),
        });
    }
    if let Some(t) = e.b1_rel_tol {
        let err = (r.fitted_b1 - r.true_b1).abs() / r.true_b1;
        v.push(Check {
            name: "B1 scale".into(),
            ok: err <= t,
            detail: format!("|error| {:.3} % (≤ {:.3} %)", 100.0 * err, 100.0 * t),
        });
    }
    if let Some(t) = e.b0_tol_hz {
        let err = (r.fitted_b0_hz - r.true_b0_hz).abs();
        v.push(Check {
            name: "B0 offset".into(),
            ok: err <= t,
            detail: format!("|error| {err:.3} Hz (≤ {t} Hz)"),
        });
    }
    if let Some(m) = e.max_acquisitions {
        v.push(Check {
            name: "acquisitions".into(),
            ok: r.acquisitions <= m,
            detail: format!("{} (≤ {m})", r.acquisitions),
        });
    }
    if let Some(m) = e.min_oracle_ratio {
        v.push(Check {
            name: "closed loop / oracle".into(),
            ok: r.closed_ratio >= m,
            detail: format!(
                "{:.4} (≥ {m}); open loop {:.4}",
                r.closed_ratio, r.open_ratio
            ),
        });
    }
    v
}

/// Every acquisition acked to a console (its ack log, [`LinkOptions::ack_log`]) that the
/// session's export does not list by idempotency key. Empty = nothing acknowledged was lost.
pub fn missing_acked(
    ack_log: &str,
    files: &HashMap<String, Vec<u8>>,
) -> Result<Vec<String>, HilError> {
    let index: serde_json::Value = serde_json::from_slice(
        files
            .get("acquisitions.json")
            .ok_or_else(|| HilError::Link("export has no acquisitions.json".into()))?,
    )
    .map_err(|e| HilError::Link(format!("acquisitions.json: {e}")))?;
    let stored: std::collections::HashSet<&str> = index
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|x| x["idempotency_key"].as_str())
                .collect()
        })
        .unwrap_or_default();
    let mut missing = Vec::new();
    for line in ack_log.lines().filter(|l| !l.trim().is_empty()) {
        let v: serde_json::Value = serde_json::from_str(line)
            .map_err(|e| HilError::Link(format!("ack log line {line:?}: {e}")))?;
        let key = v["key"].as_str().unwrap_or_default();
        if !stored.contains(key) {
            missing.push(key.to_string());
        }
    }
    Ok(missing)
}

/// Stats of the in-process console, for callers that run [`run_console`] themselves.
pub fn stats_line(stats: &LinkStats) -> String {
    format!(
        "console link: {} connects, {} waveforms, {} acquisitions, {} sent, {} acked ({} duplicates), {} nacked",
        stats.connects.load(Ordering::Relaxed),
        stats.waveforms.load(Ordering::Relaxed),
        stats.acquired.load(Ordering::Relaxed),
        stats.sent.load(Ordering::Relaxed),
        stats.acked.load(Ordering::Relaxed),
        stats.duplicates.load(Ordering::Relaxed),
        stats.nacked.load(Ordering::Relaxed)
    )
}
