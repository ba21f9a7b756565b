//! Serial transport over real pseudo-terminals. The host driver opens the pty's slave by path
//! through a symlink in a temp dir; "unplug" closes the device end (the master), "replug"
//! creates a new pty pair and re-points the symlink. Covers upload + play + FID over a pty,
//! corruption injected by a byte-mangling relay between two ptys, and unplug mid-upload with
//! replug: reconnect, retried upload, and FIDs not yet confirmed stored delivered (once) after
//! the replug.
#![cfg(unix)]

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, Sender};
use std::thread;
use std::time::{Duration, Instant};

use num_complex::Complex32;
use serialport::{SerialPort, TTYPort};
use spinloop_firmware::app::Capabilities;
use spinloop_firmware::link::LinkConfig;
use spinloop_firmware::serial::{DeviceDriver, HostDriver, SerialConfig};
use spinloop_firmware::{DeviceConfig, DeviceEvent, DeviceSession, Fid, HostConfig, HostEvent};

fn link_config() -> LinkConfig {
    LinkConfig {
        retransmit_timeout: Duration::from_millis(30),
        max_retries: 10,
        heartbeat_interval: Duration::from_millis(50),
        link_timeout: Duration::from_millis(400),
        initial_seq: 0,
        max_queued: 64,
    }
}

fn caps() -> Capabilities {
    Capabilities {
        f0_hz: 63.87e6,
        rf_dt_ns: 2000,
        max_waveform_samples: 8192,
        acquisition_points: 600,
        dwell_ns: 20_000,
        max_b1_hz: 1500.0,
    }
}

fn device_session() -> DeviceSession {
    DeviceSession::new(
        DeviceConfig {
            link: link_config(),
            console_id: "pty-console".into(),
            capabilities: caps(),
            nonce_seed: 1,
        },
        Instant::now(),
    )
}

fn host_config() -> HostConfig {
    HostConfig {
        link: link_config(),
        host_id: "pty-host".into(),
        nonce_seed: 1000,
        hello_timeout: Duration::from_millis(300),
        max_fid_points: 10_000,
    }
}

fn serial_config(path: &Path) -> SerialConfig {
    SerialConfig {
        path: path.to_owned(),
        baud_rate: 115_200,
        poll_interval: Duration::from_millis(2),
        reopen_backoff_min: Duration::from_millis(10),
        reopen_backoff_max: Duration::from_millis(100),
    }
}

fn waveform(n: usize) -> Vec<Complex32> {
    (0..n)
        .map(|i| {
            Complex32::new(
                (i as f32 * 0.01).sin() * 900.0,
                (i as f32 * 0.003).cos() * 300.0,
            )
        })
        .collect()
}

fn points(acq: u32) -> Vec<Complex32> {
    (0..caps().acquisition_points)
        .map(|i| Complex32::new(i as f32 + acq as f32, -(i as f32) * 0.5))
        .collect()
}

/// A temp dir holding the symlink the host opens.
struct Dir(PathBuf);

impl Dir {
    fn new(name: &str) -> Self {
        let dir = std::env::temp_dir().join(format!("spinloop-pty-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
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

/// A new pty pair; the symlink now points at its slave. Returns the master.
fn plug(link: &Path) -> TTYPort {
    let (mut master, slave) = TTYPort::pair().unwrap();
    let name = slave.name().unwrap();
    drop(slave);
    master.set_timeout(Duration::from_millis(2)).unwrap();
    let tmp = link.with_extension("new");
    let _ = std::fs::remove_file(&tmp);
    std::os::unix::fs::symlink(&name, &tmp).unwrap();
    std::fs::rename(&tmp, link).unwrap();
    master
}

struct Rig {
    host: HostDriver,
    host_rx: Receiver<HostEvent>,
    host_log: Vec<HostEvent>,
    device: Option<DeviceDriver>,
    dev_tx: Sender<DeviceEvent>,
    dev_rx: Receiver<DeviceEvent>,
    dev_log: Vec<DeviceEvent>,
    auto_acquire: bool,
}

impl Rig {
    fn new(host_path: &Path, device_port: Box<dyn SerialPort>) -> Self {
        let (host_tx, host_rx) = mpsc::channel();
        let host = HostDriver::spawn(serial_config(host_path), host_config(), move |e| {
            let _ = host_tx.send(e);
        })
        .unwrap();
        let (dev_tx, dev_rx) = mpsc::channel();
        let mut rig = Rig {
            host,
            host_rx,
            host_log: Vec::new(),
            device: None,
            dev_tx,
            dev_rx,
            dev_log: Vec::new(),
            auto_acquire: true,
        };
        rig.attach(device_port, device_session());
        rig
    }

    fn attach(&mut self, port: Box<dyn SerialPort>, session: DeviceSession) {
        let tx = self.dev_tx.clone();
        self.device = Some(
            DeviceDriver::spawn(port, session, move |e| {
                let _ = tx.send(e);
            })
            .unwrap(),
        );
    }

    fn unplug(&mut self) -> DeviceSession {
        self.device.take().unwrap().shutdown().unwrap()
    }

    fn wait(&mut self, timeout: Duration, what: &str, done: impl Fn(&Rig) -> bool) {
        let end = Instant::now() + timeout;
        loop {
            while let Ok(e) = self.host_rx.try_recv() {
                self.host_log.push(e);
            }
            while let Ok(e) = self.dev_rx.try_recv() {
                if let DeviceEvent::PlayRequested { acquisition_id, .. } = &e
                    && self.auto_acquire
                    && let Some(d) = &self.device
                {
                    d.complete_acquisition(*acquisition_id, points(*acquisition_id), 77)
                        .unwrap();
                }
                self.dev_log.push(e);
            }
            if done(self) {
                return;
            }
            assert!(
                Instant::now() < end,
                "timed out waiting for {what}; host events {:?}; device events {:?}",
                self.host_log,
                self.dev_log
            );
            thread::sleep(Duration::from_millis(2));
        }
    }

    fn count(&self, pred: impl Fn(&HostEvent) -> bool) -> usize {
        self.host_log.iter().filter(|e| pred(e)).count()
    }

    fn fids(&self, acq: u32) -> Vec<&Fid> {
        self.host_log
            .iter()
            .filter_map(|e| match e {
                HostEvent::Fid(f) if f.acquisition_id == acq => Some(f),
                _ => None,
            })
            .collect()
    }

    fn connected(&self) -> usize {
        self.count(|e| matches!(e, HostEvent::Connected(_)))
    }

    fn upload_ok(&mut self, id: u32, samples: Vec<Complex32>) {
        self.host.upload(id, samples).unwrap();
        self.wait(Duration::from_secs(3), "commit", |r| {
            r.count(
                |e| matches!(e, HostEvent::WaveformCommitted { waveform_id } if *waveform_id == id),
            ) == 1
        });
    }

    fn play_ok(&mut self, wf: u32, acq: u32) {
        self.host.play(wf, acq, 1).unwrap();
        self.wait(Duration::from_secs(3), "FID", |r| !r.fids(acq).is_empty());
        let f = self.fids(acq)[0];
        assert_eq!(f.points, points(acq));
        assert_eq!(f.waveform_id, wf);
        assert_eq!(f.dwell_ns, caps().dwell_ns);
    }

    fn stored(&mut self, acq: u32) {
        self.host.fid_stored(acq).unwrap();
        self.wait(Duration::from_secs(3), "FID_STORED", |r| {
            r.dev_log.contains(&DeviceEvent::FidStored {
                acquisition_id: acq,
            })
        });
    }
}

#[test]
fn upload_play_fid_over_a_pty() {
    let dir = Dir::new("clean");
    let master = plug(&dir.link());
    let mut rig = Rig::new(&dir.link(), Box::new(master));
    rig.wait(Duration::from_secs(3), "connect", |r| r.connected() == 1);
    let HostEvent::Connected(device) = &rig.host_log[0] else {
        panic!("{:?}", rig.host_log);
    };
    assert_eq!(device.console_id, "pty-console");
    assert_eq!(device.capabilities, caps());
    rig.upload_ok(1, waveform(2000));
    rig.play_ok(1, 10);
    rig.play_ok(1, 11);
    rig.stored(10);
    rig.stored(11);
    let device = rig.unplug();
    assert!(device.retained_fids().is_empty());
    assert_eq!(device.waveform(1).unwrap().to_vec(), waveform(2000));
    let host = rig.host.shutdown().unwrap();
    assert_eq!(host.link_stats().frame_errors, 0);
}

/// A "cable" made of two pty pairs and a relay thread copying bytes between their masters:
/// the host opens pty A's slave (through the symlink), the device runs on pty B's slave. The
/// relay can flip bits (about one byte in `one_in`, seeded) and can be told to cut the cable
/// after a number of host → device bytes: it then closes both masters, like an unplug.
struct Relay {
    stop: Arc<AtomicBool>,
    mangled: Arc<AtomicU64>,
    /// Host → device bytes still allowed before the cut.
    budget: Arc<AtomicU64>,
    thread: Option<thread::JoinHandle<()>>,
}

impl Relay {
    /// Plugs a relayed cable in behind `link`; returns it and the device's port.
    fn plug(link: &Path, one_in: u64) -> (Relay, TTYPort) {
        let host_side = plug(link);
        let (device_side, mut device_port) = TTYPort::pair().unwrap();
        device_port.set_timeout(Duration::from_millis(2)).unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let mangled = Arc::new(AtomicU64::new(0));
        let budget = Arc::new(AtomicU64::new(u64::MAX));
        let thread = {
            let (stop, mangled, budget) = (stop.clone(), mangled.clone(), budget.clone());
            thread::spawn(move || relay(host_side, device_side, one_in, stop, mangled, budget))
        };
        let relay = Relay {
            stop,
            mangled,
            budget,
            thread: Some(thread),
        };
        (relay, device_port)
    }

    fn cut_after(&self, bytes: u64) {
        self.budget.store(bytes, Ordering::SeqCst);
    }

    fn cut(&self) -> bool {
        self.thread.as_ref().is_some_and(|t| t.is_finished())
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

fn relay(
    mut a: TTYPort,
    mut b: TTYPort,
    one_in: u64,
    stop: Arc<AtomicBool>,
    mangled: Arc<AtomicU64>,
    budget: Arc<AtomicU64>,
) {
    use std::io::{Read, Write};
    a.set_timeout(Duration::from_millis(1)).unwrap();
    b.set_timeout(Duration::from_millis(1)).unwrap();
    let mut rng: u64 = 0x1234_5678_9ABC_DEF1;
    let mut buf = [0u8; 2048];
    while !stop.load(Ordering::Relaxed) {
        for forward in [true, false] {
            let (from, to) = if forward {
                (&mut a, &mut b)
            } else {
                (&mut b, &mut a)
            };
            let Ok(mut n) = from.read(&mut buf) else {
                continue;
            };
            if forward {
                let left = budget.load(Ordering::SeqCst);
                if left != u64::MAX {
                    let pass = left.min(n as u64);
                    budget.store(left - pass, Ordering::SeqCst);
                    if pass < n as u64 {
                        n = pass as usize;
                        let _ = to.write_all(&buf[..n]);
                        return; // cut: both masters close
                    }
                }
            }
            if one_in > 0 {
                for byte in &mut buf[..n] {
                    rng ^= rng << 13;
                    rng ^= rng >> 7;
                    rng ^= rng << 17;
                    if rng.is_multiple_of(one_in) {
                        *byte ^= 1 << ((rng >> 32) % 8);
                        mangled.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
            let _ = to.write_all(&buf[..n]);
        }
    }
}

#[test]
fn corruption_injected_by_a_relay_is_recovered() {
    let dir = Dir::new("relay");
    let (cable, device_port) = Relay::plug(&dir.link(), 3000);
    let mut rig = Rig::new(&dir.link(), Box::new(device_port));
    rig.wait(Duration::from_secs(5), "connect", |r| r.connected() >= 1);
    rig.upload_ok(1, waveform(3000));
    for acq in 1..=4 {
        rig.play_ok(1, acq);
        assert_eq!(rig.fids(acq).len(), 1);
    }
    let device = rig.unplug();
    let host = rig.host.shutdown().unwrap();
    assert!(
        cable.mangled.load(Ordering::Relaxed) > 0,
        "the relay corrupted bytes"
    );
    let errors = host.link_stats().frame_errors + device.link_stats().frame_errors;
    assert!(errors > 0, "corrupted frames were detected and dropped");
    assert_eq!(device.waveform(1).unwrap().to_vec(), waveform(3000));
}

#[test]
fn unplug_mid_upload_then_replug_recovers_without_losing_fids() {
    let dir = Dir::new("replug");
    let (cable, device_port) = Relay::plug(&dir.link(), 0);
    let mut rig = Rig::new(&dir.link(), Box::new(device_port));
    rig.wait(Duration::from_secs(3), "connect", |r| r.connected() == 1);
    rig.upload_ok(1, waveform(500));

    // FID 5: delivered before the unplug but not confirmed stored.
    rig.play_ok(1, 5);
    // FID 6: requested before the unplug, acquired while unplugged.
    rig.auto_acquire = false;
    rig.host.play(1, 6, 1).unwrap();
    rig.wait(Duration::from_secs(3), "play 6", |r| {
        r.dev_log.iter().any(|e| {
            matches!(
                e,
                DeviceEvent::PlayRequested {
                    acquisition_id: 6,
                    ..
                }
            )
        })
    });

    // A long upload (~64 KiB on the wire), and the cable is pulled after 20 KiB of it.
    let big = waveform(8000);
    cable.cut_after(20_000);
    rig.host.upload(2, big.clone()).unwrap();
    rig.wait(Duration::from_secs(3), "the cut", |_| cable.cut());
    std::fs::remove_file(dir.link()).unwrap();
    let mut console = rig.unplug();
    drop(cable);
    rig.wait(Duration::from_secs(3), "link lost", |r| {
        r.count(|e| matches!(e, HostEvent::LinkLost)) == 1
            && r.count(|e| matches!(e, HostEvent::UploadFailed { waveform_id: 2 })) == 1
            && r.count(|e| matches!(e, HostEvent::AcquisitionInterrupted { acquisition_id: 6 }))
                == 1
    });
    assert_eq!(
        rig.count(|e| matches!(e, HostEvent::WaveformCommitted { waveform_id: 2 })),
        0
    );
    assert!(console.waveform(2).is_none());
    console
        .complete_acquisition(6, points(6), 66, Instant::now())
        .unwrap();
    assert_eq!(console.retained_fids(), [5, 6]);
    // Commands while unplugged are refused, not lost silently.
    rig.host.upload(3, waveform(10)).unwrap();
    rig.wait(Duration::from_secs(1), "rejection", |r| {
        r.count(|e| matches!(e, HostEvent::RequestRejected { .. })) == 1
    });
    thread::sleep(Duration::from_millis(150)); // a few failed reopen attempts

    // Replug: a new cable behind the same path.
    let (_cable, device_port) = Relay::plug(&dir.link(), 0);
    rig.auto_acquire = true;
    rig.attach(Box::new(device_port), console);
    rig.wait(Duration::from_secs(3), "reconnect and FID 6", |r| {
        r.connected() == 2 && !r.fids(6).is_empty()
    });
    assert_eq!(rig.fids(6)[0].points, points(6));
    assert_eq!(rig.fids(6)[0].timestamp_us, 66);
    // The caller retries the upload.
    rig.upload_ok(2, big.clone());
    rig.play_ok(2, 7);
    rig.stored(5);
    rig.stored(6);
    rig.stored(7);
    // FID 5 was re-sent after the replug but delivered once.
    assert_eq!(rig.fids(5).len(), 1);
    assert_eq!(rig.fids(6).len(), 1);
    let console = rig.unplug();
    assert!(console.retained_fids().is_empty());
    assert_eq!(console.waveform(2).unwrap().to_vec(), big);
    drop(rig);
}
