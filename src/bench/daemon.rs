//! The daemon ingestion benchmark behind `spinloop bench --daemon N`: an in-process daemon on a
//! Unix socket in a temporary directory, N simulated consoles each streaming 2048-point FIDs
//! on its own Connect stream (its own connection), measuring
//! (a) saturated: durable (acknowledged) acquisitions per second and the send→ack latency with
//! every console keeping a window of unacknowledged acquisitions in flight, and
//! (b) paced: the send→ack latency at a fixed total rate (default 100/s).
//!
//! Also the fixtures of simulated consoles ([`seed_console`], [`hello`], [`acquisition`]) that
//! the daemon tests use: a console, a session and a sent waveform written straight into the
//! store (the session runner is not involved).

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use num_complex::Complex64;
use tokio::sync::{Semaphore, mpsc};
use tokio_stream::StreamExt;
use tokio_stream::wrappers::ReceiverStream;

use crate::daemon::config::DaemonConfig;
use crate::daemon::pb;
use crate::daemon::pb::console_client::ConsoleClient;
use crate::daemon::server::{self, ServerError};
use crate::store::{ConsoleInfo, NewSession, NewWaveform, Store, StoreError};

/// Dwell of the simulated consoles (s).
pub const DWELL_S: f64 = 2.5e-4;
/// f0 of the simulated consoles (Hz): 3 T.
pub const F0_HZ: f64 = 123.2e6;
/// RF raster of the simulated consoles (s).
pub const RASTER_S: f64 = 1e-6;

/// What to run.
#[derive(Debug, Clone, PartialEq)]
pub struct DaemonBenchOptions {
    /// Concurrent console streams.
    pub consoles: usize,
    /// Acquisitions in the saturated run (all consoles together).
    pub acquisitions: usize,
    /// Total rate of the paced run (acquisitions/s).
    pub rate: f64,
    /// Complex points per FID.
    pub points: usize,
}

/// Errors of the daemon benchmark.
#[derive(Debug, thiserror::Error)]
pub enum DaemonBenchError {
    /// Bad options.
    #[error("{0}")]
    Options(String),
    /// The store (seeding, counting).
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The daemon.
    #[error(transparent)]
    Server(#[from] ServerError),
    /// A gRPC call failed.
    #[error("gRPC: {0}")]
    Rpc(String),
    /// I/O (the runtime, the temporary directory).
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

fn rpc(e: impl std::fmt::Display) -> DaemonBenchError {
    DaemonBenchError::Rpc(e.to_string())
}

/// Latency summary of one run.
#[derive(Debug, Clone, PartialEq)]
pub struct Phase {
    /// Acquisitions acknowledged.
    pub acked: usize,
    /// Refused (Nack) — 0 in a healthy run.
    pub nacked: usize,
    /// Wall time from the first send to the last ack (s).
    pub seconds: f64,
    /// Median send→ack latency (s).
    pub p50: f64,
    /// 99th percentile (s).
    pub p99: f64,
    /// Largest (s).
    pub max: f64,
    /// Group commits during the run and acquisitions in them.
    pub group_commits: u64,
    /// Acquisitions handled by those commits.
    pub grouped: u64,
    /// CPU time of the whole process during the run (s; Linux `/proc`, NaN elsewhere).
    pub cpu_seconds: f64,
    /// CPU time of the store actor's thread during the run (s).
    pub store_cpu_seconds: f64,
    /// Wall time the store actor spent inside group transactions (commit + fsync) (s).
    pub store_busy_seconds: f64,
}

impl Phase {
    /// Acknowledged acquisitions per second.
    pub fn rate(&self) -> f64 {
        self.acked as f64 / self.seconds
    }
}

/// The measurements.
#[derive(Debug, Clone, PartialEq)]
pub struct DaemonBenchReport {
    /// Options run.
    pub options: DaemonBenchOptions,
    /// Unacknowledged acquisitions each console kept in flight in the saturated run.
    pub window: usize,
    /// Saturated run.
    pub saturated: Phase,
    /// Paced run.
    pub paced: Phase,
    /// Rows in the store at the end (= acked, every key distinct).
    pub rows: i64,
}

impl std::fmt::Display for DaemonBenchReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let o = &self.options;
        let ms = 1e3;
        for (name, p) in [("saturated", &self.saturated), ("paced", &self.paced)] {
            writeln!(
                f,
                "daemon {name}: {} consoles x {}-point FIDs{}: {} acked ({} nacked) in {:.2} s = {:.0} acked/s; ack latency p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms; {} group commits, {:.1} acquisitions per commit",
                o.consoles,
                o.points,
                if name == "saturated" {
                    format!(", window {} per console", self.window)
                } else {
                    format!(", offered {:.0}/s", o.rate)
                },
                p.acked,
                p.nacked,
                p.seconds,
                p.rate(),
                p.p50 * ms,
                p.p99 * ms,
                p.max * ms,
                p.group_commits,
                p.grouped as f64 / (p.group_commits.max(1)) as f64,
            )?;
            writeln!(
                f,
                "  store actor inside group transactions {:.0} % of the run (of which on CPU {:.0} %; the rest is fsync); process CPU {:.2} cores on average",
                100.0 * p.store_busy_seconds / p.seconds,
                100.0 * p.store_cpu_seconds / p.seconds,
                p.cpu_seconds / p.seconds,
            )?;
        }
        write!(f, "store rows at the end: {}", self.rows)
    }
}

/// The hello of a simulated 3 T console.
pub fn hello(console_id: &str, sample_count: u32) -> pb::ConsoleHello {
    pb::ConsoleHello {
        console_id: console_id.to_string(),
        nucleus: "1H".into(),
        f0_hz: F0_HZ,
        rf_raster_s: RASTER_S,
        sample_count,
        dwell_s: DWELL_S,
        limits: Some(pb::ConsoleLimits {
            peak_b1_hz: 1000.0,
            max_energy_hz2s: 1e4,
            max_duration_s: 0.02,
            max_duty_cycle: 0.1,
            energy_window_s: 0.0,
            window_max_energy_hz2s: 0.0,
        }),
        software: "spinloop-bench".into(),
        tr_s: 2.0,
    }
}

/// An acquisition of `points` deterministic samples (depending on `seed`).
pub fn acquisition(key: &str, waveform_id: &str, points: usize, seed: u64) -> pb::Acquisition {
    let mut samples = Vec::with_capacity(2 * points);
    let s = seed as f64;
    for k in 0..points {
        let t = k as f64 * DWELL_S;
        let decay = (-t * 20.0).exp();
        samples.push(decay * (t * 314.0 + s).cos());
        samples.push(-decay * (t * 314.0 + s).sin());
    }
    pb::Acquisition {
        idempotency_key: key.to_string(),
        waveform_id: waveform_id.to_string(),
        samples,
        dwell_s: DWELL_S,
        f0_hz: F0_HZ,
        averages: 1,
        coil: "head".into(),
    }
}

/// Writes a console, an open session on it and an approved, *sent* waveform into the store,
/// so acquisitions naming `waveform_id` are accepted from `console_id`.
pub fn seed_console(
    store: &mut Store,
    console_id: &str,
    session_id: &str,
    waveform_id: &str,
) -> Result<(), StoreError> {
    store.upsert_console(&ConsoleInfo {
        id: console_id.into(),
        nucleus: "1H".into(),
        f0_hz: F0_HZ,
        limits: serde_json::json!({}),
    })?;
    store.create_session(&NewSession {
        id: session_id.into(),
        console_id: console_id.into(),
        spec: serde_json::json!({"bench": true}),
    })?;
    store.insert_waveform(&NewWaveform {
        id: waveform_id.into(),
        session_id: session_id.into(),
        dt_s: RASTER_S,
        samples: vec![Complex64::new(10.0, 0.0); 100],
        approved: true,
    })?;
    store.mark_waveform_sent(waveform_id)
}

/// CPU seconds (user + system) of this process, or of its threads named `thread`, from
/// `/proc` (clock ticks of 1/100 s, the Linux default); NaN where unavailable.
fn cpu_seconds(thread: Option<&str>) -> f64 {
    fn ticks(stat: &str) -> Option<f64> {
        // Fields after the parenthesised command name: state is field 3; utime 14, stime 15.
        let rest = &stat[stat.rfind(')')? + 2..];
        let f: Vec<&str> = rest.split_whitespace().collect();
        Some(f.get(11)?.parse::<f64>().ok()? + f.get(12)?.parse::<f64>().ok()?)
    }
    let total = match thread {
        None => std::fs::read_to_string("/proc/self/stat")
            .ok()
            .and_then(|s| ticks(&s)),
        Some(name) => std::fs::read_dir("/proc/self/task").ok().map(|dir| {
            dir.flatten()
                .filter(|e| {
                    std::fs::read_to_string(e.path().join("comm")).is_ok_and(|c| c.trim() == name)
                })
                .filter_map(|e| {
                    std::fs::read_to_string(e.path().join("stat"))
                        .ok()
                        .and_then(|s| ticks(&s))
                })
                .sum()
        }),
    };
    total.map_or(f64::NAN, |t| t / 100.0)
}

fn quantile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted.len() - 1) as f64 * q).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

/// One console's part of a run: its own connection and Connect stream; sends `count`
/// acquisitions, either with up to `window` unacknowledged (`interval` None) or one every
/// `interval`; returns (latencies of acked ones, nacks).
/// One console's part of a run.
#[derive(Debug, Clone, Copy)]
struct RunSpec {
    /// Key prefix (unique per run).
    prefix: &'static str,
    /// Acquisitions to send.
    count: usize,
    /// Points per FID.
    points: usize,
    /// Unacknowledged acquisitions allowed.
    window: usize,
    /// Paced: one acquisition per interval.
    interval: Option<Duration>,
    /// Delay before the first send.
    start: Duration,
}

async fn console_run(
    socket: PathBuf,
    console: usize,
    spec: RunSpec,
) -> Result<(Vec<f64>, usize), DaemonBenchError> {
    let RunSpec {
        prefix,
        count,
        points,
        window,
        interval,
        start,
    } = spec;
    let channel = server::unix_channel(&socket).await.map_err(rpc)?;
    let mut client = ConsoleClient::new(channel);
    let (tx, rx) = mpsc::channel::<pb::ConsoleMessage>(window.max(1) + 1);
    let cid = format!("bench-c{console}");
    let wid = format!("bench-w{console}");
    tx.send(pb::ConsoleMessage {
        msg: Some(pb::console_message::Msg::Hello(hello(&cid, points as u32))),
    })
    .await
    .map_err(rpc)?;
    let mut inbound = client
        .connect(ReceiverStream::new(rx))
        .await
        .map_err(rpc)?
        .into_inner();
    match inbound.next().await {
        Some(Ok(pb::DaemonMessage {
            msg: Some(pb::daemon_message::Msg::Welcome(_)),
        })) => {}
        other => return Err(rpc(format!("expected a Welcome, got {other:?}"))),
    }
    let template = acquisition("k", &wid, points, console as u64);
    let sent: Arc<Mutex<Vec<Option<Instant>>>> = Arc::new(Mutex::new(vec![None; count]));
    let permits = Arc::new(Semaphore::new(window.max(1)));
    let sender = {
        let sent = sent.clone();
        let permits = permits.clone();
        tokio::spawn(async move {
            tokio::time::sleep(start).await;
            let mut tick = interval.map(tokio::time::interval);
            for seq in 0..count {
                if let Some(t) = tick.as_mut() {
                    t.tick().await;
                }
                let Ok(p) = permits.acquire().await else {
                    return;
                };
                p.forget();
                let mut a = template.clone();
                a.idempotency_key = format!("{prefix}-{console}-{seq}");
                if let Ok(mut g) = sent.lock() {
                    g[seq] = Some(Instant::now());
                }
                let m = pb::ConsoleMessage {
                    msg: Some(pb::console_message::Msg::Acquisition(a)),
                };
                if tx.send(m).await.is_err() {
                    return;
                }
            }
            // Keep the request stream open until every answer came back.
            tx.closed().await;
        })
    };
    let mut lat = Vec::with_capacity(count);
    let mut nacks = 0usize;
    while lat.len() + nacks < count {
        let Some(m) = inbound.next().await else {
            break;
        };
        let m = m.map_err(rpc)?;
        let key = match m.msg {
            Some(pb::daemon_message::Msg::Ack(a)) => Some((a.idempotency_key, true)),
            Some(pb::daemon_message::Msg::Nack(n)) => Some((n.idempotency_key, false)),
            _ => None,
        };
        let Some((key, ok)) = key else { continue };
        let now = Instant::now();
        let seq = key
            .rsplit('-')
            .next()
            .and_then(|s| s.parse::<usize>().ok())
            .unwrap_or(usize::MAX);
        let t0 = sent.lock().ok().and_then(|g| g.get(seq).copied().flatten());
        if ok {
            if let Some(t0) = t0 {
                lat.push(now.duration_since(t0).as_secs_f64());
            }
        } else {
            nacks += 1;
        }
        permits.add_permits(1);
    }
    drop(inbound);
    sender.abort();
    Ok((lat, nacks))
}

async fn phase(
    socket: &Path,
    shared: &crate::daemon::Shared,
    o: &DaemonBenchOptions,
    prefix: &'static str,
    total: usize,
    window: usize,
    interval: Option<Duration>,
) -> Result<Phase, DaemonBenchError> {
    let before = shared.store.stats();
    let (cpu0, store0) = (cpu_seconds(None), cpu_seconds(Some("spinloop-store")));
    let t0 = Instant::now();
    let mut tasks = Vec::new();
    for c in 0..o.consoles {
        let count = total / o.consoles + usize::from(c < total % o.consoles);
        tasks.push(tokio::spawn(console_run(
            socket.to_path_buf(),
            c,
            RunSpec {
                prefix,
                count,
                points: o.points,
                window,
                interval,
                // Paced consoles start staggered so the total rate is even.
                start: interval.map_or(Duration::ZERO, |i| i.mul_f64(c as f64 / o.consoles as f64)),
            },
        )));
    }
    let mut lat = Vec::with_capacity(total);
    let mut nacked = 0;
    for t in tasks {
        let (l, n) = t.await.map_err(rpc)??;
        lat.extend(l);
        nacked += n;
    }
    let seconds = t0.elapsed().as_secs_f64();
    let after = shared.store.stats();
    let (cpu1, store1) = (cpu_seconds(None), cpu_seconds(Some("spinloop-store")));
    lat.sort_by(f64::total_cmp);
    Ok(Phase {
        acked: lat.len(),
        nacked,
        seconds,
        p50: quantile(&lat, 0.5),
        p99: quantile(&lat, 0.99),
        max: lat.last().copied().unwrap_or(f64::NAN),
        group_commits: after.group_commits - before.group_commits,
        grouped: after.acquisitions - before.acquisitions,
        cpu_seconds: cpu1 - cpu0,
        store_cpu_seconds: store1 - store0,
        store_busy_seconds: after.busy_seconds - before.busy_seconds,
    })
}

/// Unacknowledged acquisitions each console keeps in flight in the saturated run.
pub const WINDOW: usize = 64;

/// Runs the benchmark (a tokio runtime of its own; blocks).
pub fn daemon_bench(o: &DaemonBenchOptions) -> Result<DaemonBenchReport, DaemonBenchError> {
    if o.consoles == 0 || o.consoles > 1000 {
        return Err(DaemonBenchError::Options(
            "--daemon: 1..=1000 consoles".into(),
        ));
    }
    if o.acquisitions < o.consoles {
        return Err(DaemonBenchError::Options(
            "--acquisitions must be at least the number of consoles".into(),
        ));
    }
    if !(o.rate.is_finite() && o.rate > 0.0 && o.rate <= 100_000.0) {
        return Err(DaemonBenchError::Options(
            "--rate must be in (0, 1e5]".into(),
        ));
    }
    if o.points == 0 || o.points > crate::control::MAX_SAMPLE_COUNT {
        return Err(DaemonBenchError::Options("points out of range".into()));
    }
    let dir = std::env::temp_dir().join(format!("spinloop-daemon-bench-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let data = dir.join("data");
    {
        let mut store = Store::open(&data)?;
        for c in 0..o.consoles {
            seed_console(
                &mut store,
                &format!("bench-c{c}"),
                &format!("bench-s{c}"),
                &format!("bench-w{c}"),
            )?;
        }
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let result = runtime.block_on(async {
        let mut config = DaemonConfig::new(&data, dir.join("d.sock"));
        // Large enough for one window per console.
        config.max_in_flight = WINDOW;
        let handle = server::start_in_process(config).await?;
        let shared = handle
            .shared()
            .cloned()
            .ok_or_else(|| rpc("the daemon has no shared state"))?;
        let socket = handle.socket.clone();
        let saturated = phase(&socket, &shared, o, "sat", o.acquisitions, WINDOW, None).await?;
        // Paced: about 5 s (at least 100 acquisitions) at the total rate.
        let paced_total = ((o.rate * 5.0).round() as usize).max(100).max(o.consoles);
        let per_console = Duration::from_secs_f64(o.consoles as f64 / o.rate);
        let paced = phase(
            &socket,
            &shared,
            o,
            "paced",
            paced_total,
            WINDOW,
            Some(per_console),
        )
        .await?;
        let rows = shared
            .store
            .call(|s| s.count_acquisitions())
            .await
            .map_err(rpc)??;
        drop(shared);
        handle.shutdown();
        handle.join().await?;
        Ok::<_, DaemonBenchError>(DaemonBenchReport {
            options: o.clone(),
            window: WINDOW,
            saturated,
            paced,
            rows,
        })
    });
    let _ = std::fs::remove_dir_all(&dir);
    result
}
