//! Application messages: the typed payloads of every reliable frame type ([`Message`]), their
//! exact little-endian byte layouts ([`Message::encode`]) and validating decoders
//! ([`Message::decode`]). The layouts are specified in the crate documentation
//! ("Application payloads"); this module is their single implementation.
//!
//! Decoding never panics: every size, count, string, float and enum value is checked and a
//! violation is a [`MessageError`].

use num_complex::Complex32;
use thiserror::Error;

use crate::crc32c::Crc32c;
use crate::frame::{FrameType, MAX_PAYLOAD_LEN};

/// Application protocol version carried in `HELLO`.
pub const APP_VERSION: u8 = 1;
/// Longest console id, in UTF-8 bytes.
pub const MAX_CONSOLE_ID_LEN: usize = 64;
/// Bytes per complex sample / point on the wire: `f32` I then `f32` Q.
pub const SAMPLE_LEN: usize = 8;
/// Bytes before the samples in `WAVEFORM_CHUNK` and `FID_CHUNK` (id and offset).
pub const CHUNK_HEADER_LEN: usize = 8;
/// Most samples (or FID points) one chunk carries: `(1024 - 8) / 8` = 127.
pub const MAX_CHUNK_SAMPLES: usize = (MAX_PAYLOAD_LEN - CHUNK_HEADER_LEN) / SAMPLE_LEN;
/// Length of the device capability block in a device `HELLO`.
pub const CAPABILITIES_LEN: usize = 32;
/// Sample format code of complex `f32` I/Q in Hz of B1 (the only format of version 1).
pub const FORMAT_COMPLEX_F32_HZ: u8 = 1;
/// Longest `ERROR` message, in UTF-8 bytes.
pub const MAX_ERROR_MESSAGE_LEN: usize = MAX_PAYLOAD_LEN - 2;

/// Why a payload could not be decoded (or a message encoded).
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum MessageError {
    /// The frame type carries no application payload (`ACK`, `NAK`, `HEARTBEAT`).
    #[error("{0:?} frames carry no application message")]
    NotApplication(FrameType),
    /// The payload length is not what the layout requires.
    #[error("{kind:?} payload is {len} bytes, expected {expected}")]
    BadLength {
        /// Frame type.
        kind: FrameType,
        /// Bytes received.
        len: usize,
        /// What the layout requires, in words.
        expected: &'static str,
    },
    /// A string is not valid UTF-8.
    #[error("{field} is not valid UTF-8")]
    BadUtf8 {
        /// Which field.
        field: &'static str,
    },
    /// A string is longer than allowed.
    #[error("{field} is {len} bytes, at most {max} allowed")]
    StringTooLong {
        /// Which field.
        field: &'static str,
        /// Its length.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// A float is NaN or infinite.
    #[error("{field} is NaN or infinite")]
    NonFinite {
        /// Which field.
        field: &'static str,
    },
    /// A field is outside its allowed range.
    #[error("{field} is out of range: {value}")]
    OutOfRange {
        /// Which field.
        field: &'static str,
        /// The value, as text.
        value: String,
    },
    /// An enumerated code is not defined.
    #[error("unknown {field} code {code}")]
    UnknownCode {
        /// Which field.
        field: &'static str,
        /// The code.
        code: u32,
    },
    /// A message to encode does not fit one frame.
    #[error("{kind:?} message of {len} bytes exceeds the {max}-byte payload limit")]
    TooLarge {
        /// Frame type.
        kind: FrameType,
        /// Encoded length.
        len: usize,
        /// [`MAX_PAYLOAD_LEN`].
        max: usize,
    },
}

/// Which end sent a `HELLO`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Role {
    /// The spinloop daemon (code 0).
    Host = 0,
    /// The console / RF device (code 1).
    Device = 1,
}

/// What a device can do, sent in its `HELLO`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Capabilities {
    /// Larmor frequency f0 in Hz (finite, > 0).
    pub f0_hz: f64,
    /// RF sample interval in ns (> 0); uploads must use it.
    pub rf_dt_ns: u32,
    /// Most samples one waveform may have (> 0).
    pub max_waveform_samples: u32,
    /// Complex points per acquisition (> 0).
    pub acquisition_points: u32,
    /// Acquisition dwell time in ns (> 0).
    pub dwell_ns: u32,
    /// Largest allowed |B1| of a waveform sample, in Hz (finite, > 0).
    pub max_b1_hz: f64,
}

/// `HELLO` payload.
#[derive(Debug, Clone, PartialEq)]
pub struct Hello {
    /// Application protocol version ([`APP_VERSION`]).
    pub protocol_version: u8,
    /// Sender's role.
    pub role: Role,
    /// Distinct for every `HELLO` a sender sends (see the link layer's HELLO rule).
    pub nonce: u32,
    /// Device `HELLO`: the nonce of the host `HELLO` it answers, or 0 if unsolicited (the
    /// device has no session and asks the host to start one). Host `HELLO`: 0.
    pub reply_to: u32,
    /// Console (or host) id, at most [`MAX_CONSOLE_ID_LEN`] UTF-8 bytes.
    pub console_id: String,
    /// Present exactly when `role` is [`Role::Device`].
    pub capabilities: Option<Capabilities>,
}

/// `ERROR` payload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ErrorReport {
    /// Error code, see [`error_code`].
    pub code: u16,
    /// Human-readable UTF-8 text, at most [`MAX_ERROR_MESSAGE_LEN`] bytes.
    pub message: String,
}

/// `ERROR` codes defined by version 1.
pub mod error_code {
    /// An application frame arrived before a `HELLO` established the session; the receiver
    /// of this error should send a fresh `HELLO`.
    pub const NO_SESSION: u16 = 1;
    /// A payload did not decode.
    pub const MALFORMED: u16 = 2;
    /// `PLAY` named a waveform id that is not committed.
    pub const UNKNOWN_WAVEFORM: u16 = 3;
    /// A frame type that this end does not accept in this direction.
    pub const UNEXPECTED: u16 = 4;
}

/// `WAVEFORM_BEGIN` payload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WaveformBegin {
    /// Waveform id chosen by the host.
    pub waveform_id: u32,
    /// Total samples (> 0).
    pub sample_count: u32,
    /// Sample interval in ns (> 0).
    pub sample_dt_ns: u32,
    /// Sample format code ([`FORMAT_COMPLEX_F32_HZ`]).
    pub format: u8,
}

/// `WAVEFORM_CHUNK` and `FID_CHUNK` payload: samples (points) at an offset.
#[derive(Debug, Clone, PartialEq)]
pub struct Chunk {
    /// Waveform id (`WAVEFORM_CHUNK`) or acquisition id (`FID_CHUNK`).
    pub id: u32,
    /// Index of the first sample in the whole waveform / FID.
    pub offset: u32,
    /// 1 to [`MAX_CHUNK_SAMPLES`] finite samples.
    pub samples: Vec<Complex32>,
}

/// `WAVEFORM_COMMIT` payload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WaveformCommit {
    /// Waveform id.
    pub waveform_id: u32,
    /// CRC-32C of all sample bytes in order ([`samples_crc`]).
    pub crc: u32,
    /// Total samples.
    pub sample_count: u32,
}

/// Why a device rejected an upload.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RejectReason {
    /// Code 1: the CRC-32C in `WAVEFORM_COMMIT` does not match the received samples.
    ChecksumMismatch = 1,
    /// Code 2: samples are missing, or chunks arrived out of order, or the commit's count
    /// differs from the begin's.
    MissingChunks = 2,
    /// Code 3: more samples than [`Capabilities::max_waveform_samples`] (or than announced).
    TooLong = 3,
    /// Code 4: a sample's |B1| exceeds [`Capabilities::max_b1_hz`].
    AmplitudeOverLimit = 4,
    /// Code 5: a sample is NaN or infinite.
    NonFinite = 5,
    /// Code 6: no upload with this waveform id is in progress.
    UnknownId = 6,
    /// Code 7: unsupported sample format or a sample interval other than the device's.
    BadFormat = 7,
}

impl RejectReason {
    /// The reason with wire code `code`.
    pub fn from_code(code: u8) -> Option<RejectReason> {
        Some(match code {
            1 => RejectReason::ChecksumMismatch,
            2 => RejectReason::MissingChunks,
            3 => RejectReason::TooLong,
            4 => RejectReason::AmplitudeOverLimit,
            5 => RejectReason::NonFinite,
            6 => RejectReason::UnknownId,
            7 => RejectReason::BadFormat,
            _ => return None,
        })
    }
}

/// `WAVEFORM_STATUS` payload: the device's answer to a `WAVEFORM_COMMIT`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WaveformStatus {
    /// Waveform id.
    pub waveform_id: u32,
    /// `Ok(())` if committed, else why it was rejected.
    pub result: Result<(), RejectReason>,
}

/// `PLAY` payload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Play {
    /// A committed waveform id.
    pub waveform_id: u32,
    /// Acquisition id chosen by the host; identifies the resulting FID.
    pub acquisition_id: u32,
    /// Number of averages (≥ 1).
    pub averages: u32,
}

/// `FID_END` payload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FidEnd {
    /// Acquisition id.
    pub acquisition_id: u32,
    /// Waveform played.
    pub waveform_id: u32,
    /// Total complex points sent in `FID_CHUNK`s.
    pub total_points: u32,
    /// Dwell time in ns (> 0).
    pub dwell_ns: u32,
    /// CRC-32C of all points' bytes in order ([`samples_crc`]).
    pub crc: u32,
    /// Device timestamp of the acquisition, µs in the device's own epoch.
    pub timestamp_us: u64,
}

/// A decoded application payload.
#[derive(Debug, Clone, PartialEq)]
pub enum Message {
    /// `HELLO`.
    Hello(Hello),
    /// `ERROR`.
    Error(ErrorReport),
    /// `WAVEFORM_BEGIN`.
    WaveformBegin(WaveformBegin),
    /// `WAVEFORM_CHUNK`.
    WaveformChunk(Chunk),
    /// `WAVEFORM_COMMIT`.
    WaveformCommit(WaveformCommit),
    /// `WAVEFORM_STATUS`.
    WaveformStatus(WaveformStatus),
    /// `PLAY`.
    Play(Play),
    /// `FID_CHUNK`.
    FidChunk(Chunk),
    /// `FID_END`.
    FidEnd(FidEnd),
    /// `FID_STORED` (acquisition id).
    FidStored {
        /// Acquisition id now durably stored by the host.
        acquisition_id: u32,
    },
}

/// CRC-32C of the wire bytes of `samples` (each as I `f32` LE then Q `f32` LE), as carried in
/// `WAVEFORM_COMMIT` and `FID_END`.
pub fn samples_crc(samples: &[Complex32]) -> u32 {
    let mut crc = Crc32c::new();
    for s in samples {
        crc.update(&s.re.to_le_bytes());
        crc.update(&s.im.to_le_bytes());
    }
    crc.finish()
}

/// Little-endian reader over a payload; every read is bounds-checked.
struct Reader<'a> {
    bytes: &'a [u8],
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        if n > self.bytes.len() {
            return None;
        }
        let (head, rest) = self.bytes.split_at(n);
        self.bytes = rest;
        Some(head)
    }
    fn array<const N: usize>(&mut self) -> Option<[u8; N]> {
        self.take(N).and_then(|b| b.try_into().ok())
    }
    fn u8(&mut self) -> Option<u8> {
        self.array::<1>().map(|b| b[0])
    }
    fn u16(&mut self) -> Option<u16> {
        self.array().map(u16::from_le_bytes)
    }
    fn u32(&mut self) -> Option<u32> {
        self.array().map(u32::from_le_bytes)
    }
    fn u64(&mut self) -> Option<u64> {
        self.array().map(u64::from_le_bytes)
    }
    fn f32(&mut self) -> Option<f32> {
        self.array().map(f32::from_le_bytes)
    }
    fn f64(&mut self) -> Option<f64> {
        self.array().map(f64::from_le_bytes)
    }
}

fn finite_positive(field: &'static str, v: f64) -> Result<f64, MessageError> {
    if !v.is_finite() {
        return Err(MessageError::NonFinite { field });
    }
    if v <= 0.0 {
        return Err(MessageError::OutOfRange {
            field,
            value: v.to_string(),
        });
    }
    Ok(v)
}

fn nonzero(field: &'static str, v: u32) -> Result<u32, MessageError> {
    if v == 0 {
        return Err(MessageError::OutOfRange {
            field,
            value: "0".into(),
        });
    }
    Ok(v)
}

fn utf8(field: &'static str, bytes: &[u8], max: usize) -> Result<String, MessageError> {
    if bytes.len() > max {
        return Err(MessageError::StringTooLong {
            field,
            len: bytes.len(),
            max,
        });
    }
    std::str::from_utf8(bytes)
        .map(str::to_owned)
        .map_err(|_| MessageError::BadUtf8 { field })
}

impl Capabilities {
    /// Checks the ranges documented on each field.
    pub fn validate(&self) -> Result<(), MessageError> {
        finite_positive("f0_hz", self.f0_hz)?;
        nonzero("rf_dt_ns", self.rf_dt_ns)?;
        nonzero("max_waveform_samples", self.max_waveform_samples)?;
        nonzero("acquisition_points", self.acquisition_points)?;
        nonzero("dwell_ns", self.dwell_ns)?;
        finite_positive("max_b1_hz", self.max_b1_hz)?;
        Ok(())
    }
}

impl Message {
    /// The frame type that carries this message.
    pub fn frame_type(&self) -> FrameType {
        match self {
            Message::Hello(_) => FrameType::Hello,
            Message::Error(_) => FrameType::Error,
            Message::WaveformBegin(_) => FrameType::WaveformBegin,
            Message::WaveformChunk(_) => FrameType::WaveformChunk,
            Message::WaveformCommit(_) => FrameType::WaveformCommit,
            Message::WaveformStatus(_) => FrameType::WaveformStatus,
            Message::Play(_) => FrameType::Play,
            Message::FidChunk(_) => FrameType::FidChunk,
            Message::FidEnd(_) => FrameType::FidEnd,
            Message::FidStored { .. } => FrameType::FidStored,
        }
    }

    /// The payload bytes. Fails if a string is too long, a chunk has no or too many samples,
    /// capabilities are out of range, or the result would exceed [`MAX_PAYLOAD_LEN`]. Floats
    /// are not checked here (a device must be able to send what it measured); receivers
    /// reject non-finite values.
    pub fn encode(&self) -> Result<Vec<u8>, MessageError> {
        let mut out = Vec::new();
        match self {
            Message::Hello(h) => {
                let id = h.console_id.as_bytes();
                if id.len() > MAX_CONSOLE_ID_LEN {
                    return Err(MessageError::StringTooLong {
                        field: "console_id",
                        len: id.len(),
                        max: MAX_CONSOLE_ID_LEN,
                    });
                }
                out.push(h.protocol_version);
                out.push(h.role as u8);
                out.extend_from_slice(&h.nonce.to_le_bytes());
                out.extend_from_slice(&h.reply_to.to_le_bytes());
                out.push(id.len() as u8);
                out.extend_from_slice(id);
                match (h.role, &h.capabilities) {
                    (Role::Device, Some(c)) => {
                        c.validate()?;
                        out.extend_from_slice(&c.f0_hz.to_le_bytes());
                        out.extend_from_slice(&c.rf_dt_ns.to_le_bytes());
                        out.extend_from_slice(&c.max_waveform_samples.to_le_bytes());
                        out.extend_from_slice(&c.acquisition_points.to_le_bytes());
                        out.extend_from_slice(&c.dwell_ns.to_le_bytes());
                        out.extend_from_slice(&c.max_b1_hz.to_le_bytes());
                    }
                    (Role::Host, None) => {}
                    _ => {
                        return Err(MessageError::OutOfRange {
                            field: "capabilities",
                            value: "capabilities must be present exactly for role device".into(),
                        });
                    }
                }
            }
            Message::Error(e) => {
                let msg = e.message.as_bytes();
                if msg.len() > MAX_ERROR_MESSAGE_LEN {
                    return Err(MessageError::StringTooLong {
                        field: "message",
                        len: msg.len(),
                        max: MAX_ERROR_MESSAGE_LEN,
                    });
                }
                out.extend_from_slice(&e.code.to_le_bytes());
                out.extend_from_slice(msg);
            }
            Message::WaveformBegin(b) => {
                out.extend_from_slice(&b.waveform_id.to_le_bytes());
                out.extend_from_slice(&b.sample_count.to_le_bytes());
                out.extend_from_slice(&b.sample_dt_ns.to_le_bytes());
                out.push(b.format);
            }
            Message::WaveformChunk(c) | Message::FidChunk(c) => {
                if c.samples.is_empty() || c.samples.len() > MAX_CHUNK_SAMPLES {
                    return Err(MessageError::OutOfRange {
                        field: "samples",
                        value: c.samples.len().to_string(),
                    });
                }
                out.extend_from_slice(&c.id.to_le_bytes());
                out.extend_from_slice(&c.offset.to_le_bytes());
                for s in &c.samples {
                    out.extend_from_slice(&s.re.to_le_bytes());
                    out.extend_from_slice(&s.im.to_le_bytes());
                }
            }
            Message::WaveformCommit(c) => {
                out.extend_from_slice(&c.waveform_id.to_le_bytes());
                out.extend_from_slice(&c.crc.to_le_bytes());
                out.extend_from_slice(&c.sample_count.to_le_bytes());
            }
            Message::WaveformStatus(s) => {
                out.extend_from_slice(&s.waveform_id.to_le_bytes());
                match s.result {
                    Ok(()) => out.extend_from_slice(&[0, 0]),
                    Err(r) => out.extend_from_slice(&[1, r as u8]),
                }
            }
            Message::Play(p) => {
                out.extend_from_slice(&p.waveform_id.to_le_bytes());
                out.extend_from_slice(&p.acquisition_id.to_le_bytes());
                out.extend_from_slice(&p.averages.to_le_bytes());
            }
            Message::FidEnd(f) => {
                out.extend_from_slice(&f.acquisition_id.to_le_bytes());
                out.extend_from_slice(&f.waveform_id.to_le_bytes());
                out.extend_from_slice(&f.total_points.to_le_bytes());
                out.extend_from_slice(&f.dwell_ns.to_le_bytes());
                out.extend_from_slice(&f.crc.to_le_bytes());
                out.extend_from_slice(&f.timestamp_us.to_le_bytes());
            }
            Message::FidStored { acquisition_id } => {
                out.extend_from_slice(&acquisition_id.to_le_bytes());
            }
        }
        if out.len() > MAX_PAYLOAD_LEN {
            return Err(MessageError::TooLarge {
                kind: self.frame_type(),
                len: out.len(),
                max: MAX_PAYLOAD_LEN,
            });
        }
        Ok(out)
    }

    /// Decodes and validates the payload of a frame of type `kind`.
    pub fn decode(kind: FrameType, payload: &[u8]) -> Result<Message, MessageError> {
        let bad = |expected: &'static str| MessageError::BadLength {
            kind,
            len: payload.len(),
            expected,
        };
        let exact = |n: usize, expected: &'static str| {
            if payload.len() == n {
                Ok(())
            } else {
                Err(bad(expected))
            }
        };
        if payload.len() > MAX_PAYLOAD_LEN {
            return Err(bad("at most 1024 bytes"));
        }
        let mut r = Reader { bytes: payload };
        let message = match kind {
            FrameType::Ack | FrameType::Nak | FrameType::Heartbeat => {
                return Err(MessageError::NotApplication(kind));
            }
            FrameType::Hello => {
                let short = || bad("at least 11 bytes plus the console id");
                let protocol_version = r.u8().ok_or_else(short)?;
                let role = match r.u8().ok_or_else(short)? {
                    0 => Role::Host,
                    1 => Role::Device,
                    code => {
                        return Err(MessageError::UnknownCode {
                            field: "role",
                            code: code.into(),
                        });
                    }
                };
                let nonce = r.u32().ok_or_else(short)?;
                let reply_to = r.u32().ok_or_else(short)?;
                let id_len = usize::from(r.u8().ok_or_else(short)?);
                if id_len > MAX_CONSOLE_ID_LEN {
                    return Err(MessageError::StringTooLong {
                        field: "console_id",
                        len: id_len,
                        max: MAX_CONSOLE_ID_LEN,
                    });
                }
                let id = r.take(id_len).ok_or_else(short)?;
                let console_id = utf8("console_id", id, MAX_CONSOLE_ID_LEN)?;
                let capabilities = match role {
                    Role::Host => {
                        if !r.bytes.is_empty() {
                            return Err(bad("11 bytes plus the console id (host)"));
                        }
                        None
                    }
                    Role::Device => {
                        if r.bytes.len() != CAPABILITIES_LEN {
                            return Err(bad("11 bytes plus the console id plus 32 (device)"));
                        }
                        let caps = (|| {
                            Some(Capabilities {
                                f0_hz: r.f64()?,
                                rf_dt_ns: r.u32()?,
                                max_waveform_samples: r.u32()?,
                                acquisition_points: r.u32()?,
                                dwell_ns: r.u32()?,
                                max_b1_hz: r.f64()?,
                            })
                        })()
                        .ok_or_else(short)?;
                        caps.validate()?;
                        Some(caps)
                    }
                };
                Message::Hello(Hello {
                    protocol_version,
                    role,
                    nonce,
                    reply_to,
                    console_id,
                    capabilities,
                })
            }
            FrameType::Error => {
                let code = r.u16().ok_or_else(|| bad("at least 2 bytes"))?;
                let message = utf8("message", r.bytes, MAX_ERROR_MESSAGE_LEN)?;
                Message::Error(ErrorReport { code, message })
            }
            FrameType::WaveformBegin => {
                exact(13, "13 bytes")?;
                let b = (|| {
                    Some(WaveformBegin {
                        waveform_id: r.u32()?,
                        sample_count: r.u32()?,
                        sample_dt_ns: r.u32()?,
                        format: r.u8()?,
                    })
                })()
                .ok_or_else(|| bad("13 bytes"))?;
                nonzero("sample_count", b.sample_count)?;
                nonzero("sample_dt_ns", b.sample_dt_ns)?;
                if b.format != FORMAT_COMPLEX_F32_HZ {
                    return Err(MessageError::UnknownCode {
                        field: "format",
                        code: b.format.into(),
                    });
                }
                Message::WaveformBegin(b)
            }
            FrameType::WaveformChunk | FrameType::FidChunk => {
                let n = payload.len();
                if n < CHUNK_HEADER_LEN + SAMPLE_LEN
                    || !(n - CHUNK_HEADER_LEN).is_multiple_of(SAMPLE_LEN)
                {
                    return Err(bad("8 bytes plus a positive multiple of 8"));
                }
                let id = r.u32().ok_or_else(|| bad("8 bytes header"))?;
                let offset = r.u32().ok_or_else(|| bad("8 bytes header"))?;
                let count = (n - CHUNK_HEADER_LEN) / SAMPLE_LEN;
                if u64::from(offset) + count as u64 > u64::from(u32::MAX) {
                    return Err(MessageError::OutOfRange {
                        field: "offset",
                        value: offset.to_string(),
                    });
                }
                let mut samples = Vec::with_capacity(count);
                for _ in 0..count {
                    let re = r.f32().ok_or_else(|| bad("whole samples"))?;
                    let im = r.f32().ok_or_else(|| bad("whole samples"))?;
                    if !re.is_finite() || !im.is_finite() {
                        return Err(MessageError::NonFinite { field: "samples" });
                    }
                    samples.push(Complex32::new(re, im));
                }
                let chunk = Chunk {
                    id,
                    offset,
                    samples,
                };
                if kind == FrameType::WaveformChunk {
                    Message::WaveformChunk(chunk)
                } else {
                    Message::FidChunk(chunk)
                }
            }
            FrameType::WaveformCommit => {
                exact(12, "12 bytes")?;
                let c = (|| {
                    Some(WaveformCommit {
                        waveform_id: r.u32()?,
                        crc: r.u32()?,
                        sample_count: r.u32()?,
                    })
                })()
                .ok_or_else(|| bad("12 bytes"))?;
                Message::WaveformCommit(c)
            }
            FrameType::WaveformStatus => {
                exact(6, "6 bytes")?;
                let id = r.u32().ok_or_else(|| bad("6 bytes"))?;
                let status = r.u8().ok_or_else(|| bad("6 bytes"))?;
                let reason = r.u8().ok_or_else(|| bad("6 bytes"))?;
                let result = match (status, reason) {
                    (0, 0) => Ok(()),
                    (1, code) => Err(RejectReason::from_code(code).ok_or(
                        MessageError::UnknownCode {
                            field: "reject reason",
                            code: code.into(),
                        },
                    )?),
                    (0, code) => {
                        return Err(MessageError::OutOfRange {
                            field: "reject reason",
                            value: format!("{code} with status committed"),
                        });
                    }
                    (code, _) => {
                        return Err(MessageError::UnknownCode {
                            field: "status",
                            code: code.into(),
                        });
                    }
                };
                Message::WaveformStatus(WaveformStatus {
                    waveform_id: id,
                    result,
                })
            }
            FrameType::Play => {
                exact(12, "12 bytes")?;
                let p = (|| {
                    Some(Play {
                        waveform_id: r.u32()?,
                        acquisition_id: r.u32()?,
                        averages: r.u32()?,
                    })
                })()
                .ok_or_else(|| bad("12 bytes"))?;
                nonzero("averages", p.averages)?;
                Message::Play(p)
            }
            FrameType::FidEnd => {
                exact(28, "28 bytes")?;
                let f = (|| {
                    Some(FidEnd {
                        acquisition_id: r.u32()?,
                        waveform_id: r.u32()?,
                        total_points: r.u32()?,
                        dwell_ns: r.u32()?,
                        crc: r.u32()?,
                        timestamp_us: r.u64()?,
                    })
                })()
                .ok_or_else(|| bad("28 bytes"))?;
                nonzero("dwell_ns", f.dwell_ns)?;
                Message::FidEnd(f)
            }
            FrameType::FidStored => {
                exact(4, "4 bytes")?;
                let acquisition_id = r.u32().ok_or_else(|| bad("4 bytes"))?;
                Message::FidStored { acquisition_id }
            }
        };
        Ok(message)
    }
}

/// Splits `samples` into chunks of at most [`MAX_CHUNK_SAMPLES`], with their offsets.
pub fn chunks(id: u32, samples: &[Complex32]) -> impl Iterator<Item = Chunk> + '_ {
    samples
        .chunks(MAX_CHUNK_SAMPLES)
        .enumerate()
        .map(move |(i, c)| Chunk {
            id,
            offset: u32::try_from(i * MAX_CHUNK_SAMPLES).unwrap_or(u32::MAX),
            samples: c.to_vec(),
        })
}
