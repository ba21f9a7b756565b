//! Owns [`AwgClient`], the console-side session: a sans-IO state machine that drives one
//! SCPI instrument over a line link (connect and identify, waveform upload with CRC check and
//! retries, play, FID fetch, query timeouts and resynchronisation). The dialogue it speaks is
//! specified in the crate documentation.
//!
//! Like `quinn-proto`, an [`AwgClient`] does no I/O and reads no clock: the caller writes
//! every buffer from [`AwgClient::poll_transmit`] to the port, feeds every byte read with
//! [`AwgClient::handle_input`], calls [`AwgClient::handle_timeout`] once the instant from
//! [`AwgClient::poll_timeout`] has passed, and handles every [`ClientEvent`] from
//! [`AwgClient::poll_event`]. Poll both queues after every call. Operations are queued and run
//! one at a time, in order; each ends with exactly one event. No input makes it panic.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use spinloop_firmware::crc32c;
use thiserror::Error;

use crate::block::{MAX_BLOCK_DATA_LEN, encode_block};
use crate::dac::{
    DacConfig, DacError, IqHz, QuantizationReport, decode_f32_pairs, encode_codes, scale,
};
use crate::error::ScpiError;
use crate::framer::Framer;
use crate::response::{ErrorEntry, Idn, Response, ResponseKind, parse_response};

/// Caller-chosen waveform id; the instrument-side name is
/// [`ClientConfig::name_prefix`] followed by the id in decimal.
pub type WaveformId = u64;

/// Caller-chosen acquisition id, sent to the instrument with `ACQ:ID`.
pub type AcquisitionId = u64;

/// Session configuration. Command templates are SCPI text in which `{name}` is replaced by the
/// waveform name, `{acq}` by the acquisition id and `{block}` by the definite-length block.
#[derive(Debug, Clone, PartialEq)]
pub struct ClientConfig {
    /// DAC scaling and amplitude limit applied before upload.
    pub dac: DacConfig,
    /// Send `*RST` after `*CLS` on connect.
    pub reset_on_connect: bool,
    /// If set, the `*IDN?` model field must contain this text (case-insensitive), else
    /// [`FailReason::ModelMismatch`].
    pub expected_model: Option<String>,
    /// Prefix of instrument waveform names (a letter first; names are prefix + decimal id).
    pub name_prefix: String,
    /// Upload command; must contain `{name}` and `{block}`. Default `WAV:DATA {name},{block}`.
    pub upload_command: String,
    /// Upload check query; must contain `{name}`, answers the CRC-32C as NR1. Default
    /// `WAV:CRC? {name}`.
    pub crc_query: String,
    /// Play command; may contain `{name}` and `{acq}`. Default
    /// `WAV:SEL {name};:ACQ:ID {acq};:INIT`.
    pub play_command: String,
    /// FID query, answered by a block of little-endian `f32` I/Q pairs. Default
    /// `FETC:FID? {acq}`.
    pub fid_query: String,
    /// FID check query answering the CRC-32C of the FID block data as NR1; `None` skips the
    /// check. Default `Some("FETC:CRC? {acq}")`.
    pub fid_crc_query: Option<String>,
    /// Dwell query, answered in seconds (NR1/NR2/NR3). Default `FETC:DWEL? {acq}`.
    pub dwell_query: String,
    /// Time allowed for a response, from sending the query (and from the last received byte
    /// while a response is partly received).
    pub query_timeout: Duration,
    /// Line time per byte (e.g. 87 µs at 115200 baud 8N1); the bytes sent since the previous
    /// query, including this one, times this are added to the query timeout. Zero for none.
    pub byte_time: Duration,
    /// Re-uploads after a CRC mismatch (so at most `1 + max_upload_retries` uploads).
    pub max_upload_retries: u32,
    /// Re-fetches after an FID CRC mismatch.
    pub max_fetch_retries: u32,
    /// Most `SYST:ERR?` queries after one operation (the queue is read until `0,...`); when
    /// they are spent with errors still coming, the client sends `*CLS`.
    pub max_error_polls: u32,
    /// After a timeout or garbled response: time to discard input after sending `*CLS`.
    pub drain_time: Duration,
    /// Longest accepted response in bytes (blocks included).
    pub max_response_len: usize,
}

impl ClientConfig {
    /// The default dialogue with the given DAC configuration: no `*RST`, any model, prefix
    /// `SL`, 2 s query timeout, no byte time, 3 upload and 3 fetch retries, 32 error polls,
    /// 200 ms drain, 16 MiB responses.
    pub fn new(dac: DacConfig) -> Self {
        Self {
            dac,
            reset_on_connect: false,
            expected_model: None,
            name_prefix: "SL".into(),
            upload_command: "WAV:DATA {name},{block}".into(),
            crc_query: "WAV:CRC? {name}".into(),
            play_command: "WAV:SEL {name};:ACQ:ID {acq};:INIT".into(),
            fid_query: "FETC:FID? {acq}".into(),
            fid_crc_query: Some("FETC:CRC? {acq}".into()),
            dwell_query: "FETC:DWEL? {acq}".into(),
            query_timeout: Duration::from_secs(2),
            byte_time: Duration::ZERO,
            max_upload_retries: 3,
            max_fetch_retries: 3,
            max_error_polls: 32,
            drain_time: Duration::from_millis(200),
            max_response_len: 16 << 20,
        }
    }

    fn validate(&self) -> Result<(), ClientError> {
        self.dac.validate().map_err(ClientError::Dac)?;
        let bad = |m: &str| Err(ClientError::InvalidConfig(m.to_string()));
        if !self.upload_command.contains("{block}") || !self.upload_command.contains("{name}") {
            return bad("upload_command must contain {name} and {block}");
        }
        if !self.crc_query.contains("{name}") {
            return bad("crc_query must contain {name}");
        }
        if !self
            .name_prefix
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_alphabetic())
            || !self
                .name_prefix
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_')
        {
            return bad("name_prefix must be a letter followed by letters, digits or '_'");
        }
        if self.query_timeout.is_zero() {
            return bad("query_timeout must be > 0");
        }
        Ok(())
    }
}

/// Why an operation failed (carried by the `*Failed` events).
#[derive(Debug, Clone, PartialEq)]
pub enum FailReason {
    /// `SYST:ERR?` returned non-zero entries: the first one, and any further ones read while
    /// draining the queue.
    Instrument {
        /// First error code.
        code: i32,
        /// First error message.
        message: String,
        /// Further entries read before `0,...`.
        more: Vec<ErrorEntry>,
    },
    /// The CRC-32C reported by the instrument never matched ours.
    CrcMismatch {
        /// Transfers made.
        attempts: u32,
        /// Our CRC-32C of the data.
        local: u32,
        /// The instrument's last answer.
        reported: u32,
    },
    /// No (complete) response to `query` within the timeout; a resync followed.
    Timeout {
        /// The query text (without block data).
        query: String,
    },
    /// The response to `query` could not be parsed; a resync followed.
    BadResponse {
        /// The query text.
        query: String,
        /// The parse error.
        error: ScpiError,
    },
    /// `*IDN?` model does not contain [`ClientConfig::expected_model`].
    ModelMismatch {
        /// The expected text.
        expected: String,
        /// What the instrument said.
        idn: Idn,
    },
    /// The session is not connected (connect failed); call [`AwgClient::reconnect`].
    NotConnected,
}

impl std::fmt::Display for FailReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            FailReason::Instrument { code, message, .. } => {
                write!(f, "instrument error {code},\"{message}\"")
            }
            FailReason::CrcMismatch {
                attempts,
                local,
                reported,
            } => write!(
                f,
                "CRC mismatch after {attempts} attempts (ours {local:#010x}, instrument {reported:#010x})"
            ),
            FailReason::Timeout { query } => write!(f, "no response to {query:?}"),
            FailReason::BadResponse { query, error } => {
                write!(f, "bad response to {query:?}: {error}")
            }
            FailReason::ModelMismatch { expected, idn } => {
                write!(f, "instrument {idn} is not the expected model {expected:?}")
            }
            FailReason::NotConnected => write!(f, "not connected"),
        }
    }
}

/// Why an operation was refused before anything was sent.
#[derive(Debug, Clone, PartialEq, Error)]
pub enum ClientError {
    /// The waveform (or the DAC configuration) was refused; see [`DacError`].
    #[error(transparent)]
    Dac(#[from] DacError),
    /// The configuration is invalid.
    #[error("invalid client configuration: {0}")]
    InvalidConfig(String),
    /// The waveform does not fit in a block.
    #[error("waveform of {points} points does not fit in one block")]
    WaveformTooLarge {
        /// Points.
        points: usize,
    },
    /// Connecting failed; call [`AwgClient::reconnect`].
    #[error("not connected")]
    NotConnected,
}

/// What the session reports, from [`AwgClient::poll_event`].
#[derive(Debug, Clone, PartialEq)]
pub enum ClientEvent {
    /// Connect succeeded: identified, byte order set, error queue empty.
    Connected {
        /// The instrument's identification.
        idn: Idn,
    },
    /// Connect failed; queued and new operations fail with [`FailReason::NotConnected`] /
    /// [`ClientError::NotConnected`] until [`AwgClient::reconnect`].
    ConnectFailed {
        /// Why.
        reason: FailReason,
    },
    /// The waveform is on the instrument, CRC-checked, with an empty error queue.
    Uploaded {
        /// Waveform id.
        id: WaveformId,
        /// Instrument-side name.
        name: String,
        /// CRC-32C of the uploaded data (as agreed by the instrument).
        crc: u32,
        /// Transfers needed (1 without CRC mismatches).
        attempts: u32,
    },
    /// The upload failed.
    UploadFailed {
        /// Waveform id.
        id: WaveformId,
        /// Why.
        reason: FailReason,
    },
    /// The waveform was played (`*OPC?` answered, error queue empty).
    Played {
        /// Waveform id.
        id: WaveformId,
        /// Acquisition id.
        acquisition: AcquisitionId,
    },
    /// Playing failed (e.g. unknown waveform: an instrument error).
    PlayFailed {
        /// Waveform id.
        id: WaveformId,
        /// Acquisition id.
        acquisition: AcquisitionId,
        /// Why.
        reason: FailReason,
    },
    /// An FID was fetched (and CRC-checked if configured).
    Fid {
        /// Acquisition id.
        acquisition: AcquisitionId,
        /// Complex points `[re, im]`.
        points: Vec<[f32; 2]>,
        /// Dwell time in seconds.
        dwell_s: f64,
    },
    /// Fetching failed (an unknown acquisition makes the instrument answer nothing: a timeout).
    FetchFailed {
        /// Acquisition id.
        acquisition: AcquisitionId,
        /// Why.
        reason: FailReason,
    },
    /// A resync (after a timeout or bad response) finished; queued operations continue.
    Resynced,
    /// A response arrived while no query was pending; it was discarded.
    Unsolicited {
        /// The message (terminator removed).
        bytes: Vec<u8>,
    },
}

/// Connection state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConnectionState {
    /// The connect dialogue is queued or running.
    Connecting,
    /// Identified and configured.
    Connected,
    /// Connect failed.
    Disconnected,
}

#[derive(Debug, Clone)]
enum Op {
    Connect,
    Upload {
        id: WaveformId,
        name: String,
        message: Vec<u8>,
        crc: u32,
        attempts: u32,
    },
    Play {
        id: WaveformId,
        acquisition: AcquisitionId,
    },
    Fetch {
        acquisition: AcquisitionId,
        attempts: u32,
        points: Vec<[f32; 2]>,
        crc: u32,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Step {
    Idn,
    Crc,
    Opc,
    SystErr,
    FidBlock,
    FidCrc,
    Dwell,
}

impl Step {
    fn kind(self) -> ResponseKind {
        match self {
            Step::Idn => ResponseKind::Idn,
            Step::Crc | Step::FidCrc => ResponseKind::Integer,
            Step::Opc => ResponseKind::Opc,
            Step::SystErr => ResponseKind::SystemError,
            Step::FidBlock => ResponseKind::Block,
            Step::Dwell => ResponseKind::Number,
        }
    }
}

#[derive(Debug, Clone)]
struct Pending {
    step: Step,
    query: String,
    deadline: Instant,
}

#[derive(Debug, Clone)]
enum Phase {
    Idle,
    Waiting(Pending),
    Draining { until: Instant },
}

#[derive(Debug, Clone)]
struct Active {
    op: Op,
    errors: Vec<ErrorEntry>,
    polls: u32,
}

/// The console-side SCPI session; see the module and crate docs.
#[derive(Debug)]
pub struct AwgClient {
    config: ClientConfig,
    state: ConnectionState,
    idn: Option<Idn>,
    queue: VecDeque<Op>,
    active: Option<Active>,
    phase: Phase,
    framer: Framer,
    out: VecDeque<Vec<u8>>,
    events: VecDeque<ClientEvent>,
    bytes_since_query: usize,
}

fn render(template: &str, name: &str, acq: Option<AcquisitionId>) -> String {
    let mut s = template.replace("{name}", name);
    if let Some(a) = acq {
        s = s.replace("{acq}", &a.to_string());
    }
    s
}

/// `now + d`, saturating (a huge configured duration must not panic).
fn later(now: Instant, d: Duration) -> Instant {
    now.checked_add(d)
        .or_else(|| now.checked_add(Duration::from_secs(86_400 * 365)))
        .unwrap_or(now)
}

fn crc_of(r: &Response) -> Option<u32> {
    match r {
        Response::Integer(v) => u32::try_from(*v).ok(),
        _ => None,
    }
}

impl AwgClient {
    /// A session that starts the connect dialogue at once (its first bytes are ready in
    /// [`AwgClient::poll_transmit`]).
    pub fn new(config: ClientConfig, now: Instant) -> Result<Self, ClientError> {
        config.validate()?;
        let framer = Framer::new(config.max_response_len, false);
        let mut c = Self {
            config,
            state: ConnectionState::Connecting,
            idn: None,
            queue: VecDeque::new(),
            active: None,
            phase: Phase::Idle,
            framer,
            out: VecDeque::new(),
            events: VecDeque::new(),
            bytes_since_query: 0,
        };
        c.queue.push_back(Op::Connect);
        c.start_next(now);
        Ok(c)
    }

    /// The configuration.
    pub fn config(&self) -> &ClientConfig {
        &self.config
    }

    /// Connection state.
    pub fn state(&self) -> ConnectionState {
        self.state
    }

    /// The identification from the last successful connect.
    pub fn idn(&self) -> Option<&Idn> {
        self.idn.as_ref()
    }

    /// Whether nothing is queued, running or draining.
    pub fn is_idle(&self) -> bool {
        self.queue.is_empty() && self.active.is_none() && matches!(self.phase, Phase::Idle)
    }

    /// The instrument-side name of waveform `id`.
    pub fn waveform_name(&self, id: WaveformId) -> String {
        format!("{}{id}", self.config.name_prefix)
    }

    /// Runs the connect dialogue again (queued before any other pending operation).
    pub fn reconnect(&mut self, now: Instant) {
        self.state = ConnectionState::Connecting;
        self.queue.push_front(Op::Connect);
        self.start_next(now);
    }

    /// Scales `waveform` (Hz of B1, `[I, Q]` per sample) to DAC codes and queues its upload
    /// as waveform `id`. A waveform over the amplitude limit, beyond full scale, empty or with
    /// NaN/infinite samples is refused here, before anything is sent. Returns the quantization
    /// report; the outcome of the upload is [`ClientEvent::Uploaded`] or
    /// [`ClientEvent::UploadFailed`].
    pub fn upload(
        &mut self,
        id: WaveformId,
        waveform: &[IqHz],
        now: Instant,
    ) -> Result<QuantizationReport, ClientError> {
        if self.state == ConnectionState::Disconnected {
            return Err(ClientError::NotConnected);
        }
        let q = scale(&self.config.dac, waveform)?;
        let data = encode_codes(&q.codes);
        if data.len() > MAX_BLOCK_DATA_LEN {
            return Err(ClientError::WaveformTooLarge {
                points: waveform.len(),
            });
        }
        let name = self.waveform_name(id);
        let rendered = render(&self.config.upload_command, &name, None);
        let (before, after) = rendered
            .split_once("{block}")
            .unwrap_or((rendered.as_str(), ""));
        let mut message = before.as_bytes().to_vec();
        message.extend_from_slice(&encode_block(&data));
        message.extend_from_slice(after.as_bytes());
        self.queue.push_back(Op::Upload {
            id,
            name,
            message,
            crc: crc32c(&data),
            attempts: 0,
        });
        self.start_next(now);
        Ok(q.report)
    }

    /// Queues playing waveform `id` as acquisition `acquisition`.
    pub fn play(
        &mut self,
        id: WaveformId,
        acquisition: AcquisitionId,
        now: Instant,
    ) -> Result<(), ClientError> {
        if self.state == ConnectionState::Disconnected {
            return Err(ClientError::NotConnected);
        }
        self.queue.push_back(Op::Play { id, acquisition });
        self.start_next(now);
        Ok(())
    }

    /// Queues fetching the FID of acquisition `acquisition`.
    pub fn fetch(&mut self, acquisition: AcquisitionId, now: Instant) -> Result<(), ClientError> {
        if self.state == ConnectionState::Disconnected {
            return Err(ClientError::NotConnected);
        }
        self.queue.push_back(Op::Fetch {
            acquisition,
            attempts: 0,
            points: Vec::new(),
            crc: 0,
        });
        self.start_next(now);
        Ok(())
    }

    /// Feeds bytes read from the instrument.
    pub fn handle_input(&mut self, bytes: &[u8], now: Instant) {
        if matches!(self.phase, Phase::Draining { .. }) {
            return;
        }
        self.framer.push(bytes);
        while let Some(msg) = self.framer.next_message() {
            match std::mem::replace(&mut self.phase, Phase::Idle) {
                Phase::Waiting(p) => self.on_message(p, msg, now),
                Phase::Idle => self.events.push_back(ClientEvent::Unsolicited {
                    bytes: msg.unwrap_or_default(),
                }),
                d @ Phase::Draining { .. } => {
                    self.phase = d;
                    self.framer.clear();
                    return;
                }
            }
        }
        if self.framer.buffered() > 0
            && let Phase::Waiting(p) = &mut self.phase
        {
            p.deadline = p.deadline.max(later(now, self.config.query_timeout));
        }
    }

    /// Handles expired timers: a query timeout fails the running operation and starts a
    /// resync (`*CLS`, then input is discarded for [`ClientConfig::drain_time`]); the end of
    /// a drain reports [`ClientEvent::Resynced`] and continues with queued operations.
    pub fn handle_timeout(&mut self, now: Instant) {
        match &self.phase {
            Phase::Waiting(p) if now >= p.deadline => {
                let query = p.query.clone();
                self.phase = Phase::Idle;
                self.fail_active(FailReason::Timeout { query });
                self.resync(now);
            }
            Phase::Draining { until } if now >= *until => {
                self.framer.clear();
                self.phase = Phase::Idle;
                self.events.push_back(ClientEvent::Resynced);
                self.start_next(now);
            }
            _ => {}
        }
    }

    /// The next bytes to write to the instrument.
    pub fn poll_transmit(&mut self) -> Option<Vec<u8>> {
        self.out.pop_front()
    }

    /// The next event.
    pub fn poll_event(&mut self) -> Option<ClientEvent> {
        self.events.pop_front()
    }

    /// When [`AwgClient::handle_timeout`] must next be called, if a timer is running.
    pub fn poll_timeout(&self) -> Option<Instant> {
        match &self.phase {
            Phase::Idle => None,
            Phase::Waiting(p) => Some(p.deadline),
            Phase::Draining { until } => Some(*until),
        }
    }

    fn send_command(&mut self, mut line: Vec<u8>) {
        line.push(b'\n');
        self.bytes_since_query += line.len();
        self.out.push_back(line);
    }

    fn send_query(&mut self, query: String, step: Step, now: Instant) {
        self.send_command(query.clone().into_bytes());
        let bytes = u32::try_from(self.bytes_since_query).unwrap_or(u32::MAX);
        let extra = self.config.byte_time.saturating_mul(bytes);
        self.bytes_since_query = 0;
        self.framer.set_blocks(step == Step::FidBlock);
        self.phase = Phase::Waiting(Pending {
            step,
            query,
            deadline: later(now, self.config.query_timeout.saturating_add(extra)),
        });
    }

    fn query_errors(&mut self, now: Instant) {
        self.send_query("SYST:ERR?".into(), Step::SystErr, now);
    }

    fn resync(&mut self, now: Instant) {
        self.send_command(b"*CLS".to_vec());
        self.framer.clear();
        self.phase = Phase::Draining {
            until: later(now, self.config.drain_time),
        };
    }

    fn start_next(&mut self, now: Instant) {
        while self.active.is_none() && matches!(self.phase, Phase::Idle) {
            let Some(op) = self.queue.pop_front() else {
                return;
            };
            if self.state == ConnectionState::Disconnected && !matches!(op, Op::Connect) {
                self.emit_failure(&op, FailReason::NotConnected);
                continue;
            }
            match &op {
                Op::Connect => {
                    self.state = ConnectionState::Connecting;
                    self.send_command(b"*CLS".to_vec());
                    if self.config.reset_on_connect {
                        self.send_command(b"*RST".to_vec());
                    }
                    self.send_query("*IDN?".into(), Step::Idn, now);
                }
                Op::Upload { name, message, .. } => {
                    let q = render(&self.config.crc_query, name, None);
                    self.send_command(message.clone());
                    self.send_query(q, Step::Crc, now);
                }
                Op::Play { id, acquisition } => {
                    let name = self.waveform_name(*id);
                    let cmd = render(&self.config.play_command, &name, Some(*acquisition));
                    self.send_command(cmd.into_bytes());
                    self.send_query("*OPC?".into(), Step::Opc, now);
                }
                Op::Fetch { acquisition, .. } => {
                    let q = render(&self.config.fid_query, "", Some(*acquisition));
                    self.send_query(q, Step::FidBlock, now);
                }
            }
            self.active = Some(Active {
                op,
                errors: Vec::new(),
                polls: 0,
            });
        }
    }

    fn on_message(&mut self, p: Pending, msg: Result<Vec<u8>, ScpiError>, now: Instant) {
        let parsed = msg.and_then(|m| parse_response(p.step.kind(), &m));
        match parsed {
            Ok(r) => self.advance(p, r, now),
            Err(error) => {
                self.fail_active(FailReason::BadResponse {
                    query: p.query,
                    error,
                });
                self.resync(now);
            }
        }
    }

    fn advance(&mut self, p: Pending, r: Response, now: Instant) {
        let Some(mut active) = self.active.take() else {
            self.events
                .push_back(ClientEvent::Unsolicited { bytes: Vec::new() });
            return;
        };
        let bad = |error| FailReason::BadResponse {
            query: p.query.clone(),
            error,
        };
        match (p.step, r, &mut active.op) {
            (Step::Idn, Response::Idn(idn), Op::Connect) => {
                if let Some(expected) = &self.config.expected_model
                    && !idn
                        .model
                        .to_ascii_lowercase()
                        .contains(&expected.to_ascii_lowercase())
                {
                    let reason = FailReason::ModelMismatch {
                        expected: expected.clone(),
                        idn,
                    };
                    self.active = Some(active);
                    self.fail_active(reason);
                    self.start_next(now);
                    return;
                }
                self.idn = Some(idn);
                self.send_command(b"FORM:BORD SWAP".to_vec());
                self.query_errors(now);
            }
            (Step::SystErr, Response::Error(e), _) => {
                active.polls += 1;
                if e.is_no_error() || active.polls >= self.config.max_error_polls {
                    if !e.is_no_error() {
                        active.errors.push(e);
                        // Poll budget spent: clear what is left for the next operation.
                        self.send_command(b"*CLS".to_vec());
                    }
                    self.active = Some(active);
                    self.complete_active();
                    self.start_next(now);
                    return;
                }
                active.errors.push(e);
                self.query_errors(now);
            }
            (Step::Opc, Response::OperationComplete, _) => self.query_errors(now),
            (
                Step::Crc,
                r,
                Op::Upload {
                    name,
                    message,
                    crc,
                    attempts,
                    ..
                },
            ) => {
                *attempts += 1;
                let Some(reported) = crc_of(&r) else {
                    self.active = Some(active);
                    self.fail_active(bad(ScpiError::NumberOutOfRange(format!("{r:?}"))));
                    self.resync(now);
                    return;
                };
                if reported == *crc {
                    self.send_query("*OPC?".into(), Step::Opc, now);
                } else if *attempts <= self.config.max_upload_retries {
                    // Clear errors the corrupted transfer may have queued, then resend.
                    let q = render(&self.config.crc_query, name, None);
                    let m = message.clone();
                    self.send_command(b"*CLS".to_vec());
                    self.send_command(m);
                    self.send_query(q, Step::Crc, now);
                } else {
                    let reason = FailReason::CrcMismatch {
                        attempts: *attempts,
                        local: *crc,
                        reported,
                    };
                    self.send_command(b"*CLS".to_vec());
                    self.active = Some(active);
                    self.fail_active(reason);
                    self.start_next(now);
                    return;
                }
            }
            (
                Step::FidBlock,
                Response::Block(data),
                Op::Fetch {
                    acquisition,
                    attempts,
                    points,
                    crc,
                },
            ) => {
                *attempts += 1;
                let Some(pts) = decode_f32_pairs(&data) else {
                    self.active = Some(active);
                    self.fail_active(bad(ScpiError::BadSampleCount {
                        len: data.len(),
                        sample_size: 8,
                    }));
                    self.start_next(now);
                    return;
                };
                *points = pts;
                *crc = crc32c(&data);
                let acq = *acquisition;
                match &self.config.fid_crc_query {
                    Some(t) => {
                        let q = render(t, "", Some(acq));
                        self.send_query(q, Step::FidCrc, now);
                    }
                    None => {
                        let q = render(&self.config.dwell_query, "", Some(acq));
                        self.send_query(q, Step::Dwell, now);
                    }
                }
            }
            (
                Step::FidCrc,
                r,
                Op::Fetch {
                    acquisition,
                    attempts,
                    crc,
                    ..
                },
            ) => {
                let Some(reported) = crc_of(&r) else {
                    self.active = Some(active);
                    self.fail_active(bad(ScpiError::NumberOutOfRange(format!("{r:?}"))));
                    self.resync(now);
                    return;
                };
                let acq = *acquisition;
                if reported == *crc {
                    let q = render(&self.config.dwell_query, "", Some(acq));
                    self.send_query(q, Step::Dwell, now);
                } else if *attempts <= self.config.max_fetch_retries {
                    let q = render(&self.config.fid_query, "", Some(acq));
                    self.send_query(q, Step::FidBlock, now);
                } else {
                    let reason = FailReason::CrcMismatch {
                        attempts: *attempts,
                        local: *crc,
                        reported,
                    };
                    self.active = Some(active);
                    self.fail_active(reason);
                    self.start_next(now);
                    return;
                }
            }
            (
                Step::Dwell,
                Response::Number(dwell_s),
                Op::Fetch {
                    acquisition,
                    points,
                    ..
                },
            ) => {
                self.events.push_back(ClientEvent::Fid {
                    acquisition: *acquisition,
                    points: std::mem::take(points),
                    dwell_s,
                });
                self.start_next(now);
                return;
            }
            (_, r, _) => {
                // A response that does not fit the running step: protocol out of step.
                self.active = Some(active);
                self.fail_active(bad(ScpiError::BadNumber(format!("unexpected {r:?}"))));
                self.resync(now);
                return;
            }
        }
        self.active = Some(active);
    }

    /// Ends the running operation after its `SYST:ERR?` poll: success if no errors.
    fn complete_active(&mut self) {
        let Some(active) = self.active.take() else {
            return;
        };
        let mut errors = active.errors.into_iter();
        if let Some(first) = errors.next() {
            let reason = FailReason::Instrument {
                code: first.code,
                message: first.message,
                more: errors.collect(),
            };
            self.emit_failure(&active.op, reason);
            return;
        }
        let ev = match active.op {
            Op::Connect => {
                self.state = ConnectionState::Connected;
                match self.idn.clone() {
                    Some(idn) => ClientEvent::Connected { idn },
                    None => return,
                }
            }
            Op::Upload {
                id,
                name,
                crc,
                attempts,
                ..
            } => ClientEvent::Uploaded {
                id,
                name,
                crc,
                attempts,
            },
            Op::Play { id, acquisition } => ClientEvent::Played { id, acquisition },
            // Fetch completes on its dwell response, never here.
            Op::Fetch { .. } => return,
        };
        self.events.push_back(ev);
    }

    fn fail_active(&mut self, reason: FailReason) {
        if let Some(active) = self.active.take() {
            self.emit_failure(&active.op, reason);
        }
    }

    fn emit_failure(&mut self, op: &Op, reason: FailReason) {
        let ev = match op {
            Op::Connect => {
                self.state = ConnectionState::Disconnected;
                ClientEvent::ConnectFailed { reason }
            }
            Op::Upload { id, .. } => ClientEvent::UploadFailed { id: *id, reason },
            Op::Play { id, acquisition } => ClientEvent::PlayFailed {
                id: *id,
                acquisition: *acquisition,
                reason,
            },
            Op::Fetch { acquisition, .. } => ClientEvent::FetchFailed {
                acquisition: *acquisition,
                reason,
            },
        };
        self.events.push_back(ev);
    }
}
