//! Crash safety of the real `spinloopd` binary: two consoles stream acquisitions, every Ack is
//! recorded, the daemon is killed with SIGKILL mid-stream and restarted on the same data
//! directory. Then every acknowledged acquisition is present bit-exact, the consoles re-send
//! everything they sent (acked or not) under the same keys, acked ones come back as
//! duplicates with their original ids, and the row count equals the number of distinct keys.
//! Also: startup time on an empty data directory and a clean SIGTERM shutdown.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::mpsc;
use tokio_stream::StreamExt;
use tokio_stream::wrappers::ReceiverStream;

use spinloop::bench::daemon::{acquisition, hello, seed_console};
use spinloop::daemon::pb;
use spinloop::daemon::pb::console_client::ConsoleClient;
use spinloop::daemon::pb::console_message::Msg as Up;
use spinloop::daemon::pb::daemon_message::Msg as Down;
use spinloop::daemon::server::unix_channel;
use spinloop::store::Store;

const POINTS: usize = 256;
const PER_CONSOLE: usize = 600;

struct Tmp(PathBuf);

impl Drop for Tmp {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

struct Daemon(Child);

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts spinloopd and waits until its socket accepts connections; returns the time taken.
fn spawn(data: &Path, socket: &Path) -> (Daemon, Duration) {
    let t0 = Instant::now();
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
    let mut d = Daemon(child);
    loop {
        if std::os::unix::net::UnixStream::connect(socket).is_ok() {
            return (d, t0.elapsed());
        }
        if let Ok(Some(status)) = d.0.try_wait() {
            panic!("spinloopd exited early: {status}");
        }
        assert!(
            t0.elapsed() < Duration::from_secs(20),
            "spinloopd did not start"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
}

fn key(console: usize, seq: usize) -> String {
    format!("c{console}-{seq}")
}

fn acq(console: usize, seq: usize) -> pb::Acquisition {
    acquisition(
        &key(console, seq),
        &format!("w{console}"),
        POINTS,
        (console * 100_000 + seq) as u64,
    )
}

#[derive(Default)]
struct Record {
    /// Keys handed to the stream.
    sent: BTreeSet<String>,
    /// Acked keys and their acquisition ids.
    acked: BTreeMap<String, i64>,
}

/// Streams `seqs` with up to 32 unacknowledged; records sends and acks; returns when every one
/// is answered or the stream fails (the daemon died).
async fn stream(
    socket: PathBuf,
    console: usize,
    seqs: Vec<usize>,
    rec: Arc<Mutex<Record>>,
    acks: Arc<AtomicUsize>,
    expect_duplicate_for: BTreeMap<String, i64>,
) -> Result<usize, String> {
    let channel = unix_channel(&socket).await.map_err(|e| e.to_string())?;
    let (tx, rx) = mpsc::channel(64);
    tx.send(pb::ConsoleMessage {
        msg: Some(Up::Hello(hello(&format!("c{console}"), POINTS as u32))),
    })
    .await
    .map_err(|e| e.to_string())?;
    let mut inbound = ConsoleClient::new(channel)
        .connect(ReceiverStream::new(rx))
        .await
        .map_err(|e| e.to_string())?
        .into_inner();
    match inbound.next().await {
        Some(Ok(pb::DaemonMessage {
            msg: Some(Down::Welcome(_)),
        })) => {}
        other => return Err(format!("no welcome: {other:?}")),
    }
    let permits = Arc::new(tokio::sync::Semaphore::new(32));
    let total = seqs.len();
    let sender = {
        let rec = rec.clone();
        let permits = permits.clone();
        tokio::spawn(async move {
            for seq in seqs {
                let Ok(p) = permits.acquire().await else {
                    return;
                };
                p.forget();
                rec.lock().unwrap().sent.insert(key(console, seq));
                let m = pb::ConsoleMessage {
                    msg: Some(Up::Acquisition(acq(console, seq))),
                };
                if tx.send(m).await.is_err() {
                    return;
                }
            }
            tx.closed().await;
        })
    };
    let mut answered = 0;
    let mut duplicates = 0;
    while answered < total {
        match inbound.next().await {
            Some(Ok(pb::DaemonMessage {
                msg: Some(Down::Ack(a)),
            })) => {
                if let Some(id) = expect_duplicate_for.get(&a.idempotency_key) {
                    assert!(
                        a.duplicate,
                        "{} was acked before: duplicate",
                        a.idempotency_key
                    );
                    assert_eq!(a.acquisition_id, *id, "{}: same id", a.idempotency_key);
                    duplicates += 1;
                }
                let mut r = rec.lock().unwrap();
                if let Some(old) = r.acked.insert(a.idempotency_key.clone(), a.acquisition_id) {
                    assert_eq!(old, a.acquisition_id, "an ack changed id");
                }
                drop(r);
                acks.fetch_add(1, Ordering::Relaxed);
                answered += 1;
                permits.add_permits(1);
            }
            Some(Ok(m)) => panic!("unexpected {m:?}"),
            Some(Err(_)) | None => break,
        }
    }
    sender.abort();
    Ok(duplicates)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_mid_stream_loses_no_ack_and_retries_make_no_duplicates() {
    let dir = std::env::temp_dir().join(format!("spinloop-crash-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let tmp = Tmp(dir);
    let data = tmp.0.join("data");
    let socket = tmp.0.join("d.sock");

    // Startup on an empty data directory.
    let empty = tmp.0.join("empty");
    let (d, startup) = spawn(&empty, &tmp.0.join("e.sock"));
    drop(d);
    println!("spinloopd startup on an empty data dir: {startup:?}");
    assert!(startup < Duration::from_secs(3), "startup took {startup:?}");

    {
        let mut store = Store::open(&data).unwrap();
        seed_console(&mut store, "c0", "s0", "w0").unwrap();
        seed_console(&mut store, "c1", "s1", "w1").unwrap();
    }
    let (mut daemon, _) = spawn(&data, &socket);

    let recs: Vec<Arc<Mutex<Record>>> = (0..2).map(|_| Arc::default()).collect();
    let acks = Arc::new(AtomicUsize::new(0));
    let tasks: Vec<_> = (0..2)
        .map(|c| {
            tokio::spawn(stream(
                socket.clone(),
                c,
                (0..PER_CONSOLE).collect(),
                recs[c].clone(),
                acks.clone(),
                BTreeMap::new(),
            ))
        })
        .collect();
    // Kill it mid-stream.
    let t0 = Instant::now();
    while acks.load(Ordering::Relaxed) < 150 {
        assert!(t0.elapsed() < Duration::from_secs(30), "no progress");
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    daemon.0.kill().unwrap(); // SIGKILL
    daemon.0.wait().unwrap();
    for t in tasks {
        t.await.unwrap().unwrap();
    }
    let acked: Vec<BTreeMap<String, i64>> = recs
        .iter()
        .map(|r| r.lock().unwrap().acked.clone())
        .collect();
    let sent: Vec<BTreeSet<String>> = recs
        .iter()
        .map(|r| r.lock().unwrap().sent.clone())
        .collect();
    let n_acked: usize = acked.iter().map(BTreeMap::len).sum();
    let n_sent: usize = sent.iter().map(BTreeSet::len).sum();
    println!("before the kill: {n_sent} sent, {n_acked} acked");
    assert!(n_acked >= 150);
    assert!(
        n_acked < 2 * PER_CONSOLE,
        "the kill came after everything was acked; nothing was mid-stream"
    );

    // Every acked acquisition is on disk, bit-exact (read with the daemon dead).
    {
        let store = Store::open(&data).unwrap();
        for (c, map) in acked.iter().enumerate() {
            for (k, id) in map {
                let got = store.get_acquisition(*id).unwrap();
                assert_eq!(&got.data.idempotency_key, k);
                let seq: usize = k.rsplit('-').next().unwrap().parse().unwrap();
                let want = acq(c, seq);
                assert_eq!(got.data.samples.len(), POINTS);
                for (i, z) in got.data.samples.iter().enumerate() {
                    assert_eq!(z.re.to_bits(), want.samples[2 * i].to_bits(), "{k} re {i}");
                    assert_eq!(
                        z.im.to_bits(),
                        want.samples[2 * i + 1].to_bits(),
                        "{k} im {i}"
                    );
                }
            }
        }
    }

    // Restart; the consoles re-send everything they sent, under the same keys.
    let (daemon2, _) = spawn(&data, &socket);
    let recs2: Vec<Arc<Mutex<Record>>> = (0..2).map(|_| Arc::default()).collect();
    let tasks: Vec<_> = (0..2)
        .map(|c| {
            let seqs: Vec<usize> = sent[c]
                .iter()
                .map(|k| k.rsplit('-').next().unwrap().parse().unwrap())
                .collect();
            tokio::spawn(stream(
                socket.clone(),
                c,
                seqs,
                recs2[c].clone(),
                Arc::new(AtomicUsize::new(0)),
                acked[c].clone(),
            ))
        })
        .collect();
    let mut duplicates = 0;
    for t in tasks {
        duplicates += t.await.unwrap().unwrap();
    }
    assert_eq!(
        duplicates, n_acked,
        "every acked key came back as a duplicate"
    );
    for c in 0..2 {
        assert_eq!(
            recs2[c].lock().unwrap().acked.len(),
            sent[c].len(),
            "all re-sent acked"
        );
    }

    // SIGTERM: a clean exit, socket removed.
    let mut daemon2 = daemon2;
    let pid = daemon2.0.id().to_string();
    assert!(
        Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap()
            .success()
    );
    let t0 = Instant::now();
    let status = loop {
        if let Some(s) = daemon2.0.try_wait().unwrap() {
            break s;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(15),
            "no exit after SIGTERM"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    assert!(status.success(), "spinloopd exited with {status}");
    assert!(!socket.exists(), "socket removed at shutdown");

    let store = Store::open(&data).unwrap();
    let distinct: usize = sent.iter().map(BTreeSet::len).sum();
    assert_eq!(store.count_acquisitions().unwrap() as usize, distinct);
}
