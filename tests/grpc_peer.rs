//! The daemon's API from the ecosystem: a Python `grpcio` client generated from
//! `proto/spinloop/v1` (tests/peers/grpc_client_peer.py, in the peer venv `.ci/run` builds)
//! checks health and reflection, creates a session on a simulated console, watches its events
//! to convergence, and gets INVALID_ARGUMENT for a bad spec.

use std::sync::Arc;

use spinloop::control::SimConsole;
use spinloop::daemon::config::DaemonConfig;
use spinloop::daemon::server::{start_in_process, unix_channel};
use spinloop::daemon::sim_link::{LinkStats, demo, run_sim_console};

/// The peer Python, or `None` to skip outside CI.
fn peer_python() -> Option<String> {
    match std::env::var("SPINLOOP_PEER_PYTHON") {
        Ok(p) if !p.is_empty() => Some(p),
        _ => {
            assert!(
                std::env::var_os("CI").is_none(),
                "peer venv required in CI: set SPINLOOP_PEER_PYTHON to a Python with grpcio, \
                 grpcio-tools, grpcio-health-checking and grpcio-reflection"
            );
            println!("skipped: SPINLOOP_PEER_PYTHON is not set (grpcio peer test)");
            None
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_python_grpcio_client_runs_a_session() {
    let Some(python) = peer_python() else {
        return;
    };
    let dir = std::env::temp_dir().join(format!("spinloop-grpc-peer-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(dir.join("stubs")).expect("temp dir");
    let daemon = start_in_process(DaemonConfig::new(dir.join("data"), dir.join("d.sock")))
        .await
        .expect("daemon");
    let channel = unix_channel(&daemon.socket).await.expect("channel");
    let profile = demo::profile("sim-3t-python");
    let phantom = demo::phantom(&profile).expect("phantom");
    let sim = SimConsole::new(profile.clone(), phantom, demo::truth(), demo::NOISE_SD, 9)
        .expect("sim console");
    let link = tokio::spawn(run_sim_console(
        channel,
        sim,
        Arc::new(LinkStats::default()),
    ));

    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/peers/grpc_client_peer.py"
    );
    let protos = concat!(env!("CARGO_MANIFEST_DIR"), "/proto");
    // The console connects within moments; the script waits for the channel, and ListConsoles
    // must see it, so give the link a head start.
    for _ in 0..200 {
        if daemon
            .shared()
            .is_some_and(|s| s.consoles.is_connected(&profile.id))
        {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(25)).await;
    }
    let out = tokio::process::Command::new(&python)
        .arg(script)
        .arg(&daemon.socket)
        .arg(&profile.id)
        .arg(protos)
        .arg(dir.join("stubs"))
        .output()
        .await
        .expect("running the peer");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "python peer failed ({}):\n{stdout}\n{stderr}",
        out.status
    );
    let seen: serde_json::Value = serde_json::from_str(stdout.trim()).expect("peer JSON");
    assert_eq!(seen["health"], "SERVING");
    assert_eq!(seen["bad_spec"], "INVALID_ARGUMENT");
    let b1 = seen["b1_scale"][0].as_f64().expect("b1");
    assert!((b1 - 0.8).abs() < 0.01, "b1 {b1}");
    daemon.shutdown();
    daemon.join().await.expect("shutdown");
    link.abort();
    let _ = std::fs::remove_dir_all(&dir);
}
