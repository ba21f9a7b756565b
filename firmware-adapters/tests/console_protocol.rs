//! Session tests: a [`HostSession`] and a [`DeviceSession`] back to back through a simulated
//! serial cable on a virtual clock. The cable can drop, corrupt, duplicate and delay written
//! buffers (seeded, deterministic) and can be unplugged. Covers upload + play + FID clean and
//! under faults, device-side upload validation (checksum, missing chunks, NaN, amplitude,
//! length, unknown id), disconnect mid-upload with retry, FIDs retained across a disconnect and
//! delivered once, a restarted device, and garbage input.

use std::time::{Duration, Instant};

use num_complex::Complex32;
use proptest::prelude::*;
use spinloop_firmware::app::{
    Capabilities, Chunk, Hello, Message, RejectReason, Role, WaveformBegin, WaveformCommit,
    WaveformStatus, samples_crc,
};
use spinloop_firmware::link::{Link, LinkConfig, LinkEvent};
use spinloop_firmware::{
    DeviceConfig, DeviceEvent, DeviceSession, Frame, FrameType, HostConfig, HostEvent, HostSession,
};

fn link_config() -> LinkConfig {
    LinkConfig {
        retransmit_timeout: Duration::from_millis(20),
        max_retries: 8,
        heartbeat_interval: Duration::from_millis(50),
        link_timeout: Duration::from_millis(300),
        initial_seq: 0,
        max_queued: 64,
    }
}

fn caps() -> Capabilities {
    Capabilities {
        f0_hz: 127.74e6,
        rf_dt_ns: 4000,
        max_waveform_samples: 8192,
        acquisition_points: 700,
        dwell_ns: 10_000,
        max_b1_hz: 1000.0,
    }
}

fn host_config() -> HostConfig {
    HostConfig {
        link: link_config(),
        host_id: "test-host".into(),
        nonce_seed: 100,
        hello_timeout: Duration::from_millis(400),
        max_fid_points: 100_000,
    }
}

fn device_config() -> DeviceConfig {
    DeviceConfig {
        link: link_config(),
        console_id: "sim-console".into(),
        capabilities: caps(),
        nonce_seed: 7,
    }
}

fn waveform(n: usize, amplitude: f32) -> Vec<Complex32> {
    (0..n)
        .map(|i| {
            let x = i as f32 / n as f32;
            Complex32::new(
                amplitude * (6.0 * x).sin(),
                amplitude * 0.5 * (3.0 * x).cos(),
            )
        })
        .collect()
}

/// What the simulated console "acquires" for a play: deterministic in the ids.
fn acquired_points(waveform_id: u32, acquisition_id: u32) -> Vec<Complex32> {
    (0..caps().acquisition_points)
        .map(|i| {
            Complex32::new(
                (i as f32 * 0.01).cos() * waveform_id as f32,
                (i as f32 * 0.02).sin() + acquisition_id as f32,
            )
        })
        .collect()
}

/// xorshift64*, seeded.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn chance(&mut self, p: f64) -> bool {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64 <= p
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

#[derive(Clone, Copy, Default)]
struct Faults {
    drop: f64,
    corrupt: f64,
    duplicate: f64,
    max_delay_ms: u64,
}

/// One direction of the cable: buffers with their delivery time, in order.
#[derive(Default)]
struct Pipe {
    queue: Vec<(Instant, Vec<u8>)>,
    last: Option<Instant>,
}

struct Sim {
    t: Instant,
    host: HostSession,
    device: DeviceSession,
    h2d: Pipe,
    d2h: Pipe,
    rng: Rng,
    faults: Faults,
    plugged: bool,
    auto_acquire: bool,
    host_events: Vec<HostEvent>,
    device_events: Vec<DeviceEvent>,
    buffers_mangled: u64,
}

impl Sim {
    fn new(seed: u64, faults: Faults) -> Self {
        let t = Instant::now();
        Self {
            t,
            host: HostSession::new(host_config(), t),
            device: DeviceSession::new(device_config(), t),
            h2d: Pipe::default(),
            d2h: Pipe::default(),
            rng: Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1),
            faults,
            plugged: true,
            auto_acquire: true,
            host_events: Vec::new(),
            device_events: Vec::new(),
            buffers_mangled: 0,
        }
    }

    fn send(&mut self, to_device: bool, mut bytes: Vec<u8>) {
        if !self.plugged {
            return;
        }
        let f = self.faults;
        if self.rng.chance(f.drop) {
            self.buffers_mangled += 1;
            return;
        }
        if self.rng.chance(f.corrupt) && !bytes.is_empty() {
            self.buffers_mangled += 1;
            let i = self.rng.below(bytes.len());
            bytes[i] ^= 1 << self.rng.below(8);
        }
        let copies = if self.rng.chance(f.duplicate) { 2 } else { 1 };
        let delay = Duration::from_millis(if f.max_delay_ms > 0 {
            self.rng.next() % (f.max_delay_ms + 1)
        } else {
            0
        });
        let pipe = if to_device {
            &mut self.h2d
        } else {
            &mut self.d2h
        };
        let mut at = self.t + delay;
        if let Some(last) = pipe.last {
            at = at.max(last);
        }
        pipe.last = Some(at);
        for _ in 0..copies {
            pipe.queue.push((at, bytes.clone()));
        }
    }

    /// Advances the virtual clock by 1 ms and moves everything that is due.
    fn step(&mut self) {
        self.t += Duration::from_millis(1);
        let now = self.t;
        if self.host.poll_timeout().is_some_and(|at| at <= now) {
            self.host.handle_timeout(now);
        }
        if self.device.poll_timeout().is_some_and(|at| at <= now) {
            self.device.handle_timeout(now);
        }
        for _ in 0..4 {
            while let Some(b) = self.host.poll_transmit() {
                self.send(true, b);
            }
            while let Some(b) = self.device.poll_transmit() {
                self.send(false, b);
            }
            let due: Vec<Vec<u8>> = take_due(&mut self.h2d, now);
            for b in due {
                self.device.handle_input(&b, now);
            }
            let due: Vec<Vec<u8>> = take_due(&mut self.d2h, now);
            for b in due {
                self.host.handle_input(&b, now);
            }
            while let Some(e) = self.device.poll_event() {
                if let DeviceEvent::PlayRequested {
                    waveform_id,
                    acquisition_id,
                    ..
                } = &e
                    && self.auto_acquire
                {
                    self.device
                        .complete_acquisition(
                            *acquisition_id,
                            acquired_points(*waveform_id, *acquisition_id),
                            u64::from(*acquisition_id) * 1000,
                            now,
                        )
                        .unwrap();
                }
                self.device_events.push(e);
            }
            while let Some(e) = self.host.poll_event() {
                self.host_events.push(e);
            }
        }
    }

    fn run_until(&mut self, max: Duration, mut done: impl FnMut(&Sim) -> bool) -> bool {
        let end = self.t + max;
        while self.t < end {
            if done(self) {
                return true;
            }
            self.step();
        }
        done(self)
    }

    fn run_for(&mut self, d: Duration) {
        let end = self.t + d;
        while self.t < end {
            self.step();
        }
    }

    fn unplug(&mut self) {
        self.plugged = false;
        self.h2d = Pipe::default();
        self.d2h = Pipe::default();
    }

    fn connect(&mut self) {
        assert!(
            self.run_until(Duration::from_secs(5), |s| s.host.is_connected()),
            "no connection; host events {:?}",
            self.host_events
        );
    }

    fn host_count(&self, pred: impl Fn(&HostEvent) -> bool) -> usize {
        self.host_events.iter().filter(|e| pred(e)).count()
    }

    fn fids(&self) -> Vec<&spinloop_firmware::Fid> {
        self.host_events
            .iter()
            .filter_map(|e| match e {
                HostEvent::Fid(f) => Some(f),
                _ => None,
            })
            .collect()
    }

    fn upload(&mut self, id: u32, samples: &[Complex32]) -> HostEvent {
        let now = self.t;
        self.host.upload(id, samples, now).unwrap();
        let start = self.host_events.len();
        let done = |s: &Sim| {
            s.host_events[start..].iter().any(|e| {
                matches!(e,
                    HostEvent::WaveformCommitted { waveform_id }
                    | HostEvent::WaveformRejected { waveform_id, .. }
                    | HostEvent::UploadFailed { waveform_id } if *waveform_id == id)
            })
        };
        assert!(
            self.run_until(Duration::from_secs(20), done),
            "upload {id} stuck"
        );
        self.host_events[start..]
            .iter()
            .find(|e| {
                matches!(e,
                    HostEvent::WaveformCommitted { waveform_id }
                    | HostEvent::WaveformRejected { waveform_id, .. }
                    | HostEvent::UploadFailed { waveform_id } if *waveform_id == id)
            })
            .cloned()
            .unwrap()
    }

    fn play_and_wait(&mut self, wf: u32, acq: u32) {
        let now = self.t;
        self.host.play(wf, acq, 2, now).unwrap();
        assert!(
            self.run_until(Duration::from_secs(20), |s| s
                .fids()
                .iter()
                .any(|f| f.acquisition_id == acq)),
            "FID {acq} never arrived; host events {:?}",
            self.host_events
        );
    }
}

fn take_due(pipe: &mut Pipe, now: Instant) -> Vec<Vec<u8>> {
    let n = pipe.queue.iter().take_while(|(at, _)| *at <= now).count();
    pipe.queue.drain(..n).map(|(_, b)| b).collect()
}

fn check_fid(f: &spinloop_firmware::Fid, wf: u32, acq: u32) {
    assert_eq!(f.acquisition_id, acq);
    assert_eq!(f.waveform_id, wf);
    assert_eq!(f.points, acquired_points(wf, acq));
    assert_eq!(f.dwell_ns, caps().dwell_ns);
    assert_eq!(f.timestamp_us, u64::from(acq) * 1000);
}

#[test]
fn clean_upload_play_fid_and_stored() {
    let mut sim = Sim::new(1, Faults::default());
    sim.connect();
    let HostEvent::Connected(device) = &sim.host_events[0] else {
        panic!("first event {:?}", sim.host_events[0]);
    };
    assert_eq!(device.console_id, "sim-console");
    assert_eq!(device.capabilities, caps());
    assert!(
        matches!(&sim.device_events[0], DeviceEvent::Connected { host_id } if host_id == "test-host")
    );

    let samples = waveform(1000, 800.0);
    assert_eq!(
        sim.upload(5, &samples),
        HostEvent::WaveformCommitted { waveform_id: 5 }
    );
    assert_eq!(sim.device.waveform(5).unwrap().to_vec(), samples);

    sim.play_and_wait(5, 42);
    let play = sim
        .device_events
        .iter()
        .find_map(|e| match e {
            DeviceEvent::PlayRequested {
                samples,
                acquisition_id: 42,
                averages,
                ..
            } => Some((samples.clone(), *averages)),
            _ => None,
        })
        .unwrap();
    assert_eq!(play.0.to_vec(), samples);
    assert_eq!(play.1, 2);
    check_fid(sim.fids()[0], 5, 42);
    assert_eq!(sim.device.retained_fids(), [42]);

    let now = sim.t;
    sim.host.fid_stored(42, now).unwrap();
    assert!(sim.run_until(Duration::from_secs(1), |s| {
        s.device_events
            .contains(&DeviceEvent::FidStored { acquisition_id: 42 })
    }));
    assert!(sim.device.retained_fids().is_empty());
    assert_eq!(sim.host_count(|e| matches!(e, HostEvent::LinkLost)), 0);
}

#[test]
fn upload_play_fid_survive_five_percent_corruption_drops_duplicates_and_delay() {
    for seed in 1..=4 {
        let mut sim = Sim::new(
            seed,
            Faults {
                drop: 0.05,
                corrupt: 0.05,
                duplicate: 0.03,
                max_delay_ms: 3,
            },
        );
        sim.connect();
        let samples = waveform(3000, 900.0);
        assert_eq!(
            sim.upload(1, &samples),
            HostEvent::WaveformCommitted { waveform_id: 1 },
            "seed {seed}"
        );
        for acq in 10..13 {
            sim.play_and_wait(1, acq);
        }
        let fids = sim.fids();
        assert_eq!(fids.len(), 3, "seed {seed}: each FID exactly once");
        for (f, acq) in fids.iter().zip(10..13) {
            check_fid(f, 1, acq);
        }
        assert!(
            sim.buffers_mangled >= 3,
            "seed {seed}: faults were injected"
        );
        assert!(
            sim.host.link_stats().retransmissions + sim.device.link_stats().retransmissions > 0
        );
        assert_eq!(sim.host_count(|e| matches!(e, HostEvent::LinkLost)), 0);
    }
}

#[test]
fn amplitude_over_limit_and_too_long_are_rejected() {
    let mut sim = Sim::new(2, Faults::default());
    sim.connect();
    let mut samples = waveform(500, 500.0);
    samples[321] = Complex32::new(800.0, 800.0); // |B1| = 1131 Hz > 1000 Hz
    assert_eq!(
        sim.upload(3, &samples),
        HostEvent::WaveformRejected {
            waveform_id: 3,
            reason: RejectReason::AmplitudeOverLimit
        }
    );
    assert!(sim.device.waveform(3).is_none());
    // The host refuses what the device announced it cannot take.
    let now = sim.t;
    assert!(sim.host.upload(4, &waveform(9000, 1.0), now).is_err());
    assert!(sim.host.upload(4, &[], now).is_err());
    // Playing an uncommitted waveform is answered with ERROR.
    sim.host.play(3, 1, 1, now).unwrap();
    assert!(sim.run_until(Duration::from_secs(1), |s| {
        s.host_count(|e| matches!(
        e,
        HostEvent::DeviceError(r) if r.code == spinloop_firmware::app::error_code::UNKNOWN_WAVEFORM
    )) == 1
    }));
}

/// A hand-driven host link talking raw frames to a [`DeviceSession`].
struct RawHost {
    t: Instant,
    link: Link,
    device: DeviceSession,
    received: Vec<Message>,
}

impl RawHost {
    fn new() -> Self {
        let t = Instant::now();
        let mut raw = Self {
            t,
            link: Link::new(link_config(), t),
            device: DeviceSession::new(device_config(), t),
            received: Vec::new(),
        };
        raw.send(&Message::Hello(Hello {
            protocol_version: 1,
            role: Role::Host,
            nonce: 1,
            reply_to: 0,
            console_id: "raw".into(),
            capabilities: None,
        }));
        raw
    }

    fn send_payload(&mut self, kind: FrameType, payload: Vec<u8>) {
        self.link.send(kind, payload, self.t).unwrap();
        self.pump();
    }

    fn send(&mut self, m: &Message) {
        self.send_payload(m.frame_type(), m.encode().unwrap());
    }

    fn pump(&mut self) {
        for _ in 0..20 {
            self.t += Duration::from_millis(1);
            while let Some(b) = self.link.poll_transmit() {
                self.device.handle_input(&b, self.t);
            }
            while let Some(b) = self.device.poll_transmit() {
                self.link.handle_input(&b, self.t);
            }
            while let Some(e) = self.link.poll_event() {
                if let LinkEvent::Delivered { kind, payload, .. } = e {
                    self.received.push(Message::decode(kind, &payload).unwrap());
                }
            }
        }
    }

    fn upload(
        &mut self,
        id: u32,
        samples: &[Complex32],
        count: u32,
        crc: u32,
        skip: Option<usize>,
    ) {
        self.send(&Message::WaveformBegin(WaveformBegin {
            waveform_id: id,
            sample_count: count,
            sample_dt_ns: 4000,
            format: 1,
        }));
        for (i, c) in spinloop_firmware::app::chunks(id, samples).enumerate() {
            if Some(i) != skip {
                self.send(&Message::WaveformChunk(c));
            }
        }
        self.send(&Message::WaveformCommit(WaveformCommit {
            waveform_id: id,
            crc,
            sample_count: count,
        }));
    }

    fn status(&self, id: u32) -> Option<Result<(), RejectReason>> {
        self.received.iter().rev().find_map(|m| match m {
            Message::WaveformStatus(WaveformStatus {
                waveform_id,
                result,
            }) if *waveform_id == id => Some(*result),
            _ => None,
        })
    }
}

#[test]
fn device_validates_uploads() {
    let mut raw = RawHost::new();
    assert!(matches!(&raw.received[0], Message::Hello(h) if h.role == Role::Device));
    let s = waveform(400, 100.0);
    let n = s.len() as u32;

    raw.upload(1, &s, n, samples_crc(&s) ^ 1, None);
    assert_eq!(raw.status(1), Some(Err(RejectReason::ChecksumMismatch)));

    raw.upload(2, &s, n, samples_crc(&s), Some(1));
    assert_eq!(raw.status(2), Some(Err(RejectReason::MissingChunks)));

    raw.upload(3, &s[..300], n, samples_crc(&s[..300]), None);
    assert_eq!(raw.status(3), Some(Err(RejectReason::MissingChunks)));

    raw.upload(4, &s, 399, samples_crc(&s), None);
    assert_eq!(raw.status(4), Some(Err(RejectReason::TooLong)));

    raw.upload(5, &s, 10_000, samples_crc(&s), None);
    assert_eq!(raw.status(5), Some(Err(RejectReason::TooLong)));

    // A NaN sample: the chunk does not decode, the upload is rejected as non-finite.
    raw.send(&Message::WaveformBegin(WaveformBegin {
        waveform_id: 6,
        sample_count: 1,
        sample_dt_ns: 4000,
        format: 1,
    }));
    let mut chunk = vec![6, 0, 0, 0, 0, 0, 0, 0];
    chunk.extend_from_slice(&f32::NAN.to_le_bytes());
    chunk.extend_from_slice(&0f32.to_le_bytes());
    raw.send_payload(FrameType::WaveformChunk, chunk);
    raw.send(&Message::WaveformCommit(WaveformCommit {
        waveform_id: 6,
        crc: 0,
        sample_count: 1,
    }));
    assert_eq!(raw.status(6), Some(Err(RejectReason::NonFinite)));

    raw.send(&Message::WaveformCommit(WaveformCommit {
        waveform_id: 77,
        crc: 0,
        sample_count: 1,
    }));
    assert_eq!(raw.status(77), Some(Err(RejectReason::UnknownId)));

    // Wrong sample interval.
    raw.send(&Message::WaveformBegin(WaveformBegin {
        waveform_id: 8,
        sample_count: 1,
        sample_dt_ns: 1000,
        format: 1,
    }));
    raw.send(&Message::WaveformChunk(Chunk {
        id: 8,
        offset: 0,
        samples: vec![Complex32::new(1.0, 0.0)],
    }));
    raw.send(&Message::WaveformCommit(WaveformCommit {
        waveform_id: 8,
        crc: samples_crc(&[Complex32::new(1.0, 0.0)]),
        sample_count: 1,
    }));
    assert_eq!(raw.status(8), Some(Err(RejectReason::BadFormat)));

    raw.upload(9, &s, n, samples_crc(&s), None);
    assert_eq!(raw.status(9), Some(Ok(())));
    assert_eq!(raw.device.waveform(9).unwrap().to_vec(), s);
    for id in [1, 2, 3, 4, 5, 6, 8] {
        assert!(raw.device.waveform(id).is_none(), "{id}");
    }
}

#[test]
fn disconnect_mid_upload_then_reconnect_and_retry() {
    let mut sim = Sim::new(3, Faults::default());
    sim.connect();
    let samples = waveform(6000, 700.0);
    let now = sim.t;
    sim.host.upload(9, &samples, now).unwrap();
    sim.run_for(Duration::from_millis(15)); // a few chunks in
    assert_eq!(
        sim.host_count(|e| matches!(e, HostEvent::WaveformCommitted { .. })),
        0
    );
    sim.unplug();
    assert!(sim.run_until(Duration::from_secs(3), |s| {
        s.host_count(|e| matches!(e, HostEvent::UploadFailed { waveform_id: 9 })) == 1
    }));
    assert_eq!(sim.host_count(|e| matches!(e, HostEvent::LinkLost)), 1);
    assert!(!sim.host.is_connected());
    assert!(sim.device.waveform(9).is_none());
    sim.run_for(Duration::from_secs(1)); // stays unplugged; host keeps saying HELLO
    sim.plugged = true;
    assert!(sim.run_until(Duration::from_secs(3), |s| s.host.is_connected()));
    assert_eq!(sim.host_count(|e| matches!(e, HostEvent::Connected(_))), 2);
    assert_eq!(
        sim.upload(9, &samples),
        HostEvent::WaveformCommitted { waveform_id: 9 }
    );
    sim.play_and_wait(9, 1);
    check_fid(sim.fids()[0], 9, 1);
}

#[test]
fn fid_not_stored_before_disconnect_is_resent_and_delivered_once() {
    let mut sim = Sim::new(4, Faults::default());
    sim.connect();
    let samples = waveform(200, 100.0);
    sim.upload(1, &samples);
    sim.play_and_wait(1, 50);
    // Unplug before the host confirms the FID stored.
    sim.unplug();
    sim.run_for(Duration::from_secs(1));
    assert_eq!(sim.device.retained_fids(), [50]);
    sim.plugged = true;
    sim.connect();
    // The device re-sends FID 50 after the new HELLO; the host drops the copy.
    sim.run_for(Duration::from_millis(500));
    assert!(sim.device.link_stats().frames_sent > 0);
    assert_eq!(sim.fids().len(), 1);
    assert_eq!(sim.device.retained_fids(), [50]);
    let now = sim.t;
    sim.host.fid_stored(50, now).unwrap();
    assert!(sim.run_until(Duration::from_secs(1), |s| {
        s.device.retained_fids().is_empty()
    }));

    // An acquisition completed while unplugged arrives after the replug.
    sim.auto_acquire = false;
    let now = sim.t;
    sim.host.play(1, 51, 1, now).unwrap();
    assert!(
        sim.run_until(Duration::from_secs(1), |s| s.device_events.iter().any(
            |e| matches!(
                e,
                DeviceEvent::PlayRequested {
                    acquisition_id: 51,
                    ..
                }
            )
        ))
    );
    sim.unplug();
    sim.run_for(Duration::from_secs(1));
    let now = sim.t;
    sim.device
        .complete_acquisition(51, acquired_points(1, 51), 51_000, now)
        .unwrap();
    assert_eq!(
        sim.host_count(|e| matches!(e, HostEvent::AcquisitionInterrupted { acquisition_id: 51 })),
        1
    );
    sim.plugged = true;
    assert!(sim.run_until(Duration::from_secs(3), |s| s.fids().len() == 2));
    check_fid(sim.fids()[1], 1, 51);
    // Re-issuing the interrupted PLAY does not acquire again nor deliver twice.
    let now = sim.t;
    sim.host.play(1, 51, 1, now).unwrap();
    sim.run_for(Duration::from_millis(300));
    assert_eq!(sim.fids().len(), 2);
    assert_eq!(
        sim.device_events
            .iter()
            .filter(|e| matches!(
                e,
                DeviceEvent::PlayRequested {
                    acquisition_id: 51,
                    ..
                }
            ))
            .count(),
        1
    );
    // Stored while disconnected: confirmed again automatically when the copy arrives.
    sim.unplug();
    let now = sim.t;
    sim.host.fid_stored(51, now).unwrap();
    sim.run_for(Duration::from_millis(500));
    sim.plugged = true;
    assert!(sim.run_until(Duration::from_secs(3), |s| {
        s.device.retained_fids().is_empty()
    }));
    assert_eq!(sim.fids().len(), 2);
}

#[test]
fn restarted_device_is_detected_and_reconnected() {
    let mut sim = Sim::new(5, Faults::default());
    sim.connect();
    sim.upload(1, &waveform(100, 10.0));
    // The console reboots: a fresh session with no waveforms.
    sim.device = DeviceSession::new(device_config(), sim.t);
    let now = sim.t;
    sim.host.play(1, 9, 1, now).unwrap();
    assert!(sim.run_until(Duration::from_secs(3), |s| {
        s.host_count(|e| matches!(e, HostEvent::Connected(_))) == 2
    }));
    assert_eq!(sim.host_count(|e| matches!(e, HostEvent::LinkLost)), 1);
    assert_eq!(
        sim.host_count(|e| matches!(e, HostEvent::AcquisitionInterrupted { acquisition_id: 9 })),
        1
    );
    // After re-uploading, the play works.
    assert_eq!(
        sim.upload(1, &waveform(100, 10.0)),
        HostEvent::WaveformCommitted { waveform_id: 1 }
    );
    sim.play_and_wait(1, 9);
}

#[test]
fn host_rejects_damaged_fid_and_device_keeps_it() {
    // A device that lies about the checksum: FID_END with a wrong CRC through raw frames.
    let t = Instant::now();
    let mut host = HostSession::new(host_config(), t);
    let mut dev = Link::new(link_config(), t);
    let deliver = |host: &mut HostSession, dev: &mut Link, m: Message| {
        dev.send(m.frame_type(), m.encode().unwrap(), t).unwrap();
        for _ in 0..4 {
            while let Some(b) = dev.poll_transmit() {
                host.handle_input(&b, t);
            }
            while let Some(b) = host.poll_transmit() {
                dev.handle_input(&b, t);
            }
        }
    };
    deliver(
        &mut host,
        &mut dev,
        Message::Hello(Hello {
            protocol_version: 1,
            role: Role::Device,
            nonce: 1,
            reply_to: 100 + 1,
            console_id: "liar".into(),
            capabilities: Some(caps()),
        }),
    );
    assert!(host.is_connected());
    let points = acquired_points(1, 2);
    for c in spinloop_firmware::app::chunks(2, &points) {
        deliver(&mut host, &mut dev, Message::FidChunk(c));
    }
    deliver(
        &mut host,
        &mut dev,
        Message::FidEnd(spinloop_firmware::app::FidEnd {
            acquisition_id: 2,
            waveform_id: 1,
            total_points: points.len() as u32,
            dwell_ns: 10,
            crc: samples_crc(&points) ^ 4,
            timestamp_us: 0,
        }),
    );
    let events: Vec<HostEvent> = std::iter::from_fn(|| host.poll_event()).collect();
    assert!(events.iter().any(|e| matches!(
        e,
        HostEvent::FidRejected {
            acquisition_id: 2,
            reason: spinloop_firmware::session::FidError::ChecksumMismatch { .. }
        }
    )));
    assert!(!events.iter().any(|e| matches!(e, HostEvent::Fid(_))));
    // A chunk out of order is reported too.
    deliver(
        &mut host,
        &mut dev,
        Message::FidChunk(Chunk {
            id: 3,
            offset: 5,
            samples: vec![Complex32::new(0.0, 0.0)],
        }),
    );
    deliver(
        &mut host,
        &mut dev,
        Message::FidEnd(spinloop_firmware::app::FidEnd {
            acquisition_id: 3,
            waveform_id: 1,
            total_points: 1,
            dwell_ns: 10,
            crc: 0,
            timestamp_us: 0,
        }),
    );
    assert!(std::iter::from_fn(|| host.poll_event()).any(|e| matches!(
        e,
        HostEvent::FidRejected {
            acquisition_id: 3,
            reason: spinloop_firmware::session::FidError::OffsetMismatch {
                expected: 0,
                found: 5
            }
        }
    )));
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn garbage_never_panics(
        chunks in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..300), 0..20),
        frames in proptest::collection::vec(
            (proptest::sample::select(FrameType::ALL.to_vec()), any::<u16>(), proptest::collection::vec(any::<u8>(), 0..200)),
            0..20),
    ) {
        let t = Instant::now();
        let mut host = HostSession::new(host_config(), t);
        let mut device = DeviceSession::new(device_config(), t);
        let mut now = t;
        for c in &chunks {
            now += Duration::from_millis(7);
            host.handle_input(c, now);
            device.handle_input(c, now);
            host.handle_timeout(now);
            device.handle_timeout(now);
        }
        // Well-framed frames with arbitrary payloads reach the session layer.
        for (kind, seq, payload) in frames {
            now += Duration::from_millis(3);
            let wire = Frame { kind, flags: 1, seq, payload }.encode().unwrap();
            host.handle_input(&wire, now);
            device.handle_input(&wire, now);
        }
        while host.poll_transmit().is_some() {}
        while device.poll_transmit().is_some() {}
        while host.poll_event().is_some() {}
        while device.poll_event().is_some() {}
        prop_assert!(host.poll_timeout().is_some());
    }
}

#[test]
fn restarted_host_gets_unconfirmed_fids_again() {
    let mut sim = Sim::new(6, Faults::default());
    sim.connect();
    sim.upload(1, &waveform(300, 50.0));
    sim.play_and_wait(1, 20);
    sim.play_and_wait(1, 21);
    let now = sim.t;
    sim.host.fid_stored(20, now).unwrap();
    assert!(sim.run_until(Duration::from_secs(1), |s| s.device.retained_fids() == [21]));
    // The daemon crashes before storing FID 21 and starts again with a fresh session.
    let mut config = host_config();
    config.nonce_seed = 5000;
    sim.host = HostSession::new(config, sim.t);
    sim.host_events.clear();
    sim.connect();
    assert!(sim.run_until(Duration::from_secs(2), |s| !s.fids().is_empty()));
    run_quiet(&mut sim);
    let fids = sim.fids();
    assert_eq!(fids.len(), 1, "only the unconfirmed FID is re-sent");
    check_fid(fids[0], 1, 21);
    // The device kept its waveform across the host restart.
    assert!(sim.device.waveform(1).is_some());
}

fn run_quiet(sim: &mut Sim) {
    sim.run_for(Duration::from_millis(300));
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]

    /// Under random drop, corruption, duplication and delay (up to 8 % each), every FID of a
    /// session is delivered exactly once and matches what the device acquired.
    #[test]
    fn random_faults_lose_and_duplicate_nothing(
        seed in any::<u64>(),
        drop in 0.0f64..0.08,
        corrupt in 0.0f64..0.08,
        duplicate in 0.0f64..0.08,
        max_delay_ms in 0u64..5,
        len in 1usize..2000,
    ) {
        let mut sim = Sim::new(seed, Faults { drop, corrupt, duplicate, max_delay_ms });
        sim.connect();
        let samples = waveform(len, 500.0);
        prop_assert_eq!(sim.upload(2, &samples), HostEvent::WaveformCommitted { waveform_id: 2 });
        for acq in 0..3 {
            sim.play_and_wait(2, acq);
        }
        let now = sim.t;
        for acq in 0..3 {
            sim.host.fid_stored(acq, now).unwrap();
        }
        prop_assert!(sim.run_until(Duration::from_secs(10), |s| s.device.retained_fids().is_empty()));
        let fids = sim.fids();
        prop_assert_eq!(fids.len(), 3);
        for (f, acq) in fids.iter().zip(0..3) {
            check_fid(f, 2, acq);
        }
        prop_assert_eq!(sim.device.waveform(2).unwrap().to_vec(), samples);
    }
}
