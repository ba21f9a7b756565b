//! End to end, in one process: the daemon on a Unix socket, a simulated console with a
//! hidden B1 error connected over gRPC, an operator creating a session over gRPC, watching
//! its events to the end, and exporting it. The session must converge and the fitted B1
//! scale must be the hidden one.

use std::sync::Arc;
use std::time::Duration;

use spinloop::control::SimConsole;
use spinloop::daemon::config::DaemonConfig;
use spinloop::daemon::pb;
use spinloop::daemon::server::{start_in_process, unix_channel};
use spinloop::daemon::sim_link::{LinkStats, demo, run_sim_console};
use tokio_stream::StreamExt;

fn temp_dir(tag: &str) -> std::path::PathBuf {
    let d = std::env::temp_dir().join(format!("spinloop-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).expect("temp dir");
    d
}

async fn wait_connected(channel: tonic::transport::Channel, id: &str) {
    let mut c = pb::sessions_client::SessionsClient::new(channel);
    for _ in 0..200 {
        let r = c
            .list_consoles(pb::ListConsolesRequest {})
            .await
            .expect("list consoles")
            .into_inner();
        if r.consoles.iter().any(|x| x.console_id == id && x.connected) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("console {id} never connected");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_converges_and_finds_the_hidden_b1() {
    let dir = temp_dir("loop");
    let config = DaemonConfig::new(dir.join("data"), dir.join("d.sock"));
    let daemon = start_in_process(config).await.expect("daemon");
    let channel = unix_channel(&daemon.socket).await.expect("channel");

    let profile = demo::profile("sim-3t-e2e");
    let phantom = demo::phantom(&profile).expect("phantom");
    let sim = SimConsole::new(profile.clone(), phantom, demo::truth(), demo::NOISE_SD, 42)
        .expect("sim console");
    let stats = Arc::new(LinkStats::default());
    let link = tokio::spawn(run_sim_console(channel.clone(), sim, stats.clone()));
    wait_connected(channel.clone(), &profile.id).await;

    let mut sessions = pb::sessions_client::SessionsClient::new(channel.clone());
    let created = sessions
        .create_session(pb::CreateSessionRequest {
            spec: Some(demo::session_spec(&profile.id)),
        })
        .await
        .expect("create")
        .into_inner();
    assert_eq!(created.state, pb::SessionState::Open as i32);

    let mut events = sessions
        .watch_session(pb::WatchSessionRequest {
            session_id: created.id.clone(),
            after_seq: 0,
            until_done: true,
        })
        .await
        .expect("watch")
        .into_inner();
    let mut kinds = Vec::new();
    let mut last_seq = 0;
    let watch = async {
        while let Some(e) = events.next().await {
            let e = e.expect("event");
            assert!(e.seq > last_seq, "events in order, no repeats");
            last_seq = e.seq;
            kinds.push(e.kind.clone());
        }
    };
    tokio::time::timeout(Duration::from_secs(240), watch)
        .await
        .expect("the session ends within 4 minutes");
    assert_eq!(kinds.first().map(String::as_str), Some("created"));
    assert_eq!(
        kinds.last().map(String::as_str),
        Some("converged"),
        "{kinds:?}"
    );
    for k in ["waveform_sent", "acquisition", "fit", "objective"] {
        assert!(kinds.iter().any(|x| x == k), "{k} missing: {kinds:?}");
    }

    let s = sessions
        .get_session(pb::GetSessionRequest {
            session_id: created.id.clone(),
        })
        .await
        .expect("get")
        .into_inner();
    assert_eq!(s.state, pb::SessionState::Converged as i32);
    let b1 = s
        .hardware
        .iter()
        .find(|p| p.name == "b1_scale")
        .expect("b1 fitted");
    assert!(
        (b1.value - 0.8).abs() < (4.0 * b1.std_error).max(0.01),
        "fitted B1 {} ± {} vs hidden 0.8",
        b1.value,
        b1.std_error
    );
    assert!(b1.std_error < 0.02, "σ(B1) = {}", b1.std_error);
    assert_eq!(
        u64::from(s.acquisitions),
        stats.acked.load(std::sync::atomic::Ordering::Relaxed)
    );
    assert_eq!(stats.nacked.load(std::sync::atomic::Ordering::Relaxed), 0);

    // Export: one NIfTI-MRS per acquisition, Pulseq + Bruker + JSON per waveform.
    let mut chunks = sessions
        .export_session(pb::ExportSessionRequest {
            session_id: created.id.clone(),
        })
        .await
        .expect("export")
        .into_inner();
    let mut files: Vec<(String, Vec<u8>)> = Vec::new();
    while let Some(c) = chunks.next().await {
        let c = c.expect("chunk");
        match files.last_mut() {
            Some((p, d)) if *p == c.path => d.extend_from_slice(&c.data),
            _ => files.push((c.path.clone(), c.data.clone())),
        }
    }
    let count = |suffix: &str| files.iter().filter(|(p, _)| p.ends_with(suffix)).count();
    assert_eq!(count(".nii") as u32, s.acquisitions);
    assert_eq!(count(".seq") as u32, s.waveforms);
    assert_eq!(count(".bruker.shape") as u32, s.waveforms);
    for (p, d) in &files {
        if p.ends_with(".nii") {
            let n = spinloop::formats::nifti_mrs::NiftiMrs::from_bytes(d, p).expect("nifti");
            assert_eq!(n.points(), 512);
        }
    }

    // Errors a client can make: unknown session, a bad id, cancelling a finished session.
    let e = sessions
        .get_session(pb::GetSessionRequest {
            session_id: "no-such-session".into(),
        })
        .await
        .expect_err("unknown");
    assert_eq!(e.code(), tonic::Code::NotFound);
    let e = sessions
        .get_session(pb::GetSessionRequest {
            session_id: "bad id!".into(),
        })
        .await
        .expect_err("bad id");
    assert_eq!(e.code(), tonic::Code::InvalidArgument);
    let e = sessions
        .cancel_session(pb::CancelSessionRequest {
            session_id: created.id.clone(),
            reason: String::new(),
        })
        .await
        .expect_err("already ended");
    assert_eq!(e.code(), tonic::Code::FailedPrecondition);
    let mut bad = demo::session_spec(&profile.id);
    bad.targets = vec!["Unobtainium".into()];
    bad.concentrations.clear();
    let e = sessions
        .create_session(pb::CreateSessionRequest { spec: Some(bad) })
        .await
        .expect_err("bad spec");
    assert_eq!(e.code(), tonic::Code::InvalidArgument);
    assert!(e.message().contains("Unobtainium"), "{}", e.message());
    let e = sessions
        .create_session(pb::CreateSessionRequest {
            spec: Some(demo::session_spec("no-such-console")),
        })
        .await
        .expect_err("unknown console");
    assert_eq!(e.code(), tonic::Code::NotFound);

    daemon.shutdown();
    daemon.join().await.expect("clean shutdown");
    link.abort();
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_stops_a_running_session() {
    let dir = temp_dir("cancel");
    let config = DaemonConfig::new(dir.join("data"), dir.join("d.sock"));
    let daemon = start_in_process(config).await.expect("daemon");
    let channel = unix_channel(&daemon.socket).await.expect("channel");
    // A console that says hello and then never acquires: the session waits on it.
    let profile = demo::profile("sim-3t-silent");
    let (tx, rx) = tokio::sync::mpsc::channel(4);
    tx.send(pb::ConsoleMessage {
        msg: Some(pb::console_message::Msg::Hello(
            spinloop::daemon::sim_link::hello_of(&profile),
        )),
    })
    .await
    .expect("hello");
    let mut console = pb::console_client::ConsoleClient::new(channel.clone());
    let mut inbound = console
        .connect(tokio_stream::wrappers::ReceiverStream::new(rx))
        .await
        .expect("connect")
        .into_inner();
    wait_connected(channel.clone(), &profile.id).await;
    let mut sessions = pb::sessions_client::SessionsClient::new(channel.clone());
    let created = sessions
        .create_session(pb::CreateSessionRequest {
            spec: Some(demo::session_spec(&profile.id)),
        })
        .await
        .expect("create")
        .into_inner();
    // The console receives the first waveform (after the welcome).
    let mut got_waveform = false;
    while let Some(m) = tokio::time::timeout(Duration::from_secs(120), inbound.next())
        .await
        .expect("a message")
    {
        if let Some(pb::daemon_message::Msg::Waveform(w)) = m.expect("message").msg {
            assert_eq!(w.session_id, created.id);
            assert!(w.ux.iter().chain(&w.uy).all(|x| x.is_finite()));
            got_waveform = true;
            break;
        }
    }
    assert!(got_waveform);
    let s = sessions
        .cancel_session(pb::CancelSessionRequest {
            session_id: created.id.clone(),
            reason: "operator test".into(),
        })
        .await
        .expect("cancel")
        .into_inner();
    assert_eq!(s.state, pb::SessionState::Cancelled as i32);
    let listed = sessions
        .list_sessions(pb::ListSessionsRequest {
            console_id: profile.id.clone(),
            open_only: true,
        })
        .await
        .expect("list")
        .into_inner();
    assert!(listed.sessions.is_empty());
    drop(tx);
    daemon.shutdown();
    daemon.join().await.expect("clean shutdown");
    let _ = std::fs::remove_dir_all(&dir);
}
