//! The link layer: a sans-IO ARQ state machine ([`Link`]) on top of the framing layer, giving
//! sequence numbers, ACK/NAK, retransmission with a timeout and bounded retries, duplicate
//! detection and heartbeats.
//!
//! Like `quinn-proto`, a [`Link`] does no I/O and reads no clock: the caller feeds received
//! bytes with [`Link::handle_input`], queues frames with [`Link::send`], calls
//! [`Link::handle_timeout`] when the instant returned by [`Link::poll_timeout`] has passed,
//! writes every buffer returned by [`Link::poll_transmit`] to the port and handles every
//! [`LinkEvent`] returned by [`Link::poll_event`]. Poll both queues after every call. Time is a
//! [`std::time::Instant`] passed in by the caller, so tests can run on a virtual clock. No input
//! (bytes, frames, instants) makes a `Link` panic.
//!
//! # Semantics (protocol version 1)
//!
//! This section is the contract firmware implements. Each end runs one `Link`; the two
//! directions are independent (each end is a sender of its own sequence space and a receiver
//! of the peer's).
//!
//! * **Reliable and unreliable frames.** `HELLO`, `ERROR`, `WAVEFORM_BEGIN`, `WAVEFORM_CHUNK`,
//!   `WAVEFORM_COMMIT`, `PLAY`, `FID_CHUNK` and `FID_END` are *reliable* ([`is_reliable`]):
//!   they carry a sequence number, are acknowledged and retransmitted. `ACK`, `NAK` and
//!   `HEARTBEAT` are *unreliable* control frames: never acknowledged, never retransmitted.
//! * **Flags.** Bit 0 ([`FLAG_RELIABLE`], `0x01`) is set on every reliable frame and clear on
//!   control frames, so firmware can decide to acknowledge without a type table. This
//!   implementation classifies received frames by their type and ignores the flags; senders
//!   must leave the other bits clear, receivers must ignore them.
//! * **Sequence numbers.** Reliable frames are numbered consecutively (wrapping `u16`),
//!   starting at [`LinkConfig::initial_seq`] (0 unless configured; both ends must agree). A
//!   retransmission carries the same sequence number and payload.
//! * **Window 1 (stop-and-wait).** At most one reliable frame is unacknowledged at a time;
//!   further frames wait in the send queue (at most [`LinkConfig::max_queued`]). A larger window
//!   is a compatible later extension: the receiver rule below already accepts gaps.
//! * **Acknowledgement.** The receiver answers *every* valid reliable frame, duplicates
//!   included, with an `ACK` whose sequence number is the frame's and whose payload is empty.
//!   The sender ignores an `ACK` that does not match its unacknowledged frame (a stale one).
//! * **Delivery and duplicates.** The receiver keeps `expected`, the sequence number after the
//!   last delivered frame (initially `initial_seq`). A reliable frame with sequence number `s`
//!   is *new* if `s - expected` (wrapping) is below `0x8000`: it is delivered
//!   ([`LinkEvent::Delivered`]) and `expected` becomes `s + 1`. Otherwise it is a duplicate of a
//!   delivered frame: acknowledged again, not delivered. Gaps (frames the sender gave up on)
//!   are accepted, so delivery is in order and at most once.
//! * **HELLO resynchronises.** A restarted peer starts a new sequence space, which the rule
//!   above could mistake for duplicates. So a received `HELLO` is exempt from it: it is
//!   acknowledged, and delivered unless its sequence number *and* payload equal those of the
//!   last `HELLO` delivered (a retransmission); a delivered `HELLO` sets `expected` to its
//!   sequence number + 1. The application makes every `HELLO` it sends distinct (the session
//!   layer carries a fresh nonce in each, see [`app`](crate::app)).
//! * **Retransmission.** If no matching `ACK` arrives within
//!   [`LinkConfig::retransmit_timeout`] of a transmission, the frame is sent again, at most
//!   [`LinkConfig::max_retries`] times (so at most `1 + max_retries` transmissions). When the
//!   last one times out the sender reports [`LinkEvent::Failed`] and moves on to the next queued
//!   frame with the next sequence number. A failed frame may still have been delivered (only
//!   its ACKs were lost); a sender must treat `Failed` as "unknown", not "not delivered".
//! * **NAK.** When the receiver gets bytes that are not a valid frame (any
//!   [`FrameError`]) it reports [`LinkEvent::FrameError`] (counted, not fatal) and sends a
//!   `NAK` carrying `expected` with an empty payload. A sender whose unacknowledged frame has a
//!   sequence number at or after the NAK's (wrapping, i.e. the receiver does not have it yet)
//!   retransmits it at once; this counts as one of the `max_retries` retransmissions and
//!   restarts the retransmission timer. Other NAKs are ignored.
//! * **Heartbeat.** When this end has not transmitted any frame for
//!   [`LinkConfig::heartbeat_interval`] it sends a `HEARTBEAT` (sequence number 0, empty
//!   payload; receivers ignore both).
//! * **Peer liveness.** Any valid frame from the peer (of any type) refreshes the peer-alive
//!   timer. When no valid frame has arrived for [`LinkConfig::link_timeout`] the link reports
//!   [`LinkEvent::PeerLost`] once; the next valid frame re-arms the report. Retransmissions go
//!   on regardless: `PeerLost` is advice for the application, which may drop the link.
//! * **Restart.** A `Link` has no connection handshake. When either end restarts, both ends
//!   create fresh `Link`s (e.g. on reopening the port, before the `HELLO` exchange).
//!
//! A zero [`LinkConfig::heartbeat_interval`] disables heartbeats and a zero
//! [`LinkConfig::link_timeout`] disables [`LinkEvent::PeerLost`].
//!
//! # Example
//!
//! Two links back to back, bytes moved by hand:
//!
//! ```
//! use std::time::Instant;
//! use spinloop_firmware::FrameType;
//! use spinloop_firmware::link::{Link, LinkConfig, LinkEvent};
//!
//! let now = Instant::now();
//! let mut host = Link::new(LinkConfig::default(), now);
//! let mut device = Link::new(LinkConfig::default(), now);
//!
//! let seq = host.send(FrameType::Play, vec![7], now).unwrap();
//! while let Some(bytes) = host.poll_transmit() {
//!     device.handle_input(&bytes, now); // in real life: write to the port
//! }
//! assert_eq!(
//!     device.poll_event(),
//!     Some(LinkEvent::Delivered { kind: FrameType::Play, seq, payload: vec![7] })
//! );
//! while let Some(bytes) = device.poll_transmit() {
//!     host.handle_input(&bytes, now); // the ACK
//! }
//! assert_eq!(host.poll_event(), Some(LinkEvent::Acked { seq }));
//! assert!(host.poll_timeout().is_some()); // heartbeat and peer-alive timers
//! ```

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use thiserror::Error;

use crate::frame::{Decoder, Frame, FrameError, FrameType, MAX_PAYLOAD_LEN};

/// Flags bit 0: set on reliable frames (those that are acknowledged and retransmitted).
pub const FLAG_RELIABLE: u8 = 0x01;

/// Whether frames of this type are reliable (sequenced, acknowledged, retransmitted). `ACK`,
/// `NAK` and `HEARTBEAT` are not; every other type is.
pub const fn is_reliable(kind: FrameType) -> bool {
    !matches!(kind, FrameType::Ack | FrameType::Nak | FrameType::Heartbeat)
}

/// Link timing and limits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LinkConfig {
    /// Time to wait for an `ACK` before retransmitting.
    pub retransmit_timeout: Duration,
    /// Retransmissions of one frame before it is reported [`LinkEvent::Failed`].
    pub max_retries: u32,
    /// Idle time after which a `HEARTBEAT` is sent; zero disables heartbeats.
    pub heartbeat_interval: Duration,
    /// Silence from the peer after which [`LinkEvent::PeerLost`] is reported; zero disables it.
    pub link_timeout: Duration,
    /// Sequence number of the first reliable frame in each direction.
    pub initial_seq: u16,
    /// Most reliable frames that may wait in the send queue (excluding the one in flight);
    /// [`Link::send`] fails with [`LinkError::QueueFull`] beyond it.
    pub max_queued: usize,
}

impl Default for LinkConfig {
    /// 200 ms retransmit timeout, 5 retries, 1 s heartbeat, 3 s link timeout, sequence numbers
    /// from 0, 64 queued frames.
    fn default() -> Self {
        Self {
            retransmit_timeout: Duration::from_millis(200),
            max_retries: 5,
            heartbeat_interval: Duration::from_secs(1),
            link_timeout: Duration::from_secs(3),
            initial_seq: 0,
            max_queued: 64,
        }
    }
}

/// Why [`Link::send`] refused a frame.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum LinkError {
    /// `ACK`, `NAK` and `HEARTBEAT` are generated by the link itself.
    #[error("{0:?} frames are link control frames and cannot be sent by the application")]
    NotReliable(FrameType),
    /// The payload exceeds [`MAX_PAYLOAD_LEN`].
    #[error("payload of {len} bytes exceeds the maximum of {max} bytes")]
    PayloadTooLarge {
        /// The payload length.
        len: usize,
        /// The maximum ([`MAX_PAYLOAD_LEN`]).
        max: usize,
    },
    /// [`LinkConfig::max_queued`] frames are already waiting.
    #[error("send queue full ({max} frames waiting)")]
    QueueFull {
        /// The limit ([`LinkConfig::max_queued`]).
        max: usize,
    },
}

/// Why a reliable frame was given up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailReason {
    /// No `ACK` after the first transmission and [`LinkConfig::max_retries`] retransmissions.
    RetriesExhausted {
        /// Transmissions made (`1 + max_retries`).
        transmissions: u32,
    },
}

/// Something the application must know about, from [`Link::poll_event`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LinkEvent {
    /// A new reliable frame from the peer, in order, delivered once.
    Delivered {
        /// Frame type.
        kind: FrameType,
        /// Its sequence number.
        seq: u16,
        /// Its payload.
        payload: Vec<u8>,
    },
    /// The peer acknowledged our reliable frame `seq`.
    Acked {
        /// Sequence number returned by [`Link::send`].
        seq: u16,
    },
    /// Our reliable frame `seq` was given up; it may or may not have been delivered.
    Failed {
        /// Sequence number returned by [`Link::send`].
        seq: u16,
        /// Why.
        reason: FailReason,
    },
    /// No valid frame from the peer for [`LinkConfig::link_timeout`].
    PeerLost,
    /// Received bytes were not a valid frame; they were dropped (and a `NAK` sent).
    FrameError(FrameError),
}

/// Counters, for diagnostics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LinkStats {
    /// Frames queued for transmission, of any type, retransmissions included.
    pub frames_sent: u64,
    /// Retransmissions (on timeout or NAK).
    pub retransmissions: u64,
    /// Valid frames received, of any type.
    pub frames_received: u64,
    /// Received blocks rejected by the decoder.
    pub frame_errors: u64,
    /// Duplicate reliable frames received (re-acknowledged, not delivered).
    pub duplicates: u64,
    /// `NAK`s sent.
    pub naks_sent: u64,
    /// `NAK`s received.
    pub naks_received: u64,
    /// `HEARTBEAT`s sent.
    pub heartbeats_sent: u64,
    /// Reliable frames given up.
    pub failed: u64,
}

/// A queued reliable frame: its sequence number and wire bytes.
#[derive(Debug, Clone)]
struct Outgoing {
    seq: u16,
    wire: Vec<u8>,
}

/// The unacknowledged frame.
#[derive(Debug, Clone)]
struct InFlight {
    frame: Outgoing,
    /// Retransmissions so far.
    retries: u32,
    /// When to retransmit (or give up).
    deadline: Instant,
}

/// The ARQ link state machine for one end of a serial link. See the [module docs](self).
#[derive(Debug, Clone)]
pub struct Link {
    config: LinkConfig,
    decoder: Decoder,
    /// Sequence number for the next frame given to `send`.
    next_seq: u16,
    /// Reliable frames waiting for the one in flight.
    queue: VecDeque<Outgoing>,
    in_flight: Option<InFlight>,
    /// Receiver: sequence number after the last delivered frame.
    expected: u16,
    /// Wire buffers waiting for `poll_transmit`.
    transmit: VecDeque<Vec<u8>>,
    events: VecDeque<LinkEvent>,
    last_tx: Instant,
    last_rx: Instant,
    peer_lost_reported: bool,
    /// Receiver: sequence number and payload of the last delivered `HELLO`.
    last_hello: Option<(u16, Vec<u8>)>,
    stats: LinkStats,
}

impl Link {
    /// A link created at `now` (the peer-alive and heartbeat timers start there).
    pub fn new(config: LinkConfig, now: Instant) -> Self {
        Self {
            next_seq: config.initial_seq,
            expected: config.initial_seq,
            config,
            decoder: Decoder::new(),
            queue: VecDeque::new(),
            in_flight: None,
            transmit: VecDeque::new(),
            events: VecDeque::new(),
            last_tx: now,
            last_rx: now,
            peer_lost_reported: false,
            last_hello: None,
            stats: LinkStats::default(),
        }
    }

    /// The configuration.
    pub fn config(&self) -> &LinkConfig {
        &self.config
    }

    /// Counters.
    pub fn stats(&self) -> LinkStats {
        self.stats
    }

    /// Reliable frames not yet acknowledged or failed (in flight and queued).
    pub fn unacked(&self) -> usize {
        self.queue.len() + usize::from(self.in_flight.is_some())
    }

    /// Queues a reliable frame and returns its sequence number. It is transmitted once every
    /// earlier frame has been acknowledged or failed; its outcome is reported as
    /// [`LinkEvent::Acked`] or [`LinkEvent::Failed`] with that sequence number.
    pub fn send(
        &mut self,
        kind: FrameType,
        payload: Vec<u8>,
        now: Instant,
    ) -> Result<u16, LinkError> {
        if !is_reliable(kind) {
            return Err(LinkError::NotReliable(kind));
        }
        if payload.len() > MAX_PAYLOAD_LEN {
            return Err(LinkError::PayloadTooLarge {
                len: payload.len(),
                max: MAX_PAYLOAD_LEN,
            });
        }
        if self.in_flight.is_some() && self.queue.len() >= self.config.max_queued {
            return Err(LinkError::QueueFull {
                max: self.config.max_queued,
            });
        }
        let seq = self.next_seq;
        let frame = Frame {
            kind,
            flags: FLAG_RELIABLE,
            seq,
            payload,
        };
        let wire = frame.encode().map_err(|_| LinkError::PayloadTooLarge {
            len: frame.payload.len(),
            max: MAX_PAYLOAD_LEN,
        })?;
        self.next_seq = seq.wrapping_add(1);
        self.queue.push_back(Outgoing { seq, wire });
        self.start_next(now);
        Ok(seq)
    }

    /// Feeds bytes received from the port (any split, any content).
    pub fn handle_input(&mut self, bytes: &[u8], now: Instant) {
        self.decoder.push(bytes);
        while let Some(result) = self.decoder.poll() {
            match result {
                Ok(frame) => self.handle_frame(frame, now),
                Err(error) => {
                    self.stats.frame_errors += 1;
                    self.events.push_back(LinkEvent::FrameError(error));
                    self.stats.naks_sent += 1;
                    self.queue_control(FrameType::Nak, self.expected, now);
                }
            }
        }
        self.start_next(now);
    }

    fn handle_frame(&mut self, frame: Frame, now: Instant) {
        self.stats.frames_received += 1;
        self.last_rx = now;
        self.peer_lost_reported = false;
        match frame.kind {
            FrameType::Ack => {
                if self
                    .in_flight
                    .as_ref()
                    .is_some_and(|f| f.frame.seq == frame.seq)
                {
                    self.in_flight = None;
                    self.events.push_back(LinkEvent::Acked { seq: frame.seq });
                }
            }
            FrameType::Nak => {
                self.stats.naks_received += 1;
                let max_retries = self.config.max_retries;
                let rto = self.config.retransmit_timeout;
                if let Some(f) = self.in_flight.as_mut() {
                    let missing = f.frame.seq.wrapping_sub(frame.seq) < 0x8000;
                    if missing && f.retries < max_retries {
                        f.retries += 1;
                        f.deadline = now.checked_add(rto).unwrap_or(now);
                        let wire = f.frame.wire.clone();
                        self.stats.retransmissions += 1;
                        self.queue_wire(wire, now);
                    }
                }
            }
            FrameType::Heartbeat => {}
            FrameType::Hello => {
                self.queue_control(FrameType::Ack, frame.seq, now);
                let repeat = self
                    .last_hello
                    .as_ref()
                    .is_some_and(|(seq, payload)| *seq == frame.seq && *payload == frame.payload);
                if repeat {
                    self.stats.duplicates += 1;
                } else {
                    self.expected = frame.seq.wrapping_add(1);
                    self.last_hello = Some((frame.seq, frame.payload.clone()));
                    self.events.push_back(LinkEvent::Delivered {
                        kind: FrameType::Hello,
                        seq: frame.seq,
                        payload: frame.payload,
                    });
                }
            }
            kind => {
                self.queue_control(FrameType::Ack, frame.seq, now);
                if frame.seq.wrapping_sub(self.expected) < 0x8000 {
                    self.expected = frame.seq.wrapping_add(1);
                    self.events.push_back(LinkEvent::Delivered {
                        kind,
                        seq: frame.seq,
                        payload: frame.payload,
                    });
                } else {
                    self.stats.duplicates += 1;
                }
            }
        }
    }

    /// Runs the timers: retransmission or failure of the frame in flight, heartbeat, peer
    /// liveness. Call when [`poll_timeout`](Link::poll_timeout) has passed (calling earlier or
    /// more often is harmless).
    pub fn handle_timeout(&mut self, now: Instant) {
        let rto = self.config.retransmit_timeout;
        if let Some(f) = self.in_flight.as_mut()
            && now >= f.deadline
        {
            if f.retries < self.config.max_retries {
                f.retries += 1;
                f.deadline = now.checked_add(rto).unwrap_or(now);
                let wire = f.frame.wire.clone();
                self.stats.retransmissions += 1;
                self.queue_wire(wire, now);
            } else {
                let seq = f.frame.seq;
                let transmissions = f.retries.saturating_add(1);
                self.in_flight = None;
                self.stats.failed += 1;
                self.events.push_back(LinkEvent::Failed {
                    seq,
                    reason: FailReason::RetriesExhausted { transmissions },
                });
            }
        }
        self.start_next(now);
        if let Some(at) = self.heartbeat_at()
            && now >= at
        {
            self.stats.heartbeats_sent += 1;
            self.queue_control(FrameType::Heartbeat, 0, now);
        }
        if let Some(at) = self.peer_lost_at()
            && now >= at
        {
            self.peer_lost_reported = true;
            self.events.push_back(LinkEvent::PeerLost);
        }
    }

    /// The next encoded frame (COBS-stuffed, with its delimiter) to write to the port.
    pub fn poll_transmit(&mut self) -> Option<Vec<u8>> {
        self.transmit.pop_front()
    }

    /// The next event.
    pub fn poll_event(&mut self) -> Option<LinkEvent> {
        self.events.pop_front()
    }

    /// When [`handle_timeout`](Link::handle_timeout) must next be called; `None` if no timer
    /// is armed.
    pub fn poll_timeout(&self) -> Option<Instant> {
        [
            self.in_flight.as_ref().map(|f| f.deadline),
            self.heartbeat_at(),
            self.peer_lost_at(),
        ]
        .into_iter()
        .flatten()
        .min()
    }

    fn heartbeat_at(&self) -> Option<Instant> {
        if self.config.heartbeat_interval.is_zero() {
            return None;
        }
        self.last_tx.checked_add(self.config.heartbeat_interval)
    }

    fn peer_lost_at(&self) -> Option<Instant> {
        if self.config.link_timeout.is_zero() || self.peer_lost_reported {
            return None;
        }
        self.last_rx.checked_add(self.config.link_timeout)
    }

    /// Puts the next queued frame in flight if none is.
    fn start_next(&mut self, now: Instant) {
        if self.in_flight.is_some() {
            return;
        }
        if let Some(frame) = self.queue.pop_front() {
            self.queue_wire(frame.wire.clone(), now);
            self.in_flight = Some(InFlight {
                frame,
                retries: 0,
                deadline: now
                    .checked_add(self.config.retransmit_timeout)
                    .unwrap_or(now),
            });
        }
    }

    fn queue_control(&mut self, kind: FrameType, seq: u16, now: Instant) {
        if let Ok(wire) = Frame::new(kind, seq, Vec::new()).encode() {
            self.queue_wire(wire, now);
        }
    }

    fn queue_wire(&mut self, wire: Vec<u8>, now: Instant) {
        self.stats.frames_sent += 1;
        self.last_tx = now;
        self.transmit.push_back(wire);
    }
}
