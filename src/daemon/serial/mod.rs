//! Consoles on serial ports: the bridge between a device adapter (spinloop's firmware
//! protocol, or a SCPI instrument) and the daemon's own `Console` service.
//!
//! Each `[[serial_console]]` of the configuration gets one bridge task. The device side is an
//! *adapter*: a thread that owns the port and a sans-IO protocol core, keeps reopening the
//! device path after an unplug, and talks to the bridge through [`AdapterCommand`]s and
//! [`AdapterEvent`]s. The daemon side is an ordinary `Console.Connect` stream over the
//! daemon's Unix socket, so a serial console gets exactly the validation, interlock and
//! ack-after-commit of any gRPC console — the bridge adds no second path into the store.
//!
//! # Lifecycle
//! - The device connects (its HELLO, or the SCPI identification) → the bridge builds the
//!   console's hello from the configuration and the device's stated capabilities (the device's
//!   own B1 limit and the configured one: the smaller wins; a configured f0, raster,
//!   acquisition that disagrees with the device is refused), opens a Connect stream and sends
//!   it.
//! - A waveform command → a device waveform id and one device acquisition id per requested
//!   acquisition are allocated and **journaled** (fsync'd) before the upload; once the device
//!   commits the waveform, each acquisition is played.
//! - An FID from the device → the journal maps its acquisition id back to the waveform and a
//!   stable idempotency key, and it is sent as an acquisition. Only when the daemon acks it
//!   (after its commit) — or nacks it, which is final — is the device told the FID is stored,
//!   and forgets it. Until then the device retains the FID and re-sends it after any
//!   reconnect, and the journal survives a daemon crash, so a `kill -9` between the FID and
//!   the ack loses nothing: the re-sent FID gets the same key and the store deduplicates it.
//! - An FID that arrives damaged (a link loss in the middle of its transfer) is asked for
//!   again by re-playing the same acquisition id: the device re-sends what it holds and does
//!   not acquire twice.
//! - The device link is lost (unplug, stall, corrupted beyond retries) → the Connect stream is
//!   closed, so the console shows disconnected and its session waits; when the device comes
//!   back the console reconnects and the session re-sends the waveform it was collecting.
//! - The Connect stream fails (daemon shutting down) → the bridge reconnects with backoff.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use num_complex::Complex64;
use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, watch};
use tokio_stream::StreamExt;

use super::config::{SerialConsoleConfig, SerialProtocol};
use super::pb;

mod firmware;
mod scpi;

/// Sends commands to an adapter (a closure over its channel).
pub type CommandSink = Box<dyn Fn(AdapterCommand) + Send + Sync>;

/// A running adapter: its command sink, its event stream, and what to do to stop it (joins
/// its thread; call from a blocking context).
pub struct Adapter {
    /// Commands to the adapter.
    pub commands: CommandSink,
    /// Events from it.
    pub events: mpsc::UnboundedReceiver<AdapterEvent>,
    /// Stops the adapter thread and waits for it.
    pub stop: Box<dyn FnOnce() + Send>,
}

/// Starts the adapter of a configured serial console (it opens the device itself, and keeps
/// retrying while the device is absent).
pub fn spawn_adapter(cfg: &SerialConsoleConfig) -> Result<Adapter, SerialError> {
    match cfg.protocol {
        SerialProtocol::Firmware => firmware::spawn(cfg),
        SerialProtocol::Scpi => scpi::spawn(cfg),
    }
}

/// Starts every configured serial console: its adapter and its bridge to the daemon's socket.
/// The bridges end when `shutdown` turns true; each then stops its adapter.
pub fn start_all(
    consoles: &[SerialConsoleConfig],
    data_dir: &Path,
    socket: &Path,
    shutdown: &watch::Receiver<bool>,
) -> Result<Vec<tokio::task::JoinHandle<()>>, SerialError> {
    let mut tasks = Vec::new();
    for cfg in consoles {
        let adapter = spawn_adapter(cfg)?;
        tracing::info!(console = %cfg.id, device = %cfg.device.display(),
            "serial console ({}) at {} baud", protocol_name(cfg.protocol), cfg.baud);
        let (cfg, dir, socket, shutdown) = (
            cfg.clone(),
            data_dir.join("serial"),
            socket.to_path_buf(),
            shutdown.clone(),
        );
        tasks.push(tokio::spawn(async move {
            let Adapter {
                commands,
                events,
                stop,
            } = adapter;
            let id = cfg.id.clone();
            if let Err(e) = run_bridge(cfg, dir, socket, commands, events, shutdown).await {
                tracing::error!(console = %id, "serial console stopped: {e}");
            }
            let _ = tokio::task::spawn_blocking(stop).await;
        }));
    }
    Ok(tasks)
}

/// What a device says about itself when it connects.
#[derive(Debug, Clone, PartialEq)]
pub struct DeviceInfo {
    /// Larmor frequency (Hz).
    pub f0_hz: f64,
    /// RF sample interval (s).
    pub rf_raster_s: f64,
    /// Complex points per acquisition.
    pub sample_count: u32,
    /// Acquisition dwell (s).
    pub dwell_s: f64,
    /// The device's own |B1| limit (Hz), if it states one.
    pub max_b1_hz: Option<f64>,
    /// Most samples in one waveform, if limited.
    pub max_waveform_samples: Option<u32>,
    /// Identification (firmware console id, SCPI `*IDN?`).
    pub software: String,
}

/// From the bridge to an adapter thread.
#[derive(Debug, Clone, PartialEq)]
pub enum AdapterCommand {
    /// Upload a waveform (B1 in Hz at the device's raster) under a device waveform id.
    Upload {
        /// Device waveform id.
        waveform: u32,
        /// Samples (ux + i·uy), Hz.
        samples: Vec<Complex64>,
    },
    /// Play a committed waveform as acquisition `acquisition`.
    Play {
        /// Device waveform id.
        waveform: u32,
        /// Device acquisition id.
        acquisition: u32,
        /// Averages.
        averages: u32,
    },
    /// The FID of `acquisition` is durable (or finally refused): the device may forget it.
    Stored {
        /// Device acquisition id.
        acquisition: u32,
    },
    /// Close the port and end the thread.
    Shutdown,
}

/// From an adapter thread to the bridge.
#[derive(Debug, Clone, PartialEq)]
pub enum AdapterEvent {
    /// The device (re)connected.
    Connected(DeviceInfo),
    /// The device committed a waveform.
    WaveformReady {
        /// Device waveform id.
        waveform: u32,
    },
    /// The device refused or lost a waveform.
    WaveformFailed {
        /// Device waveform id.
        waveform: u32,
        /// Why.
        reason: String,
    },
    /// A verified FID.
    Fid {
        /// Device acquisition id.
        acquisition: u32,
        /// Points.
        samples: Vec<Complex64>,
        /// Dwell (s).
        dwell_s: f64,
    },
    /// An FID arrived damaged and was dropped; the device still holds it, and re-playing the
    /// same acquisition id makes it send the FID again (it does not acquire twice).
    Damaged {
        /// Device acquisition id.
        acquisition: u32,
        /// Why.
        reason: String,
    },
    /// The device reported an error (kept in the log).
    DeviceError(String),
    /// The device is gone (unplugged, silent); the adapter keeps trying to reopen it.
    Lost(String),
}

/// An event sink for adapter threads.
pub type EventSink = mpsc::UnboundedSender<AdapterEvent>;

/// Errors of the serial bridge.
#[derive(Debug, thiserror::Error)]
pub enum SerialError {
    /// The journal could not be read or written.
    #[error("serial console {console}: journal {}: {reason}", path.display())]
    Journal {
        /// Console id.
        console: String,
        /// The journal file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// The device disagrees with the configuration.
    #[error("serial console {console}: {reason}")]
    Device {
        /// Console id.
        console: String,
        /// Why.
        reason: String,
    },
}

/// One journaled acquisition.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct PendingAcquisition {
    waveform_id: String,
    averages: u32,
}

/// The bridge's durable state: id counters and the acquisitions whose FIDs the daemon has
/// not acknowledged. Written atomically (temporary file, fsync, rename, directory fsync).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct JournalState {
    /// Distinguishes this journal's keys from those of a journal that was lost.
    epoch: String,
    next_waveform: u32,
    next_acquisition: u32,
    pending: BTreeMap<u32, PendingAcquisition>,
}

/// The journal file of one serial console.
struct Journal {
    console: String,
    path: PathBuf,
    state: JournalState,
}

impl Journal {
    fn open(dir: &Path, console: &str) -> Result<Journal, SerialError> {
        let path = dir.join(format!("{console}.json"));
        let err = |reason: String| SerialError::Journal {
            console: console.to_string(),
            path: path.clone(),
            reason,
        };
        std::fs::create_dir_all(dir).map_err(|e| err(format!("creating the directory: {e}")))?;
        let state = match std::fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| err(format!("{e}")))?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let nanos = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(0, |d| d.as_nanos());
                JournalState {
                    epoch: format!("{:x}{:x}", nanos, std::process::id()),
                    next_waveform: 1,
                    next_acquisition: 1,
                    pending: BTreeMap::new(),
                }
            }
            Err(e) => return Err(err(e.to_string())),
        };
        let j = Journal {
            console: console.to_string(),
            path,
            state,
        };
        j.save()?;
        Ok(j)
    }

    fn save(&self) -> Result<(), SerialError> {
        use std::io::Write;
        let err = |reason: String| SerialError::Journal {
            console: self.console.clone(),
            path: self.path.clone(),
            reason,
        };
        let bytes = serde_json::to_vec(&self.state).map_err(|e| err(e.to_string()))?;
        let tmp = self.path.with_extension("json.tmp");
        let mut f = std::fs::File::create(&tmp).map_err(|e| err(e.to_string()))?;
        f.write_all(&bytes).map_err(|e| err(e.to_string()))?;
        f.sync_all().map_err(|e| err(e.to_string()))?;
        std::fs::rename(&tmp, &self.path).map_err(|e| err(e.to_string()))?;
        if let Some(dir) = self.path.parent()
            && let Ok(d) = std::fs::File::open(dir)
        {
            let _ = d.sync_all();
        }
        Ok(())
    }

    fn key(&self, acquisition: u32) -> String {
        format!("{}:{}:{acquisition}", self.console, self.state.epoch)
    }

    /// Allocates a waveform id and `count` acquisition ids and makes them durable.
    fn allocate(
        &mut self,
        waveform_id: &str,
        count: u32,
        averages: u32,
    ) -> Result<(u32, Vec<u32>), SerialError> {
        let w = self.state.next_waveform;
        self.state.next_waveform = w.wrapping_add(1).max(1);
        let mut acqs = Vec::new();
        for _ in 0..count {
            let a = self.state.next_acquisition;
            self.state.next_acquisition = a.wrapping_add(1).max(1);
            self.state.pending.insert(
                a,
                PendingAcquisition {
                    waveform_id: waveform_id.to_string(),
                    averages,
                },
            );
            acqs.push(a);
        }
        self.save()?;
        Ok((w, acqs))
    }

    fn settle(&mut self, acquisition: u32) -> Result<(), SerialError> {
        if self.state.pending.remove(&acquisition).is_some() {
            self.save()?;
        }
        Ok(())
    }
}

/// The console hello for a device under its configuration.
pub fn hello_for(cfg: &SerialConsoleConfig, dev: &DeviceInfo) -> Result<pb::ConsoleHello, String> {
    let close = |a: f64, b: f64| (a - b).abs() <= 1e-9 * a.abs().max(b.abs());
    for (name, configured, device) in [
        ("f0_hz", cfg.f0_hz, dev.f0_hz),
        ("rf_raster_s", cfg.rf_raster_s, dev.rf_raster_s),
        ("dwell_s", cfg.dwell_s, dev.dwell_s),
    ] {
        if let Some(c) = configured
            && !close(c, device)
        {
            return Err(format!(
                "the device states {name} = {device}, the configuration {c}"
            ));
        }
    }
    if let Some(n) = cfg.sample_count
        && n != dev.sample_count
    {
        return Err(format!(
            "the device states sample_count = {}, the configuration {n}",
            dev.sample_count
        ));
    }
    let mut peak = cfg.limits.peak_b1_hz;
    if let Some(d) = dev.max_b1_hz {
        peak = peak.min(d);
    }
    let mut max_duration = cfg.limits.max_duration_s;
    if let Some(n) = dev.max_waveform_samples {
        max_duration = max_duration.min(f64::from(n) * dev.rf_raster_s);
    }
    Ok(pb::ConsoleHello {
        console_id: cfg.id.clone(),
        nucleus: cfg.nucleus.clone(),
        f0_hz: dev.f0_hz,
        rf_raster_s: dev.rf_raster_s,
        sample_count: dev.sample_count,
        dwell_s: dev.dwell_s,
        limits: Some(pb::ConsoleLimits {
            peak_b1_hz: peak,
            max_energy_hz2s: cfg.limits.max_energy_hz2s,
            max_duration_s: max_duration,
            max_duty_cycle: cfg.limits.max_duty_cycle,
            energy_window_s: cfg.limits.energy_window_s,
            window_max_energy_hz2s: cfg.limits.window_max_energy_hz2s,
        }),
        software: format!("serial {:?}: {}", cfg.protocol, dev.software),
        tr_s: cfg.tr_s,
    })
}

/// A waveform waiting for its device commit, with the acquisitions to play then.
struct Upload {
    acquisitions: Vec<u32>,
    averages: u32,
}

/// The bridge of one serial console: runs until `shutdown` turns true. `commands` feeds the
/// adapter thread, `events` comes from it; `socket` is the daemon's own Unix socket.
///
/// Journal writes are small synchronous writes with an fsync, done in place: the bridge owns
/// its journal, and doing them inline keeps allocations, uploads and plays in order.
pub async fn run_bridge(
    cfg: SerialConsoleConfig,
    journal_dir: PathBuf,
    socket: PathBuf,
    commands: CommandSink,
    mut events: mpsc::UnboundedReceiver<AdapterEvent>,
    mut shutdown: watch::Receiver<bool>,
) -> Result<(), SerialError> {
    let id = cfg.id.clone();
    let mut journal = Journal::open(&journal_dir, &id)?;
    let send = |c: AdapterCommand| commands(c);
    // The connected device, if any.
    let mut device: Option<(DeviceInfo, pb::ConsoleHello)> = None;
    // FIDs sent to the daemon and not yet acked (re-sent on a new stream).
    let mut unacked: BTreeMap<u32, pb::Acquisition> = BTreeMap::new();
    // Plays issued and not yet settled: acquisition → (device waveform, averages), to replay
    // one whose FID arrived damaged.
    let mut plays: BTreeMap<u32, (u32, u32)> = BTreeMap::new();
    let mut backoff = Duration::from_millis(50);
    loop {
        if *shutdown.borrow() {
            send(AdapterCommand::Shutdown);
            return Ok(());
        }
        // Wait for the device.
        let (info, hello) = match &device {
            Some(d) => d.clone(),
            None => {
                let e = tokio::select! {
                    _ = shutdown.changed() => continue,
                    e = events.recv() => e,
                };
                match e {
                    None => return Ok(()),
                    Some(AdapterEvent::Connected(info)) => match hello_for(&cfg, &info) {
                        Ok(hello) => {
                            tracing::info!(console = %id, device = %cfg.device.display(),
                                "device connected: {}", info.software);
                            unacked.clear();
                            device = Some((info.clone(), hello.clone()));
                            (info, hello)
                        }
                        Err(reason) => {
                            tracing::error!(console = %id, "refusing the device: {reason}");
                            continue;
                        }
                    },
                    // Anything else before a connect is stale; FIDs are re-sent after it.
                    Some(other) => {
                        tracing::debug!(console = %id, "before connect: {other:?}");
                        continue;
                    }
                }
            }
        };
        // Connect to the daemon (it may still be starting, or be restarting).
        let (tx, mut inbound) = match connect(&socket, hello.clone()).await {
            Ok(pair) => pair,
            Err(e) => {
                tracing::warn!(console = %id, "connecting to the daemon: {e}");
                tokio::select! {
                    _ = shutdown.changed() => {}
                    () = tokio::time::sleep(backoff) => {}
                }
                backoff = (backoff * 2).min(Duration::from_secs(2));
                continue;
            }
        };
        backoff = Duration::from_millis(50);
        for a in unacked.values() {
            let msg = pb::ConsoleMessage {
                msg: Some(pb::console_message::Msg::Acquisition(a.clone())),
            };
            if tx.send(msg).await.is_err() {
                break;
            }
        }
        let mut uploads: BTreeMap<u32, Upload> = BTreeMap::new();
        // Serve until the device or the stream goes.
        loop {
            tokio::select! {
                _ = shutdown.changed() => break,
                e = events.recv() => {
                    let Some(e) = e else { return Ok(()) };
                    match e {
                        AdapterEvent::Connected(_) | AdapterEvent::Lost(_) => {
                            // The stream ends: the console shows disconnected and its session
                            // waits; a new connect (maybe a different device) starts over.
                            if let AdapterEvent::Lost(why) = &e {
                                tracing::warn!(console = %id, "device lost: {why}");
                                device = None;
                            } else if let AdapterEvent::Connected(info) = e {
                                tracing::info!(console = %id, "device reconnected");
                                device = hello_for(&cfg, &info).ok().map(|h| (info, h));
                            }
                            unacked.clear();
                            break;
                        }
                        AdapterEvent::WaveformReady { waveform } => {
                            if let Some(u) = uploads.remove(&waveform) {
                                for acquisition in u.acquisitions {
                                    plays.insert(acquisition, (waveform, u.averages));
                                    send(AdapterCommand::Play {
                                        waveform,
                                        acquisition,
                                        averages: u.averages,
                                    });
                                }
                            }
                        }
                        AdapterEvent::Damaged { acquisition, reason } => {
                            tracing::warn!(console = %id, acquisition,
                                "FID arrived damaged ({reason}); asking the device again");
                            if let Some(&(waveform, averages)) = plays.get(&acquisition) {
                                send(AdapterCommand::Play { waveform, acquisition, averages });
                            }
                        }
                        AdapterEvent::WaveformFailed { waveform, reason } => {
                            tracing::warn!(console = %id, waveform, "waveform not committed: {reason}");
                            if let Some(u) = uploads.remove(&waveform) {
                                for a in u.acquisitions {
                                    journal.settle(a)?;
                                }
                            }
                        }
                        AdapterEvent::Fid { acquisition, samples, dwell_s } => {
                            let Some(p) = journal.state.pending.get(&acquisition).cloned() else {
                                tracing::warn!(console = %id, acquisition,
                                    "FID of an acquisition this daemon did not ask for; releasing it");
                                send(AdapterCommand::Stored { acquisition });
                                continue;
                            };
                            let a = pb::Acquisition {
                                idempotency_key: journal.key(acquisition),
                                waveform_id: p.waveform_id,
                                samples: samples.iter().flat_map(|c| [c.re, c.im]).collect(),
                                dwell_s,
                                f0_hz: hello.f0_hz,
                                averages: p.averages,
                                coil: format!("serial:{}", cfg.device.display()),
                            };
                            unacked.insert(acquisition, a.clone());
                            let msg = pb::ConsoleMessage {
                                msg: Some(pb::console_message::Msg::Acquisition(a)),
                            };
                            if tx.send(msg).await.is_err() {
                                break;
                            }
                        }
                        AdapterEvent::DeviceError(msg) => {
                            tracing::warn!(console = %id, "device error: {msg}");
                        }
                    }
                }
                m = inbound.next() => {
                    let msg = match m {
                        Some(Ok(m)) => m,
                        Some(Err(status)) => {
                            tracing::warn!(console = %id, "daemon stream ended: {}", status.message());
                            break;
                        }
                        None => break,
                    };
                    match msg.msg {
                        Some(pb::daemon_message::Msg::Waveform(w)) => {
                            let samples = match on_raster(&w, info.rf_raster_s) {
                                Ok(s) => s,
                                Err(reason) => {
                                    tracing::error!(console = %id, "waveform {}: {reason}", w.waveform_id);
                                    continue;
                                }
                            };
                            let averages = w.averages.max(1);
                            let (waveform, acquisitions) =
                                journal.allocate(&w.waveform_id, w.acquisitions.max(1), averages)?;
                            uploads.insert(waveform, Upload { acquisitions, averages });
                            send(AdapterCommand::Upload { waveform, samples });
                        }
                        Some(pb::daemon_message::Msg::Ack(ack)) => {
                            if let Some(a) = settle(&mut journal, &mut unacked, &ack.idempotency_key, &send)? {
                                plays.remove(&a);
                            }
                        }
                        Some(pb::daemon_message::Msg::Nack(n)) => {
                            tracing::warn!(console = %id, "acquisition {} refused: {}",
                                n.idempotency_key, n.message);
                            if let Some(a) = settle(&mut journal, &mut unacked, &n.idempotency_key, &send)? {
                                plays.remove(&a);
                            }
                        }
                        Some(pb::daemon_message::Msg::Welcome(_)) | None => {}
                    }
                }
            }
        }
        // Acquisitions never played (their upload did not complete) will never have an FID;
        // the session re-sends its waveform when the console is back.
        for (_, u) in std::mem::take(&mut uploads) {
            for a in u.acquisitions {
                journal.settle(a)?;
            }
        }
    }
}

/// A waveform command's samples on the device's RF raster: each segment of `raster_s` is held
/// for `raster_s / device_raster_s` device samples, which must be a whole number.
pub fn on_raster(w: &pb::WaveformCommand, device_raster_s: f64) -> Result<Vec<Complex64>, String> {
    if w.ux.len() != w.uy.len() || w.ux.is_empty() {
        return Err(format!("{} ux and {} uy samples", w.ux.len(), w.uy.len()));
    }
    let ratio = w.raster_s / device_raster_s;
    let k = ratio.round();
    if !(ratio.is_finite() && k >= 1.0 && (ratio - k).abs() <= 1e-6 * k) {
        return Err(format!(
            "its raster {} s is not a whole multiple of the device's {} s",
            w.raster_s, device_raster_s
        ));
    }
    let k = k as usize;
    Ok(w.ux
        .iter()
        .zip(&w.uy)
        .flat_map(|(&x, &y)| std::iter::repeat_n(Complex64::new(x, y), k))
        .collect())
}

/// An ack (or a final nack) of `key`: the journal forgets the acquisition, then the device
/// is told it may forget the FID. Returns the device acquisition id, if the key was ours.
fn settle(
    journal: &mut Journal,
    unacked: &mut BTreeMap<u32, pb::Acquisition>,
    key: &str,
    send: &impl Fn(AdapterCommand),
) -> Result<Option<u32>, SerialError> {
    let Some(a) = acquisition_of(journal, key) else {
        return Ok(None);
    };
    unacked.remove(&a);
    journal.settle(a)?;
    send(AdapterCommand::Stored { acquisition: a });
    Ok(Some(a))
}

fn acquisition_of(journal: &Journal, key: &str) -> Option<u32> {
    let prefix = format!("{}:{}:", journal.console, journal.state.epoch);
    key.strip_prefix(&prefix)?.parse().ok()
}

type Inbound = tonic::Streaming<pb::DaemonMessage>;

async fn connect(
    socket: &Path,
    hello: pb::ConsoleHello,
) -> Result<(mpsc::Sender<pb::ConsoleMessage>, Inbound), String> {
    let channel = super::server::unix_channel(socket)
        .await
        .map_err(|e| e.to_string())?;
    let mut client = pb::console_client::ConsoleClient::new(channel);
    let (tx, rx) = mpsc::channel::<pb::ConsoleMessage>(64);
    tx.send(pb::ConsoleMessage {
        msg: Some(pb::console_message::Msg::Hello(hello)),
    })
    .await
    .map_err(|_| "stream closed".to_string())?;
    let inbound = client
        .connect(tokio_stream::wrappers::ReceiverStream::new(rx))
        .await
        .map_err(|s| s.message().to_string())?
        .into_inner();
    Ok((tx, inbound))
}

/// The protocol of a configured console, for logs.
pub fn protocol_name(p: SerialProtocol) -> &'static str {
    match p {
        SerialProtocol::Firmware => "firmware",
        SerialProtocol::Scpi => "scpi",
    }
}
