//! `kill -9` of the daemon mid-session, restart on the same state directory: the session
//! resumes from its checkpoint and completes within the scenario's tolerances, and every
//! acquisition the console saw acknowledged is stored (checked by idempotency key against
//! the session's export). Real processes: `spinloopd` (twice), `spinloop-hil console` (it
//! reconnects and retries unacked acquisitions with their keys), `spinloop-hil run
//! --external-console` (it re-attaches to the event stream).

mod common;

use std::time::Duration;

use common::*;
use spinloop_hil::run::ChildDaemon;

#[test]
fn the_session_survives_kill_9_of_the_daemon() {
    let dir = temp_dir("kill9");
    let state = dir.join("daemon");
    let bin = spinloopd();
    let daemon = ChildDaemon::spawn(&bin, &state, true).expect("spinloopd");
    let socket = daemon.socket.clone();
    let addr = format!("unix:{}", socket.display());
    let file = dir.join("s.toml");
    // Three acquisitions per waveform, sent back to back: when the first ack is logged the
    // others may be in flight, committed-but-unacked or acked — the kill lands among them.
    // (A bigger budget than the sweep's for these extra acquisitions; the physics
    // tolerances are the sweep's.)
    let text = light_scenario("kill9", 1.15, -15.0, 4)
        .replace("acquisitions_per_round = 1", "acquisitions_per_round = 3")
        .replace("max_acquisitions = 8,", "max_acquisitions = 15,")
        .replace("max_acquisitions = 6\n", "max_acquisitions = 12\n");
    std::fs::write(&file, text).expect("scenario");
    let acks = dir.join("acks.jsonl");
    let log = dir.join("stderr.log");

    let mut console = Proc::spawn(
        hil()
            .env("RUST_LOG", "spinloop_hil=info")
            .arg("console")
            .arg(&file)
            .args(["--daemon", &addr, "--pause-after", "1", "--ack-log"])
            .arg(&acks),
        &log,
    );
    let mut run = Proc::spawn(
        hil()
            .arg("run")
            .arg(&file)
            .args(["--daemon", &addr, "--external-console", "--json"]),
        &log,
    );
    wait_lines(&acks, 1, Duration::from_secs(60));
    // SIGKILL (ChildDaemon's drop), the state directory kept.
    drop(daemon);
    assert!(
        console.running() && run.running(),
        "clients outlive the daemon"
    );
    let daemon = ChildDaemon::spawn(&bin, &state, false).expect("spinloopd restart");
    assert_eq!(daemon.socket, socket);

    let out = run.wait(Duration::from_secs(60));
    console.kill();
    let r = report(&out, &log);
    assert!(
        out.status.success(),
        "tolerances missed: {}\n{}",
        r["checks"],
        std::fs::read_to_string(&log).unwrap_or_default()
    );
    assert_eq!(r["state"], "converged");
    let session = r["session_id"].as_str().expect("session id");
    let acked = check_acked_stored(&daemon.socket, session, &[&acks]);
    assert_eq!(acked as u64, r["acquisitions"].as_u64().expect("count"));
    assert!(acked >= 6, "acquisitions before and after the restart");
    eprintln!(
        "kill -9: converged after {} acquisitions, B1 {} (true 1.15), closed/oracle {}",
        r["acquisitions"], r["fitted_b1"], r["closed_ratio"]
    );
}
