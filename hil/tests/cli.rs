//! The `spinloop-hil` command line: `list`, clear errors (exit 2) for bad scenario files and
//! addresses, exit 1 when a tolerance is missed, and bit-identical results when the same
//! scenario runs twice (same seed → same FIDs → same fits, designs and scores).

mod common;

use std::time::Duration;

use common::*;
use spinloop_hil::run::ChildDaemon;

#[test]
fn list_shows_the_built_in_scenarios() {
    let out = hil().arg("list").output().expect("list");
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    for name in ["3t-brain-b1-low", "3t-brain-drift-ampm", "11t7-citrate"] {
        assert!(text.contains(name), "{name} missing:\n{text}");
    }
    assert!(!text.contains("INVALID"), "{text}");
}

#[test]
fn bad_scenarios_and_addresses_are_clear_errors() {
    let dir = temp_dir("cli-bad");
    let file = dir.join("bad.toml");
    let text = light_scenario("bad", 1.0, 0.0, 1).replace("[truth]\n", "[truth]\nb1_scael = 2.0\n");
    std::fs::write(&file, text).expect("write");
    let out = hil().arg("run").arg(&file).output().expect("run");
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("b1_scael") && err.contains("bad.toml"),
        "{err}"
    );

    let out = hil()
        .args(["run", "no-such-scenario"])
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no-such-scenario"));

    let out = hil()
        .args(["run", "11t7-citrate", "--daemon", "http://x"])
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("unix:PATH or tcp:HOST:PORT"));
}

#[test]
fn a_missed_tolerance_exits_1_and_reruns_are_bit_identical() {
    let dir = temp_dir("cli-runs");
    let daemon = ChildDaemon::spawn(&spinloopd(), &dir.join("daemon"), false).expect("spinloopd");
    let addr = format!("unix:{}", daemon.socket.display());
    let file = dir.join("s.toml");
    std::fs::write(&file, light_scenario("rerun", 0.9, -4.0, 77)).expect("write");
    let run = |log: &str| {
        let log = dir.join(log);
        let out = Proc::spawn(
            hil()
                .arg("run")
                .arg(&file)
                .args(["--daemon", &addr, "--json"]),
            &log,
        )
        .wait(Duration::from_secs(60));
        (out.status.code(), report(&out, &log))
    };
    let (c1, r1) = run("a.log");
    let (c2, r2) = run("b.log");
    assert_eq!((c1, c2), (Some(0), Some(0)));
    for k in [
        "fitted_b1",
        "fitted_b0_hz",
        "closed_loop",
        "oracle",
        "open_loop",
        "acquisitions",
    ] {
        assert_eq!(r1[k], r2[k], "{k} differs between runs");
    }
    assert_eq!(r1["fits"], r2["fits"]);

    // The same run with an unreachable tolerance (one acquisition): exit 1, the miss named.
    let strict = dir.join("strict.toml");
    std::fs::write(
        &strict,
        light_scenario("strict", 0.9, -4.0, 77)
            .replace("max_acquisitions = 6", "max_acquisitions = 1"),
    )
    .expect("write");
    let log = dir.join("strict.log");
    let out = Proc::spawn(
        hil().arg("run").arg(&strict).args(["--daemon", &addr]),
        &log,
    )
    .wait(Duration::from_secs(60));
    assert_eq!(out.status.code(), Some(1));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("[MISS] acquisitions"), "{text}");
}

#[test]
fn a_scenario_runs_over_tcp() {
    let dir = temp_dir("cli-tcp");
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port();
    let tcp = format!("127.0.0.1:{port}");
    let _daemon =
        ChildDaemon::spawn_with(&spinloopd(), &dir.join("daemon"), false, &["--tcp", &tcp])
            .expect("spinloopd");
    let file = dir.join("s.toml");
    std::fs::write(&file, light_scenario("tcp", 1.1, 2.0, 9)).expect("write");
    let log = dir.join("tcp.log");
    let out = Proc::spawn(
        hil()
            .arg("run")
            .arg(&file)
            .args(["--daemon", &format!("tcp:{tcp}"), "--json"]),
        &log,
    )
    .wait(Duration::from_secs(60));
    let r = report(&out, &log);
    assert_eq!(out.status.code(), Some(0), "{}", r["checks"]);
    assert_eq!(r["state"], "converged");
}
