//! Sans-IO application sessions on top of [`Link`]: [`HostSession`] (the daemon's end) and
//! [`DeviceSession`] (the firmware's end, used by simulated consoles and tests). They own the
//! `HELLO` exchange, chunked waveform upload and its validation, `PLAY`, FID transfer and
//! reassembly, FID retention until `FID_STORED`, and recovery after a lost link.
//!
//! Like [`Link`], a session does no I/O and reads no clock. Drive it the same way: feed received
//! bytes with `handle_input(bytes, now)`, call `handle_timeout(now)` once the instant from
//! `poll_timeout()` has passed, write every buffer from `poll_transmit()` to the port and handle
//! every event from `poll_event()`; poll both after every call. No input makes a session panic.
//!
//! # Behaviour
//!
//! * **Connect.** A new [`HostSession`] sends `HELLO` at once (fresh nonce) and reports
//!   [`HostEvent::Connected`] when the device's `HELLO` arrives. Without an answer within
//!   [`HostConfig::hello_timeout`] (or when the `HELLO` frame fails) it starts over with a fresh
//!   link and a new nonce, forever.
//! * **Loss.** When a connected host's link fails (a frame exhausts its retries), the peer falls
//!   silent ([`LinkEvent::PeerLost`]), or the device shows it has no session (an unsolicited
//!   `HELLO` or `ERROR` "no session", e.g. after a reboot), the host
//!   reports [`HostEvent::LinkLost`], reports every upload awaiting its `WAVEFORM_STATUS` as
//!   [`HostEvent::UploadFailed`] and every `PLAY` whose FID has not arrived as
//!   [`HostEvent::AcquisitionInterrupted`], and reconnects as above. [`HostSession::reconnect`]
//!   does the same on demand (the serial driver calls it after reopening the port).
//! * **Upload.** [`HostSession::upload`] queues `WAVEFORM_BEGIN`, the chunks and
//!   `WAVEFORM_COMMIT`; the device answers `WAVEFORM_STATUS`, reported as
//!   [`HostEvent::WaveformCommitted`] or [`HostEvent::WaveformRejected`]. Retrying a failed
//!   upload under the same id is safe (a commit replaces the waveform).
//! * **Play and FIDs.** [`HostSession::play`] sends `PLAY`; the device application is asked
//!   with [`DeviceEvent::PlayRequested`] and answers [`DeviceSession::complete_acquisition`];
//!   the device sends the FID's chunks and `FID_END` and *retains* the FID. The host checks
//!   offsets, the point count and the CRC and reports [`HostEvent::Fid`] once per acquisition id
//!   (later copies are dropped). The caller calls [`HostSession::fid_stored`] once the FID is
//!   durable; the device then forgets it. After every new `HELLO` the device re-sends all FIDs
//!   it retains, so an FID in flight or acquired during a disconnect arrives after the
//!   reconnect. Re-issuing a `PLAY` for an acquisition id the device has acquired or is
//!   acquiring does not acquire again (a retained FID is re-sent), so a caller that got
//!   [`HostEvent::AcquisitionInterrupted`] can simply re-issue the same `PLAY`.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use num_complex::Complex32;
use thiserror::Error;

use crate::app::{
    self, APP_VERSION, Capabilities, Chunk, ErrorReport, FORMAT_COMPLEX_F32_HZ, FidEnd, Hello,
    MAX_CONSOLE_ID_LEN, Message, MessageError, Play, RejectReason, Role, WaveformBegin,
    WaveformCommit, WaveformStatus, error_code, samples_crc,
};
use crate::frame::FrameType;
use crate::link::{Link, LinkConfig, LinkEvent};

/// Reliable frames a session keeps in its [`Link`] at once (one in flight, one queued); the
/// rest wait in the session's own queue, which is unbounded.
const LINK_WINDOW: usize = 2;

/// Why a session refused a request.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum SessionError {
    /// No session with the peer is established.
    #[error("not connected")]
    NotConnected,
    /// A waveform needs at least one sample.
    #[error("empty waveform")]
    EmptyWaveform,
    /// The waveform has more samples than the device accepts.
    #[error("waveform of {len} samples exceeds the device maximum of {max}")]
    WaveformTooLong {
        /// Samples given.
        len: usize,
        /// The device's [`Capabilities::max_waveform_samples`].
        max: u32,
    },
    /// An upload with this id is still waiting for the device's answer.
    #[error("waveform {waveform_id} is already being uploaded")]
    UploadInProgress {
        /// The id.
        waveform_id: u32,
    },
    /// `PLAY` needs at least one average.
    #[error("averages must be at least 1")]
    ZeroAverages,
    /// [`DeviceSession::complete_acquisition`] for an acquisition that was not requested.
    #[error("acquisition {acquisition_id} was not requested or is already complete")]
    UnknownAcquisition {
        /// The id.
        acquisition_id: u32,
    },
    /// FID points must be finite, at least one, and fewer than 2³².
    #[error("invalid FID points: {0}")]
    InvalidPoints(&'static str),
    /// A message could not be encoded.
    #[error(transparent)]
    Message(#[from] MessageError),
}

/// A received frame the session could not use.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ProtocolError {
    /// Its payload did not decode.
    #[error("malformed {kind:?} payload: {error}")]
    Malformed {
        /// Frame type.
        kind: FrameType,
        /// Why.
        error: MessageError,
    },
    /// A frame type this end does not accept (wrong direction).
    #[error("unexpected {0:?} frame")]
    Unexpected(FrameType),
    /// A `HELLO` from the wrong role or of another protocol version.
    #[error("incompatible HELLO: {0}")]
    BadHello(String),
}

/// Why a received FID was discarded.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum FidError {
    /// A chunk did not continue where the previous one ended.
    #[error("chunk at point offset {found}, expected {expected}")]
    OffsetMismatch {
        /// The next offset expected.
        expected: u32,
        /// The chunk's offset.
        found: u32,
    },
    /// `FID_END` declares another point count than the chunks carried.
    #[error("FID_END declares {declared} points, chunks carried {received}")]
    CountMismatch {
        /// From `FID_END`.
        declared: u32,
        /// Received.
        received: usize,
    },
    /// CRC-32C of the points differs from `FID_END`'s.
    #[error("FID checksum mismatch: declared {declared:#010x}, computed {computed:#010x}")]
    ChecksumMismatch {
        /// From `FID_END`.
        declared: u32,
        /// Over the received points.
        computed: u32,
    },
    /// More points than [`HostConfig::max_fid_points`].
    #[error("FID exceeds {max} points")]
    TooLong {
        /// The limit.
        max: u32,
    },
}

/// What the device said about itself in its `HELLO`.
#[derive(Debug, Clone, PartialEq)]
pub struct DeviceHello {
    /// Application protocol version.
    pub protocol_version: u8,
    /// The console id.
    pub console_id: String,
    /// Capabilities.
    pub capabilities: Capabilities,
}

/// A complete, verified FID.
#[derive(Debug, Clone, PartialEq)]
pub struct Fid {
    /// Acquisition id given to [`HostSession::play`].
    pub acquisition_id: u32,
    /// Waveform played.
    pub waveform_id: u32,
    /// Complex points.
    pub points: Vec<Complex32>,
    /// Dwell time in ns.
    pub dwell_ns: u32,
    /// Device timestamp, µs.
    pub timestamp_us: u64,
}

/// Events of a [`HostSession`].
#[derive(Debug, Clone, PartialEq)]
pub enum HostEvent {
    /// The device answered our `HELLO`; a session is established.
    Connected(DeviceHello),
    /// The device committed waveform `waveform_id`.
    WaveformCommitted {
        /// The id.
        waveform_id: u32,
    },
    /// The device rejected waveform `waveform_id`.
    WaveformRejected {
        /// The id.
        waveform_id: u32,
        /// Why.
        reason: RejectReason,
    },
    /// The link was lost before the device answered this upload; upload it again.
    UploadFailed {
        /// The id.
        waveform_id: u32,
    },
    /// A verified FID, reported once per acquisition id.
    Fid(Fid),
    /// An FID arrived damaged and was dropped; the device re-sends it after the next `HELLO`.
    FidRejected {
        /// Acquisition id.
        acquisition_id: u32,
        /// Why.
        reason: FidError,
    },
    /// The link was lost before this acquisition's FID arrived. It may still arrive after the
    /// reconnect; re-issuing the same `PLAY` is safe and makes sure.
    AcquisitionInterrupted {
        /// Acquisition id.
        acquisition_id: u32,
    },
    /// The device sent `ERROR`.
    DeviceError(ErrorReport),
    /// The established session was lost; the host is reconnecting.
    LinkLost,
    /// A frame from the device could not be used (it was dropped).
    ProtocolError(ProtocolError),
    /// A command given to a serial [`HostDriver`](crate::serial::HostDriver) was refused by
    /// the session (the sans-IO methods return the error directly instead).
    RequestRejected {
        /// What was asked.
        request: HostRequest,
        /// Why it was refused.
        error: SessionError,
    },
}

/// A host request, as named in [`HostEvent::RequestRejected`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HostRequest {
    /// [`HostSession::upload`].
    Upload {
        /// Waveform id.
        waveform_id: u32,
    },
    /// [`HostSession::play`].
    Play {
        /// Waveform id.
        waveform_id: u32,
        /// Acquisition id.
        acquisition_id: u32,
    },
    /// [`HostSession::fid_stored`].
    FidStored {
        /// Acquisition id.
        acquisition_id: u32,
    },
}

/// [`HostSession`] settings.
#[derive(Debug, Clone, PartialEq)]
pub struct HostConfig {
    /// Link timing.
    pub link: LinkConfig,
    /// Id sent in the host `HELLO` (at most 64 UTF-8 bytes; longer is truncated).
    pub host_id: String,
    /// First `HELLO` nonce minus one; each `HELLO` uses the next value. Pick it so that a
    /// restarted host does not repeat its previous nonces (e.g. from the clock).
    pub nonce_seed: u32,
    /// Time without the device's `HELLO` after which the host starts over.
    pub hello_timeout: Duration,
    /// Largest FID accepted, in points.
    pub max_fid_points: u32,
}

impl Default for HostConfig {
    /// Default link, id `"spinloopd"`, nonce seed 0, 2 s `HELLO` timeout, 1 Mi points.
    fn default() -> Self {
        Self {
            link: LinkConfig::default(),
            host_id: "spinloopd".into(),
            nonce_seed: 0,
            hello_timeout: Duration::from_secs(2),
            max_fid_points: 1 << 20,
        }
    }
}

/// Outgoing side shared by both sessions: the link, a session-level queue of reliable frames
/// fed into the link [`LINK_WINDOW`] at a time, and the wire buffers.
#[derive(Debug)]
struct Wire {
    config: LinkConfig,
    link: Link,
    outbox: VecDeque<(FrameType, Vec<u8>)>,
    transmit: VecDeque<Vec<u8>>,
}

impl Wire {
    fn new(config: LinkConfig, now: Instant) -> Self {
        Self {
            link: Link::new(config.clone(), now),
            config,
            outbox: VecDeque::new(),
            transmit: VecDeque::new(),
        }
    }

    /// Replaces the link with a fresh one (keeping what the old one already wrote) and drops
    /// the queued frames.
    fn restart(&mut self, now: Instant) {
        self.drain();
        self.link = Link::new(self.config.clone(), now);
        self.outbox.clear();
    }

    fn queue(&mut self, message: &Message) -> Result<(), MessageError> {
        let payload = message.encode()?;
        self.outbox.push_back((message.frame_type(), payload));
        Ok(())
    }

    fn pump(&mut self, now: Instant) {
        while self.link.unacked() < LINK_WINDOW {
            let Some((kind, payload)) = self.outbox.pop_front() else {
                break;
            };
            // Cannot fail: application kinds are reliable and payloads were size-checked on
            // encoding, and the window is far below the link's queue limit.
            let _ = self.link.send(kind, payload, now);
        }
        self.drain();
    }

    fn drain(&mut self) {
        while let Some(bytes) = self.link.poll_transmit() {
            self.transmit.push_back(bytes);
        }
    }
}

/// Link-level happenings a session reacts to.
enum Incoming {
    Message(FrameType, Result<Message, MessageError>, Vec<u8>),
    Broken,
}

fn incoming(link: &mut Link) -> Vec<Incoming> {
    let mut out = Vec::new();
    while let Some(event) = link.poll_event() {
        match event {
            LinkEvent::Delivered { kind, payload, .. } => {
                let decoded = Message::decode(kind, &payload);
                out.push(Incoming::Message(kind, decoded, payload));
            }
            LinkEvent::Failed { .. } | LinkEvent::PeerLost => out.push(Incoming::Broken),
            LinkEvent::Acked { .. } | LinkEvent::FrameError(_) => {}
        }
    }
    out
}

fn truncate_id(id: &str) -> String {
    let mut end = id.len().min(MAX_CONSOLE_ID_LEN);
    while !id.is_char_boundary(end) {
        end -= 1;
    }
    id[..end].to_owned()
}

#[derive(Debug)]
enum Assembly {
    Receiving(Vec<Complex32>),
    Broken(FidError),
}

#[derive(Debug)]
enum HostState {
    Connecting { since: Instant },
    Connected(DeviceHello),
}

/// The daemon's end of a console session. See the [module docs](self).
#[derive(Debug)]
pub struct HostSession {
    config: HostConfig,
    wire: Wire,
    state: HostState,
    nonce: u32,
    events: VecDeque<HostEvent>,
    /// Uploads waiting for `WAVEFORM_STATUS`.
    uploads: BTreeSet<u32>,
    /// Acquisitions played whose FID has not arrived.
    plays: BTreeSet<u32>,
    assembling: BTreeMap<u32, Assembly>,
    /// Acquisition ids already reported as [`HostEvent::Fid`].
    delivered: BTreeSet<u32>,
    /// Acquisition ids the caller confirmed stored.
    stored: BTreeSet<u32>,
}

impl HostSession {
    /// A session created at `now`; its first `HELLO` is queued at once.
    pub fn new(config: HostConfig, now: Instant) -> Self {
        let mut session = Self {
            wire: Wire::new(config.link.clone(), now),
            nonce: config.nonce_seed,
            config,
            state: HostState::Connecting { since: now },
            events: VecDeque::new(),
            uploads: BTreeSet::new(),
            plays: BTreeSet::new(),
            assembling: BTreeMap::new(),
            delivered: BTreeSet::new(),
            stored: BTreeSet::new(),
        };
        session.send_hello(now);
        session
    }

    /// The device's `HELLO` while connected.
    pub fn device(&self) -> Option<&DeviceHello> {
        match &self.state {
            HostState::Connected(d) => Some(d),
            HostState::Connecting { .. } => None,
        }
    }

    /// Whether a session with the device is established.
    pub fn is_connected(&self) -> bool {
        self.device().is_some()
    }

    /// Link counters.
    pub fn link_stats(&self) -> crate::link::LinkStats {
        self.wire.link.stats()
    }

    /// Queues [`HostEvent::RequestRejected`] (used by the serial driver).
    pub(crate) fn report_rejected(&mut self, request: HostRequest, error: SessionError) {
        self.events
            .push_back(HostEvent::RequestRejected { request, error });
    }

    /// Drops the link state and starts over with a fresh `HELLO`, as after a lost link
    /// (reporting [`HostEvent::LinkLost`] etc. if a session was established). Call after
    /// reopening the port.
    pub fn reconnect(&mut self, now: Instant) {
        self.link_down();
        self.send_hello(now);
    }

    /// Uploads waveform `waveform_id` (B1 in Hz, the device's RF sample interval). The outcome
    /// is reported as [`HostEvent::WaveformCommitted`], [`HostEvent::WaveformRejected`] or
    /// [`HostEvent::UploadFailed`].
    pub fn upload(
        &mut self,
        waveform_id: u32,
        samples: &[Complex32],
        now: Instant,
    ) -> Result<(), SessionError> {
        let HostState::Connected(device) = &self.state else {
            return Err(SessionError::NotConnected);
        };
        if samples.is_empty() {
            return Err(SessionError::EmptyWaveform);
        }
        let max = device.capabilities.max_waveform_samples;
        let count = u32::try_from(samples.len())
            .ok()
            .filter(|&n| n <= max)
            .ok_or(SessionError::WaveformTooLong {
                len: samples.len(),
                max,
            })?;
        if self.uploads.contains(&waveform_id) {
            return Err(SessionError::UploadInProgress { waveform_id });
        }
        let mut messages = vec![Message::WaveformBegin(WaveformBegin {
            waveform_id,
            sample_count: count,
            sample_dt_ns: device.capabilities.rf_dt_ns,
            format: FORMAT_COMPLEX_F32_HZ,
        })];
        messages.extend(app::chunks(waveform_id, samples).map(Message::WaveformChunk));
        messages.push(Message::WaveformCommit(WaveformCommit {
            waveform_id,
            crc: samples_crc(samples),
            sample_count: count,
        }));
        let mut payloads = Vec::with_capacity(messages.len());
        for m in &messages {
            payloads.push((m.frame_type(), m.encode()?));
        }
        self.wire.outbox.extend(payloads);
        self.uploads.insert(waveform_id);
        self.wire.pump(now);
        Ok(())
    }

    /// Asks the device to play a committed waveform and acquire `acquisition_id`.
    pub fn play(
        &mut self,
        waveform_id: u32,
        acquisition_id: u32,
        averages: u32,
        now: Instant,
    ) -> Result<(), SessionError> {
        if !self.is_connected() {
            return Err(SessionError::NotConnected);
        }
        if averages == 0 {
            return Err(SessionError::ZeroAverages);
        }
        self.wire.queue(&Message::Play(Play {
            waveform_id,
            acquisition_id,
            averages,
        }))?;
        self.plays.insert(acquisition_id);
        self.wire.pump(now);
        Ok(())
    }

    /// Tells the device that FID `acquisition_id` is durably stored. Call only once it is.
    /// Remembered: if the device re-sends that FID later, the host confirms again by itself.
    pub fn fid_stored(&mut self, acquisition_id: u32, now: Instant) -> Result<(), SessionError> {
        self.stored.insert(acquisition_id);
        if self.is_connected() {
            self.wire.queue(&Message::FidStored { acquisition_id })?;
            self.wire.pump(now);
        }
        Ok(())
    }

    /// Feeds bytes received from the port.
    pub fn handle_input(&mut self, bytes: &[u8], now: Instant) {
        self.wire.link.handle_input(bytes, now);
        self.process(now);
    }

    /// Runs the timers; call when [`poll_timeout`](Self::poll_timeout) has passed.
    pub fn handle_timeout(&mut self, now: Instant) {
        self.wire.link.handle_timeout(now);
        self.process(now);
        if let Some(at) = self.hello_deadline()
            && now >= at
        {
            self.send_hello(now);
        }
    }

    /// The next buffer to write to the port.
    pub fn poll_transmit(&mut self) -> Option<Vec<u8>> {
        self.wire.drain();
        self.wire.transmit.pop_front()
    }

    /// The next event.
    pub fn poll_event(&mut self) -> Option<HostEvent> {
        self.events.pop_front()
    }

    /// When [`handle_timeout`](Self::handle_timeout) must next be called.
    pub fn poll_timeout(&self) -> Option<Instant> {
        [self.wire.link.poll_timeout(), self.hello_deadline()]
            .into_iter()
            .flatten()
            .min()
    }

    fn hello_deadline(&self) -> Option<Instant> {
        match self.state {
            HostState::Connecting { since } => since.checked_add(self.config.hello_timeout),
            HostState::Connected(_) => None,
        }
    }

    fn send_hello(&mut self, now: Instant) {
        self.wire.restart(now);
        self.assembling.clear();
        self.nonce = self.nonce.wrapping_add(1);
        self.state = HostState::Connecting { since: now };
        let hello = Message::Hello(Hello {
            protocol_version: APP_VERSION,
            role: Role::Host,
            nonce: self.nonce,
            reply_to: 0,
            console_id: truncate_id(&self.config.host_id),
            capabilities: None,
        });
        // Cannot fail: the id is truncated to the limit.
        let _ = self.wire.queue(&hello);
        self.wire.pump(now);
    }

    /// Reports the loss of an established session and of everything pending in it.
    fn link_down(&mut self) {
        if self.is_connected() {
            self.events.push_back(HostEvent::LinkLost);
        }
        for waveform_id in std::mem::take(&mut self.uploads) {
            self.events
                .push_back(HostEvent::UploadFailed { waveform_id });
        }
        for acquisition_id in std::mem::take(&mut self.plays) {
            self.events
                .push_back(HostEvent::AcquisitionInterrupted { acquisition_id });
        }
        self.assembling.clear();
    }

    fn process(&mut self, now: Instant) {
        for item in incoming(&mut self.wire.link) {
            match item {
                Incoming::Broken => {
                    if self.is_connected() {
                        self.reconnect(now);
                    } else if self.wire.link.unacked() == 0 && self.wire.outbox.is_empty() {
                        // Our HELLO failed: try again at once rather than at the deadline.
                        self.send_hello(now);
                    }
                }
                Incoming::Message(kind, Err(error), _) => {
                    self.events
                        .push_back(HostEvent::ProtocolError(ProtocolError::Malformed {
                            kind,
                            error,
                        }));
                }
                Incoming::Message(_, Ok(message), _) => self.handle_message(message, now),
            }
        }
        self.wire.pump(now);
    }

    fn handle_message(&mut self, message: Message, now: Instant) {
        match message {
            Message::Hello(hello) => {
                let (Role::Device, Some(capabilities)) = (hello.role, hello.capabilities) else {
                    self.events
                        .push_back(HostEvent::ProtocolError(ProtocolError::BadHello(
                            "HELLO from a host".into(),
                        )));
                    return;
                };
                if hello.protocol_version != APP_VERSION {
                    self.events
                        .push_back(HostEvent::ProtocolError(ProtocolError::BadHello(format!(
                            "protocol version {}",
                            hello.protocol_version
                        ))));
                    return;
                }
                if hello.reply_to != self.nonce {
                    // Not the answer to our current HELLO: if connected, the device has lost
                    // our session (rebooted); start a new one. Otherwise a stale answer.
                    if self.is_connected() {
                        self.reconnect(now);
                    }
                    return;
                }
                if self.is_connected() {
                    return; // already established by this answer
                }
                let device = DeviceHello {
                    protocol_version: hello.protocol_version,
                    console_id: hello.console_id,
                    capabilities,
                };
                self.state = HostState::Connected(device.clone());
                self.events.push_back(HostEvent::Connected(device));
            }
            Message::WaveformStatus(status) => {
                if self.uploads.remove(&status.waveform_id) {
                    let waveform_id = status.waveform_id;
                    self.events.push_back(match status.result {
                        Ok(()) => HostEvent::WaveformCommitted { waveform_id },
                        Err(reason) => HostEvent::WaveformRejected {
                            waveform_id,
                            reason,
                        },
                    });
                }
            }
            Message::FidChunk(chunk) => self.fid_chunk(chunk),
            Message::FidEnd(end) => self.fid_end(end, now),
            Message::Error(report) => {
                let no_session = report.code == error_code::NO_SESSION;
                self.events.push_back(HostEvent::DeviceError(report));
                if no_session && self.is_connected() {
                    self.reconnect(now);
                }
            }
            other => {
                self.events
                    .push_back(HostEvent::ProtocolError(ProtocolError::Unexpected(
                        other.frame_type(),
                    )));
            }
        }
    }

    fn fid_chunk(&mut self, chunk: Chunk) {
        if self.delivered.contains(&chunk.id) {
            return;
        }
        let max = self.config.max_fid_points;
        let entry = self
            .assembling
            .entry(chunk.id)
            .or_insert_with(|| Assembly::Receiving(Vec::new()));
        if let Assembly::Receiving(points) = entry {
            let expected = u32::try_from(points.len()).unwrap_or(u32::MAX);
            if chunk.offset != expected {
                *entry = Assembly::Broken(FidError::OffsetMismatch {
                    expected,
                    found: chunk.offset,
                });
            } else if points.len() + chunk.samples.len() > max as usize {
                *entry = Assembly::Broken(FidError::TooLong { max });
            } else {
                points.extend_from_slice(&chunk.samples);
            }
        }
    }

    fn fid_end(&mut self, end: FidEnd, now: Instant) {
        let acquisition_id = end.acquisition_id;
        let assembly = self.assembling.remove(&acquisition_id);
        if self.delivered.contains(&acquisition_id) {
            // A re-sent copy: drop it, and confirm again if the caller already stored it.
            if self.stored.contains(&acquisition_id) {
                let _ = self.wire.queue(&Message::FidStored { acquisition_id });
                self.wire.pump(now);
            }
            return;
        }
        let points = match assembly {
            Some(Assembly::Broken(reason)) => Err(reason),
            Some(Assembly::Receiving(points)) => Ok(points),
            None => Ok(Vec::new()),
        };
        let result = points.and_then(|points| {
            if points.len() != end.total_points as usize {
                return Err(FidError::CountMismatch {
                    declared: end.total_points,
                    received: points.len(),
                });
            }
            let computed = samples_crc(&points);
            if computed != end.crc {
                return Err(FidError::ChecksumMismatch {
                    declared: end.crc,
                    computed,
                });
            }
            Ok(points)
        });
        match result {
            Ok(points) => {
                self.delivered.insert(acquisition_id);
                self.plays.remove(&acquisition_id);
                self.events.push_back(HostEvent::Fid(Fid {
                    acquisition_id,
                    waveform_id: end.waveform_id,
                    points,
                    dwell_ns: end.dwell_ns,
                    timestamp_us: end.timestamp_us,
                }));
            }
            Err(reason) => self.events.push_back(HostEvent::FidRejected {
                acquisition_id,
                reason,
            }),
        }
    }
}

/// Events of a [`DeviceSession`].
#[derive(Debug, Clone, PartialEq)]
pub enum DeviceEvent {
    /// A host `HELLO` started a new session (and was answered).
    Connected {
        /// The host's id.
        host_id: String,
    },
    /// A waveform was committed.
    WaveformCommitted {
        /// The id.
        waveform_id: u32,
    },
    /// An upload was rejected.
    WaveformRejected {
        /// The id.
        waveform_id: u32,
        /// Why.
        reason: RejectReason,
    },
    /// The host asked to play a waveform; answer with
    /// [`DeviceSession::complete_acquisition`].
    PlayRequested {
        /// Waveform id.
        waveform_id: u32,
        /// Its samples (B1 in Hz at the device's RF sample interval).
        samples: Arc<[Complex32]>,
        /// Acquisition id.
        acquisition_id: u32,
        /// Averages.
        averages: u32,
    },
    /// The host stored an FID; the device forgot it.
    FidStored {
        /// Acquisition id.
        acquisition_id: u32,
    },
    /// The host sent `ERROR`.
    HostError(ErrorReport),
    /// The session was lost (a frame failed or the host fell silent). Retained FIDs are kept
    /// and re-sent after the next host `HELLO`.
    LinkLost,
    /// A frame from the host could not be used.
    ProtocolError(ProtocolError),
    /// A [`DeviceDriver`](crate::serial::DeviceDriver) command to complete this acquisition
    /// was refused by the session.
    RequestRejected {
        /// Acquisition id.
        acquisition_id: u32,
        /// Why.
        error: SessionError,
    },
}

/// [`DeviceSession`] settings.
#[derive(Debug, Clone, PartialEq)]
pub struct DeviceConfig {
    /// Link timing.
    pub link: LinkConfig,
    /// Console id sent in `HELLO` (at most 64 UTF-8 bytes; longer is truncated).
    pub console_id: String,
    /// Capabilities sent in `HELLO` and enforced on uploads.
    pub capabilities: Capabilities,
    /// First `HELLO` nonce minus one.
    pub nonce_seed: u32,
}

#[derive(Debug)]
struct Upload {
    begin: WaveformBegin,
    samples: Vec<Complex32>,
    fault: Option<RejectReason>,
}

#[derive(Debug, Clone)]
struct RetainedFid {
    end: FidEnd,
    points: Vec<Complex32>,
}

/// The firmware's end of a console session. See the [module docs](self).
#[derive(Debug)]
pub struct DeviceSession {
    config: DeviceConfig,
    wire: Wire,
    connected: bool,
    host_nonce: Option<u32>,
    nonce: u32,
    events: VecDeque<DeviceEvent>,
    uploads: BTreeMap<u32, Upload>,
    waveforms: BTreeMap<u32, Arc<[Complex32]>>,
    /// Acquisition id → waveform id, requested but not completed.
    acquiring: BTreeMap<u32, u32>,
    retained: BTreeMap<u32, RetainedFid>,
}

impl DeviceSession {
    /// A session created at `now`, waiting for the host's `HELLO`.
    pub fn new(config: DeviceConfig, now: Instant) -> Self {
        Self {
            wire: Wire::new(config.link.clone(), now),
            nonce: config.nonce_seed,
            config,
            connected: false,
            host_nonce: None,
            events: VecDeque::new(),
            uploads: BTreeMap::new(),
            waveforms: BTreeMap::new(),
            acquiring: BTreeMap::new(),
            retained: BTreeMap::new(),
        }
    }

    /// Whether a host session is established.
    pub fn is_connected(&self) -> bool {
        self.connected
    }

    /// A committed waveform.
    pub fn waveform(&self, waveform_id: u32) -> Option<Arc<[Complex32]>> {
        self.waveforms.get(&waveform_id).cloned()
    }

    /// Acquisition ids of FIDs kept until the host confirms them stored.
    pub fn retained_fids(&self) -> Vec<u32> {
        self.retained.keys().copied().collect()
    }

    /// Link counters.
    pub fn link_stats(&self) -> crate::link::LinkStats {
        self.wire.link.stats()
    }

    /// Queues [`DeviceEvent::RequestRejected`] (used by the serial driver).
    pub(crate) fn report_rejected(&mut self, acquisition_id: u32, error: SessionError) {
        self.events.push_back(DeviceEvent::RequestRejected {
            acquisition_id,
            error,
        });
    }

    /// Drops the link (e.g. the port was closed and opened again) and waits for a new host
    /// `HELLO`. Committed waveforms, pending acquisitions and retained FIDs are kept.
    pub fn reset_link(&mut self, now: Instant) {
        self.wire.restart(now);
        self.wire.transmit.clear();
        self.lose();
    }

    /// Completes acquisition `acquisition_id` (from [`DeviceEvent::PlayRequested`]) with its
    /// points; the FID is retained until `FID_STORED` and sent now if connected.
    pub fn complete_acquisition(
        &mut self,
        acquisition_id: u32,
        points: Vec<Complex32>,
        timestamp_us: u64,
        now: Instant,
    ) -> Result<(), SessionError> {
        if !self.acquiring.contains_key(&acquisition_id) {
            return Err(SessionError::UnknownAcquisition { acquisition_id });
        }
        if points.is_empty() {
            return Err(SessionError::InvalidPoints("no points"));
        }
        if points
            .iter()
            .any(|p| !p.re.is_finite() || !p.im.is_finite())
        {
            return Err(SessionError::InvalidPoints("NaN or infinite point"));
        }
        let total_points =
            u32::try_from(points.len()).map_err(|_| SessionError::InvalidPoints("too many"))?;
        let Some(waveform_id) = self.acquiring.remove(&acquisition_id) else {
            return Err(SessionError::UnknownAcquisition { acquisition_id });
        };
        let fid = RetainedFid {
            end: FidEnd {
                acquisition_id,
                waveform_id,
                total_points,
                dwell_ns: self.config.capabilities.dwell_ns,
                crc: samples_crc(&points),
                timestamp_us,
            },
            points,
        };
        if self.connected {
            self.queue_fid(&fid);
        }
        self.retained.insert(acquisition_id, fid);
        self.wire.pump(now);
        Ok(())
    }

    /// Feeds bytes received from the port.
    pub fn handle_input(&mut self, bytes: &[u8], now: Instant) {
        self.wire.link.handle_input(bytes, now);
        self.process(now);
    }

    /// Runs the timers; call when [`poll_timeout`](Self::poll_timeout) has passed.
    pub fn handle_timeout(&mut self, now: Instant) {
        self.wire.link.handle_timeout(now);
        self.process(now);
    }

    /// The next buffer to write to the port.
    pub fn poll_transmit(&mut self) -> Option<Vec<u8>> {
        self.wire.drain();
        self.wire.transmit.pop_front()
    }

    /// The next event.
    pub fn poll_event(&mut self) -> Option<DeviceEvent> {
        self.events.pop_front()
    }

    /// When [`handle_timeout`](Self::handle_timeout) must next be called.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.wire.link.poll_timeout()
    }

    fn queue_fid(&mut self, fid: &RetainedFid) {
        let id = fid.end.acquisition_id;
        for chunk in app::chunks(id, &fid.points) {
            let _ = self.wire.queue(&Message::FidChunk(chunk));
        }
        let _ = self.wire.queue(&Message::FidEnd(fid.end));
    }

    fn lose(&mut self) {
        if self.connected {
            self.events.push_back(DeviceEvent::LinkLost);
        }
        self.connected = false;
        self.host_nonce = None;
        self.wire.outbox.clear();
    }

    fn send_error(&mut self, code: u16, message: String) {
        let _ = self
            .wire
            .queue(&Message::Error(ErrorReport { code, message }));
    }

    fn process(&mut self, now: Instant) {
        for item in incoming(&mut self.wire.link) {
            match item {
                Incoming::Broken => self.lose(),
                Incoming::Message(kind, Err(error), payload) => {
                    if kind == FrameType::WaveformChunk
                        && matches!(error, MessageError::NonFinite { .. })
                        && let Some(id) = payload.get(..4)
                    {
                        let id = u32::from_le_bytes([id[0], id[1], id[2], id[3]]);
                        if let Some(upload) = self.uploads.get_mut(&id) {
                            upload.fault.get_or_insert(RejectReason::NonFinite);
                        }
                        continue;
                    }
                    if self.connected {
                        self.send_error(error_code::MALFORMED, format!("{kind:?}: {error}"));
                    }
                    self.events
                        .push_back(DeviceEvent::ProtocolError(ProtocolError::Malformed {
                            kind,
                            error,
                        }));
                }
                Incoming::Message(_, Ok(Message::Hello(hello)), _) => self.hello(hello, now),
                Incoming::Message(kind, Ok(_), _) if !self.connected => {
                    // Ask the host to start a session: an unsolicited HELLO resynchronises its
                    // link receiver, the ERROR says why.
                    self.queue_hello(0);
                    self.send_error(
                        error_code::NO_SESSION,
                        format!("{kind:?} before HELLO; send HELLO"),
                    );
                }
                Incoming::Message(_, Ok(message), _) => self.handle_message(message),
            }
        }
        self.wire.pump(now);
    }

    fn hello(&mut self, hello: Hello, now: Instant) {
        if hello.role != Role::Host || hello.protocol_version != APP_VERSION {
            self.events
                .push_back(DeviceEvent::ProtocolError(ProtocolError::BadHello(
                    format!("role {:?}, version {}", hello.role, hello.protocol_version),
                )));
            return;
        }
        if self.connected && self.host_nonce == Some(hello.nonce) {
            return; // a repeat of the HELLO that started this session
        }
        // A new session: fresh link (the ACK of this HELLO is already written), uploads in
        // progress dropped, answer HELLO, then re-send every retained FID.
        self.wire.restart(now);
        self.uploads.clear();
        self.connected = true;
        self.host_nonce = Some(hello.nonce);
        self.queue_hello(hello.nonce);
        let retained: Vec<RetainedFid> = self.retained.values().cloned().collect();
        for fid in &retained {
            self.queue_fid(fid);
        }
        self.events.push_back(DeviceEvent::Connected {
            host_id: hello.console_id,
        });
    }

    fn queue_hello(&mut self, reply_to: u32) {
        self.nonce = self.nonce.wrapping_add(1);
        let answer = Message::Hello(Hello {
            protocol_version: APP_VERSION,
            role: Role::Device,
            nonce: self.nonce,
            reply_to,
            console_id: truncate_id(&self.config.console_id),
            capabilities: Some(self.config.capabilities),
        });
        if let Err(error) = self.wire.queue(&answer) {
            self.events
                .push_back(DeviceEvent::ProtocolError(ProtocolError::BadHello(
                    format!("own capabilities invalid: {error}"),
                )));
        }
    }

    fn handle_message(&mut self, message: Message) {
        let caps = self.config.capabilities;
        match message {
            Message::WaveformBegin(begin) => {
                let fault = if begin.sample_count > caps.max_waveform_samples {
                    Some(RejectReason::TooLong)
                } else if begin.sample_dt_ns != caps.rf_dt_ns {
                    Some(RejectReason::BadFormat)
                } else {
                    None
                };
                self.uploads.insert(
                    begin.waveform_id,
                    Upload {
                        begin,
                        samples: Vec::new(),
                        fault,
                    },
                );
            }
            Message::WaveformChunk(chunk) => {
                let Some(upload) = self.uploads.get_mut(&chunk.id) else {
                    return; // the commit will be answered "unknown id"
                };
                if upload.fault.is_some() {
                    return;
                }
                let fault = if chunk.offset as usize != upload.samples.len() {
                    Some(RejectReason::MissingChunks)
                } else if upload.samples.len() + chunk.samples.len()
                    > upload.begin.sample_count as usize
                {
                    Some(RejectReason::TooLong)
                } else if chunk
                    .samples
                    .iter()
                    .any(|s| f64::from(s.norm()) > caps.max_b1_hz)
                {
                    Some(RejectReason::AmplitudeOverLimit)
                } else {
                    None
                };
                match fault {
                    Some(f) => upload.fault = Some(f),
                    None => upload.samples.extend_from_slice(&chunk.samples),
                }
            }
            Message::WaveformCommit(commit) => {
                let waveform_id = commit.waveform_id;
                let result = match self.uploads.remove(&waveform_id) {
                    None => Err(RejectReason::UnknownId),
                    Some(upload) => {
                        if let Some(fault) = upload.fault {
                            Err(fault)
                        } else if commit.sample_count != upload.begin.sample_count
                            || upload.samples.len() != upload.begin.sample_count as usize
                        {
                            Err(RejectReason::MissingChunks)
                        } else if samples_crc(&upload.samples) != commit.crc {
                            Err(RejectReason::ChecksumMismatch)
                        } else {
                            self.waveforms
                                .insert(waveform_id, Arc::from(upload.samples));
                            Ok(())
                        }
                    }
                };
                let _ = self.wire.queue(&Message::WaveformStatus(WaveformStatus {
                    waveform_id,
                    result,
                }));
                self.events.push_back(match result {
                    Ok(()) => DeviceEvent::WaveformCommitted { waveform_id },
                    Err(reason) => DeviceEvent::WaveformRejected {
                        waveform_id,
                        reason,
                    },
                });
            }
            Message::Play(play) => {
                let acquisition_id = play.acquisition_id;
                if let Some(fid) = self.retained.get(&acquisition_id).cloned() {
                    self.queue_fid(&fid);
                } else if self.acquiring.contains_key(&acquisition_id) {
                    // already being acquired
                } else if let Some(samples) = self.waveforms.get(&play.waveform_id).cloned() {
                    self.acquiring.insert(acquisition_id, play.waveform_id);
                    self.events.push_back(DeviceEvent::PlayRequested {
                        waveform_id: play.waveform_id,
                        samples,
                        acquisition_id,
                        averages: play.averages,
                    });
                } else {
                    self.send_error(
                        error_code::UNKNOWN_WAVEFORM,
                        format!(
                            "waveform {} is not committed (acquisition {acquisition_id})",
                            play.waveform_id
                        ),
                    );
                }
            }
            Message::FidStored { acquisition_id } => {
                if self.retained.remove(&acquisition_id).is_some() {
                    self.events
                        .push_back(DeviceEvent::FidStored { acquisition_id });
                }
            }
            Message::Error(report) => self.events.push_back(DeviceEvent::HostError(report)),
            other => {
                self.send_error(
                    error_code::UNEXPECTED,
                    format!("{:?} is not accepted by a device", other.frame_type()),
                );
                self.events
                    .push_back(DeviceEvent::ProtocolError(ProtocolError::Unexpected(
                        other.frame_type(),
                    )));
            }
        }
    }
}
