//! Consoles on serial ports, end to end over real pseudo-terminals: the daemon (in process)
//! opens a configured device path (a symlink, as `/dev/serial/by-id/…` would be), speaks the
//! firmware protocol or SCPI to a simulated console on the other end of the pty (the demo's
//! hidden hardware: B1 × 0.8, B0 +2 Hz), and a session converges through it.
//!
//! Faults: a relay between two ptys corrupts and drops bytes on the line (CRC failures → NAKs
//! and retransmissions); the SCPI instrument's cable is pulled after its first acquisition and
//! plugged back; a relay pulls the cable in the middle of the first waveform upload (it
//! sees a `WAVEFORM_CHUNK` go by, drops it and closes the host's pty) and plugs a new pty in a
//! moment later. In every case the session converges, and every FID the device was told is
//! stored is in the store (nothing acknowledged is lost).
#![cfg(unix)]

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use num_complex::Complex32;
use serialport::{SerialPort, TTYPort};
use tokio_stream::StreamExt;

use spinloop::control::SimConsole;
use spinloop::daemon::config::{DaemonConfig, SerialConsoleConfig, SerialLimits, SerialProtocol};
use spinloop::daemon::pb;
use spinloop::daemon::server::{start_in_process, unix_channel};
use spinloop::daemon::sim_link::demo;
use spinloop::store::Store;
use spinloop_firmware::app::Capabilities;
use spinloop_firmware::link::LinkConfig;
use spinloop_firmware::serial::{DeviceCommand, DeviceDriver};
use spinloop_firmware::{Decoder, DeviceConfig, DeviceEvent, DeviceSession, FrameType};

const RF_DT_NS: u32 = 20_000;

struct Dir(PathBuf);

impl Dir {
    fn new(name: &str) -> Dir {
        let dir =
            std::env::temp_dir().join(format!("spinloop-serial-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("temp dir");
        Dir(dir)
    }
    fn link(&self) -> PathBuf {
        self.0.join("console")
    }
}

impl Drop for Dir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A pty pair whose master is close-on-exec: `TTYPort::pair` opens it without, and a
/// process spawned meanwhile (the kill -9 test's daemon) would keep the line up after an
/// unplug.
fn pty_pair() -> (TTYPort, TTYPort) {
    let (master, slave) = TTYPort::pair().expect("pty pair");
    (master.try_clone_native().expect("dup pty"), slave)
}

/// A new pty pair with the symlink pointing at its slave; returns the master.
fn plug(link: &Path) -> TTYPort {
    let (mut master, slave) = pty_pair();
    let name = slave.name().expect("pty name");
    drop(slave);
    master
        .set_timeout(Duration::from_millis(2))
        .expect("timeout");
    let tmp = link.with_extension("new");
    let _ = std::fs::remove_file(&tmp);
    std::os::unix::fs::symlink(&name, &tmp).expect("symlink");
    std::fs::rename(&tmp, link).expect("rename");
    master
}

fn link_config() -> LinkConfig {
    LinkConfig {
        retransmit_timeout: Duration::from_millis(40),
        max_retries: 8,
        heartbeat_interval: Duration::from_millis(100),
        link_timeout: Duration::from_millis(600),
        initial_seq: 0,
        max_queued: 64,
    }
}

fn serial_config(id: &str, device: &Path, protocol: SerialProtocol) -> SerialConsoleConfig {
    let p = demo::profile(id);
    let scpi = protocol == SerialProtocol::Scpi;
    SerialConsoleConfig {
        id: id.into(),
        protocol,
        device: device.to_path_buf(),
        baud: 115_200,
        nucleus: "1H".into(),
        limits: SerialLimits {
            peak_b1_hz: p.limits.peak_b1_hz,
            max_energy_hz2s: p.limits.max_energy_hz2s,
            max_duration_s: p.limits.max_duration_s,
            max_duty_cycle: p.limits.max_duty_cycle,
            energy_window_s: 0.0,
            window_max_energy_hz2s: 0.0,
        },
        tr_s: p.tr_s,
        f0_hz: scpi.then_some(p.f0_hz),
        rf_raster_s: scpi.then_some(f64::from(RF_DT_NS) * 1e-9),
        sample_count: scpi.then_some(p.sample_count as u32),
        dwell_s: scpi.then_some(p.dwell_s),
        dac_full_scale_hz: scpi.then_some(4000.0),
        link_timeout_ms: 600,
    }
}

/// The demo's simulated console (hidden B1 × 0.8), as the device computes its FIDs.
fn sim_console(id: &str) -> SimConsole {
    let mut profile = demo::profile(id);
    profile.rf_raster_s = f64::from(RF_DT_NS) * 1e-9;
    profile.limits.raster_s = profile.rf_raster_s;
    let phantom = demo::phantom(&profile).expect("phantom");
    SimConsole::new(profile, phantom, demo::truth(), demo::NOISE_SD, 7).expect("sim console")
}

/// A firmware-protocol device on a port: the demo physics answers every PLAY.
struct Device {
    driver: Option<DeviceDriver>,
    stored: Arc<Mutex<Vec<u32>>>,
    plays: Arc<AtomicU64>,
    physics: Arc<Mutex<SimConsole>>,
    /// While set, a requested acquisition waits before it completes.
    hold: Arc<AtomicBool>,
}

fn device_session(id: &str) -> DeviceSession {
    let p = demo::profile(id);
    DeviceSession::new(
        DeviceConfig {
            link: link_config(),
            console_id: id.into(),
            capabilities: Capabilities {
                f0_hz: p.f0_hz,
                rf_dt_ns: RF_DT_NS,
                max_waveform_samples: 4096,
                acquisition_points: p.sample_count as u32,
                dwell_ns: (p.dwell_s * 1e9).round() as u32,
                max_b1_hz: p.limits.peak_b1_hz,
            },
            nonce_seed: 77,
        },
        Instant::now(),
    )
}

impl Device {
    fn start(id: &str, port: Box<dyn SerialPort>) -> Device {
        let physics = Arc::new(Mutex::new(sim_console(id)));
        let stored = Arc::new(Mutex::new(Vec::new()));
        let plays = Arc::new(AtomicU64::new(0));
        let mut d = Device {
            driver: None,
            stored,
            plays,
            physics,
            hold: Arc::new(AtomicBool::new(false)),
        };
        d.attach(port, device_session(id));
        d
    }

    fn attach(&mut self, port: Box<dyn SerialPort>, session: DeviceSession) {
        // The callback runs on the driver thread; acquisitions are computed on a worker that
        // completes them through the driver's command channel.
        let (play_tx, play_rx) = std::sync::mpsc::channel::<(u32, Vec<f64>, Vec<f64>, u32)>();
        let (stored, plays) = (self.stored.clone(), self.plays.clone());
        let driver = DeviceDriver::spawn(port, session, move |e| match e {
            DeviceEvent::PlayRequested {
                samples,
                acquisition_id,
                averages,
                ..
            } => {
                let ux = samples.iter().map(|c| f64::from(c.re)).collect();
                let uy = samples.iter().map(|c| f64::from(c.im)).collect();
                let _ = play_tx.send((acquisition_id, ux, uy, averages));
            }
            DeviceEvent::FidStored { acquisition_id } => {
                if let Ok(mut s) = stored.lock() {
                    s.push(acquisition_id);
                }
            }
            _ => {}
        })
        .expect("device driver");
        let commands = driver.commands();
        let physics = self.physics.clone();
        let hold = self.hold.clone();
        thread::spawn(move || {
            while let Ok((acq, ux, uy, averages)) = play_rx.recv() {
                plays.fetch_add(1, Ordering::Relaxed);
                while hold.load(Ordering::Relaxed) {
                    thread::sleep(Duration::from_millis(5));
                }
                let fid = {
                    let mut p = physics.lock().expect("physics");
                    p.acquire(&ux, &uy, averages).expect("acquire")
                };
                let points = fid
                    .iter()
                    .map(|c| Complex32::new(c.re as f32, c.im as f32))
                    .collect();
                let _ = commands.send(DeviceCommand::CompleteAcquisition {
                    acquisition_id: acq,
                    points,
                    timestamp_us: 0,
                });
            }
        });
        self.driver = Some(driver);
    }

    fn stored(&self) -> Vec<u32> {
        self.stored.lock().map(|s| s.clone()).unwrap_or_default()
    }
}

impl Drop for Device {
    fn drop(&mut self) {
        if let Some(d) = self.driver.take() {
            let _ = d.shutdown();
        }
    }
}

/// What a relay between the host's pty and the device's pty does to the line.
#[derive(Clone, Copy)]
enum Fault {
    /// Flip one bit in about one byte in `n` and drop about one in `4n` (seeded).
    Corrupt(u64),
    /// When the first `WAVEFORM_CHUNK` goes host → device: drop it, unplug the host's pty,
    /// and plug a new one in after the pause.
    UnplugMidUpload(Duration),
}

/// Flips one bit in about one byte in `one_in` and drops about one byte in `4·one_in`
/// (xorshift, seeded by the caller): corrupted and lost frames.
fn mangle(bytes: &[u8], rng: &mut u64, one_in: u64, count: &AtomicU64) -> Vec<u8> {
    let mut out = Vec::with_capacity(bytes.len());
    for &byte in bytes {
        *rng ^= *rng << 13;
        *rng ^= *rng >> 7;
        *rng ^= *rng << 17;
        if rng.is_multiple_of(4 * one_in) {
            count.fetch_add(1, Ordering::Relaxed);
            continue;
        }
        if rng.is_multiple_of(one_in) {
            out.push(byte ^ (1 << ((*rng >> 32) % 8)));
            count.fetch_add(1, Ordering::Relaxed);
        } else {
            out.push(byte);
        }
    }
    out
}

struct Relay {
    stop: Arc<AtomicBool>,
    mangled: Arc<AtomicU64>,
    unplugged: Arc<AtomicU64>,
    thread: Option<thread::JoinHandle<()>>,
}

impl Relay {
    fn start(link: PathBuf, mut device_master: TTYPort, fault: Fault) -> Relay {
        let stop = Arc::new(AtomicBool::new(false));
        let mangled = Arc::new(AtomicU64::new(0));
        let unplugged = Arc::new(AtomicU64::new(0));
        let (s, m, u) = (stop.clone(), mangled.clone(), unplugged.clone());
        let thread = thread::spawn(move || {
            device_master
                .set_timeout(Duration::from_millis(1))
                .expect("timeout");
            let mut host = plug(&link);
            host.set_timeout(Duration::from_millis(1)).expect("timeout");
            let mut rng: u64 = 0x9E37_79B9_7F4A_7C15;
            let mut buf = [0u8; 4096];
            let mut frames = Decoder::new();
            let mut armed = matches!(fault, Fault::UnplugMidUpload(_));
            while !s.load(Ordering::Relaxed) {
                // host → device
                if let Ok(n) = host.read(&mut buf) {
                    let mut bytes = buf[..n].to_vec();
                    if armed {
                        // Forward frame by frame; at the first chunk, pull the cable.
                        let mut out = Vec::new();
                        let mut cut = false;
                        for &b in &bytes {
                            frames.push(&[b]);
                            if b == 0 {
                                let is_chunk = matches!(
                                    frames.poll(),
                                    Some(Ok(f)) if f.kind == FrameType::WaveformChunk
                                );
                                if is_chunk {
                                    cut = true;
                                    break;
                                }
                            }
                            out.push(b);
                        }
                        let _ = device_master.write_all(&out);
                        if cut {
                            armed = false;
                            u.fetch_add(1, Ordering::Relaxed);
                            // The device name goes with the device (as udev removes
                            // /dev/serial/by-id links): no stale link to a reused pty number.
                            let _ = std::fs::remove_file(&link);
                            drop(host);
                            if let Fault::UnplugMidUpload(pause) = fault {
                                thread::sleep(pause);
                            }
                            host = plug(&link);
                            host.set_timeout(Duration::from_millis(1)).expect("timeout");
                        }
                        continue;
                    }
                    if let Fault::Corrupt(one_in) = fault {
                        bytes = mangle(&bytes, &mut rng, one_in, &m);
                    }
                    let _ = device_master.write_all(&bytes);
                }
                // device → host
                if let Ok(n) = device_master.read(&mut buf) {
                    let mut bytes = buf[..n].to_vec();
                    if let Fault::Corrupt(one_in) = fault {
                        bytes = mangle(&bytes, &mut rng, one_in, &m);
                    }
                    let _ = host.write_all(&bytes);
                }
            }
        });
        Relay {
            stop,
            mangled,
            unplugged,
            thread: Some(thread),
        }
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Runs the demo session on console `id` of a daemon whose data is in `data`; returns the
/// session after it ended.
async fn run_session(socket: &Path, id: &str) -> pb::Session {
    let channel = unix_channel(socket).await.expect("channel");
    let mut sessions = pb::sessions_client::SessionsClient::new(channel);
    let t0 = Instant::now();
    loop {
        let r = sessions
            .list_consoles(pb::ListConsolesRequest {})
            .await
            .expect("list consoles")
            .into_inner();
        if r.consoles.iter().any(|c| c.console_id == id && c.connected) {
            break;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(20),
            "the serial console never connected"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let created = sessions
        .create_session(pb::CreateSessionRequest {
            spec: Some(demo::session_spec(id)),
        })
        .await
        .expect("create")
        .into_inner();
    let mut events = sessions
        .watch_session(pb::WatchSessionRequest {
            session_id: created.id.clone(),
            after_seq: 0,
            until_done: true,
        })
        .await
        .expect("watch")
        .into_inner();
    let watch = async {
        while let Some(e) = events.next().await {
            let e = e.expect("event");
            eprintln!("#{} {} {}", e.seq, e.kind, e.payload_json);
        }
    };
    tokio::time::timeout(Duration::from_secs(120), watch)
        .await
        .expect("the session did not end in time");
    sessions
        .get_session(pb::GetSessionRequest {
            session_id: created.id,
        })
        .await
        .expect("get")
        .into_inner()
}

fn b1_of(s: &pb::Session) -> f64 {
    s.hardware
        .iter()
        .find(|p| p.name == "b1_scale")
        .map(|p| p.value)
        .expect("fitted b1")
}

/// Every acquisition id the device was told is stored is in the store under its key.
fn assert_stored(data: &Path, session: &str, console: &str, stored: &[u32]) {
    let store = Store::open(data).expect("store");
    let keys: Vec<String> = store
        .list_acquisitions(session)
        .expect("acquisitions")
        .into_iter()
        .map(|a| a.data.idempotency_key)
        .collect();
    assert!(
        !stored.is_empty(),
        "the device was never told an FID is stored"
    );
    for acq in stored {
        assert!(
            keys.iter()
                .any(|k| k.starts_with(&format!("{console}:")) && k.ends_with(&format!(":{acq}"))),
            "acquisition {acq} was acknowledged to the device but is not stored: {keys:?}"
        );
    }
}

async fn daemon_with(
    dir: &Dir,
    consoles: Vec<SerialConsoleConfig>,
) -> spinloop::daemon::server::DaemonHandle {
    let mut config = DaemonConfig::new(dir.0.join("data"), dir.0.join("d.sock"));
    config.serial_consoles = consoles;
    start_in_process(config).await.expect("daemon")
}

/// What a session through a relayed firmware link left behind.
struct Relayed {
    dir: Dir,
    session: pb::Session,
    device: Device,
    mangled: u64,
    unplugged: u64,
}

/// The demo session on a firmware device behind a relay with `fault`, to its end; the daemon
/// is shut down and the device has had time to get the last `FID_STORED`.
async fn relayed_session(name: &str, id: &str, fault: Fault) -> Relayed {
    let dir = Dir::new(name);
    let (device_master, mut device_slave) = pty_pair();
    device_slave
        .set_timeout(Duration::from_millis(2))
        .expect("timeout");
    let device = Device::start(id, Box::new(device_slave));
    let relay = Relay::start(dir.link(), device_master, fault);
    let daemon = daemon_with(
        &dir,
        vec![serial_config(id, &dir.link(), SerialProtocol::Firmware)],
    )
    .await;
    let session = run_session(&daemon.socket, id).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (mangled, unplugged) = (
        relay.mangled.load(Ordering::Relaxed),
        relay.unplugged.load(Ordering::Relaxed),
    );
    drop(relay);
    daemon.shutdown();
    daemon.join().await.expect("join");
    Relayed {
        dir,
        session,
        device,
        mangled,
        unplugged,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn session_converges_over_a_corrupting_firmware_link() {
    let id = "serial-3t-a";
    let r = relayed_session("corrupt", id, Fault::Corrupt(1500)).await;
    let s = &r.session;
    assert_eq!(s.state, pb::SessionState::Converged as i32, "{s:?}");
    assert!((b1_of(s) - 0.8).abs() < 0.01, "{s:?}");
    assert!(r.mangled > 0, "the relay corrupted no bytes");
    assert_stored(&r.dir.0.join("data"), &s.id, id, &r.device.stored());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unplug_mid_upload_then_replug_and_the_session_converges() {
    let id = "serial-3t-b";
    let fault = Fault::UnplugMidUpload(Duration::from_millis(400));
    let r = relayed_session("unplug", id, fault).await;
    let s = &r.session;
    assert_eq!(s.state, pb::SessionState::Converged as i32, "{s:?}");
    assert!((b1_of(s) - 0.8).abs() < 0.01, "{s:?}");
    assert_eq!(r.unplugged, 1, "the cable was never pulled");
    assert_stored(&r.dir.0.join("data"), &s.id, id, &r.device.stored());
    assert!(r.device.plays.load(Ordering::Relaxed) >= 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn session_converges_through_a_scpi_instrument_despite_a_cable_pull() {
    use spinloop_scpi::{AcquisitionRequest, DacConfig, Fid, InstrumentConfig, SimInstrument};
    let dir = Dir::new("scpi");
    let id = "scpi-3t";
    let cfg = serial_config(id, &dir.link(), SerialProtocol::Scpi);
    let dac = DacConfig {
        full_scale_hz: 4000.0,
        max_code: i16::MAX,
        amplitude_limit_hz: cfg.limits.peak_b1_hz,
    };
    let physics = Mutex::new(sim_console(id));
    let played = Arc::new(AtomicU64::new(0));
    let counter = played.clone();
    let hook = move |r: &AcquisitionRequest<'_>| -> Result<Fid, String> {
        counter.fetch_add(1, Ordering::Relaxed);
        let w = r.waveform_hz();
        let ux: Vec<f64> = w.iter().map(|s| s[0]).collect();
        let uy: Vec<f64> = w.iter().map(|s| s[1]).collect();
        let mut p = physics.lock().map_err(|e| e.to_string())?;
        let fid = p.acquire(&ux, &uy, 1).map_err(|e| e.to_string())?;
        Ok(Fid {
            points: fid.iter().map(|c| [c.re as f32, c.im as f32]).collect(),
            dwell_s: p.profile.dwell_s,
        })
    };
    let mut instrument = SimInstrument::new(
        InstrumentConfig {
            dac,
            ..InstrumentConfig::default()
        },
        Box::new(hook),
    );
    let link = dir.link();
    let mut master = plug(&link);
    let stop = Arc::new(AtomicBool::new(false));
    let pulled = Arc::new(AtomicBool::new(false));
    let (s2, p2, played2) = (stop.clone(), pulled.clone(), played.clone());
    let inst_thread = thread::spawn(move || {
        let mut buf = [0u8; 4096];
        while !s2.load(Ordering::Relaxed) {
            if let Ok(n) = master.read(&mut buf) {
                instrument.handle_input(&buf[..n], Instant::now());
            }
            while let Some(out) = instrument.poll_transmit() {
                let _ = master.write_all(&out);
            }
            // Pull the cable once, right after the first acquisition; the instrument keeps
            // its waveforms and FIDs, as a real one would.
            if !p2.load(Ordering::Relaxed) && played2.load(Ordering::Relaxed) >= 1 {
                p2.store(true, Ordering::Relaxed);
                let _ = std::fs::remove_file(&link);
                drop(master);
                thread::sleep(Duration::from_millis(300));
                master = plug(&link);
            }
        }
    });
    let daemon = daemon_with(&dir, vec![cfg]).await;
    let s = run_session(&daemon.socket, id).await;
    stop.store(true, Ordering::Relaxed);
    let _ = inst_thread.join();
    daemon.shutdown();
    daemon.join().await.expect("join");
    assert_eq!(s.state, pb::SessionState::Converged as i32, "{s:?}");
    assert!((b1_of(&s) - 0.8).abs() < 0.01, "{s:?}");
    assert!(pulled.load(Ordering::Relaxed), "the cable was never pulled");
    // Every stored acquisition was played; one played as the cable went may never have been
    // answered (the session re-sent its waveform after the reconnect instead).
    let store = Store::open(&dir.0.join("data")).expect("store");
    let n = store.list_acquisitions(&s.id).expect("acquisitions").len() as u64;
    let played = played.load(Ordering::Relaxed);
    assert!(n >= 2 && n <= played, "{n} stored, {played} played");
}

/// `kill -9` of the daemon while the device is acquiring: the FID completes while no daemon
/// is listening, the device retains it, the restarted daemon (same state directory) maps it
/// back through its journal, stores it, and the resumed session converges; every FID the
/// device was told is stored is in the store.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_of_the_daemon_mid_acquisition_loses_nothing() {
    use std::process::{Child, Command, Stdio};
    let dir = Dir::new("kill9");
    let id = "serial-3t-k";
    let data = dir.0.join("data");
    let socket = dir.0.join("d.sock");
    let cfg = serial_config(id, &dir.link(), SerialProtocol::Firmware);
    let config = spinloop::daemon::config::ConfigFile {
        serial_consoles: vec![cfg],
        ..Default::default()
    };
    let config_path = dir.0.join("spinloopd.toml");
    std::fs::write(&config_path, toml::to_string(&config).expect("toml")).expect("config");
    let spawn = || -> Child {
        Command::new(env!("CARGO_BIN_EXE_spinloopd"))
            .arg("--config")
            .arg(&config_path)
            .arg("--data-dir")
            .arg(&data)
            .arg("--socket")
            .arg(&socket)
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .spawn()
            .expect("spinloopd")
    };
    let master = plug(&dir.link());
    let device = Device::start(id, Box::new(master));
    device.hold.store(true, Ordering::Relaxed);
    let mut daemon = spawn();
    let t0 = Instant::now();
    while !socket.exists() {
        assert!(t0.elapsed() < Duration::from_secs(20), "no socket");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Start the session; it runs in the daemon, so this watch ends with the kill.
    let session_socket = socket.clone();
    let first = tokio::spawn(async move { run_session(&session_socket, id).await });
    let t0 = Instant::now();
    while device.plays.load(Ordering::Relaxed) == 0 {
        assert!(
            t0.elapsed() < Duration::from_secs(30),
            "the device was never asked to play"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    daemon.kill().expect("kill -9");
    let _ = daemon.wait();
    first.abort();
    // The acquisition completes with no daemon: the device retains the FID.
    device.hold.store(false, Ordering::Relaxed);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        device.stored().is_empty(),
        "nothing can be stored while the daemon is down"
    );
    let mut daemon = spawn();
    // The session resumes on its own; wait for it to end.
    let t0 = Instant::now();
    let session = loop {
        if let Ok(channel) = unix_channel(&socket).await {
            let mut sessions = pb::sessions_client::SessionsClient::new(channel);
            if let Ok(r) = sessions
                .list_sessions(pb::ListSessionsRequest::default())
                .await
            {
                let list = r.into_inner().sessions;
                if let Some(s) = list.first()
                    && s.state != pb::SessionState::Open as i32
                {
                    break s.clone();
                }
            }
        }
        assert!(
            t0.elapsed() < Duration::from_secs(60),
            "the resumed session did not end"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    let _ = Command::new("kill")
        .args(["-TERM", &daemon.id().to_string()])
        .status();
    let _ = daemon.wait();
    assert_eq!(
        session.state,
        pb::SessionState::Converged as i32,
        "{session:?}"
    );
    let stored = device.stored();
    assert!(
        stored.contains(&1),
        "the FID acquired while the daemon was down was stored: {stored:?}"
    );
    assert_stored(&data, &session.id, id, &stored);
}
