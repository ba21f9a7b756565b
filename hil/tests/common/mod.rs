//! Shared helpers of the end-to-end tests: the real `spinloopd` (built if absent), the real
//! `spinloop-hil`, temporary directories, a light 3 T scenario template, process waits.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// The `spinloopd` binary next to the test's target directory; built with
/// `cargo build --bin spinloopd` if it is not there.
pub fn spinloopd() -> PathBuf {
    if let Some(p) = spinloop_hil::run::find_spinloopd() {
        return p;
    }
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let status = Command::new(cargo)
        .args(["build", "-p", "spinloop", "--bin", "spinloopd"])
        .current_dir(&root)
        .status()
        .expect("running cargo build --bin spinloopd");
    assert!(status.success(), "cargo build --bin spinloopd failed");
    spinloop_hil::run::find_spinloopd().expect("spinloopd after building it")
}

/// The `spinloop-hil` binary under test.
pub fn hil() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_spinloop-hil"));
    c.env("RUST_LOG", "warn");
    c
}

/// A fresh temporary directory.
pub fn temp_dir(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("spinloop-hil-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).expect("temp dir");
    d
}

/// A 3 T scenario with a light phantom (NAA 12, Cr 8, PCh 2 mM: singlets and NAA's aspartyl
/// multiplet — fast to simulate), SNR 500, hidden B1 scale `b1` and B0 offset `b0_hz`, and
/// the tolerances of the sweep: B1 within 2 %, B0 within 0.5 Hz, ≥ 95 % of the oracle within
/// ≤ 6 acquisitions.
pub fn light_scenario(name: &str, b1: f64, b0_hz: f64, seed: u64) -> String {
    format!(
        r#"name = "{name}"
description = "light 3 T phantom, B1 x{b1}, B0 {b0_hz:+} Hz"
seed = {seed}
snr = 500.0

[console]
kind = "3t-clinical"

[truth]
b1_scale = {b1}
b0_offset_hz = {b0_hz}
rx_phase_rad = 0.3
extra_linewidth_hz = 1.0

[phantom]
metabolites = ["NAA", "Cr", "PCh"]
concentrations = [12.0, 8.0, 2.0]

[session]
label = "HIL sweep B1 x{b1} B0 {b0_hz:+} Hz"
sequence = {{ kind = "pulse_acquire" }}
pulse = {{ segments = 40, dt_s = 20e-6 }}
constraints = {{ energy_weight = 0.05, smoothness_weight = 1e-3 }}
budget = {{ max_acquisitions = 8, max_rounds = 5, optimizer_iterations = 25, acquisitions_per_round = 1, averages = 1 }}
convergence = {{ objective_tolerance = 0.02, probe_b1_sigma = 0.02 }}

[[session.objective]]
kind = "enhancement"
metabolite = "NAA"
window_ppm = [1.9, 2.1]

[expect]
state = "converged"
b1_rel_tol = 0.02
b0_tol_hz = 0.5
max_acquisitions = 6
min_oracle_ratio = 0.95
"#
    )
}

/// A child process killed (SIGKILL) on drop.
pub struct Proc(pub Option<Child>);

impl Proc {
    /// Starts `cmd` with stdout piped and stderr appended to `log` (printed by the test on
    /// failure; a pipe could fill and stall the child while the test polls).
    pub fn spawn(cmd: &mut Command, log: &Path) -> Proc {
        let err = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .expect("log file");
        Proc(Some(
            cmd.stdin(Stdio::null())
                .stdout(Stdio::piped())
                .stderr(err)
                .spawn()
                .expect("spawn"),
        ))
    }

    /// SIGKILL and reap.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.0.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Still running?
    pub fn running(&mut self) -> bool {
        self.0
            .as_mut()
            .is_some_and(|c| matches!(c.try_wait(), Ok(None)))
    }

    /// Waits (polling) up to `within` for the exit; its output.
    pub fn wait(&mut self, within: Duration) -> Output {
        let t0 = Instant::now();
        while self.running() {
            assert!(
                t0.elapsed() < within,
                "process did not end within {within:?}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        self.0
            .take()
            .expect("child")
            .wait_with_output()
            .expect("output")
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Lines of a file (0 if absent).
pub fn lines(path: &Path) -> usize {
    std::fs::read_to_string(path).map_or(0, |s| s.lines().filter(|l| !l.is_empty()).count())
}

/// Waits until `path` has at least `n` lines.
pub fn wait_lines(path: &Path, n: usize, within: Duration) {
    let t0 = Instant::now();
    while lines(path) < n {
        assert!(
            t0.elapsed() < within,
            "{} never reached {n} lines",
            path.display()
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// The JSON report a `spinloop-hil run --json` printed.
pub fn report(out: &Output, log: &Path) -> serde_json::Value {
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "no report JSON ({e}; {}): {}\n{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            std::fs::read_to_string(log).unwrap_or_default()
        )
    })
}

/// Every acked key of the ack logs is stored in the session (its export), and how many
/// distinct keys were acked.
pub fn check_acked_stored(socket: &Path, session_id: &str, logs: &[&Path]) -> usize {
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let addr = spinloop_hil::grpc::DaemonAddr::Unix(socket.to_path_buf());
    let files = rt
        .block_on(spinloop_hil::run::export(&addr, session_id))
        .expect("export");
    let mut all = String::new();
    for l in logs {
        all.push_str(&std::fs::read_to_string(l).unwrap_or_default());
    }
    let missing = spinloop_hil::run::missing_acked(&all, &files).expect("ack logs");
    assert!(missing.is_empty(), "acked but not stored: {missing:?}");
    let keys: std::collections::HashSet<String> = all
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter_map(|v| v["key"].as_str().map(String::from))
        .collect();
    keys.len()
}
