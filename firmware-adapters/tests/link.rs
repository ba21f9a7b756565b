//! Link-layer tests: two [`Link`]s wired back to back through a simulated, zero-latency channel
//! that the test can make drop or corrupt individual frames, driven on a virtual clock. Covers
//! clean in-order delivery, retransmission of a dropped frame, duplicates after a dropped ACK,
//! corruption recovered by NAK, bounded retries, peer loss, heartbeats, sequence number
//! wrap-around, `send` errors, and a property test over random loss and corruption patterns.

use std::time::{Duration, Instant};

use proptest::prelude::*;
use spinloop_firmware::link::{
    FLAG_RELIABLE, FailReason, Link, LinkConfig, LinkError, LinkEvent, is_reliable,
};
use spinloop_firmware::{Frame, FrameType, MAX_PAYLOAD_LEN};

const RTO: Duration = Duration::from_millis(100);
const HEARTBEAT: Duration = Duration::from_millis(500);
const LINK_TIMEOUT: Duration = Duration::from_millis(1500);

fn config() -> LinkConfig {
    LinkConfig {
        retransmit_timeout: RTO,
        max_retries: 3,
        heartbeat_interval: HEARTBEAT,
        link_timeout: LINK_TIMEOUT,
        initial_seq: 0,
        max_queued: 16,
    }
}

/// Direction of a frame on the simulated channel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Dir {
    AtoB,
    BtoA,
}

/// What the channel does with one frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fault {
    Pass,
    Drop,
    /// XOR the stuffed byte at this index (modulo the length without delimiter) with a mask.
    Corrupt(usize, u8),
}

type FaultFn = Box<dyn FnMut(Dir, &Frame) -> Fault>;

/// Decodes one wire buffer (stuffed frame and delimiter) for inspection.
fn inspect(wire: &[u8]) -> Frame {
    assert_eq!(
        wire.last(),
        Some(&0),
        "transmit buffer ends with the delimiter"
    );
    Frame::decode(&wire[..wire.len() - 1]).expect("links transmit valid frames")
}

struct Sim {
    now: Instant,
    a: Link,
    b: Link,
    a_events: Vec<LinkEvent>,
    b_events: Vec<LinkEvent>,
    /// Every frame each side transmitted (before faults), with the time.
    a_sent: Vec<(Instant, Frame)>,
    b_sent: Vec<(Instant, Frame)>,
    fault: FaultFn,
}

impl Sim {
    fn new(config: LinkConfig) -> Self {
        Self::with_fault(config, Box::new(|_, _| Fault::Pass))
    }

    fn with_fault(config: LinkConfig, fault: FaultFn) -> Self {
        let now = Instant::now();
        Self {
            now,
            a: Link::new(config.clone(), now),
            b: Link::new(config, now),
            a_events: Vec::new(),
            b_events: Vec::new(),
            a_sent: Vec::new(),
            b_sent: Vec::new(),
            fault,
        }
    }

    fn send_a(&mut self, kind: FrameType, payload: &[u8]) -> u16 {
        let seq = self.a.send(kind, payload.to_vec(), self.now).unwrap();
        self.pump();
        seq
    }

    fn send_b(&mut self, kind: FrameType, payload: &[u8]) -> u16 {
        let seq = self.b.send(kind, payload.to_vec(), self.now).unwrap();
        self.pump();
        seq
    }

    /// Moves frames both ways (instantly) until both links are quiet; collects events.
    fn pump(&mut self) {
        loop {
            let mut moved = false;
            while let Some(wire) = self.a.poll_transmit() {
                moved = true;
                let frame = inspect(&wire);
                self.a_sent.push((self.now, frame.clone()));
                if let Some(bytes) = apply((self.fault)(Dir::AtoB, &frame), wire) {
                    self.b.handle_input(&bytes, self.now);
                }
            }
            while let Some(wire) = self.b.poll_transmit() {
                moved = true;
                let frame = inspect(&wire);
                self.b_sent.push((self.now, frame.clone()));
                if let Some(bytes) = apply((self.fault)(Dir::BtoA, &frame), wire) {
                    self.a.handle_input(&bytes, self.now);
                }
            }
            self.a_events
                .extend(std::iter::from_fn(|| self.a.poll_event()));
            self.b_events
                .extend(std::iter::from_fn(|| self.b.poll_event()));
            if !moved {
                break;
            }
        }
    }

    /// Runs both links' timers up to `until` (virtual time).
    fn run_until(&mut self, until: Instant) {
        loop {
            let next = [self.a.poll_timeout(), self.b.poll_timeout()]
                .into_iter()
                .flatten()
                .min();
            match next {
                Some(t) if t <= until => {
                    self.now = self.now.max(t);
                    self.a.handle_timeout(self.now);
                    self.b.handle_timeout(self.now);
                    self.pump();
                }
                _ => break,
            }
        }
        self.now = self.now.max(until);
        self.pump();
    }

    fn run_for(&mut self, d: Duration) {
        self.run_until(self.now + d);
    }
}

fn apply(fault: Fault, mut wire: Vec<u8>) -> Option<Vec<u8>> {
    match fault {
        Fault::Pass => Some(wire),
        Fault::Drop => None,
        Fault::Corrupt(index, mask) => {
            let body = wire.len() - 1;
            wire[index % body] ^= mask.max(1);
            Some(wire)
        }
    }
}

fn delivered(events: &[LinkEvent]) -> Vec<(FrameType, u16, Vec<u8>)> {
    events
        .iter()
        .filter_map(|e| match e {
            LinkEvent::Delivered { kind, seq, payload } => Some((*kind, *seq, payload.clone())),
            _ => None,
        })
        .collect()
}

fn acked(events: &[LinkEvent]) -> Vec<u16> {
    events
        .iter()
        .filter_map(|e| match e {
            LinkEvent::Acked { seq } => Some(*seq),
            _ => None,
        })
        .collect()
}

fn failed(events: &[LinkEvent]) -> Vec<u16> {
    events
        .iter()
        .filter_map(|e| match e {
            LinkEvent::Failed { seq, .. } => Some(*seq),
            _ => None,
        })
        .collect()
}

fn count_kind(sent: &[(Instant, Frame)], kind: FrameType) -> usize {
    sent.iter().filter(|(_, f)| f.kind == kind).count()
}

#[test]
fn clean_delivery_in_order() {
    let mut sim = Sim::new(config());
    let kinds = [
        FrameType::Hello,
        FrameType::WaveformBegin,
        FrameType::WaveformChunk,
        FrameType::WaveformCommit,
        FrameType::Play,
    ];
    let seqs: Vec<u16> = kinds
        .iter()
        .enumerate()
        .map(|(i, &k)| sim.send_a(k, &[i as u8; 3]))
        .collect();
    assert_eq!(seqs, vec![0, 1, 2, 3, 4]);
    sim.run_for(Duration::from_millis(10));
    let expected: Vec<_> = kinds
        .iter()
        .enumerate()
        .map(|(i, &k)| (k, i as u16, vec![i as u8; 3]))
        .collect();
    assert_eq!(delivered(&sim.b_events), expected);
    assert_eq!(acked(&sim.a_events), seqs);
    assert_eq!(sim.a.stats().retransmissions, 0);
    assert_eq!(sim.a.unacked(), 0);
    // Reliable frames carry the flag, ACKs echo the seq with an empty payload and no flag.
    for (_, f) in &sim.a_sent {
        assert_eq!(f.flags & FLAG_RELIABLE != 0, is_reliable(f.kind));
    }
    let acks: Vec<_> = sim.b_sent.iter().map(|(_, f)| f).collect();
    assert_eq!(acks.len(), 5);
    for (f, seq) in acks.iter().zip(0u16..) {
        assert_eq!(
            (f.kind, f.flags, f.seq, f.payload.len()),
            (FrameType::Ack, 0, seq, 0)
        );
    }
    // Stop-and-wait: the next data frame leaves only after the previous one's ACK.
    assert!(
        sim.b_events
            .iter()
            .all(|e| matches!(e, LinkEvent::Delivered { .. }))
    );
}

#[test]
fn both_directions_are_independent() {
    let mut sim = Sim::new(config());
    sim.send_a(FrameType::Play, b"go");
    sim.send_b(FrameType::FidChunk, b"fid0");
    sim.send_b(FrameType::FidEnd, b"");
    sim.run_for(Duration::from_millis(10));
    assert_eq!(
        delivered(&sim.b_events),
        vec![(FrameType::Play, 0, b"go".to_vec())]
    );
    assert_eq!(
        delivered(&sim.a_events),
        vec![
            (FrameType::FidChunk, 0, b"fid0".to_vec()),
            (FrameType::FidEnd, 1, Vec::new())
        ]
    );
    assert_eq!(acked(&sim.a_events), vec![0]);
    assert_eq!(acked(&sim.b_events), vec![0, 1]);
}

#[test]
fn dropped_frame_is_retransmitted_and_delivered_once() {
    let mut dropped = false;
    let fault: FaultFn = Box::new(move |dir, f| {
        if dir == Dir::AtoB && f.kind == FrameType::Play && !dropped {
            dropped = true;
            Fault::Drop
        } else {
            Fault::Pass
        }
    });
    let mut sim = Sim::with_fault(config(), fault);
    let start = sim.now;
    let seq = sim.send_a(FrameType::Play, b"p");
    assert!(delivered(&sim.b_events).is_empty());
    sim.run_for(RTO * 2);
    assert_eq!(
        delivered(&sim.b_events),
        vec![(FrameType::Play, seq, b"p".to_vec())]
    );
    assert_eq!(acked(&sim.a_events), vec![seq]);
    assert_eq!(sim.a.stats().retransmissions, 1);
    let plays: Vec<_> = sim
        .a_sent
        .iter()
        .filter(|(_, f)| f.kind == FrameType::Play)
        .collect();
    assert_eq!(plays.len(), 2);
    assert_eq!(
        plays[1].0 - start,
        RTO,
        "retransmitted after exactly one RTO"
    );
    assert_eq!(plays[0].1, plays[1].1, "retransmission is identical");
}

#[test]
fn dropped_ack_causes_duplicate_that_is_reacked_but_delivered_once() {
    let mut dropped = false;
    let fault: FaultFn = Box::new(move |dir, f| {
        if dir == Dir::BtoA && f.kind == FrameType::Ack && !dropped {
            dropped = true;
            Fault::Drop
        } else {
            Fault::Pass
        }
    });
    let mut sim = Sim::with_fault(config(), fault);
    let s0 = sim.send_a(FrameType::WaveformChunk, b"c0");
    let s1 = sim.send_a(FrameType::WaveformChunk, b"c1");
    sim.run_for(RTO * 3);
    assert_eq!(
        delivered(&sim.b_events),
        vec![
            (FrameType::WaveformChunk, s0, b"c0".to_vec()),
            (FrameType::WaveformChunk, s1, b"c1".to_vec())
        ]
    );
    assert_eq!(acked(&sim.a_events), vec![s0, s1]);
    assert_eq!(sim.b.stats().duplicates, 1);
    // B acknowledged s0 twice (the original and the duplicate), s1 once.
    let ack_seqs: Vec<u16> = sim
        .b_sent
        .iter()
        .filter(|(_, f)| f.kind == FrameType::Ack)
        .map(|(_, f)| f.seq)
        .collect();
    assert_eq!(ack_seqs, vec![s0, s0, s1]);
}

#[test]
fn corrupted_frame_is_rejected_and_recovered_at_once_by_nak() {
    let mut corrupted = false;
    let fault: FaultFn = Box::new(move |dir, f| {
        if dir == Dir::AtoB && f.kind == FrameType::WaveformCommit && !corrupted {
            corrupted = true;
            Fault::Corrupt(5, 0x10)
        } else {
            Fault::Pass
        }
    });
    let mut sim = Sim::with_fault(config(), fault);
    let start = sim.now;
    let seq = sim.send_a(FrameType::WaveformCommit, b"checksum");
    // Zero-latency channel: the NAK came back and the frame was resent before any timer ran.
    assert_eq!(sim.now, start);
    assert!(
        sim.b_events
            .iter()
            .any(|e| matches!(e, LinkEvent::FrameError(_)))
    );
    assert_eq!(sim.b.stats().frame_errors, 1);
    assert_eq!(sim.b.stats().naks_sent, 1);
    let naks: Vec<_> = sim
        .b_sent
        .iter()
        .filter(|(_, f)| f.kind == FrameType::Nak)
        .collect();
    assert_eq!(naks.len(), 1);
    assert_eq!(naks[0].1.seq, seq, "NAK carries the expected seq");
    assert_eq!(
        delivered(&sim.b_events),
        vec![(FrameType::WaveformCommit, seq, b"checksum".to_vec())]
    );
    assert_eq!(acked(&sim.a_events), vec![seq]);
    assert_eq!(sim.a.stats().retransmissions, 1);
    assert_eq!(sim.a.stats().naks_received, 1);
}

#[test]
fn corrupted_frame_without_nak_is_recovered_by_timeout() {
    // Corrupt the first data frame and drop the NAK: the retransmission timer recovers.
    let mut corrupted = false;
    let fault: FaultFn = Box::new(move |dir, f| match (dir, f.kind) {
        (Dir::AtoB, FrameType::Play) if !corrupted => {
            corrupted = true;
            Fault::Corrupt(9, 0xFF)
        }
        (Dir::BtoA, FrameType::Nak) => Fault::Drop,
        _ => Fault::Pass,
    });
    let mut sim = Sim::with_fault(config(), fault);
    let seq = sim.send_a(FrameType::Play, b"x");
    assert!(delivered(&sim.b_events).is_empty());
    sim.run_for(RTO);
    assert_eq!(
        delivered(&sim.b_events),
        vec![(FrameType::Play, seq, b"x".to_vec())]
    );
    assert_eq!(acked(&sim.a_events), vec![seq]);
}

#[test]
fn bounded_retries_then_failed_and_next_frame_proceeds() {
    let fault: FaultFn = Box::new(|dir, f| {
        if dir == Dir::AtoB && f.kind == FrameType::WaveformBegin {
            Fault::Drop
        } else {
            Fault::Pass
        }
    });
    let mut sim = Sim::with_fault(config(), fault);
    let start = sim.now;
    let s0 = sim.send_a(FrameType::WaveformBegin, b"never");
    let s1 = sim.send_a(FrameType::Play, b"later");
    sim.run_for(RTO * 10);
    assert_eq!(
        count_kind(&sim.a_sent, FrameType::WaveformBegin),
        4,
        "1 + max_retries"
    );
    assert!(sim.a_events.contains(&LinkEvent::Failed {
        seq: s0,
        reason: FailReason::RetriesExhausted { transmissions: 4 }
    }));
    assert_eq!(failed(&sim.a_events), vec![s0]);
    assert_eq!(acked(&sim.a_events), vec![s1]);
    assert_eq!(sim.a.stats().failed, 1);
    // The gap is accepted: s1 is delivered in order.
    assert_eq!(
        delivered(&sim.b_events),
        vec![(FrameType::Play, s1, b"later".to_vec())]
    );
    let play_at = sim
        .a_sent
        .iter()
        .find(|(_, f)| f.kind == FrameType::Play)
        .unwrap()
        .0;
    assert_eq!(play_at - start, RTO * 4, "failed after the fourth timeout");
}

#[test]
fn silence_reports_peer_lost_once_and_a_frame_rearms_it() {
    let start = Instant::now();
    let mut a = Link::new(config(), start);
    let mut b = Link::new(config(), start);
    let mut now = start;
    let mut lost = Vec::new();
    while now < start + LINK_TIMEOUT * 3 {
        now = a.poll_timeout().unwrap();
        a.handle_timeout(now);
        while a.poll_transmit().is_some() {}
        while let Some(e) = a.poll_event() {
            lost.push((now, e));
        }
    }
    assert_eq!(lost, vec![(start + LINK_TIMEOUT, LinkEvent::PeerLost)]);
    // A heartbeat from the peer refreshes the timer; silence after it is reported again.
    b.handle_timeout(start + HEARTBEAT);
    let hb = b.poll_transmit().unwrap();
    assert_eq!(inspect(&hb).kind, FrameType::Heartbeat);
    a.handle_input(&hb, now);
    assert_eq!(a.poll_event(), None);
    a.handle_timeout(now + LINK_TIMEOUT - Duration::from_millis(1));
    assert!(std::iter::from_fn(|| a.poll_event()).all(|e| e != LinkEvent::PeerLost));
    a.handle_timeout(now + LINK_TIMEOUT);
    assert_eq!(a.poll_event(), Some(LinkEvent::PeerLost));
}

#[test]
fn heartbeats_on_an_idle_line_keep_the_peer_alive() {
    let mut sim = Sim::new(config());
    let start = sim.now;
    sim.run_for(LINK_TIMEOUT * 10);
    assert!(sim.a_events.is_empty(), "{:?}", sim.a_events);
    assert!(sim.b_events.is_empty(), "{:?}", sim.b_events);
    let hb: Vec<_> = sim.a_sent.iter().collect();
    assert_eq!(hb.len(), 30, "one heartbeat per interval over 15 s");
    for (i, (at, f)) in hb.iter().enumerate() {
        assert_eq!(
            (f.kind, f.flags, f.seq, f.payload.len()),
            (FrameType::Heartbeat, 0, 0, 0)
        );
        assert_eq!(*at - start, HEARTBEAT * (i as u32 + 1));
    }
    assert_eq!(sim.b.stats().heartbeats_sent, 30);
    // Traffic postpones the heartbeat: it is sent only after an idle interval.
    let before = sim.a.stats().heartbeats_sent;
    sim.run_for(HEARTBEAT / 2);
    sim.send_a(FrameType::Play, b"");
    sim.run_for(HEARTBEAT - Duration::from_millis(1));
    assert_eq!(sim.a.stats().heartbeats_sent, before);
    sim.run_for(Duration::from_millis(1));
    assert_eq!(sim.a.stats().heartbeats_sent, before + 1);
}

#[test]
fn heartbeats_are_disabled_by_a_zero_interval() {
    let cfg = LinkConfig {
        heartbeat_interval: Duration::ZERO,
        ..config()
    };
    let mut sim = Sim::new(cfg);
    sim.run_for(LINK_TIMEOUT * 2);
    assert!(sim.a_sent.is_empty());
    assert_eq!(sim.a_events, vec![LinkEvent::PeerLost]);
    assert_eq!(sim.b_events, vec![LinkEvent::PeerLost]);
}

#[test]
fn seq_wraps_around_at_u16_max() {
    let cfg = LinkConfig {
        initial_seq: u16::MAX - 2,
        ..config()
    };
    // Drop the ACK of seq 0 (just after the wrap) once, forcing a duplicate across the wrap.
    let mut dropped = false;
    let fault: FaultFn = Box::new(move |dir, f| {
        if dir == Dir::BtoA && f.kind == FrameType::Ack && f.seq == 0 && !dropped {
            dropped = true;
            Fault::Drop
        } else {
            Fault::Pass
        }
    });
    let mut sim = Sim::with_fault(cfg, fault);
    let seqs: Vec<u16> = (0u8..6)
        .map(|i| sim.send_a(FrameType::FidChunk, &[i]))
        .collect();
    assert_eq!(seqs, vec![u16::MAX - 2, u16::MAX - 1, u16::MAX, 0, 1, 2]);
    sim.run_for(RTO * 3);
    let got = delivered(&sim.b_events);
    assert_eq!(got.len(), 6);
    for ((kind, seq, payload), (i, s)) in got.into_iter().zip(seqs.iter().enumerate()) {
        assert_eq!(
            (kind, seq, payload),
            (FrameType::FidChunk, *s, vec![i as u8])
        );
    }
    assert_eq!(acked(&sim.a_events), seqs);
    assert_eq!(sim.b.stats().duplicates, 1);
}

#[test]
fn send_rejects_control_frames_oversize_payloads_and_a_full_queue() {
    let now = Instant::now();
    let mut link = Link::new(
        LinkConfig {
            max_queued: 2,
            ..config()
        },
        now,
    );
    for kind in [FrameType::Ack, FrameType::Nak, FrameType::Heartbeat] {
        assert_eq!(
            link.send(kind, vec![], now),
            Err(LinkError::NotReliable(kind))
        );
    }
    assert_eq!(
        link.send(FrameType::Play, vec![0; MAX_PAYLOAD_LEN + 1], now),
        Err(LinkError::PayloadTooLarge {
            len: MAX_PAYLOAD_LEN + 1,
            max: MAX_PAYLOAD_LEN
        })
    );
    assert_eq!(
        link.send(FrameType::Play, vec![0; MAX_PAYLOAD_LEN], now),
        Ok(0)
    );
    assert_eq!(link.send(FrameType::Play, vec![], now), Ok(1));
    assert_eq!(link.send(FrameType::Play, vec![], now), Ok(2));
    assert_eq!(
        link.send(FrameType::Play, vec![], now),
        Err(LinkError::QueueFull { max: 2 })
    );
    assert_eq!(link.unacked(), 3);
    // Only the frame in flight has been handed out.
    assert_eq!(inspect(&link.poll_transmit().unwrap()).seq, 0);
    assert_eq!(link.poll_transmit(), None);
}

/// xorshift64*: a deterministic fault pattern from a proptest seed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn chance(&mut self, percent: u32) -> bool {
        self.next() % 100 < u64::from(percent)
    }
}

/// Checks one direction: `sent` (seq, payload) by the sender, its events, the receiver's
/// events.
fn check_direction(sent: &[(u16, Vec<u8>)], sender: &[LinkEvent], receiver: &[LinkEvent]) {
    let acked = acked(sender);
    let failed = failed(sender);
    // Every frame is resolved exactly once, in send order.
    let mut resolved: Vec<u16> = sender
        .iter()
        .filter_map(|e| match e {
            LinkEvent::Acked { seq } | LinkEvent::Failed { seq, .. } => Some(*seq),
            _ => None,
        })
        .collect();
    let sent_seqs: Vec<u16> = sent.iter().map(|(s, _)| *s).collect();
    assert_eq!(
        resolved, sent_seqs,
        "each frame acked or failed once, in order"
    );
    resolved.clear();
    // Deliveries are a subsequence of the sent frames: in order, never twice.
    let got = delivered(receiver);
    let mut next = 0;
    for (kind, seq, payload) in &got {
        assert_eq!(*kind, FrameType::WaveformChunk);
        let pos = sent[next..]
            .iter()
            .position(|(s, p)| s == seq && p == payload)
            .unwrap_or_else(|| panic!("seq {seq} delivered twice, out of order or unknown"));
        next += pos + 1;
    }
    // Acked ⇒ delivered; not delivered ⇒ failed.
    for (seq, _) in sent {
        let was_delivered = got.iter().any(|(_, s, _)| s == seq);
        if acked.contains(seq) {
            assert!(was_delivered, "seq {seq} acked but not delivered");
        }
        if !was_delivered {
            assert!(
                failed.contains(seq),
                "seq {seq} neither delivered nor failed"
            );
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn random_loss_and_corruption_never_duplicate_or_reorder(
        seed in 1u64..,
        loss in 0u32..60,
        corruption in 0u32..30,
        a_count in 1usize..25,
        b_count in 0usize..10,
        initial_seq in prop_oneof![Just(0u16), Just(u16::MAX - 5), any::<u16>()],
    ) {
        let mut rng = Rng(seed);
        let fault: FaultFn = Box::new(move |_, _| {
            if rng.chance(loss) {
                Fault::Drop
            } else if rng.chance(corruption) {
                Fault::Corrupt(rng.next() as usize, rng.next() as u8)
            } else {
                Fault::Pass
            }
        });
        let cfg = LinkConfig { initial_seq, max_queued: 64, ..config() };
        let mut sim = Sim::with_fault(cfg, fault);
        let mut a_sent = Vec::new();
        let mut b_sent = Vec::new();
        for i in 0..a_count.max(b_count) {
            if i < a_count {
                let p = format!("a{i}").into_bytes();
                a_sent.push((sim.send_a(FrameType::WaveformChunk, &p), p));
            }
            if i < b_count {
                let p = format!("b{i}").into_bytes();
                b_sent.push((sim.send_b(FrameType::WaveformChunk, &p), p));
            }
            if i % 4 == 0 {
                sim.run_for(RTO / 2);
            }
        }
        // Enough time for every frame to exhaust its retries.
        let worst = RTO * 4 * (a_count.max(b_count) as u32 + 1);
        sim.run_for(worst);
        prop_assert_eq!(sim.a.unacked(), 0);
        prop_assert_eq!(sim.b.unacked(), 0);
        check_direction(&a_sent, &sim.a_events, &sim.b_events);
        check_direction(&b_sent, &sim.b_events, &sim.a_events);
        let errors = sim
            .a_events
            .iter()
            .chain(&sim.b_events)
            .filter(|e| matches!(e, LinkEvent::FrameError(_)))
            .count() as u64;
        prop_assert_eq!(errors, sim.a.stats().frame_errors + sim.b.stats().frame_errors);
    }

    #[test]
    fn arbitrary_input_never_panics(
        chunks in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..300), 0..8),
        steps in proptest::collection::vec(0u64..5_000, 0..8),
    ) {
        let start = Instant::now();
        let mut link = Link::new(config(), start);
        link.send(FrameType::Hello, b"hi".to_vec(), start).unwrap();
        for (i, chunk) in chunks.iter().enumerate() {
            let now = start + Duration::from_millis(steps.get(i).copied().unwrap_or(0));
            link.handle_input(chunk, now);
            link.handle_timeout(now);
            while link.poll_transmit().is_some() {}
            while link.poll_event().is_some() {}
            let _ = link.poll_timeout();
        }
    }
}

/// A restarted peer's fresh `HELLO` (sequence number 0) is delivered even though the receiver
/// expects a later sequence number; an identical retransmission of it is not.
#[test]
fn hello_resynchronises_a_stale_receiver() {
    let t0 = Instant::now();
    let mut rx = Link::new(config(), t0);
    let deliver = |rx: &mut Link, kind: FrameType, seq: u16, payload: Vec<u8>| {
        let frame = Frame {
            kind,
            flags: FLAG_RELIABLE,
            seq,
            payload,
        };
        rx.handle_input(&frame.encode().unwrap(), t0);
        let mut delivered = Vec::new();
        while let Some(e) = rx.poll_event() {
            if let LinkEvent::Delivered { kind, seq, .. } = e {
                delivered.push((kind, seq));
            }
        }
        delivered
    };
    for seq in 0..5 {
        assert_eq!(
            deliver(&mut rx, FrameType::Play, seq, vec![1]),
            [(FrameType::Play, seq)]
        );
    }
    // A PLAY with seq 0 now is a duplicate ...
    assert!(deliver(&mut rx, FrameType::Play, 0, vec![1]).is_empty());
    // ... but a HELLO with seq 0 resynchronises.
    assert_eq!(
        deliver(&mut rx, FrameType::Hello, 0, vec![9]),
        [(FrameType::Hello, 0)]
    );
    assert!(deliver(&mut rx, FrameType::Hello, 0, vec![9]).is_empty());
    assert_eq!(
        deliver(&mut rx, FrameType::Play, 1, vec![1]),
        [(FrameType::Play, 1)]
    );
    // A different HELLO (new nonce) with the same seq is a new one.
    assert_eq!(
        deliver(&mut rx, FrameType::Hello, 0, vec![10]),
        [(FrameType::Hello, 0)]
    );
    assert_eq!(rx.stats().duplicates, 2);
}
