//! The daemon's Console service end to end over a Unix socket (in-process daemon): health and
//! reflection, the socket's mode, the Connect protocol order, ingestion acknowledged after the
//! commit and stored bit-exact, idempotent retries and conflicts, and every kind of bad input
//! refused with its code and nothing stored — on the stream and through the unary call.

use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use num_complex::Complex64;
use tokio::sync::mpsc;
use tokio_stream::StreamExt;
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::Channel;
use tonic::{Code, Status, Streaming};

use spinloop::bench::daemon::{DWELL_S, acquisition, hello, seed_console};
use spinloop::daemon::config::DaemonConfig;
use spinloop::daemon::pb;
use spinloop::daemon::pb::console_client::ConsoleClient;
use spinloop::daemon::pb::console_message::Msg as Up;
use spinloop::daemon::pb::daemon_message::Msg as Down;
use spinloop::daemon::server::{DaemonHandle, start_in_process, unix_channel};
use spinloop::daemon::{SessionNotice, Shared};
use spinloop::store::{NewWaveform, Store};

const POINTS: u32 = 64;

/// A unique temporary directory, removed on drop.
struct Tmp(PathBuf);

impl Tmp {
    fn new(tag: &str) -> Tmp {
        static N: AtomicUsize = AtomicUsize::new(0);
        let p = std::env::temp_dir().join(format!(
            "spinloop-dc-{}-{tag}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).unwrap();
        Tmp(p)
    }
}

impl Drop for Tmp {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Seeds c1/s1/w1 and c2/s2/w2 (sent), plus w-unsent on s1 (approved, never sent), and
/// starts a daemon.
async fn start(tag: &str, max_message_bytes: Option<usize>) -> (Tmp, DaemonHandle, Channel) {
    let tmp = Tmp::new(tag);
    let data = tmp.0.join("data");
    {
        let mut store = Store::open(&data).unwrap();
        seed_console(&mut store, "c1", "s1", "w1").unwrap();
        seed_console(&mut store, "c2", "s2", "w2").unwrap();
        store
            .insert_waveform(&NewWaveform {
                id: "w-unsent".into(),
                session_id: "s1".into(),
                dt_s: 1e-6,
                samples: vec![Complex64::new(1.0, 0.0); 10],
                approved: true,
            })
            .unwrap();
    }
    let mut config = DaemonConfig::new(&data, tmp.0.join("d.sock"));
    if let Some(m) = max_message_bytes {
        config.max_message_bytes = m;
    }
    let handle = start_in_process(config).await.unwrap();
    let channel = unix_channel(&handle.socket).await.unwrap();
    (tmp, handle, channel)
}

fn shared(h: &DaemonHandle) -> Shared {
    h.shared().cloned().unwrap()
}

async fn rows(h: &DaemonHandle) -> i64 {
    shared(h)
        .store
        .call(|s| s.count_acquisitions())
        .await
        .unwrap()
        .unwrap()
}

/// One Connect stream.
struct Link {
    tx: mpsc::Sender<pb::ConsoleMessage>,
    rx: Option<Streaming<pb::DaemonMessage>>,
    /// An error returned by the call itself (before any message).
    early: Option<Status>,
}

fn up(m: Up) -> pb::ConsoleMessage {
    pb::ConsoleMessage { msg: Some(m) }
}

async fn open(channel: &Channel, first: Up) -> Link {
    let (tx, rx) = mpsc::channel(64);
    tx.send(up(first)).await.unwrap();
    match ConsoleClient::new(channel.clone())
        .connect(ReceiverStream::new(rx))
        .await
    {
        Ok(r) => Link {
            tx,
            rx: Some(r.into_inner()),
            early: None,
        },
        Err(s) => Link {
            tx,
            rx: None,
            early: Some(s),
        },
    }
}

impl Link {
    async fn send(&self, m: Up) {
        self.tx.send(up(m)).await.unwrap();
    }

    /// The next message, or the status the stream ended with.
    async fn next(&mut self) -> Result<Down, Status> {
        if let Some(s) = self.early.take() {
            return Err(s);
        }
        let rx = self.rx.as_mut().expect("stream");
        let m = tokio::time::timeout(Duration::from_secs(10), rx.next())
            .await
            .expect("an answer within 10 s");
        match m {
            Some(Ok(m)) => Ok(m.msg.expect("a message")),
            Some(Err(s)) => Err(s),
            None => Err(Status::ok("stream ended")),
        }
    }

    async fn hello(channel: &Channel, console: &str) -> Link {
        let mut l = open(channel, Up::Hello(hello(console, POINTS))).await;
        match l.next().await {
            Ok(Down::Welcome(w)) => assert_eq!(w.console_id, console),
            other => panic!("expected a Welcome, got {other:?}"),
        }
        l
    }

    async fn ack(&mut self, a: pb::Acquisition) -> pb::Ack {
        self.send(Up::Acquisition(a)).await;
        match self.next().await {
            Ok(Down::Ack(a)) => a,
            other => panic!("expected an Ack, got {other:?}"),
        }
    }

    async fn nack(&mut self, a: pb::Acquisition) -> pb::Nack {
        let key = a.idempotency_key.clone();
        self.send(Up::Acquisition(a)).await;
        match self.next().await {
            Ok(Down::Nack(n)) => {
                assert_eq!(n.idempotency_key, key);
                n
            }
            other => panic!("expected a Nack for {key:?}, got {other:?}"),
        }
    }
}

fn acq(key: &str, waveform: &str) -> pb::Acquisition {
    acquisition(key, waveform, POINTS as usize, 7)
}

/// The bad acquisitions (name, acquisition, expected code), all from console c1.
fn bad_cases() -> Vec<(&'static str, pb::Acquisition, Code)> {
    let mut v = Vec::new();
    let mut a = acq("bad-nan", "w1");
    a.samples[5] = f64::NAN;
    v.push(("NaN sample", a, Code::InvalidArgument));
    let mut a = acq("bad-inf", "w1");
    a.samples[0] = f64::INFINITY;
    v.push(("infinite sample", a, Code::InvalidArgument));
    let mut a = acq("bad-count", "w1");
    a.samples.pop();
    v.push(("odd sample count", a, Code::InvalidArgument));
    let mut a = acq("bad-count2", "w1");
    a.samples.truncate(2 * (POINTS as usize - 1));
    v.push(("one point short", a, Code::InvalidArgument));
    let mut a = acq("bad-dwell0", "w1");
    a.dwell_s = 0.0;
    v.push(("zero dwell", a, Code::InvalidArgument));
    let mut a = acq("bad-dwellneg", "w1");
    a.dwell_s = -DWELL_S;
    v.push(("negative dwell", a, Code::InvalidArgument));
    let mut a = acq("bad-dwellmis", "w1");
    a.dwell_s = DWELL_S * (1.0 + 1e-6);
    v.push(("dwell mismatch", a, Code::InvalidArgument));
    let mut a = acq("bad-f0", "w1");
    a.f0_hz = 0.0;
    v.push(("zero f0", a, Code::InvalidArgument));
    let mut a = acq("bad-avg", "w1");
    a.averages = 0;
    v.push(("zero averages", a, Code::InvalidArgument));
    v.push(("empty key", acq("", "w1"), Code::InvalidArgument));
    v.push(("bad key", acq("a b", "w1"), Code::InvalidArgument));
    v.push((
        "long key",
        acq(&"k".repeat(200), "w1"),
        Code::InvalidArgument,
    ));
    v.push((
        "bad waveform id",
        acq("bad-wid", "w/1"),
        Code::InvalidArgument,
    ));
    v.push((
        "waveform never stored",
        acq("bad-unknown-w", "w-nope"),
        Code::FailedPrecondition,
    ));
    v.push((
        "waveform stored but never sent",
        acq("bad-unsent", "w-unsent"),
        Code::FailedPrecondition,
    ));
    v.push((
        "waveform sent to another console",
        acq("bad-other", "w2"),
        Code::FailedPrecondition,
    ));
    v
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_reflection_and_socket_mode() {
    let (_tmp, handle, channel) = start("health", None).await;
    let mode = std::fs::metadata(&handle.socket)
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o660, "socket mode {mode:o}");

    use tonic_health::pb::health_check_response::ServingStatus;
    use tonic_health::pb::{HealthCheckRequest, health_client::HealthClient};
    let mut health = HealthClient::new(channel.clone());
    for service in [
        "",
        "spinloop.v1.Console",
        "spinloop.v1.Sessions",
        "spinloop.v1.Design",
    ] {
        let r = health
            .check(HealthCheckRequest {
                service: service.into(),
            })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(r.status, ServingStatus::Serving as i32, "{service:?}");
    }

    let want = [
        "spinloop.v1.Console",
        "spinloop.v1.Sessions",
        "spinloop.v1.Design",
        "grpc.health.v1.Health",
    ];
    {
        use tonic_reflection::pb::v1::ServerReflectionRequest;
        use tonic_reflection::pb::v1::server_reflection_client::ServerReflectionClient;
        use tonic_reflection::pb::v1::server_reflection_request::MessageRequest;
        use tonic_reflection::pb::v1::server_reflection_response::MessageResponse;
        let req = ServerReflectionRequest {
            host: String::new(),
            message_request: Some(MessageRequest::ListServices(String::new())),
        };
        let mut s = ServerReflectionClient::new(channel.clone())
            .server_reflection_info(tokio_stream::iter([req]))
            .await
            .unwrap()
            .into_inner();
        let r = s.next().await.unwrap().unwrap();
        let Some(MessageResponse::ListServicesResponse(l)) = r.message_response else {
            panic!("v1: not a ListServices response");
        };
        let names: Vec<String> = l.service.into_iter().map(|s| s.name).collect();
        for w in want {
            assert!(names.iter().any(|n| n == w), "v1 lacks {w}: {names:?}");
        }
    }
    {
        use tonic_reflection::pb::v1alpha::ServerReflectionRequest;
        use tonic_reflection::pb::v1alpha::server_reflection_client::ServerReflectionClient;
        use tonic_reflection::pb::v1alpha::server_reflection_request::MessageRequest;
        use tonic_reflection::pb::v1alpha::server_reflection_response::MessageResponse;
        let req = ServerReflectionRequest {
            host: String::new(),
            message_request: Some(MessageRequest::ListServices(String::new())),
        };
        let mut s = ServerReflectionClient::new(channel.clone())
            .server_reflection_info(tokio_stream::iter([req]))
            .await
            .unwrap()
            .into_inner();
        let r = s.next().await.unwrap().unwrap();
        let Some(MessageResponse::ListServicesResponse(l)) = r.message_response else {
            panic!("v1alpha: not a ListServices response");
        };
        let names: Vec<String> = l.service.into_iter().map(|s| s.name).collect();
        for w in want {
            assert!(names.iter().any(|n| n == w), "v1alpha lacks {w}: {names:?}");
        }
    }
    let socket = handle.socket.clone();
    drop(channel);
    handle.shutdown();
    handle.join().await.unwrap();
    assert!(!socket.exists(), "the socket file is removed at shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connect_protocol_order() {
    let (_tmp, handle, channel) = start("order", None).await;

    // hello -> Welcome (with the daemon's version).
    let mut l = open(&channel, Up::Hello(hello("c1", POINTS))).await;
    match l.next().await {
        Ok(Down::Welcome(w)) => {
            assert_eq!(w.console_id, "c1");
            assert_eq!(w.daemon_version, env!("CARGO_PKG_VERSION"));
        }
        other => panic!("{other:?}"),
    }
    assert!(shared(&handle).consoles.is_connected("c1"));
    // A heartbeat is ignored; a second hello ends the stream.
    l.send(Up::Heartbeat(pb::Heartbeat {})).await;
    l.send(Up::Hello(hello("c1", POINTS))).await;
    let e = l.next().await.unwrap_err();
    assert_eq!(e.code(), Code::FailedPrecondition, "{e:?}");
    assert!(e.message().contains("second hello"), "{e:?}");

    // An acquisition (or a heartbeat) before the hello.
    for first in [
        Up::Acquisition(acq("k-early", "w1")),
        Up::Heartbeat(pb::Heartbeat {}),
    ] {
        let mut l = open(&channel, first).await;
        let e = l.next().await.unwrap_err();
        assert_eq!(e.code(), Code::FailedPrecondition, "{e:?}");
        assert!(e.message().contains("hello"), "{e:?}");
    }

    // Invalid hellos name the field.
    let mut h = hello("c1", POINTS);
    h.f0_hz = f64::NAN;
    let mut bad = vec![("f0_hz", h)];
    let mut h = hello("c1", POINTS);
    h.console_id = "no spaces".into();
    bad.push(("console_id", h));
    let mut h = hello("c1", POINTS);
    h.sample_count = 0;
    bad.push(("sample_count", h));
    let mut h = hello("c1", POINTS);
    h.limits = None;
    bad.push(("limits", h));
    let mut h = hello("c1", POINTS);
    h.dwell_s = -1.0;
    bad.push(("dwell_s", h));
    for (field, h) in bad {
        let mut l = open(&channel, Up::Hello(h)).await;
        let e = l.next().await.unwrap_err();
        assert_eq!(e.code(), Code::InvalidArgument, "{field}: {e:?}");
        assert!(e.message().contains(field), "{field}: {e:?}");
    }
    assert_eq!(rows(&handle).await, 0);
    drop(l);
    drop(channel);
    handle.shutdown();
    handle.join().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ingestion_acked_after_commit_bit_exact_and_idempotent() {
    let (tmp, handle, channel) = start("ingest", None).await;
    let sh = shared(&handle);
    let (mtx, mut mailbox) = mpsc::unbounded_channel();
    sh.sessions.insert("s1", mtx);

    let mut l = Link::hello(&channel, "c1").await;
    let mut a = acq("key-1", "w1");
    // Awkward values must survive bit for bit.
    a.samples[0] = -0.0;
    a.samples[1] = f64::MIN_POSITIVE / 3.0; // subnormal
    a.samples[2] = 1e308;
    a.samples[3] = std::f64::consts::PI;
    let ack = l.ack(a.clone()).await;
    assert_eq!(ack.idempotency_key, "key-1");
    assert_eq!(ack.session_id, "s1");
    assert!(!ack.duplicate);
    // The ack came after the commit: the row is readable at once (through another
    // connection, too).
    let id = ack.acquisition_id;
    let stored = sh
        .store
        .call(move |s| s.get_acquisition(id))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(stored.data.idempotency_key, "key-1");
    let other = Store::open(&tmp.0.join("data")).unwrap();
    assert_eq!(other.count_acquisitions().unwrap(), 1);
    drop(other);
    // The session was told, after the ack.
    match tokio::time::timeout(Duration::from_secs(5), mailbox.recv()).await {
        Ok(Some(SessionNotice::Acquisition(n))) => assert_eq!(n, id),
        other => panic!("no notice: {other:?}"),
    }

    // A retry: duplicate, same id, one row, no new notice.
    let again = l.ack(a.clone()).await;
    assert!(again.duplicate);
    assert_eq!(again.acquisition_id, id);
    assert_eq!(rows(&handle).await, 1);
    assert!(mailbox.try_recv().is_err());

    // The same key with other content.
    let mut changed = a.clone();
    changed.samples[10] += 1.0;
    let n = l.nack(changed).await;
    assert_eq!(n.code, Code::AlreadyExists as i32, "{n:?}");
    assert_eq!(rows(&handle).await, 1);

    // Many at once on the stream: every one acked (possibly out of order), each key once.
    let keys: Vec<String> = (0..200).map(|i| format!("burst-{i}")).collect();
    for (i, k) in keys.iter().enumerate() {
        l.send(Up::Acquisition(acquisition(
            k,
            "w1",
            POINTS as usize,
            i as u64,
        )))
        .await;
    }
    let mut seen = std::collections::BTreeSet::new();
    while seen.len() < keys.len() {
        match l.next().await {
            Ok(Down::Ack(a)) => assert!(seen.insert(a.idempotency_key), "acked twice"),
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(rows(&handle).await, 201);
    let stats = sh.store.stats();
    println!(
        "group commits: {} for {} acquisitions",
        stats.group_commits, stats.acquisitions
    );

    drop(l);
    drop(sh);
    drop(channel);
    handle.shutdown();
    handle.join().await.unwrap();

    // Reopen the store: the acknowledged row is there, bit for bit.
    let store = Store::open(&tmp.0.join("data")).unwrap();
    let got = store.get_acquisition(id).unwrap();
    assert_eq!(got.data.samples.len(), POINTS as usize);
    for (k, z) in got.data.samples.iter().enumerate() {
        assert_eq!(z.re.to_bits(), a.samples[2 * k].to_bits(), "re {k}");
        assert_eq!(z.im.to_bits(), a.samples[2 * k + 1].to_bits(), "im {k}");
    }
    assert_eq!(got.data.dwell_s.to_bits(), a.dwell_s.to_bits());
    assert_eq!(got.data.f0_hz.to_bits(), a.f0_hz.to_bits());
    assert_eq!(got.data.waveform_id, "w1");
    assert_eq!(got.data.console_id, "c1");
    assert_eq!(store.count_acquisitions().unwrap(), 201);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_acquisitions_on_the_stream_are_nacked_and_nothing_is_stored() {
    let (_tmp, handle, channel) = start("bad-stream", None).await;
    let mut l = Link::hello(&channel, "c1").await;
    for (name, a, code) in bad_cases() {
        let n = l.nack(a).await;
        assert_eq!(n.code, code as i32, "{name}: {n:?}");
        assert!(!n.message.is_empty(), "{name}");
        assert_eq!(rows(&handle).await, 0, "{name}: nothing stored");
    }
    // The stream is still open and a good one goes through.
    let ack = l.ack(acq("good", "w1")).await;
    assert!(!ack.duplicate);
    assert_eq!(rows(&handle).await, 1);
    // Messages name the field.
    let mut a = acq("bad-nan2", "w1");
    a.samples[9] = f64::NAN;
    let n = l.nack(a).await;
    assert!(n.message.contains("samples[9]"), "{n:?}");
    let mut a = acq("bad-dwell2", "w1");
    a.dwell_s = 1e-3;
    let n = l.nack(a).await;
    assert!(n.message.contains("dwell_s"), "{n:?}");
    drop(l);
    drop(channel);
    handle.shutdown();
    handle.join().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversize_messages_are_resource_exhausted() {
    let (_tmp, handle, channel) = start("oversize", Some(64 * 1024)).await;
    // Connect the console first on a normal-sized stream so the unary call knows it.
    let mut l = Link::hello(&channel, "c1").await;
    let mut big = acq("big", "w1");
    big.samples = vec![0.5; 20_000]; // 160 kB > 64 KiB
    l.send(Up::Acquisition(big.clone())).await;
    let e = l.next().await.unwrap_err();
    assert_eq!(e.code(), Code::ResourceExhausted, "{e:?}");

    let mut client = ConsoleClient::new(channel.clone());
    let e = client
        .submit_acquisition(pb::SubmitAcquisitionRequest {
            console_id: "c1".into(),
            acquisition: Some(big),
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::ResourceExhausted, "{e:?}");
    assert_eq!(rows(&handle).await, 0);
    // The daemon is fine afterwards.
    let mut l = Link::hello(&channel, "c1").await;
    l.ack(acq("small", "w1")).await;
    drop(l);
    drop(channel);
    handle.shutdown();
    handle.join().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unary_submit_acquisition() {
    let (_tmp, handle, channel) = start("unary", None).await;
    let mut client = ConsoleClient::new(channel.clone());
    let submit = |console: &str, a: Option<pb::Acquisition>| pb::SubmitAcquisitionRequest {
        console_id: console.into(),
        acquisition: a,
    };

    // Unknown console; a console seeded in the store that never said hello; a bad id.
    for (console, code) in [
        ("nobody", Code::NotFound),
        ("c1", Code::NotFound),
        ("bad id", Code::InvalidArgument),
    ] {
        let e = client
            .submit_acquisition(submit(console, Some(acq("u-1", "w1"))))
            .await
            .unwrap_err();
        assert_eq!(e.code(), code, "{console}: {e:?}");
    }
    let e = client
        .submit_acquisition(submit("c1", None))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument, "{e:?}");

    // Say hello, then: while connected (live profile) and after leaving (stored profile).
    let l = Link::hello(&channel, "c1").await;
    let ack = client
        .submit_acquisition(submit("c1", Some(acq("u-1", "w1"))))
        .await
        .unwrap()
        .into_inner();
    assert!(!ack.duplicate);
    assert_eq!(ack.session_id, "s1");
    drop(l);
    // Wait until the daemon saw the stream end.
    for _ in 0..100 {
        if !shared(&handle).consoles.is_connected("c1") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(!shared(&handle).consoles.is_connected("c1"));
    let again = client
        .submit_acquisition(submit("c1", Some(acq("u-1", "w1"))))
        .await
        .unwrap()
        .into_inner();
    assert!(again.duplicate);
    assert_eq!(again.acquisition_id, ack.acquisition_id);
    let mut changed = acq("u-1", "w1");
    changed.averages = 2;
    let e = client
        .submit_acquisition(submit("c1", Some(changed)))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::AlreadyExists, "{e:?}");
    assert_eq!(rows(&handle).await, 1);

    for (name, a, code) in bad_cases() {
        let e = client
            .submit_acquisition(submit("c1", Some(a)))
            .await
            .unwrap_err();
        assert_eq!(e.code(), code, "{name}: {e:?}");
        assert_eq!(rows(&handle).await, 1, "{name}: nothing stored");
    }
    drop(channel);
    handle.shutdown();
    handle.join().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn socket_file_stale_live_and_foreign() {
    let tmp = Tmp::new("sockfile");
    let data = tmp.0.join("data");
    let path = tmp.0.join("d.sock");
    // A stale socket (nobody listening) is replaced.
    drop(std::os::unix::net::UnixListener::bind(&path).unwrap());
    assert!(path.exists());
    let handle = start_in_process(DaemonConfig::new(&data, &path))
        .await
        .unwrap();
    // A second daemon on the same live socket is refused, and leaves it alone.
    let e = start_in_process(DaemonConfig::new(tmp.0.join("data2"), &path))
        .await
        .err()
        .expect("refused");
    assert!(e.to_string().contains("listening"), "{e}");
    let ch = unix_channel(&path).await.unwrap();
    drop(ch);
    handle.shutdown();
    handle.join().await.unwrap();
    assert!(!path.exists());
    // A regular file is never replaced.
    std::fs::write(&path, b"not a socket").unwrap();
    let e = start_in_process(DaemonConfig::new(&data, &path))
        .await
        .err()
        .expect("refused");
    assert!(e.to_string().contains("not a socket"), "{e}");
    assert_eq!(std::fs::read(&path).unwrap(), b"not a socket");
}
