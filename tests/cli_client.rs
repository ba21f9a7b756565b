//! `spinloop` as the daemon's client and the main job: `spinloop run` converges against the
//! built-in simulated console; `sessions list/show/watch/export/cancel` and `consoles list`
//! against a daemon, human-readable and `--json`, with clear errors.

use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use spinloop::control::SimConsole;
use spinloop::daemon::config::DaemonConfig;
use spinloop::daemon::pb;
use spinloop::daemon::server::{start_in_process, unix_channel};
use spinloop::daemon::sim_link::{LinkStats, demo, run_sim_console};
use tokio_stream::StreamExt;

fn spinloop(socket: &Path, args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_spinloop"))
        .args(args)
        .arg("--socket")
        .arg(socket)
        .env_remove("SPINLOOP_SOCKET")
        .output()
        .expect("running spinloop")
}

fn ok(out: &std::process::Output) -> String {
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        out.status.success(),
        "spinloop failed: {}\n{stdout}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

#[test]
fn the_main_job_converges() {
    let dir = std::env::temp_dir().join(format!("spinloop-cli-run-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let out = Command::new(env!("CARGO_BIN_EXE_spinloop"))
        .args(["run", "--data-dir"])
        .arg(dir.join("data"))
        .arg("--export")
        .arg(dir.join("export"))
        .arg("--plots")
        .arg(dir.join("plots"))
        .output()
        .expect("spinloop run");
    let stdout = ok(&out);
    assert!(stdout.contains("[converged]"), "{stdout}");
    assert!(stdout.contains("fitted vs hidden truth"), "{stdout}");
    assert!(dir.join("export/session.json").exists());
    assert!(dir.join("export/acquisitions/0001.nii").exists());
    // Per-iteration plots: one waveform and one spectrum per acquisition (the export has one
    // NIfTI-MRS file per acquisition), and the stacked spectra; each a real PNG.
    let acquisitions = std::fs::read_dir(dir.join("export/acquisitions"))
        .expect("acquisitions")
        .filter(|e| {
            e.as_ref()
                .is_ok_and(|e| e.path().extension().is_some_and(|x| x == "nii"))
        })
        .count();
    assert!(acquisitions >= 1);
    let mut names: Vec<String> = (1..=acquisitions)
        .flat_map(|i| {
            [
                format!("iter-{i:02}-waveform.png"),
                format!("iter-{i:02}-spectrum.png"),
            ]
        })
        .collect();
    names.push("spectra.png".into());
    for name in &names {
        let path = dir.join("plots").join(name);
        let bytes = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        assert_eq!(&bytes[..8], b"\x89PNG\r\n\x1a\n", "{name} is not a PNG");
        assert!(
            stdout.contains(&format!("plot {}", path.display())),
            "{stdout}"
        );
    }
    let plotted = std::fs::read_dir(dir.join("plots")).expect("plots").count();
    assert_eq!(
        plotted,
        names.len(),
        "unexpected files in the plot directory"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_and_consoles_commands() {
    let dir = std::env::temp_dir().join(format!("spinloop-cli-client-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("dir");
    let daemon = start_in_process(DaemonConfig::new(dir.join("data"), dir.join("d.sock")))
        .await
        .expect("daemon");
    let socket = daemon.socket.clone();
    let channel = unix_channel(&socket).await.expect("channel");
    let profile = demo::profile("sim-3t-cli");
    let sim = SimConsole::new(
        profile.clone(),
        demo::phantom(&profile).expect("phantom"),
        demo::truth(),
        demo::NOISE_SD,
        3,
    )
    .expect("sim");
    let link = tokio::spawn(run_sim_console(
        channel.clone(),
        sim,
        Arc::new(LinkStats::default()),
    ));
    for _ in 0..200 {
        if daemon
            .shared()
            .is_some_and(|s| s.consoles.is_connected(&profile.id))
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    // A session created through the CLI from a spec file.
    let spec =
        spinloop::daemon::sessions::spec_from_pb(demo::session_spec(&profile.id)).expect("spec");
    let spec_path = dir.join("spec.json");
    std::fs::write(&spec_path, serde_json::to_string(&spec).expect("json")).expect("write");
    let sock = socket.clone();
    let spec_arg = spec_path.to_string_lossy().to_string();
    let created = tokio::task::spawn_blocking(move || {
        ok(&spinloop(
            &sock,
            &["sessions", "create", &spec_arg, "--json"],
        ))
    })
    .await
    .expect("join");
    let created: serde_json::Value = serde_json::from_str(&created).expect("create JSON");
    let id = created["id"].as_str().expect("id").to_string();
    assert_eq!(created["console_id"], profile.id.as_str());

    // Wait for the end through the API, then read it with every command.
    let mut sessions = pb::sessions_client::SessionsClient::new(channel.clone());
    let mut events = sessions
        .watch_session(pb::WatchSessionRequest {
            session_id: id.clone(),
            after_seq: 0,
            until_done: true,
        })
        .await
        .expect("watch")
        .into_inner();
    while let Some(e) = tokio::time::timeout(Duration::from_secs(120), events.next())
        .await
        .expect("in time")
    {
        e.expect("event");
    }
    let sock = socket.clone();
    let export_dir = dir.join("export");
    let (id2, export2) = (id.clone(), export_dir.clone());
    tokio::task::spawn_blocking(move || {
        let list: serde_json::Value =
            serde_json::from_str(&ok(&spinloop(&sock, &["sessions", "list", "--json"])))
                .expect("list JSON");
        assert_eq!(list[0]["id"], id2.as_str());
        assert_eq!(list[0]["state"], "converged");
        let text = ok(&spinloop(&sock, &["sessions", "list"]));
        assert!(text.contains(&id2) && text.contains("converged"), "{text}");

        let show = ok(&spinloop(&sock, &["sessions", "show", &id2]));
        assert!(show.contains("b1_scale"), "{show}");
        let show: serde_json::Value =
            serde_json::from_str(&ok(&spinloop(&sock, &["sessions", "show", &id2, "--json"])))
                .expect("show JSON");
        let b1 = show["hardware"]
            .as_array()
            .and_then(|h| h.iter().find(|p| p["name"] == "b1_scale"))
            .and_then(|p| p["value"].as_f64())
            .expect("b1");
        assert!((b1 - 0.8).abs() < 0.01, "{b1}");

        let watch = ok(&spinloop(&sock, &["sessions", "watch", &id2, "--json"]));
        let kinds: Vec<String> = watch
            .lines()
            .map(|l| {
                serde_json::from_str::<serde_json::Value>(l).expect("event JSON")["kind"]
                    .as_str()
                    .expect("kind")
                    .to_string()
            })
            .collect();
        assert_eq!(kinds.first().map(String::as_str), Some("created"));
        assert_eq!(kinds.last().map(String::as_str), Some("converged"));
        let watch = ok(&spinloop(&sock, &["sessions", "watch", &id2]));
        assert!(watch.contains("objective measured"), "{watch}");

        let out = ok(&spinloop(
            &sock,
            &[
                "sessions",
                "export",
                &id2,
                "--out",
                &export2.to_string_lossy(),
            ],
        ));
        assert!(out.contains("wrote"), "{out}");
        assert!(export2.join("session.json").exists());
        assert!(export2.join("events.json").exists());
        let seq_files = std::fs::read_dir(export2.join("waveforms"))
            .expect("waveforms dir")
            .filter(|e| {
                e.as_ref()
                    .is_ok_and(|e| e.path().extension().is_some_and(|x| x == "seq"))
            })
            .count();
        assert!(seq_files >= 1);

        let consoles: serde_json::Value =
            serde_json::from_str(&ok(&spinloop(&sock, &["consoles", "list", "--json"])))
                .expect("consoles JSON");
        assert_eq!(consoles[0]["console_id"], "sim-3t-cli");
        assert_eq!(consoles[0]["connected"], true);

        // Errors: a finished session cannot be cancelled; an unknown one is not found; a
        // daemon that is not there is named.
        let out = spinloop(&sock, &["sessions", "cancel", &id2]);
        assert!(!out.status.success());
        assert!(String::from_utf8_lossy(&out.stderr).contains("already ended"));
        let out = spinloop(&sock, &["sessions", "show", "no-such-session"]);
        assert!(!out.status.success());
        assert!(String::from_utf8_lossy(&out.stderr).contains("not found"));
        let out = spinloop(
            Path::new("/nonexistent/spinloopd.sock"),
            &["consoles", "list"],
        );
        assert!(!out.status.success());
        assert!(String::from_utf8_lossy(&out.stderr).contains("/nonexistent/spinloopd.sock"));
    })
    .await
    .expect("CLI checks");

    daemon.shutdown();
    daemon.join().await.expect("shutdown");
    link.abort();
    let _ = std::fs::remove_dir_all(&dir);
}
