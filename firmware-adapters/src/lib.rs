//! Sans-IO framing core of spinloop's console firmware protocol.
//!
//! Consoles and RF hardware that are reached over a serial port speak this protocol with the
//! spinloop daemon. This crate currently implements its bottom layer, framing: turning frames
//! into bytes and a byte stream back into frames, with integrity checks and resynchronisation.
//! It does no I/O; the caller moves bytes between a port and [`Frame::encode`] /
//! [`Decoder`]. The link layer, [`link`], builds on it: a sans-IO ARQ state machine
//! ([`link::Link`]) with sequence numbers, ACK/NAK, retransmission with a timeout and bounded
//! retries, duplicate detection and heartbeats; its semantics are specified in its module
//! documentation. The application messages (waveform upload, play, FID transfer) build on that.
//!
//! # Wire format (protocol version 1)
//!
//! This section is the contract firmware implements.
//!
//! A frame on the wire is
//!
//! ```text
//! COBS( header ‖ payload ‖ CRC-32C(header ‖ payload) as u32 little-endian )  0x00
//! ```
//!
//! that is, the *unstuffed frame* (header, payload, CRC trailer) is COBS-encoded, which removes
//! every `0x00` byte, and a single `0x00` delimiter follows. All multi-byte integers are
//! little-endian.
//!
//! ## Unstuffed frame
//!
//! | Offset    | Size | Field          | Value                                                      |
//! |-----------|------|----------------|------------------------------------------------------------|
//! | 0         | 1    | magic          | `0x53` (`'S'`), [`MAGIC`]                                  |
//! | 1         | 1    | version        | `0x01`, [`VERSION`]                                        |
//! | 2         | 1    | frame type     | a [`FrameType`] code (table below)                        |
//! | 3         | 1    | flags          | bit field owned by the link layer; framing carries it as is |
//! | 4         | 2    | sequence number| `u16` LE                                                   |
//! | 6         | 2    | payload length | `u16` LE, `0..=1024` ([`MAX_PAYLOAD_LEN`])                  |
//! | 8         | *n*  | payload        | *n* = payload length bytes                                 |
//! | 8 + *n*   | 4    | CRC-32C        | `u32` LE over bytes `0 .. 8 + n` (header and payload)      |
//!
//! The header is [`HEADER_LEN`] = 8 bytes; an unstuffed frame is 12 ([`MIN_RAW_FRAME_LEN`]) to
//! 1036 ([`MAX_RAW_FRAME_LEN`]) bytes.
//!
//! ## CRC-32C
//!
//! CRC-32C (Castagnoli): reflected, polynomial `0x82F63B78` (normal form `0x1EDC6F41`),
//! initial value `0xFFFFFFFF`, final XOR `0xFFFFFFFF`, i.e. the CRC used by iSCSI, SCTP and the
//! SSE4.2 `crc32` instruction. Check value: `"123456789"` → `0xE3069283`. See [`crc32c`](mod@crc32c).
//!
//! ## COBS and delimiting
//!
//! Consistent Overhead Byte Stuffing as in Cheshire & Baker (1999), see [`cobs`]. A frame that
//! ends exactly after a full 254-byte block has no trailing empty block (receivers accept both
//! forms). The stuffed frame is at most `n + ceil(n / 254)` bytes for an `n`-byte unstuffed
//! frame: at most [`MAX_ENCODED_FRAME_LEN`] = 1041 bytes, so at most [`MAX_WIRE_FRAME_LEN`] =
//! 1042 bytes on the wire including the delimiter. A receiver may discard any longer block.
//!
//! A sender may send extra `0x00` bytes at any time, e.g. one before its first frame after
//! (re)opening the port, to terminate whatever partial frame the peer holds; receivers ignore
//! empty blocks.
//!
//! ## Frame types
//!
//! | Code   | Type              | Direction     | Purpose                                           |
//! |--------|-------------------|---------------|---------------------------------------------------|
//! | `0x01` | `HELLO`           | both          | link start, version and capabilities              |
//! | `0x02` | `ACK`             | both          | acknowledges a sequence number                    |
//! | `0x03` | `NAK`             | both          | rejects / requests retransmission                 |
//! | `0x04` | `HEARTBEAT`       | both          | liveness while idle                               |
//! | `0x05` | `ERROR`           | both          | error report                                      |
//! | `0x10` | `WAVEFORM_BEGIN`  | host → device | starts a chunked waveform upload                  |
//! | `0x11` | `WAVEFORM_CHUNK`  | host → device | one chunk of waveform samples                     |
//! | `0x12` | `WAVEFORM_COMMIT` | host → device | whole-waveform checksum and explicit commit       |
//! | `0x20` | `PLAY`            | host → device | plays a committed waveform                        |
//! | `0x30` | `FID_CHUNK`       | device → host | one chunk of an acquired FID                      |
//! | `0x31` | `FID_END`         | device → host | ends an FID transfer                              |
//!
//! Every other code (including `0x00`) is invalid. Payload layouts of these types belong to the
//! link and application layers and are not specified by this version of the crate yet.
//!
//! ## Receiving
//!
//! A receiver splits the byte stream at `0x00`, then for each non-empty block checks, in this
//! order: block length (≤ 1041, else [`FrameError::Oversize`]), COBS validity
//! ([`FrameError::Cobs`]), unstuffed length ≥ 12 ([`FrameError::TooShort`]), CRC-32C over all
//! but the last four bytes against those four bytes ([`FrameError::CrcMismatch`]), magic
//! ([`FrameError::BadMagic`]), version ([`FrameError::BadVersion`]), type code
//! ([`FrameError::UnknownType`]), declared payload length ≤ 1024
//! ([`FrameError::PayloadTooLarge`]) and equal to the payload bytes present
//! ([`FrameError::LengthMismatch`]). A block failing any check is dropped whole and the receiver
//! continues with the next block. The CRC is checked before the header so that a corrupted
//! frame is reported as corrupted; the facts that the CRC trailer is the last four unstuffed
//! bytes and that bytes 0–1 are magic and version hold for all future versions, so a receiver
//! can always report a version mismatch precisely.
//!
//! # Example
//!
//! ```
//! use spinloop_firmware::{Decoder, Frame, FrameType};
//!
//! let frame = Frame::new(FrameType::Heartbeat, 7, vec![1, 0, 2]);
//! let wire = frame.encode().unwrap();
//! assert_eq!(*wire.last().unwrap(), 0x00);
//!
//! let mut decoder = Decoder::new();
//! decoder.push(&[0x42, 0x13]); // line noise
//! decoder.push(&[0x00]); // ... ended by a delimiter
//! decoder.push(&wire);
//! assert!(decoder.poll().unwrap().is_err()); // the noise, reported
//! assert_eq!(decoder.poll().unwrap().unwrap(), frame);
//! assert!(decoder.poll().is_none());
//! ```

#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod cobs;
pub mod crc32c;
pub mod frame;
pub mod link;

pub use cobs::CobsError;
pub use crc32c::crc32c;
pub use frame::{
    CRC_LEN, DELIMITER, Decoder, Frame, FrameError, FrameType, HEADER_LEN, MAGIC,
    MAX_ENCODED_FRAME_LEN, MAX_PAYLOAD_LEN, MAX_RAW_FRAME_LEN, MAX_WIRE_FRAME_LEN,
    MIN_RAW_FRAME_LEN, VERSION,
};
