//! A session survives `kill -9` of the daemon: the real `spinloopd` binary, a console driven
//! step by step by the test (so the kill lands at a known point: after the first fit, while
//! the session waits for the second waveform's FID), SIGKILL, restart on the same data
//! directory, the console reconnects — the daemon resends the waveform it was waiting on (same
//! id, from the committed checkpoint), the console answers, and the session converges. Every
//! acquisition acked before the kill is still there bit-exact, and the retried one is a
//! duplicate.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use spinloop::control::SimConsole;
use spinloop::daemon::pb;
use spinloop::daemon::server::unix_channel;
use spinloop::daemon::sim_link::{demo, hello_of};
use spinloop::store::Store;
use tokio::sync::mpsc;
use tokio_stream::StreamExt;
use tonic::Streaming;

struct Daemon(Child);

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn spawn(data: &std::path::Path, socket: &std::path::Path) -> Daemon {
    let _ = std::fs::remove_file(socket);
    let child = Command::new(env!("CARGO_BIN_EXE_spinloopd"))
        .arg("--data-dir")
        .arg(data)
        .arg("--socket")
        .arg(socket)
        .env("RUST_LOG", "warn")
        .env_remove("NOTIFY_SOCKET")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawning spinloopd");
    let d = Daemon(child);
    let t0 = Instant::now();
    while std::os::unix::net::UnixStream::connect(socket).is_err() {
        assert!(
            t0.elapsed() < Duration::from_secs(20),
            "spinloopd did not start"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    d
}

/// A console link the test drives by hand.
struct Link {
    tx: mpsc::Sender<pb::ConsoleMessage>,
    rx: Streaming<pb::DaemonMessage>,
    /// Waveforms that arrived while waiting for an ack (a resumed session may resend its
    /// waveform before the ack of a retried acquisition).
    waveforms: std::collections::VecDeque<pb::WaveformCommand>,
}

async fn connect(socket: &std::path::Path, profile: &spinloop::control::ConsoleProfile) -> Link {
    let channel = unix_channel(socket).await.expect("channel");
    let (tx, rx) = mpsc::channel(16);
    tx.send(pb::ConsoleMessage {
        msg: Some(pb::console_message::Msg::Hello(hello_of(profile))),
    })
    .await
    .expect("hello");
    let rx = pb::console_client::ConsoleClient::new(channel)
        .connect(tokio_stream::wrappers::ReceiverStream::new(rx))
        .await
        .expect("connect")
        .into_inner();
    Link {
        tx,
        rx,
        waveforms: Default::default(),
    }
}

impl Link {
    async fn next_waveform(&mut self) -> pb::WaveformCommand {
        if let Some(w) = self.waveforms.pop_front() {
            return w;
        }
        loop {
            let m = tokio::time::timeout(Duration::from_secs(120), self.rx.next())
                .await
                .expect("a message in time")
                .expect("stream open")
                .expect("message");
            if let Some(pb::daemon_message::Msg::Waveform(w)) = m.msg {
                return w;
            }
        }
    }

    async fn acquire(&mut self, a: pb::Acquisition) -> pb::Ack {
        self.tx
            .send(pb::ConsoleMessage {
                msg: Some(pb::console_message::Msg::Acquisition(a)),
            })
            .await
            .expect("send");
        loop {
            let m = tokio::time::timeout(Duration::from_secs(60), self.rx.next())
                .await
                .expect("an ack in time")
                .expect("stream open")
                .expect("message");
            match m.msg {
                Some(pb::daemon_message::Msg::Ack(a)) => return a,
                Some(pb::daemon_message::Msg::Nack(n)) => panic!("nack: {}", n.message),
                Some(pb::daemon_message::Msg::Waveform(w)) => self.waveforms.push_back(w),
                _ => {}
            }
        }
    }
}

fn acquisition(sim: &mut SimConsole, w: &pb::WaveformCommand, key: &str) -> pb::Acquisition {
    let fid = sim.acquire(&w.ux, &w.uy, 1).expect("acquire");
    pb::Acquisition {
        idempotency_key: key.into(),
        waveform_id: w.waveform_id.clone(),
        samples: fid.iter().flat_map(|c| [c.re, c.im]).collect(),
        dwell_s: sim.profile.dwell_s,
        f0_hz: sim.profile.f0_hz,
        averages: 1,
        coil: "sim".into(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_resumes_after_kill_9() {
    let dir = std::env::temp_dir().join(format!("spinloop-resume-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("dir");
    let (data, socket) = (dir.join("data"), dir.join("d.sock"));
    let profile = demo::profile("sim-3t-resume");
    let mut sim = SimConsole::new(
        profile.clone(),
        demo::phantom(&profile).expect("phantom"),
        demo::truth(),
        demo::NOISE_SD,
        21,
    )
    .expect("sim");

    let daemon = spawn(&data, &socket);
    let mut link = connect(&socket, &profile).await;
    let mut sessions =
        pb::sessions_client::SessionsClient::new(unix_channel(&socket).await.expect("channel"));
    // Wait until the console is registered, then create the session.
    let t0 = Instant::now();
    loop {
        let c = sessions
            .list_consoles(pb::ListConsolesRequest {})
            .await
            .expect("consoles")
            .into_inner();
        if c.consoles
            .iter()
            .any(|c| c.console_id == profile.id && c.connected)
        {
            break;
        }
        assert!(t0.elapsed() < Duration::from_secs(20));
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let session = sessions
        .create_session(pb::CreateSessionRequest {
            spec: Some(demo::session_spec(&profile.id)),
        })
        .await
        .expect("create")
        .into_inner();

    // Round 0: the first waveform, its FID, acked.
    let w1 = link.next_waveform().await;
    let a1 = acquisition(&mut sim, &w1, "k1");
    let ack1 = link.acquire(a1.clone()).await;
    assert!(!ack1.duplicate);
    // The fit and re-design run; the second waveform arrives: the session now waits on it.
    let w2 = link.next_waveform().await;
    assert_ne!(w2.waveform_id, w1.waveform_id);

    // kill -9 while the session waits.
    drop(link);
    drop(sessions);
    drop(daemon);

    let daemon = spawn(&data, &socket);
    let mut link = connect(&socket, &profile).await;
    // The console retries its last acquisition (it cannot know the ack landed): a duplicate.
    let again = link.acquire(a1.clone()).await;
    assert!(again.duplicate);
    assert_eq!(again.acquisition_id, ack1.acquisition_id);
    // The resumed session resends the waveform it was waiting on.
    let w2b = link.next_waveform().await;
    assert_eq!(w2b.waveform_id, w2.waveform_id);
    assert_eq!(
        (w2b.ux.clone(), w2b.uy.clone()),
        (w2.ux.clone(), w2.uy.clone())
    );
    let a2 = acquisition(&mut sim, &w2b, "k2");
    let ack2 = link.acquire(a2).await;
    assert!(!ack2.duplicate);

    let mut sessions =
        pb::sessions_client::SessionsClient::new(unix_channel(&socket).await.expect("channel"));
    let mut events = sessions
        .watch_session(pb::WatchSessionRequest {
            session_id: session.id.clone(),
            after_seq: 0,
            until_done: true,
        })
        .await
        .expect("watch")
        .into_inner();
    let mut kinds = Vec::new();
    while let Some(e) = tokio::time::timeout(Duration::from_secs(120), events.next())
        .await
        .expect("events in time")
    {
        kinds.push(e.expect("event").kind);
    }
    assert!(kinds.iter().any(|k| k == "resumed"), "{kinds:?}");
    assert_eq!(
        kinds.last().map(String::as_str),
        Some("converged"),
        "{kinds:?}"
    );
    drop(link);
    drop(sessions);
    drop(daemon);

    // On disk: both acquisitions, the first bit-exact as sent, no duplicates.
    let store = Store::open(&data).expect("store");
    let rows = store.list_acquisitions(&session.id).expect("rows");
    assert_eq!(rows.len(), 2);
    let first = store.get_acquisition(ack1.acquisition_id).expect("first");
    let sent: Vec<u64> = a1.samples.iter().map(|x| x.to_bits()).collect();
    let stored: Vec<u64> = first
        .data
        .samples
        .iter()
        .flat_map(|c| [c.re.to_bits(), c.im.to_bits()])
        .collect();
    assert_eq!(sent, stored);
    drop(store);
    let _ = std::fs::remove_dir_all(&dir);
}
