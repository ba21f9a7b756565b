//! The durable store (`spinloop::store`): bit-exact samples, idempotent ingestion, crash safety
//! (a writer process killed with SIGKILL), schema migrations, validation and the data directory.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use num_complex::Complex64;
use serde_json::json;
use spinloop::store::{
    ConsoleInfo, DB_FILE, Ingested, NewAcquisition, NewFit, NewSession, NewWaveform,
    SCHEMA_VERSION, SessionState, Store, StoreError, data_dir_from,
};

/// A unique directory under the system temp dir, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new(tag: &str) -> TempDir {
        static N: AtomicUsize = AtomicUsize::new(0);
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        let dir = std::env::temp_dir().join(format!(
            "spinloop-store-{tag}-{}-{}-{nanos}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        TempDir(dir)
    }
    fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn console(id: &str) -> ConsoleInfo {
    ConsoleInfo {
        id: id.into(),
        nucleus: "1H".into(),
        f0_hz: 123.2e6,
        limits: json!({"peak_b1_hz": 1000.0, "energy": 1.5, "duty": 0.1}),
    }
}

/// A store with console `c1` and open session `s1` on it.
fn setup(dir: &Path) -> Store {
    let mut store = Store::open(dir).expect("open");
    store.upsert_console(&console("c1")).expect("console");
    store
        .create_session(&NewSession {
            id: "s1".into(),
            console_id: "c1".into(),
            spec: json!({"targets": ["Glu"], "budget": 8}),
        })
        .expect("session");
    store
}

fn acq(key: &str, samples: Vec<Complex64>) -> NewAcquisition {
    NewAcquisition {
        session_id: "s1".into(),
        console_id: "c1".into(),
        idempotency_key: key.into(),
        waveform_id: "w1".into(),
        dwell_s: 2.5e-4,
        f0_hz: 123.2e6,
        averages: 4,
        coil: "head32".into(),
        n_samples: samples.len(),
        samples,
    }
}

/// Finite values that a lossy path (text, f32, normalisation) would change.
fn awkward_samples() -> Vec<Complex64> {
    let vals = [
        -0.0,
        0.0,
        f64::MAX,
        f64::MIN,
        f64::MIN_POSITIVE,
        f64::MIN_POSITIVE / 3.0, // subnormal
        5e-324,                  // smallest subnormal
        -5e-324,
        1e-300,
        -1e-310,
        f64::EPSILON,
        std::f64::consts::PI,
        0.1 + 0.2,
        -123_456.789_012_345_67,
    ];
    let mut out: Vec<Complex64> = vals
        .iter()
        .zip(vals.iter().rev())
        .map(|(&re, &im)| Complex64::new(re, im))
        .collect();
    out.push(Complex64::new(-0.0, -0.0));
    out
}

/// Deterministic samples for acquisition number `i` (used by the crash test's parent and child).
fn samples_for(i: u64) -> Vec<Complex64> {
    let mut x = i.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..256)
        .map(|k| {
            // xorshift: arbitrary finite bit patterns (exponent kept away from all-ones).
            let mut next = || {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                f64::from_bits(x & 0xBFFF_FFFF_FFFF_FFFF)
            };
            let (re, im) = (next(), next());
            if k == 0 {
                Complex64::new(-0.0, 5e-324)
            } else {
                Complex64::new(re, im)
            }
        })
        .collect()
}

fn assert_bits_eq(got: &[Complex64], want: &[Complex64]) {
    assert_eq!(got.len(), want.len(), "sample count");
    for (k, (g, w)) in got.iter().zip(want).enumerate() {
        assert_eq!(
            g.re.to_bits(),
            w.re.to_bits(),
            "sample {k}.re: {} vs {}",
            g.re,
            w.re
        );
        assert_eq!(
            g.im.to_bits(),
            w.im.to_bits(),
            "sample {k}.im: {} vs {}",
            g.im,
            w.im
        );
    }
}

fn integrity_check(dir: &Path) -> String {
    let conn = rusqlite::Connection::open(dir.join(DB_FILE)).expect("open raw");
    conn.query_row("PRAGMA integrity_check", [], |r| r.get(0))
        .expect("integrity_check")
}

/// The daemon moves the store into `spawn_blocking` closures.
#[test]
fn store_is_send() {
    fn assert_send<T: Send + 'static>() {}
    assert_send::<Store>();
    assert_send::<StoreError>();
}

#[test]
fn samples_round_trip_bit_exact_and_nan_is_rejected() {
    let tmp = TempDir::new("roundtrip");
    let mut store = setup(tmp.path());
    let want = awkward_samples();
    let a = acq("k1", want.clone());
    let id = match store.insert_acquisition(&a).expect("insert") {
        Ingested::Stored { id } => id,
        other => panic!("expected Stored, got {other:?}"),
    };
    let got = store.get_acquisition(id).expect("get");
    assert_bits_eq(&got.data.samples, &want);
    assert_eq!(got.data.dwell_s.to_bits(), a.dwell_s.to_bits());
    assert_eq!(got.data, a);
    let listed = store.list_acquisitions("s1").expect("list");
    assert_eq!(listed.len(), 1);
    assert_bits_eq(&listed[0].data.samples, &want);

    // Waveforms are bit-exact too.
    store
        .insert_waveform(&NewWaveform {
            id: "w1".into(),
            session_id: "s1".into(),
            dt_s: 4e-6,
            samples: want.clone(),
            approved: true,
        })
        .expect("waveform");
    assert_bits_eq(
        &store.get_waveform("w1").expect("get w").data.samples,
        &want,
    );

    // Still bit-exact after closing and reopening.
    drop(store);
    let store = Store::open(tmp.path()).expect("reopen");
    assert_bits_eq(&store.get_acquisition(id).expect("get").data.samples, &want);

    // NaN and infinities are rejected, naming the index.
    let mut store = store;
    for (k, bad) in [
        (3, Complex64::new(0.0, f64::NAN)),
        (0, Complex64::new(f64::INFINITY, 0.0)),
        (7, Complex64::new(f64::NEG_INFINITY, 1.0)),
    ] {
        let mut s = want.clone();
        s[k] = bad;
        let err = store.insert_acquisition(&acq("bad", s)).unwrap_err();
        match err {
            StoreError::Invalid { field, .. } => {
                assert!(field.starts_with(&format!("samples[{k}]")), "{field}")
            }
            other => panic!("expected Invalid, got {other:?}"),
        }
    }
    assert_eq!(store.count_acquisitions().expect("count"), 1);
}

#[test]
fn same_key_is_a_duplicate_and_different_content_is_a_conflict() {
    let tmp = TempDir::new("idem");
    let mut store = setup(tmp.path());
    let a = acq("k1", awkward_samples());
    let first = store.insert_acquisition(&a).expect("first");
    assert!(matches!(first, Ingested::Stored { .. }));
    let again = store.insert_acquisition(&a).expect("retry");
    assert_eq!(again, Ingested::Duplicate { id: first.id() });
    assert_eq!(store.count_acquisitions().expect("count"), 1);

    // Same key, different content (even a sign bit of zero, or the averages) → conflict.
    let mut b = a.clone();
    b.samples[0] = Complex64::new(0.0, b.samples[0].im); // -0.0 → +0.0
    let mut c = a.clone();
    c.averages = 8;
    let mut d = a.clone();
    d.samples.push(Complex64::new(1.0, 1.0));
    d.n_samples += 1;
    for changed in [&b, &c, &d] {
        match store.insert_acquisition(changed) {
            Err(StoreError::Conflict(msg)) => assert!(msg.contains("k1"), "{msg}"),
            other => panic!("expected Conflict, got {other:?}"),
        }
    }
    assert_eq!(store.count_acquisitions().expect("count"), 1);
    assert_bits_eq(
        &store.get_acquisition(first.id()).expect("get").data.samples,
        &a.samples,
    );

    // The key is scoped to its console: another console may use the same key.
    store.upsert_console(&console("c2")).expect("c2");
    store
        .create_session(&NewSession {
            id: "s2".into(),
            console_id: "c2".into(),
            spec: json!({}),
        })
        .expect("s2");
    let mut other = a.clone();
    other.console_id = "c2".into();
    other.session_id = "s2".into();
    let o = store.insert_acquisition(&other).expect("other console");
    assert!(matches!(o, Ingested::Stored { .. }));
    assert_ne!(o.id(), first.id());

    // A batch (group commit): per-item outcomes, duplicates inside the batch, a bad item
    // that does not affect the others.
    let batch = vec![
        acq("k2", samples_for(2)),
        acq("k2", samples_for(2)),
        acq("k3", vec![]),
        a.clone(),
        acq("k4", samples_for(4)),
    ];
    let out = store.insert_acquisitions(&batch).expect("batch");
    assert_eq!(out.len(), 5);
    let k2 = out[0].as_ref().expect("k2").id();
    assert!(matches!(out[0], Ok(Ingested::Stored { .. })));
    assert!(matches!(out[1], Ok(Ingested::Duplicate { id }) if id == k2));
    assert!(matches!(out[2], Err(StoreError::Invalid { .. })));
    assert!(matches!(out[3], Ok(Ingested::Duplicate { id }) if id == first.id()));
    assert!(matches!(out[4], Ok(Ingested::Stored { .. })));
    assert_eq!(store.count_acquisitions().expect("count"), 4);
}

const CHILD_ENV: &str = "SPINLOOP_STORE_CRASH_CHILD_DIR";

/// Not a test on its own: the writer process of `acked_acquisitions_survive_sigkill`. It does
/// nothing unless the parent set `SPINLOOP_STORE_CRASH_CHILD_DIR`.
#[test]
fn crash_child_writer() {
    let Some(dir) = std::env::var_os(CHILD_ENV) else {
        return;
    };
    let dir = PathBuf::from(dir);
    let mut store = setup(&dir);
    store
        .create_session(&NewSession {
            id: "s-done".into(),
            console_id: "c1".into(),
            spec: json!({}),
        })
        .expect("s-done");
    store
        .set_session_state("s-done", SessionState::Converged)
        .expect("converge");
    println!("SETUP");
    let deadline = Instant::now() + Duration::from_secs(30); // never outlive a lost parent
    let mut i = 0u64;
    while Instant::now() < deadline {
        let ingested = store
            .insert_acquisition(&acq(&format!("k{i}"), samples_for(i)))
            .expect("insert");
        // Committed: this is where the daemon would ack.
        println!("ACK {i} {}", ingested.id());
        i += 1;
    }
}

#[test]
fn acked_acquisitions_survive_sigkill() {
    let tmp = TempDir::new("crash");
    let exe = std::env::current_exe().expect("current_exe");
    let mut child = Command::new(exe)
        .args([
            "crash_child_writer",
            "--exact",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD_ENV, tmp.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn writer");
    let stdout = child.stdout.take().expect("stdout");
    let mut acked: Vec<(u64, i64)> = Vec::new();
    let mut lines = BufReader::new(stdout).lines();
    while acked.len() < 60 {
        let Some(line) = lines.next() else { break };
        let line = line.expect("line");
        if let Some(rest) = line.strip_prefix("ACK ") {
            let mut it = rest.split(' ');
            let i: u64 = it.next().and_then(|s| s.parse().ok()).expect("i");
            let id: i64 = it.next().and_then(|s| s.parse().ok()).expect("id");
            acked.push((i, id));
        }
    }
    // SIGKILL while the writer is still inserting.
    child.kill().expect("kill");
    let status = child.wait().expect("wait");
    assert!(!status.success(), "the writer was killed, not finished");
    assert_eq!(
        acked.len(),
        60,
        "the writer acked 60 acquisitions before the kill"
    );

    assert_eq!(integrity_check(tmp.path()), "ok");
    let mut store = Store::open(tmp.path()).expect("reopen after kill");
    assert_eq!(integrity_check(tmp.path()), "ok");
    for &(i, id) in &acked {
        let a = store
            .get_acquisition(id)
            .expect("acked acquisition present");
        assert_eq!(a.data.idempotency_key, format!("k{i}"));
        assert_bits_eq(&a.data.samples, &samples_for(i));
    }
    assert!(store.count_acquisitions().expect("count") >= acked.len() as i64);
    // The console retries its last acked acquisition (its ack might have been lost): no duplicate.
    let before = store.count_acquisitions().expect("count");
    let &(i, id) = acked.last().expect("one ack");
    assert_eq!(
        store
            .insert_acquisition(&acq(&format!("k{i}"), samples_for(i)))
            .expect("retry"),
        Ingested::Duplicate { id }
    );
    assert_eq!(store.count_acquisitions().expect("count"), before);
    // The restart resumes the open session and not the converged one.
    let open: Vec<String> = store
        .open_sessions()
        .expect("open sessions")
        .into_iter()
        .map(|s| s.id)
        .collect();
    assert_eq!(open, ["s1"]);
}

#[test]
fn migrations_version_too_new_and_reopen() {
    let tmp = TempDir::new("migrate");
    let mut store = setup(tmp.path());
    assert_eq!(store.schema_version().expect("version"), SCHEMA_VERSION);
    const { assert!(SCHEMA_VERSION >= 1) };
    let id = store
        .insert_acquisition(&acq("k1", samples_for(1)))
        .expect("insert")
        .id();
    drop(store);

    // Reopening an existing database keeps its data and version.
    let store = Store::open(tmp.path()).expect("reopen");
    assert_eq!(store.schema_version().expect("version"), SCHEMA_VERSION);
    assert_bits_eq(
        &store.get_acquisition(id).expect("get").data.samples,
        &samples_for(1),
    );
    assert_eq!(
        store.get_session("s1").expect("s1").state,
        SessionState::Open
    );
    let journal: String = {
        let conn = rusqlite::Connection::open(store.path()).expect("raw");
        conn.query_row("PRAGMA journal_mode", [], |r| r.get(0))
            .expect("journal_mode")
    };
    assert_eq!(journal.to_lowercase(), "wal");
    drop(store);

    // A database from a newer build is refused, and left as it was.
    {
        let conn = rusqlite::Connection::open(tmp.path().join(DB_FILE)).expect("raw");
        conn.pragma_update(None, "user_version", SCHEMA_VERSION + 1)
            .expect("bump");
    }
    match Store::open(tmp.path()) {
        Err(StoreError::SchemaTooNew { found, known }) => {
            assert_eq!((found, known), (SCHEMA_VERSION + 1, SCHEMA_VERSION));
        }
        other => panic!("expected SchemaTooNew, got {other:?}"),
    }
    let conn = rusqlite::Connection::open(tmp.path().join(DB_FILE)).expect("raw");
    let v: i64 = conn
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .expect("version");
    assert_eq!(v, SCHEMA_VERSION + 1);
    let n: i64 = conn
        .query_row("SELECT COUNT(*) FROM acquisitions", [], |r| r.get(0))
        .expect("count");
    assert_eq!(n, 1);
}

#[test]
fn bad_input_is_rejected_and_nothing_is_stored() {
    let tmp = TempDir::new("bad");
    let mut store = setup(tmp.path());
    let good = acq("k", samples_for(9));

    let invalid = |field: &str, f: &dyn Fn(&mut NewAcquisition)| {
        let mut a = good.clone();
        f(&mut a);
        (field.to_string(), a)
    };
    let cases = [
        invalid("samples", &|a| {
            a.samples.clear();
            a.n_samples = 0;
        }),
        invalid("samples[5].re", &|a| a.samples[5].re = f64::NAN),
        invalid("dwell_s", &|a| a.dwell_s = 0.0),
        invalid("dwell_s", &|a| a.dwell_s = -2.5e-4),
        invalid("dwell_s", &|a| a.dwell_s = f64::NAN),
        invalid("dwell_s", &|a| a.dwell_s = f64::INFINITY),
        invalid("f0_hz", &|a| a.f0_hz = 0.0),
        invalid("n_samples", &|a| a.n_samples += 1),
        invalid("n_samples", &|a| a.n_samples = 0),
        invalid("averages", &|a| a.averages = 0),
        invalid("idempotency_key", &|a| a.idempotency_key.clear()),
        invalid("waveform_id", &|a| a.waveform_id.clear()),
    ];
    for (field, a) in &cases {
        match store.insert_acquisition(a) {
            Err(StoreError::Invalid { field: f, .. }) => assert_eq!(&f, field),
            other => panic!("{field}: expected Invalid, got {other:?}"),
        }
    }

    // Unknown session or console.
    let mut a = good.clone();
    a.session_id = "nope".into();
    assert!(matches!(
        store.insert_acquisition(&a),
        Err(StoreError::NotFound {
            kind: "session",
            ..
        })
    ));
    let mut a = good.clone();
    a.console_id = "ghost".into();
    assert!(matches!(
        store.insert_acquisition(&a),
        Err(StoreError::NotFound {
            kind: "console",
            ..
        })
    ));
    // A session that runs on another console.
    store.upsert_console(&console("c2")).expect("c2");
    let mut a = good.clone();
    a.console_id = "c2".into();
    assert!(matches!(
        store.insert_acquisition(&a),
        Err(StoreError::Invalid { field, .. }) if field == "console_id"
    ));

    // Nothing was stored, and the key is still free.
    assert_eq!(store.count_acquisitions().expect("count"), 0);
    assert!(store.list_acquisitions("s1").expect("list").is_empty());
    assert!(matches!(
        store.insert_acquisition(&good),
        Ok(Ingested::Stored { .. })
    ));
    assert!(matches!(
        store.get_acquisition(12345),
        Err(StoreError::NotFound {
            kind: "acquisition",
            ..
        })
    ));
    assert!(matches!(
        store.list_acquisitions("nope"),
        Err(StoreError::NotFound { .. })
    ));

    // Other tables validate too.
    let mut bad_console = console("c3");
    bad_console.f0_hz = f64::NAN;
    assert!(matches!(
        store.upsert_console(&bad_console),
        Err(StoreError::Invalid { .. })
    ));
    assert!(matches!(
        store.get_console("c3"),
        Err(StoreError::NotFound { .. })
    ));
    assert!(matches!(
        store.create_session(&NewSession {
            id: "s9".into(),
            console_id: "ghost".into(),
            spec: json!({})
        }),
        Err(StoreError::NotFound {
            kind: "console",
            ..
        })
    ));
    let wf = NewWaveform {
        id: "w9".into(),
        session_id: "s1".into(),
        dt_s: 4e-6,
        samples: vec![Complex64::new(1.0, f64::NAN)],
        approved: true,
    };
    assert!(matches!(
        store.insert_waveform(&wf),
        Err(StoreError::Invalid { field, .. }) if field == "waveform.samples[0].im"
    ));
    assert!(!store.waveform_was_sent("w9").expect("sent?"));
    assert!(matches!(
        store.insert_fit(&NewFit {
            session_id: "s1".into(),
            acquisition_id: Some(999),
            params: json!({})
        }),
        Err(StoreError::NotFound {
            kind: "acquisition",
            ..
        })
    ));
    assert!(matches!(
        store.append_event(Some("nope"), "fit", &json!({})),
        Err(StoreError::NotFound { .. })
    ));
    assert!(store.events_since(None, 0, 100).expect("events").is_empty());
    assert!(store.list_fits("s1").expect("fits").is_empty());
}

#[test]
fn sessions_waveforms_fits_and_events() {
    let tmp = TempDir::new("tables");
    let mut store = setup(tmp.path());

    // Consoles: upsert keeps first_seen, replaces the rest.
    let c = store.get_console("c1").expect("c1");
    let mut info = console("c1");
    info.f0_hz = 123.25e6;
    let c2 = store.upsert_console(&info).expect("upsert");
    assert_eq!(c2.first_seen_ms, c.first_seen_ms);
    assert!(c2.last_seen_ms >= c.last_seen_ms);
    assert_eq!(c2.info, info);
    assert_eq!(store.list_consoles().expect("consoles").len(), 1);

    // Sessions.
    let s1 = store.get_session("s1").expect("s1");
    assert_eq!(s1.state, SessionState::Open);
    assert_eq!(s1.spec, json!({"targets": ["Glu"], "budget": 8}));
    assert!(matches!(
        store.create_session(&NewSession {
            id: "s1".into(),
            console_id: "c1".into(),
            spec: json!({})
        }),
        Err(StoreError::Conflict(_))
    ));
    store
        .create_session(&NewSession {
            id: "s2".into(),
            console_id: "c1".into(),
            spec: json!({}),
        })
        .expect("s2");
    assert_eq!(store.list_sessions().expect("list").len(), 2);
    assert_eq!(store.open_sessions().expect("open").len(), 2);
    let s2 = store
        .set_session_state("s2", SessionState::Cancelled)
        .expect("cancel");
    assert_eq!(s2.state, SessionState::Cancelled);
    assert!(
        store
            .set_session_state("s2", SessionState::Cancelled)
            .is_ok()
    );
    assert!(matches!(
        store.set_session_state("s2", SessionState::Open),
        Err(StoreError::Conflict(_))
    ));
    assert!(matches!(
        store.set_session_state("nope", SessionState::Failed),
        Err(StoreError::NotFound { .. })
    ));
    let open: Vec<String> = store
        .open_sessions()
        .expect("open")
        .into_iter()
        .map(|s| s.id)
        .collect();
    assert_eq!(open, ["s1"]);

    // Waveforms: stored, then sent; only approved ones can be sent.
    let w = NewWaveform {
        id: "w1".into(),
        session_id: "s1".into(),
        dt_s: 4e-6,
        samples: samples_for(5),
        approved: true,
    };
    store.insert_waveform(&w).expect("w1");
    assert!(matches!(
        store.insert_waveform(&w),
        Err(StoreError::Conflict(_))
    ));
    assert!(!store.waveform_was_sent("w1").expect("sent?"));
    store.mark_waveform_sent("w1").expect("sent");
    store.mark_waveform_sent("w1").expect("sent twice is fine");
    assert!(store.waveform_was_sent("w1").expect("sent?"));
    assert!(!store.waveform_was_sent("never").expect("sent?"));
    let got = store.get_waveform("w1").expect("get");
    assert!(got.sent_ms.is_some());
    assert_eq!(got.data, w);
    let mut unapproved = w.clone();
    unapproved.id = "w2".into();
    unapproved.approved = false;
    store.insert_waveform(&unapproved).expect("w2");
    assert!(matches!(
        store.mark_waveform_sent("w2"),
        Err(StoreError::Conflict(_))
    ));
    assert!(!store.waveform_was_sent("w2").expect("sent?"));
    assert_eq!(store.list_waveforms("s1").expect("list").len(), 2);

    // Fits.
    let acq_id = store
        .insert_acquisition(&acq("k1", samples_for(1)))
        .expect("acq")
        .id();
    let params = json!({"b1_scale": 0.93, "b1_sigma": 0.004, "b0_hz": -1.25});
    let f1 = store
        .insert_fit(&NewFit {
            session_id: "s1".into(),
            acquisition_id: Some(acq_id),
            params: params.clone(),
        })
        .expect("fit");
    assert!(matches!(
        store.insert_fit(&NewFit {
            session_id: "s2".into(),
            acquisition_id: Some(acq_id),
            params: json!({})
        }),
        Err(StoreError::Invalid { .. })
    ));
    let fits = store.list_fits("s1").expect("fits");
    assert_eq!(fits.len(), 1);
    assert_eq!(fits[0].id, f1);
    assert_eq!(fits[0].data.params, params);
    assert_eq!(fits[0].data.acquisition_id, Some(acq_id));

    // Events: increasing seq, resumable, filterable by session.
    let e1 = store
        .append_event(Some("s1"), "waveform_sent", &json!({"id": "w1"}))
        .expect("e1");
    let e2 = store
        .append_event(None, "console_hello", &json!({"id": "c1"}))
        .expect("e2");
    let e3 = store
        .append_event(Some("s1"), "fit", &json!({"fit": f1}))
        .expect("e3");
    assert!(e1 < e2 && e2 < e3);
    let all = store.events_since(None, 0, 100).expect("all");
    assert_eq!(all.iter().map(|e| e.seq).collect::<Vec<_>>(), [e1, e2, e3]);
    let s1_events = store.events_since(Some("s1"), 0, 100).expect("s1");
    assert_eq!(
        s1_events.iter().map(|e| e.seq).collect::<Vec<_>>(),
        [e1, e3]
    );
    let after = store.events_since(Some("s1"), e1, 100).expect("after");
    assert_eq!(after.len(), 1);
    assert_eq!(after[0].kind, "fit");
    assert_eq!(after[0].payload, json!({"fit": f1}));
    assert_eq!(store.events_since(None, 0, 2).expect("limit").len(), 2);
    assert!(matches!(
        store.append_event(None, "", &json!(null)),
        Err(StoreError::Invalid { .. })
    ));
}

#[test]
fn data_dir_from_config_then_state_directory_then_error() {
    // Pure resolution.
    let cfg = Path::new("/etc/spinloop-data");
    assert_eq!(
        data_dir_from(Some(cfg), Some("/var/lib/x".as_ref())).expect("config"),
        cfg
    );
    assert_eq!(
        data_dir_from(None, Some("/var/lib/spinloop:/var/lib/other".as_ref())).expect("first"),
        Path::new("/var/lib/spinloop")
    );
    assert_eq!(
        data_dir_from(None, Some("/var/lib/spinloop".as_ref())).expect("single"),
        Path::new("/var/lib/spinloop")
    );
    assert!(matches!(
        data_dir_from(None, None),
        Err(StoreError::NoDataDir)
    ));
    assert!(matches!(
        data_dir_from(None, Some("".as_ref())),
        Err(StoreError::NoDataDir)
    ));
    assert!(matches!(
        data_dir_from(Some(Path::new("")), None),
        Err(StoreError::Invalid { .. })
    ));

    // Through the environment. The only test in this binary that touches STATE_DIRECTORY, so
    // every environment case lives here (tests run on parallel threads).
    let saved = std::env::var_os("STATE_DIRECTORY");
    // SAFETY: no other test in this binary reads or writes the environment while this runs
    // (the crash test passes its variable to a child process with `Command::env`).
    unsafe { std::env::set_var("STATE_DIRECTORY", "/var/lib/spinloop:/var/lib/other") };
    assert_eq!(
        Store::data_dir(None).expect("env"),
        Path::new("/var/lib/spinloop")
    );
    assert_eq!(Store::data_dir(Some(cfg)).expect("config wins"), cfg);
    // SAFETY: as above.
    unsafe { std::env::remove_var("STATE_DIRECTORY") };
    let err = Store::data_dir(None).unwrap_err();
    assert!(matches!(err, StoreError::NoDataDir));
    assert!(err.to_string().contains("STATE_DIRECTORY"), "{err}");
    assert_eq!(Store::data_dir(Some(cfg)).expect("config"), cfg);
    if let Some(v) = saved {
        // SAFETY: as above.
        unsafe { std::env::set_var("STATE_DIRECTORY", v) };
    }

    // Opening creates the directory and the database file.
    let tmp = TempDir::new("datadir");
    let nested = tmp.path().join("a/b");
    let store = Store::open(&nested).expect("open nested");
    assert!(nested.join(DB_FILE).is_file());
    assert_eq!(store.path(), nested.join(DB_FILE));
}

#[test]
fn a_session_step_commits_all_or_nothing() {
    use spinloop::store::SessionStep;
    let dir = TempDir::new("step");
    let mut store = setup(dir.path());
    assert_eq!(store.session_checkpoint("s1").expect("checkpoint"), None);
    let wave = |id: &str, approved: bool| NewWaveform {
        id: id.into(),
        session_id: "s1".into(),
        dt_s: 2e-5,
        samples: vec![Complex64::new(10.0, -3.5), Complex64::new(0.1, 1e-300)],
        approved,
    };
    let step = SessionStep {
        session_id: "s1".into(),
        waveforms: vec![wave("s1-w1", true)],
        fits: vec![],
        events: vec![
            ("designed".into(), json!({"round": 0})),
            ("waveform_sent".into(), json!({"waveform_id": "s1-w1"})),
        ],
        checkpoint: Some(json!({"phase": "collecting", "round": 0})),
        state: None,
    };
    let events = store.commit_session_step(&step).expect("step");
    assert_eq!(events.len(), 2);
    assert!(events[1].seq > events[0].seq);
    assert!(store.waveform_was_sent("s1-w1").expect("sent"));
    assert_eq!(
        store.session_checkpoint("s1").expect("checkpoint"),
        Some(json!({"phase": "collecting", "round": 0}))
    );
    // Repeating the same waveform (a resend) is accepted; other content under its id is not.
    let repeat = SessionStep {
        session_id: "s1".into(),
        waveforms: vec![wave("s1-w1", true)],
        ..SessionStep::default()
    };
    store.commit_session_step(&repeat).expect("repeat");
    let mut other = wave("s1-w1", true);
    other.samples[0].re = 11.0;
    // A bad step — a conflicting waveform after a valid event — writes nothing at all.
    let bad = SessionStep {
        session_id: "s1".into(),
        waveforms: vec![wave("s1-w2", true), other],
        events: vec![("fit".into(), json!({}))],
        checkpoint: Some(json!({"phase": "done"})),
        state: Some(SessionState::Converged),
        ..SessionStep::default()
    };
    assert!(matches!(
        store.commit_session_step(&bad),
        Err(StoreError::Conflict(_))
    ));
    assert!(!store.waveform_was_sent("s1-w2").expect("query"));
    assert_eq!(
        store
            .events_since(Some("s1"), 0, 100)
            .expect("events")
            .len(),
        2
    );
    assert_eq!(
        store.get_session("s1").expect("s").state,
        SessionState::Open
    );
    // An unapproved waveform never becomes "sent".
    let unapproved = SessionStep {
        session_id: "s1".into(),
        waveforms: vec![wave("s1-w3", false)],
        ..SessionStep::default()
    };
    assert!(matches!(
        store.commit_session_step(&unapproved),
        Err(StoreError::Conflict(_))
    ));
    assert!(!store.waveform_was_sent("s1-w3").expect("query"));
    // The final step: state and checkpoint together; afterwards the state cannot change.
    let done = SessionStep {
        session_id: "s1".into(),
        events: vec![("converged".into(), json!({"reason": "test"}))],
        checkpoint: Some(json!({"phase": "done"})),
        state: Some(SessionState::Converged),
        ..SessionStep::default()
    };
    store.commit_session_step(&done).expect("done");
    assert_eq!(
        store.get_session("s1").expect("s").state,
        SessionState::Converged
    );
    let reopen = SessionStep {
        session_id: "s1".into(),
        state: Some(SessionState::Open),
        ..SessionStep::default()
    };
    assert!(store.commit_session_step(&reopen).is_err());
    // Unknown session.
    let unknown = SessionStep {
        session_id: "nope".into(),
        ..SessionStep::default()
    };
    assert!(matches!(
        store.commit_session_step(&unknown),
        Err(StoreError::NotFound { .. })
    ));
}

#[test]
fn a_version_1_database_is_migrated_with_its_data() {
    let dir = TempDir::new("v1");
    std::fs::create_dir_all(dir.path()).expect("dir");
    {
        // Build a version-1 database by hand (the first migration only).
        let conn = rusqlite::Connection::open(dir.path().join(DB_FILE)).expect("sqlite");
        conn.execute_batch(spinloop::store::schema::MIGRATIONS[0])
            .expect("v1 schema");
        conn.pragma_update(None, "user_version", 1)
            .expect("version");
        conn.execute(
            "INSERT INTO consoles VALUES ('c1', '1H', 123.2e6, '{}', 0, 0)",
            [],
        )
        .expect("console");
        conn.execute(
            "INSERT INTO sessions VALUES ('s1', 'c1', '{}', 'open', 0, 0)",
            [],
        )
        .expect("session");
    }
    let store = Store::open(dir.path()).expect("open migrates");
    assert_eq!(store.schema_version().expect("version"), SCHEMA_VERSION);
    const { assert!(SCHEMA_VERSION >= 2) };
    assert_eq!(
        store.get_session("s1").expect("kept").state,
        SessionState::Open
    );
    assert_eq!(store.session_checkpoint("s1").expect("column"), None);
}
