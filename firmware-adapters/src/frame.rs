//! Frames: the [`Frame`] value, its wire encoding ([`Frame::encode`]) and the sans-IO streaming
//! [`Decoder`]. The byte layout is specified in the crate documentation.

use std::collections::VecDeque;

use thiserror::Error;

use crate::cobs::{self, CobsError};
use crate::crc32c::crc32c;

/// First header byte of every frame (`'S'`).
pub const MAGIC: u8 = 0x53;
/// Protocol version carried in the second header byte; this crate speaks only this version.
pub const VERSION: u8 = 0x01;
/// Header length in bytes (magic, version, type, flags, sequence number, payload length).
pub const HEADER_LEN: usize = 8;
/// Length of the CRC-32C trailer in bytes.
pub const CRC_LEN: usize = 4;
/// Largest payload a frame may carry, in bytes.
pub const MAX_PAYLOAD_LEN: usize = 1024;
/// Smallest unstuffed frame (header and CRC, empty payload).
pub const MIN_RAW_FRAME_LEN: usize = HEADER_LEN + CRC_LEN;
/// Largest unstuffed frame: header, maximum payload and CRC (1036 bytes).
pub const MAX_RAW_FRAME_LEN: usize = HEADER_LEN + MAX_PAYLOAD_LEN + CRC_LEN;
/// Largest COBS-encoded frame, excluding the `0x00` delimiter (1041 bytes).
pub const MAX_ENCODED_FRAME_LEN: usize = cobs::max_encoded_len(MAX_RAW_FRAME_LEN);
/// Largest frame on the wire, including the `0x00` delimiter (1042 bytes).
pub const MAX_WIRE_FRAME_LEN: usize = MAX_ENCODED_FRAME_LEN + 1;
/// The frame delimiter.
pub const DELIMITER: u8 = 0x00;

/// Frame types and their wire codes. Codes not listed here are a decode error
/// ([`FrameError::UnknownType`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum FrameType {
    /// `0x01`, both directions: link start, carries capabilities.
    Hello = 0x01,
    /// `0x02`, both directions: positive acknowledgement of a sequence number.
    Ack = 0x02,
    /// `0x03`, both directions: negative acknowledgement (request retransmission).
    Nak = 0x03,
    /// `0x04`, both directions: liveness while otherwise idle.
    Heartbeat = 0x04,
    /// `0x05`, both directions: error report.
    Error = 0x05,
    /// `0x10`, host → device: start of a waveform upload.
    WaveformBegin = 0x10,
    /// `0x11`, host → device: one chunk of waveform samples.
    WaveformChunk = 0x11,
    /// `0x12`, host → device: end of upload; whole-waveform checksum, commit.
    WaveformCommit = 0x12,
    /// `0x13`, device → host: whether an upload was committed or rejected, and why.
    WaveformStatus = 0x13,
    /// `0x20`, host → device: play a committed waveform.
    Play = 0x20,
    /// `0x30`, device → host: one chunk of an acquired FID.
    FidChunk = 0x30,
    /// `0x31`, device → host: end of an FID transfer.
    FidEnd = 0x31,
    /// `0x32`, host → device: an FID is durably stored; the device may forget it.
    FidStored = 0x32,
}

impl FrameType {
    /// Every frame type, in code order.
    pub const ALL: [FrameType; 13] = [
        FrameType::Hello,
        FrameType::Ack,
        FrameType::Nak,
        FrameType::Heartbeat,
        FrameType::Error,
        FrameType::WaveformBegin,
        FrameType::WaveformChunk,
        FrameType::WaveformCommit,
        FrameType::WaveformStatus,
        FrameType::Play,
        FrameType::FidChunk,
        FrameType::FidEnd,
        FrameType::FidStored,
    ];

    /// The wire code.
    pub const fn code(self) -> u8 {
        self as u8
    }

    /// The frame type with wire code `code`, if any.
    pub const fn from_code(code: u8) -> Option<FrameType> {
        Some(match code {
            0x01 => FrameType::Hello,
            0x02 => FrameType::Ack,
            0x03 => FrameType::Nak,
            0x04 => FrameType::Heartbeat,
            0x05 => FrameType::Error,
            0x10 => FrameType::WaveformBegin,
            0x11 => FrameType::WaveformChunk,
            0x12 => FrameType::WaveformCommit,
            0x13 => FrameType::WaveformStatus,
            0x20 => FrameType::Play,
            0x30 => FrameType::FidChunk,
            0x31 => FrameType::FidEnd,
            0x32 => FrameType::FidStored,
            _ => return None,
        })
    }
}

impl TryFrom<u8> for FrameType {
    type Error = FrameError;

    fn try_from(code: u8) -> Result<Self, FrameError> {
        FrameType::from_code(code).ok_or(FrameError::UnknownType { code })
    }
}

impl From<FrameType> for u8 {
    fn from(kind: FrameType) -> u8 {
        kind.code()
    }
}

/// Why a frame could not be encoded, or why received bytes are not a valid frame.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum FrameError {
    /// The bytes between two delimiters are not valid COBS.
    #[error("bad COBS stuffing: {0}")]
    Cobs(#[from] CobsError),
    /// More than [`MAX_ENCODED_FRAME_LEN`] bytes arrived without a delimiter; they are
    /// discarded up to the next delimiter.
    #[error(
        "frame exceeds the maximum encoded length of {max} bytes; discarded up to the next delimiter"
    )]
    Oversize {
        /// The maximum encoded frame length ([`MAX_ENCODED_FRAME_LEN`]).
        max: usize,
    },
    /// The unstuffed frame is shorter than a header plus CRC.
    #[error("frame too short: {len} bytes after unstuffing, at least {min} required")]
    TooShort {
        /// Unstuffed length.
        len: usize,
        /// Minimum length ([`MIN_RAW_FRAME_LEN`]).
        min: usize,
    },
    /// The CRC-32C trailer does not match the header and payload.
    #[error("CRC-32C mismatch: frame carries {received:#010x}, computed {computed:#010x}")]
    CrcMismatch {
        /// The CRC carried in the frame.
        received: u32,
        /// The CRC computed over the received header and payload.
        computed: u32,
    },
    /// The first header byte is not [`MAGIC`].
    #[error("bad magic byte {found:#04x}, expected {expected:#04x}", expected = MAGIC)]
    BadMagic {
        /// The byte found.
        found: u8,
    },
    /// The version byte is not [`VERSION`].
    #[error("unsupported protocol version {found}, this side speaks version {expected}", expected = VERSION)]
    BadVersion {
        /// The version found.
        found: u8,
    },
    /// The frame type code is not one of [`FrameType`].
    #[error("unknown frame type code {code:#04x}")]
    UnknownType {
        /// The code found.
        code: u8,
    },
    /// A payload longer than [`MAX_PAYLOAD_LEN`] was given to the encoder or declared in a
    /// received header.
    #[error("payload of {len} bytes exceeds the maximum of {max} bytes")]
    PayloadTooLarge {
        /// The payload length.
        len: usize,
        /// The maximum ([`MAX_PAYLOAD_LEN`]).
        max: usize,
    },
    /// The header's payload length disagrees with the number of payload bytes received.
    #[error("header declares a {declared}-byte payload but {actual} bytes were received")]
    LengthMismatch {
        /// Length declared in the header.
        declared: usize,
        /// Payload bytes actually present.
        actual: usize,
    },
}

/// One protocol frame.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Frame {
    /// Frame type.
    pub kind: FrameType,
    /// Flag bits; reserved for the link layer and carried unchanged by the framing layer.
    pub flags: u8,
    /// Sequence number.
    pub seq: u16,
    /// Payload, at most [`MAX_PAYLOAD_LEN`] bytes.
    pub payload: Vec<u8>,
}

impl Frame {
    /// A frame with no flags set.
    pub fn new(kind: FrameType, seq: u16, payload: Vec<u8>) -> Self {
        Self {
            kind,
            flags: 0,
            seq,
            payload,
        }
    }

    /// The unstuffed bytes: header, payload, CRC-32C (little-endian).
    pub fn to_raw(&self) -> Result<Vec<u8>, FrameError> {
        let len = self.payload.len();
        if len > MAX_PAYLOAD_LEN {
            return Err(FrameError::PayloadTooLarge {
                len,
                max: MAX_PAYLOAD_LEN,
            });
        }
        let len16 = u16::try_from(len).map_err(|_| FrameError::PayloadTooLarge {
            len,
            max: MAX_PAYLOAD_LEN,
        })?;
        let mut raw = Vec::with_capacity(HEADER_LEN + len + CRC_LEN);
        raw.push(MAGIC);
        raw.push(VERSION);
        raw.push(self.kind.code());
        raw.push(self.flags);
        raw.extend_from_slice(&self.seq.to_le_bytes());
        raw.extend_from_slice(&len16.to_le_bytes());
        raw.extend_from_slice(&self.payload);
        let crc = crc32c(&raw);
        raw.extend_from_slice(&crc.to_le_bytes());
        Ok(raw)
    }

    /// Appends the wire encoding (COBS-stuffed frame and the `0x00` delimiter) to `out`.
    pub fn encode_into(&self, out: &mut Vec<u8>) -> Result<(), FrameError> {
        let raw = self.to_raw()?;
        cobs::encode_into(&raw, out);
        out.push(DELIMITER);
        Ok(())
    }

    /// The wire encoding: COBS(header ‖ payload ‖ CRC) followed by the `0x00` delimiter. At most
    /// [`MAX_WIRE_FRAME_LEN`] bytes.
    pub fn encode(&self) -> Result<Vec<u8>, FrameError> {
        let mut out = Vec::with_capacity(MAX_WIRE_FRAME_LEN);
        self.encode_into(&mut out)?;
        Ok(out)
    }

    /// Parses an unstuffed frame (header, payload, CRC). Checks, in order: minimum length,
    /// CRC, magic, version, type, declared payload length.
    pub fn from_raw(raw: &[u8]) -> Result<Frame, FrameError> {
        if raw.len() < MIN_RAW_FRAME_LEN {
            return Err(FrameError::TooShort {
                len: raw.len(),
                min: MIN_RAW_FRAME_LEN,
            });
        }
        let (body, trailer) = raw.split_at(raw.len() - CRC_LEN);
        let received = u32::from_le_bytes([trailer[0], trailer[1], trailer[2], trailer[3]]);
        let computed = crc32c(body);
        if received != computed {
            return Err(FrameError::CrcMismatch { received, computed });
        }
        if body[0] != MAGIC {
            return Err(FrameError::BadMagic { found: body[0] });
        }
        if body[1] != VERSION {
            return Err(FrameError::BadVersion { found: body[1] });
        }
        let kind = FrameType::try_from(body[2])?;
        let flags = body[3];
        let seq = u16::from_le_bytes([body[4], body[5]]);
        let declared = usize::from(u16::from_le_bytes([body[6], body[7]]));
        if declared > MAX_PAYLOAD_LEN {
            return Err(FrameError::PayloadTooLarge {
                len: declared,
                max: MAX_PAYLOAD_LEN,
            });
        }
        let payload = &body[HEADER_LEN..];
        if payload.len() != declared {
            return Err(FrameError::LengthMismatch {
                declared,
                actual: payload.len(),
            });
        }
        Ok(Frame {
            kind,
            flags,
            seq,
            payload: payload.to_vec(),
        })
    }

    /// Decodes one COBS-stuffed frame given without its delimiter.
    pub fn decode(stuffed: &[u8]) -> Result<Frame, FrameError> {
        if stuffed.len() > MAX_ENCODED_FRAME_LEN {
            return Err(FrameError::Oversize {
                max: MAX_ENCODED_FRAME_LEN,
            });
        }
        let mut scratch = [0u8; MAX_ENCODED_FRAME_LEN];
        decode_with(stuffed, &mut scratch)
    }
}

fn decode_with(stuffed: &[u8], scratch: &mut [u8]) -> Result<Frame, FrameError> {
    let n = cobs::decode_to_slice(stuffed, scratch)?;
    Frame::from_raw(&scratch[..n])
}

/// Sans-IO streaming decoder: feed received bytes with [`push`](Decoder::push), take frames
/// and errors with [`poll`](Decoder::poll).
///
/// Bytes are split at `0x00` delimiters; each delimited block is unstuffed and checked. A bad
/// block yields one error and decoding continues with the next block, so the decoder
/// resynchronises after line noise, a mid-frame start or a dropped byte. Empty blocks (two
/// delimiters in a row) are ignored. A block longer than [`MAX_ENCODED_FRAME_LEN`] yields
/// [`FrameError::Oversize`] as soon as the limit is passed and its remaining bytes are dropped
/// up to the next delimiter, so at most [`MAX_ENCODED_FRAME_LEN`] bytes of an incomplete frame
/// are ever buffered. Decoded results wait in a queue until polled; poll after every push.
#[derive(Debug, Clone)]
pub struct Decoder {
    /// Stuffed bytes of the frame being received (no delimiter yet).
    buf: Vec<u8>,
    /// Dropping an oversize block until the next delimiter.
    discarding: bool,
    /// Unstuffing buffer, reused.
    scratch: Vec<u8>,
    /// Results not yet polled.
    ready: VecDeque<Result<Frame, FrameError>>,
}

impl Default for Decoder {
    fn default() -> Self {
        Self::new()
    }
}

impl Decoder {
    /// A decoder at a frame boundary.
    pub fn new() -> Self {
        Self {
            buf: Vec::with_capacity(MAX_ENCODED_FRAME_LEN),
            discarding: false,
            scratch: vec![0; MAX_ENCODED_FRAME_LEN],
            ready: VecDeque::new(),
        }
    }

    /// Feeds received bytes (any split, any content).
    pub fn push(&mut self, bytes: &[u8]) {
        let mut rest = bytes;
        while !rest.is_empty() {
            let (segment, delimited) = match rest.iter().position(|&b| b == DELIMITER) {
                Some(p) => (&rest[..p], Some(p)),
                None => (rest, None),
            };
            if !self.discarding {
                let room = MAX_ENCODED_FRAME_LEN - self.buf.len();
                if segment.len() > room {
                    self.buf.clear();
                    self.discarding = true;
                    self.ready.push_back(Err(FrameError::Oversize {
                        max: MAX_ENCODED_FRAME_LEN,
                    }));
                } else {
                    self.buf.extend_from_slice(segment);
                }
            }
            match delimited {
                Some(p) => {
                    self.end_block();
                    rest = &rest[p + 1..];
                }
                None => rest = &[],
            }
        }
    }

    fn end_block(&mut self) {
        if self.discarding {
            self.discarding = false;
        } else if !self.buf.is_empty() {
            let result = decode_with(&self.buf, &mut self.scratch);
            self.ready.push_back(result);
        }
        self.buf.clear();
    }

    /// The next decoded frame or framing error, in arrival order; `None` when nothing complete
    /// is pending.
    pub fn poll(&mut self) -> Option<Result<Frame, FrameError>> {
        self.ready.pop_front()
    }

    /// Stuffed bytes of the incomplete frame currently buffered.
    pub fn partial_len(&self) -> usize {
        self.buf.len()
    }

    /// Drops any partial frame and unpolled results (e.g. after the port was reopened).
    pub fn reset(&mut self) {
        self.buf.clear();
        self.discarding = false;
        self.ready.clear();
    }
}
