//! A simulated console process dies mid-session (SIGKILL) and a new one connects: the
//! session resumes (the daemon resends the waveform it waits on) and completes within the
//! scenario's tolerances, and every acquisition either console saw acknowledged is stored.
//! Real processes: `spinloopd`, two `spinloop-hil console`, one `spinloop-hil run
//! --external-console`.

mod common;

use std::time::Duration;

use common::*;
use spinloop_hil::run::ChildDaemon;

#[test]
fn a_killed_console_reconnects_and_the_session_completes() {
    let dir = temp_dir("disconnect");
    let daemon = ChildDaemon::spawn(&spinloopd(), &dir.join("daemon"), false).expect("spinloopd");
    let addr = format!("unix:{}", daemon.socket.display());
    let file = dir.join("s.toml");
    std::fs::write(&file, light_scenario("disconnect", 0.85, 7.0, 3)).expect("scenario");
    let (ack1, ack2) = (dir.join("acks-1.jsonl"), dir.join("acks-2.jsonl"));
    let log = dir.join("stderr.log");

    // Console 1 stalls after its first acked acquisition (so the kill lands mid-session:
    // the session has fitted and sent its next waveform, which this console never answers).
    let mut console1 = Proc::spawn(
        hil()
            .arg("console")
            .arg(&file)
            .args(["--daemon", &addr, "--pause-after", "1", "--ack-log"])
            .arg(&ack1),
        &log,
    );
    let mut run = Proc::spawn(
        hil()
            .arg("run")
            .arg(&file)
            .args(["--daemon", &addr, "--external-console", "--json"]),
        &log,
    );
    wait_lines(&ack1, 1, Duration::from_secs(60));
    std::thread::sleep(Duration::from_millis(300));
    assert!(console1.running(), "console 1 still up before the kill");
    console1.kill();
    assert!(run.running(), "the session waits for its console");

    // A new console process (its clock continues at acquisition 1).
    let mut console2 = Proc::spawn(
        hil()
            .arg("console")
            .arg(&file)
            .args(["--daemon", &addr, "--start-index", "1", "--ack-log"])
            .arg(&ack2),
        &log,
    );
    let out = run.wait(Duration::from_secs(60));
    console2.kill();
    let r = report(&out, &log);
    assert!(
        out.status.success(),
        "tolerances missed: {}\n{}",
        r["checks"],
        std::fs::read_to_string(&log).unwrap_or_default()
    );
    assert_eq!(r["state"], "converged");
    assert!(lines(&ack2) >= 1, "console 2 acquired");
    let session = r["session_id"].as_str().expect("session id");
    let acked = check_acked_stored(&daemon.socket, session, &[&ack1, &ack2]);
    assert_eq!(acked as u64, r["acquisitions"].as_u64().expect("count"));
    eprintln!(
        "disconnect: converged after {} acquisitions, B1 {} (true 0.85), closed/oracle {}",
        r["acquisitions"], r["fitted_b1"], r["closed_ratio"]
    );
}
