//! The adapter for SCPI instruments on a serial port: a thread that owns the port and a
//! sans-IO `spinloop_scpi::AwgClient`, reopens the port after an unplug, and translates the
//! client's events into [`AdapterEvent`]s. The dialogue has no averaging: a play asking for
//! more than one average is refused (reported as a device error), never played once. A played acquisition is fetched at once; until the
//! bridge reports it stored it is fetched again after every reconnect (the instrument keeps
//! FIDs by acquisition id), so an FID caught in a disconnect is not lost.

use std::collections::BTreeSet;
use std::sync::mpsc::{Receiver, TryRecvError};
use std::time::{Duration, Instant};

use num_complex::Complex64;
use spinloop_firmware::serial::{SerialConfig, open_port};
use spinloop_scpi::{AwgClient, ClientConfig, ClientEvent, DacConfig, FailReason};
use tokio::sync::mpsc;

use super::{Adapter, AdapterCommand, AdapterEvent, DeviceInfo, EventSink, SerialError};
use crate::daemon::config::SerialConsoleConfig;

/// Consecutive query timeouts after which the instrument is considered gone.
const MAX_TIMEOUTS: u32 = 3;

/// Starts the adapter thread.
pub(super) fn spawn(cfg: &SerialConsoleConfig) -> Result<Adapter, SerialError> {
    let bad = |reason: String| SerialError::Device {
        console: cfg.id.clone(),
        reason,
    };
    let (Some(f0_hz), Some(rf_raster_s), Some(sample_count), Some(dwell_s), Some(full_scale)) = (
        cfg.f0_hz,
        cfg.rf_raster_s,
        cfg.sample_count,
        cfg.dwell_s,
        cfg.dac_full_scale_hz,
    ) else {
        return Err(bad(
            "a scpi console needs f0_hz, rf_raster_s, sample_count, dwell_s and dac_full_scale_hz"
                .into(),
        ));
    };
    let dac = DacConfig {
        full_scale_hz: full_scale,
        max_code: i16::MAX,
        amplitude_limit_hz: cfg.limits.peak_b1_hz,
    };
    let mut client = ClientConfig::new(dac);
    client.query_timeout = Duration::from_millis(cfg.link_timeout_ms);
    // 10 bits per byte at the line rate (8N1).
    client.byte_time = Duration::from_nanos(10_000_000_000 / u64::from(cfg.baud));
    // Check the configuration now rather than on the thread.
    AwgClient::new(client.clone(), Instant::now()).map_err(|e| bad(e.to_string()))?;
    let info = DeviceInfo {
        f0_hz,
        rf_raster_s,
        sample_count,
        dwell_s,
        max_b1_hz: None,
        max_waveform_samples: None,
        software: String::new(),
    };
    let serial = SerialConfig::new(&cfg.device, cfg.baud);
    let (ev_tx, ev_rx) = mpsc::unbounded_channel();
    let (cmd_tx, cmd_rx) = std::sync::mpsc::channel();
    let thread = std::thread::Builder::new()
        .name(format!("spinloop-scpi-{}", cfg.id))
        .spawn(move || run(serial, client, info, cmd_rx, ev_tx))
        .map_err(|e| bad(e.to_string()))?;
    let stop_tx = cmd_tx.clone();
    Ok(Adapter {
        commands: Box::new(move |c| {
            let _ = cmd_tx.send(c);
        }),
        events: ev_rx,
        stop: Box::new(move || {
            let _ = stop_tx.send(AdapterCommand::Shutdown);
            let _ = thread.join();
        }),
    })
}

/// Whether the thread should go on.
enum Flow {
    Stop,
    Lost(String),
}

/// Waits `d` while still answering a shutdown.
fn pause(d: Duration, commands: &Receiver<AdapterCommand>) -> bool {
    let until = Instant::now() + d;
    loop {
        match commands.try_recv() {
            Ok(AdapterCommand::Shutdown) | Err(TryRecvError::Disconnected) => return false,
            Ok(_) | Err(TryRecvError::Empty) => {}
        }
        let now = Instant::now();
        if now >= until {
            return true;
        }
        std::thread::sleep((until - now).min(Duration::from_millis(10)));
    }
}

fn run(
    serial: SerialConfig,
    config: ClientConfig,
    info: DeviceInfo,
    commands: Receiver<AdapterCommand>,
    events: EventSink,
) {
    // Played and not yet stored: fetched again after a reconnect.
    let mut outstanding: BTreeSet<u64> = BTreeSet::new();
    let mut backoff = serial.reopen_backoff_min;
    loop {
        let mut port = match open_port(&serial) {
            Ok(p) => p,
            Err(_) => {
                if !pause(backoff, &commands) {
                    return;
                }
                backoff = (backoff * 2).min(serial.reopen_backoff_max);
                continue;
            }
        };
        backoff = serial.reopen_backoff_min;
        let Ok(mut client) = AwgClient::new(config.clone(), Instant::now()) else {
            return;
        };
        match serve(
            &mut *port,
            &mut client,
            &info,
            &commands,
            &events,
            &mut outstanding,
        ) {
            Flow::Stop => return,
            Flow::Lost(why) => {
                let _ = events.send(AdapterEvent::Lost(why));
            }
        }
        drop(port);
        if !pause(backoff, &commands) {
            return;
        }
    }
}

/// Runs one connection until it is lost or the adapter stops.
fn serve(
    port: &mut dyn serialport::SerialPort,
    client: &mut AwgClient,
    info: &DeviceInfo,
    commands: &Receiver<AdapterCommand>,
    events: &EventSink,
    outstanding: &mut BTreeSet<u64>,
) -> Flow {
    let mut buf = [0u8; 4096];
    let mut connected = false;
    let mut timeouts = 0u32;
    loop {
        let now = Instant::now();
        loop {
            let c = match commands.try_recv() {
                Ok(c) => c,
                Err(TryRecvError::Empty) => break,
                Err(TryRecvError::Disconnected) => return Flow::Stop,
            };
            match c {
                AdapterCommand::Shutdown => return Flow::Stop,
                AdapterCommand::Upload { waveform, samples } => {
                    let iq: Vec<[f64; 2]> = samples.iter().map(|s| [s.re, s.im]).collect();
                    if let Err(e) = client.upload(u64::from(waveform), &iq, now) {
                        let _ = events.send(AdapterEvent::WaveformFailed {
                            waveform,
                            reason: e.to_string(),
                        });
                    }
                }
                AdapterCommand::Play {
                    waveform,
                    acquisition,
                    averages,
                } => {
                    if averages != 1 {
                        // The dialogue has no averaging; playing once would store an FID that
                        // claims averages it does not have.
                        let _ = events.send(AdapterEvent::DeviceError(format!(
                            "acquisition {acquisition} asks for {averages} averages; a SCPI \
                             console plays single transients (set the session's averages to 1)"
                        )));
                        continue;
                    }
                    if let Err(e) = client.play(u64::from(waveform), u64::from(acquisition), now) {
                        let _ = events.send(AdapterEvent::DeviceError(format!(
                            "play of acquisition {acquisition} refused: {e}"
                        )));
                    }
                }
                AdapterCommand::Stored { acquisition } => {
                    outstanding.remove(&u64::from(acquisition));
                }
            }
        }
        while let Some(bytes) = client.poll_transmit() {
            if let Err(e) = port.write_all(&bytes)
                && e.kind() != std::io::ErrorKind::TimedOut
            {
                return Flow::Lost(format!("writing to the port: {e}"));
            }
        }
        match port.read(&mut buf) {
            Ok(0) => return Flow::Lost("the port was closed".into()),
            Ok(n) => client.handle_input(&buf[..n], Instant::now()),
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::TimedOut
                        | std::io::ErrorKind::WouldBlock
                        | std::io::ErrorKind::Interrupted
                ) => {}
            Err(e) => return Flow::Lost(format!("reading the port: {e}")),
        }
        let now = Instant::now();
        if client.poll_timeout().is_some_and(|t| now >= t) {
            client.handle_timeout(now);
        }
        while let Some(e) = client.poll_event() {
            let now = Instant::now();
            let is_timeout = matches!(
                &e,
                ClientEvent::UploadFailed {
                    reason: FailReason::Timeout { .. },
                    ..
                } | ClientEvent::PlayFailed {
                    reason: FailReason::Timeout { .. },
                    ..
                } | ClientEvent::FetchFailed {
                    reason: FailReason::Timeout { .. },
                    ..
                } | ClientEvent::ConnectFailed {
                    reason: FailReason::Timeout { .. }
                }
            );
            if is_timeout {
                timeouts += 1;
                if timeouts >= MAX_TIMEOUTS || !connected {
                    return Flow::Lost("the instrument does not answer".into());
                }
            } else if !matches!(e, ClientEvent::Resynced | ClientEvent::Unsolicited { .. }) {
                timeouts = 0;
            }
            let out = match e {
                ClientEvent::Connected { idn } => {
                    connected = true;
                    for &a in outstanding.iter() {
                        let _ = client.fetch(a, now);
                    }
                    Some(AdapterEvent::Connected(DeviceInfo {
                        software: format!(
                            "{} {} (serial {}, firmware {})",
                            idn.manufacturer, idn.model, idn.serial, idn.firmware
                        ),
                        ..info.clone()
                    }))
                }
                ClientEvent::ConnectFailed { reason } => {
                    return Flow::Lost(format!("identification failed: {reason:?}"));
                }
                ClientEvent::Uploaded { id, .. } => Some(AdapterEvent::WaveformReady {
                    waveform: id as u32,
                }),
                ClientEvent::UploadFailed { id, reason } => Some(AdapterEvent::WaveformFailed {
                    waveform: id as u32,
                    reason: format!("{reason:?}"),
                }),
                ClientEvent::Played { acquisition, .. } => {
                    outstanding.insert(acquisition);
                    let _ = client.fetch(acquisition, now);
                    None
                }
                ClientEvent::PlayFailed {
                    acquisition,
                    reason,
                    ..
                } => Some(AdapterEvent::DeviceError(format!(
                    "acquisition {acquisition} was not played: {reason:?}"
                ))),
                ClientEvent::Fid {
                    acquisition,
                    points,
                    dwell_s,
                } => Some(AdapterEvent::Fid {
                    acquisition: acquisition as u32,
                    samples: points
                        .iter()
                        .map(|p| Complex64::new(f64::from(p[0]), f64::from(p[1])))
                        .collect(),
                    dwell_s,
                }),
                ClientEvent::FetchFailed {
                    acquisition,
                    reason,
                } => Some(AdapterEvent::DeviceError(format!(
                    "fetching acquisition {acquisition} failed ({reason:?}); fetched again after the next reconnect"
                ))),
                ClientEvent::Resynced => None,
                ClientEvent::Unsolicited { bytes } => {
                    tracing::debug!(
                        "unsolicited SCPI response: {:?}",
                        String::from_utf8_lossy(&bytes)
                    );
                    None
                }
            };
            if let Some(out) = out {
                let _ = events.send(out);
            }
        }
    }
}
