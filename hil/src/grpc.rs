//! The gRPC transport of a simulated console: any [`ConsolePhysics`] speaking the daemon's
//! `Console.Connect` protocol (hello; for every waveform command, the FIDs with idempotency
//! keys; acks and nacks), reconnecting after a lost connection, and the daemon address type
//! [`DaemonAddr`].
//!
//! # Delivery
//! Every acquisition gets a key `<prefix>-<n>` (n counts this link's acquisitions, the prefix
//! is unique per process by default). An acquisition stays *pending* until its ack; after a
//! reconnect the pending ones are sent again first, with the same keys (a retry of something
//! the daemon already committed is acked as a duplicate and stores nothing), then the console
//! answers whatever the daemon sends (a resumed session resends the waveform it waits on:
//! that is a new measurement with a new key). A nack drops the acquisition (not stored;
//! retrying the same content would be refused again).
//!
//! # Time
//! Acquisition n is played at session time t = (start_index + n)·TR (the profile's TR): the
//! clock the hidden B0 drift runs on. It counts plays, not wall time, so runs are
//! reproducible.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use spinloop::daemon::pb;
use spinloop::daemon::sim_link::hello_of;
use tokio::sync::mpsc;
use tokio_stream::StreamExt;
use tonic::transport::Channel;

use crate::HilError;
use crate::console::ConsolePhysics;

/// Where the daemon listens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DaemonAddr {
    /// A Unix socket.
    Unix(PathBuf),
    /// A TCP address (plain; loopback).
    Tcp(std::net::SocketAddr),
}

impl std::str::FromStr for DaemonAddr {
    type Err = HilError;

    fn from_str(s: &str) -> Result<DaemonAddr, HilError> {
        if let Some(p) = s.strip_prefix("unix:") {
            if p.is_empty() {
                return Err(HilError::invalid("daemon", s, "unix: needs a path"));
            }
            Ok(DaemonAddr::Unix(PathBuf::from(p)))
        } else if let Some(a) = s.strip_prefix("tcp:") {
            a.parse()
                .map(DaemonAddr::Tcp)
                .map_err(|e| HilError::invalid("daemon", s, format!("bad TCP address: {e}")))
        } else {
            Err(HilError::invalid(
                "daemon",
                s,
                "expected unix:PATH or tcp:HOST:PORT",
            ))
        }
    }
}

impl std::fmt::Display for DaemonAddr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DaemonAddr::Unix(p) => write!(f, "unix:{}", p.display()),
            DaemonAddr::Tcp(a) => write!(f, "tcp:{a}"),
        }
    }
}

impl DaemonAddr {
    /// A new client channel.
    pub async fn channel(&self) -> Result<Channel, HilError> {
        Ok(match self {
            DaemonAddr::Unix(p) => spinloop::daemon::server::unix_channel(p).await?,
            DaemonAddr::Tcp(a) => spinloop::daemon::server::tcp_channel(*a, None).await?,
        })
    }
}

/// Options of a console link.
#[derive(Debug, Clone)]
pub struct LinkOptions {
    /// Index of the first acquisition on the session clock (module doc).
    pub start_index: u64,
    /// Keep reconnecting when the connection is lost or the daemon closes the stream.
    pub reconnect: bool,
    /// Give up after this long without a connection.
    pub reconnect_for: Duration,
    /// Append one JSON line per ack here (`{"key", "acquisition_id", "duplicate",
    /// "session_id"}`), flushed at once.
    pub ack_log: Option<PathBuf>,
    /// Idempotency key prefix (default: `hil-<pid>-<start ms>`).
    pub key_prefix: Option<String>,
    /// After this many acks, ignore waveform commands until the next reconnect: a console
    /// stalled mid-session, so a test can kill it (or the daemon) at a known point.
    pub pause_after: Option<u64>,
}

impl Default for LinkOptions {
    fn default() -> Self {
        LinkOptions {
            start_index: 0,
            reconnect: true,
            reconnect_for: Duration::from_secs(60),
            ack_log: None,
            key_prefix: None,
            pause_after: None,
        }
    }
}

/// What a console link saw (shared, so a caller can watch it while it runs).
#[derive(Debug, Default)]
pub struct LinkStats {
    /// Connections made (1 + reconnects).
    pub connects: AtomicU64,
    /// Waveform commands received.
    pub waveforms: AtomicU64,
    /// Acquisitions made (each once, whatever its retries).
    pub acquired: AtomicU64,
    /// Acquisition messages sent (with retries).
    pub sent: AtomicU64,
    /// Acks received.
    pub acked: AtomicU64,
    /// Of which duplicates.
    pub duplicates: AtomicU64,
    /// Nacks received.
    pub nacked: AtomicU64,
}

/// Runs `physics` as a console of the daemon at `addr` until the daemon closes the stream
/// (without `reconnect`), or no connection succeeds for `reconnect_for`, or the task is
/// dropped.
pub async fn run_console<P: ConsolePhysics + 'static>(
    addr: DaemonAddr,
    physics: P,
    options: LinkOptions,
    stats: Arc<LinkStats>,
) -> Result<(), HilError> {
    let profile = physics.profile().clone();
    let physics = Arc::new(Mutex::new(physics));
    let prefix = options.key_prefix.clone().unwrap_or_else(|| {
        let ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis());
        format!("hil-{}-{ms:x}", std::process::id())
    });
    let mut log = match &options.ack_log {
        Some(p) => Some(
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(p)
                .map_err(|e| HilError::Io {
                    path: p.clone(),
                    message: e.to_string(),
                })?,
        ),
        None => None,
    };
    let mut pending: BTreeMap<u64, pb::Acquisition> = BTreeMap::new();
    let mut next = 0u64;
    let mut last_ok = Instant::now();
    let mut pause_used = false;
    loop {
        let channel = match addr.channel().await {
            Ok(c) => c,
            Err(e) => {
                if !options.reconnect || last_ok.elapsed() > options.reconnect_for {
                    return Err(e);
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let (tx, rx) = mpsc::channel::<pb::ConsoleMessage>(64);
        let hello = pb::ConsoleMessage {
            msg: Some(pb::console_message::Msg::Hello(hello_of(&profile))),
        };
        if tx.send(hello).await.is_err() {
            continue;
        }
        let mut client = pb::console_client::ConsoleClient::new(channel);
        let inbound = client
            .connect(tokio_stream::wrappers::ReceiverStream::new(rx))
            .await;
        let mut inbound = match inbound {
            Ok(r) => r.into_inner(),
            Err(e) => {
                if !options.reconnect || last_ok.elapsed() > options.reconnect_for {
                    return Err(e.into());
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        stats.connects.fetch_add(1, Ordering::Relaxed);
        tracing::info!(
            "connected to {addr} as {} (retrying {} pending acquisitions)",
            profile.id,
            pending.len()
        );
        last_ok = Instant::now();
        // A pause lasts until the next connection.
        let mut paused = false;
        // Retries first, with their keys.
        for a in pending.values() {
            stats.sent.fetch_add(1, Ordering::Relaxed);
            let m = pb::ConsoleMessage {
                msg: Some(pb::console_message::Msg::Acquisition(a.clone())),
            };
            if tx.send(m).await.is_err() {
                break;
            }
        }
        let ended = loop {
            let msg = match inbound.next().await {
                None => break Ok(()),
                Some(Err(e)) => break Err(HilError::from(e)),
                Some(Ok(m)) => m,
            };
            last_ok = Instant::now();
            match msg.msg {
                Some(pb::daemon_message::Msg::Waveform(w)) => {
                    stats.waveforms.fetch_add(1, Ordering::Relaxed);
                    tracing::info!(
                        "waveform {} ({} acquisitions{}{})",
                        w.waveform_id,
                        w.acquisitions.max(1),
                        if w.probe { ", probe" } else { "" },
                        if paused { ", ignored: paused" } else { "" }
                    );
                    if paused {
                        continue;
                    }
                    for _ in 0..w.acquisitions.max(1) {
                        let n = next;
                        next += 1;
                        let t = (options.start_index + n) as f64 * profile.tr_s;
                        let p = physics.clone();
                        let (ux, uy, dt, av) =
                            (w.ux.clone(), w.uy.clone(), w.raster_s, w.averages.max(1));
                        let fid = tokio::task::spawn_blocking(move || {
                            let mut p = p.lock().unwrap_or_else(|e| e.into_inner());
                            p.acquire(&ux, &uy, dt, av, t)
                        })
                        .await
                        .map_err(|e| HilError::Link(format!("acquisition task: {e}")))??;
                        stats.acquired.fetch_add(1, Ordering::Relaxed);
                        let a = pb::Acquisition {
                            idempotency_key: format!("{prefix}-{n}"),
                            waveform_id: w.waveform_id.clone(),
                            samples: fid.iter().flat_map(|c| [c.re, c.im]).collect(),
                            dwell_s: profile.dwell_s,
                            f0_hz: profile.f0_hz,
                            averages: av,
                            coil: "hil".into(),
                        };
                        pending.insert(n, a.clone());
                        stats.sent.fetch_add(1, Ordering::Relaxed);
                        let m = pb::ConsoleMessage {
                            msg: Some(pb::console_message::Msg::Acquisition(a)),
                        };
                        if tx.send(m).await.is_err() {
                            break;
                        }
                    }
                }
                Some(pb::daemon_message::Msg::Ack(a)) => {
                    stats.acked.fetch_add(1, Ordering::Relaxed);
                    if a.duplicate {
                        stats.duplicates.fetch_add(1, Ordering::Relaxed);
                    }
                    pending.retain(|_, p| p.idempotency_key != a.idempotency_key);
                    if !pause_used
                        && options
                            .pause_after
                            .is_some_and(|n| stats.acked.load(Ordering::Relaxed) >= n)
                    {
                        paused = true;
                        pause_used = true;
                    }
                    if let Some(f) = log.as_mut() {
                        let line = serde_json::json!({
                            "key": a.idempotency_key,
                            "acquisition_id": a.acquisition_id,
                            "duplicate": a.duplicate,
                            "session_id": a.session_id,
                        });
                        writeln!(f, "{line}")
                            .and_then(|()| f.flush())
                            .map_err(|e| HilError::Link(format!("ack log: {e}")))?;
                    }
                }
                Some(pb::daemon_message::Msg::Nack(n)) => {
                    stats.nacked.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!("nack {}: {}", n.idempotency_key, n.message);
                    pending.retain(|_, p| p.idempotency_key != n.idempotency_key);
                }
                Some(pb::daemon_message::Msg::Welcome(_)) | None => {}
            }
        };
        if !options.reconnect {
            return ended;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
