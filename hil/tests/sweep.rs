//! The B1/B0 sweep with real processes: one `spinloopd` child, then for every hidden
//! (B1 scale, B0 offset) a `spinloop-hil run --daemon` process (its simulated console speaks
//! gRPC to the daemon). Each session must estimate B1 within 2 % and B0 within 0.5 Hz and
//! reach ≥ 95 % of the oracle objective within ≤ 6 acquisitions (the scenario's tolerances:
//! `spinloop-hil` exits non-zero otherwise). The table (with the open-loop score beside it)
//! is printed.

mod common;

use std::time::{Duration, Instant};

use common::*;
use spinloop_hil::run::ChildDaemon;

#[test]
fn b1_and_b0_sweep_converges_to_the_oracle() {
    let dir = temp_dir("sweep");
    let daemon = ChildDaemon::spawn(&spinloopd(), &dir.join("daemon"), false).expect("spinloopd");
    let addr = format!("unix:{}", daemon.socket.display());
    let mut rows = Vec::new();
    let mut failures = Vec::new();
    let t0 = Instant::now();
    let mut i = 0u64;
    for b1 in [0.7, 0.85, 1.0, 1.15, 1.3] {
        for b0 in [-15.0, 7.0, 15.0] {
            i += 1;
            let file = dir.join(format!("sweep-{i}.toml"));
            std::fs::write(
                &file,
                light_scenario(&format!("sweep-{i}"), b1, b0, 100 + i),
            )
            .expect("scenario");
            let log = dir.join(format!("sweep-{i}.log"));
            let out = Proc::spawn(
                hil()
                    .arg("run")
                    .arg(&file)
                    .args(["--daemon", &addr, "--json"]),
                &log,
            )
            .wait(Duration::from_secs(120));
            let r = report(&out, &log);
            let f = |k: &str| r[k].as_f64().unwrap_or(f64::NAN);
            let row = format!(
                "{b1:>5.2} {b0:>+6.1} | {:>8.5} {:>+8.3} | {:>3} | {:>7.4} | {:>7.4} | {}",
                f("fitted_b1"),
                f("fitted_b0_hz"),
                r["acquisitions"],
                f("closed_ratio"),
                f("open_ratio"),
                r["state"].as_str().unwrap_or("?"),
            );
            if !out.status.success() {
                failures.push(format!(
                    "{row}  checks: {}\n{}",
                    r["checks"],
                    std::fs::read_to_string(&log).unwrap_or_default()
                ));
            }
            rows.push(row);
        }
    }
    eprintln!("hidden B1    B0 | fitted B1  B0 (Hz) | acq | closed/oracle | open/oracle | state");
    for r in &rows {
        eprintln!("{r}");
    }
    eprintln!(
        "{} sessions in {:.1} s",
        rows.len(),
        t0.elapsed().as_secs_f64()
    );
    assert!(
        failures.is_empty(),
        "missed tolerances:\n{}",
        failures.join("\n")
    );
}
