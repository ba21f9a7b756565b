//! spinloop's console firmware protocol: framing, link layer, application sessions and a
//! serial transport.
//!
//! Consoles and RF hardware that are reached over a serial port speak this protocol with the
//! spinloop daemon. The layers, bottom up:
//!
//! * **Framing** ([`frame`], [`cobs`], [`crc32c`](mod@crc32c)): turning frames into bytes and a
//!   byte stream back into frames ([`Frame::encode`], [`Decoder`]), with integrity checks and
//!   resynchronisation.
//! * **Link** ([`link`]): a sans-IO ARQ state machine ([`link::Link`]) with sequence numbers,
//!   ACK/NAK, retransmission with a timeout and bounded retries, duplicate detection and
//!   heartbeats; its semantics are specified in its module documentation.
//! * **Application** ([`app`]): the payload layouts of every frame type, specified below, with
//!   validating decoders.
//! * **Sessions** ([`session`]): the sans-IO [`HostSession`] (daemon) and [`DeviceSession`]
//!   (firmware, simulated consoles) that run the protocol — `HELLO`, waveform upload, `PLAY`,
//!   FID transfer, FID retention until `FID_STORED`, reconnect — over a [`link::Link`].
//! * **Serial transport** ([`serial`]): [`serial::HostDriver`] and [`serial::DeviceDriver`]
//!   run those sessions over real serial ports on a thread, with unplug detection and reopen.
//!
//! Everything but [`serial`] is sans-IO: no clocks, no threads, no I/O; the caller feeds bytes
//! and `Instant`s.
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
//! | `0x13` | `WAVEFORM_STATUS` | device → host | upload committed or rejected (with a reason)      |
//! | `0x32` | `FID_STORED`      | host → device | the host has durably stored an FID                |
//!
//! (The last two rows are listed out of code order: `0x13` follows `0x12`, `0x32` follows
//! `0x31`.) Every other code (including `0x00`) is invalid. `ACK`, `NAK` and `HEARTBEAT` carry an
//! empty payload (see [`link`]); the payloads of all other types are specified below.
//!
//! # Application payloads (protocol version 1)
//!
//! Implemented by [`app::Message`]. All integers and floats are little-endian; `f32`/`f64` are
//! IEEE 754 binary32/binary64. A *sample* (waveform) or *point* (FID) is 8 bytes: I as `f32`
//! then Q as `f32`; waveform samples are B1 in Hz. Receivers reject a payload whose length
//! differs from the layout, a NaN or infinite float, an out-of-range value, an unknown code or
//! invalid UTF-8 ([`app::MessageError`]).
//!
//! ## `HELLO` (0x01)
//!
//! | Offset | Size | Field            | Value                                                    |
//! |--------|------|------------------|----------------------------------------------------------|
//! | 0      | 1    | protocol version | `1` ([`app::APP_VERSION`])                               |
//! | 1      | 1    | role             | `0` host, `1` device                                     |
//! | 2      | 4    | nonce            | `u32`, different in every `HELLO` a sender sends         |
//! | 6      | 4    | reply to         | `u32`; device: nonce of the host `HELLO` answered, 0 if unsolicited; host: 0 |
//! | 10     | 1    | id length *k*    | `0..=64`                                                 |
//! | 11     | *k*  | console id       | UTF-8                                                    |
//! | 11+*k* | 32   | capabilities     | device only; absent (payload ends) for the host          |
//!
//! Capabilities (device `HELLO`), offsets relative to their start:
//!
//! | Offset | Size | Field                | Value                                           |
//! |--------|------|----------------------|-------------------------------------------------|
//! | 0      | 8    | f0                   | `f64` Hz, finite, > 0                           |
//! | 8      | 4    | RF sample dt         | `u32` ns, > 0; uploads must use it             |
//! | 12     | 4    | max waveform samples | `u32`, > 0                                      |
//! | 16     | 4    | acquisition points   | `u32`, > 0                                      |
//! | 20     | 4    | dwell                | `u32` ns, > 0                                   |
//! | 24     | 8    | max B1 amplitude     | `f64` Hz, finite, > 0; limit on every \|sample\| |
//!
//! The host sends `HELLO` to (re)start a session; the device answers with its own `HELLO`
//! whose *reply to* is the host's nonce, which establishes the session. On a new host `HELLO`
//! (a nonce different from the current session's) the device drops uploads in progress and its
//! link state, answers `HELLO`, then re-sends every FID not yet confirmed by `FID_STORED`. A
//! device without a session (e.g. after a reboot) that receives any other application frame
//! answers with an unsolicited `HELLO` (*reply to* 0), which resynchronises the host's link
//! receiver, followed by `ERROR` code 1; a host receiving a device `HELLO` that does not answer
//! its current nonce starts a new session with a fresh `HELLO`.
//!
//! ## `ERROR` (0x05)
//!
//! | Offset | Size | Field   | Value                                                             |
//! |--------|------|---------|-------------------------------------------------------------------|
//! | 0      | 2    | code    | `u16`: 1 no session (send `HELLO`), 2 malformed payload, 3 unknown waveform in `PLAY`, 4 unexpected frame type |
//! | 2      | *m*  | message | UTF-8, `m ≤ 1022`                                                 |
//!
//! ## `WAVEFORM_BEGIN` (0x10), 13 bytes
//!
//! | Offset | Size | Field        | Value                                             |
//! |--------|------|--------------|---------------------------------------------------|
//! | 0      | 4    | waveform id  | `u32`                                             |
//! | 4      | 4    | sample count | `u32`, > 0                                        |
//! | 8      | 4    | sample dt    | `u32` ns, > 0                                     |
//! | 12     | 1    | format       | `1` = complex `f32` I/Q, Hz of B1                 |
//!
//! ## `WAVEFORM_CHUNK` (0x11) and `FID_CHUNK` (0x30), 16 to 1024 bytes
//!
//! | Offset | Size  | Field   | Value                                                        |
//! |--------|-------|---------|--------------------------------------------------------------|
//! | 0      | 4     | id      | `u32` waveform id (`WAVEFORM_CHUNK`) or acquisition id (`FID_CHUNK`) |
//! | 4      | 4     | offset  | `u32` index of the first sample/point                        |
//! | 8      | 8 *s* | samples | *s* = 1..=127 samples/points, all finite                     |
//!
//! Senders send chunks in order with consecutive offsets starting at 0, full (127) except the
//! last.
//!
//! ## `WAVEFORM_COMMIT` (0x12), 12 bytes
//!
//! | Offset | Size | Field        | Value                                                  |
//! |--------|------|--------------|--------------------------------------------------------|
//! | 0      | 4    | waveform id  | `u32`                                                  |
//! | 4      | 4    | CRC-32C      | `u32` over all sample bytes in order (8 per sample)    |
//! | 8      | 4    | sample count | `u32`, equal to `WAVEFORM_BEGIN`'s                     |
//!
//! ## `WAVEFORM_STATUS` (0x13), 6 bytes
//!
//! | Offset | Size | Field       | Value                                                    |
//! |--------|------|-------------|----------------------------------------------------------|
//! | 0      | 4    | waveform id | `u32`                                                    |
//! | 4      | 1    | status      | `0` committed, `1` rejected                              |
//! | 5      | 1    | reason      | `0` if committed; else 1 checksum mismatch, 2 missing chunks, 3 too long, 4 amplitude over limit, 5 NaN/infinite sample, 6 unknown waveform id, 7 bad format or sample dt |
//!
//! The device sends exactly one `WAVEFORM_STATUS` per `WAVEFORM_COMMIT`. A committed
//! waveform replaces any earlier one with the same id.
//!
//! ## `PLAY` (0x20), 12 bytes
//!
//! | Offset | Size | Field          | Value              |
//! |--------|------|----------------|--------------------|
//! | 0      | 4    | waveform id    | `u32`, committed   |
//! | 4      | 4    | acquisition id | `u32`              |
//! | 8      | 4    | averages       | `u32`, ≥ 1         |
//!
//! A `PLAY` for an acquisition id the device already acquired (and still retains) or is
//! acquiring is not acquired again; a retained FID is re-sent.
//!
//! ## `FID_END` (0x31), 28 bytes
//!
//! | Offset | Size | Field          | Value                                               |
//! |--------|------|----------------|-----------------------------------------------------|
//! | 0      | 4    | acquisition id | `u32`                                               |
//! | 4      | 4    | waveform id    | `u32`                                               |
//! | 8      | 4    | total points   | `u32`, the points sent in this FID's chunks         |
//! | 12     | 4    | dwell          | `u32` ns, > 0                                       |
//! | 16     | 4    | CRC-32C        | `u32` over all points' bytes in order               |
//! | 20     | 8    | timestamp      | `u64` µs, device clock                              |
//!
//! ## `FID_STORED` (0x32), 4 bytes
//!
//! | Offset | Size | Field          | Value |
//! |--------|------|----------------|-------|
//! | 0      | 4    | acquisition id | `u32` |
//!
//! The host sends it only once the FID is durable. The device retains every FID until it
//! receives `FID_STORED` for it, and re-sends all retained FIDs after each new `HELLO`, so an
//! unplugged cable loses no acquisition; the host de-duplicates FIDs by acquisition id.
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

pub mod app;
pub mod cobs;
pub mod crc32c;
pub mod frame;
pub mod link;
pub mod serial;
pub mod session;

pub use cobs::CobsError;
pub use crc32c::crc32c;
pub use frame::{
    CRC_LEN, DELIMITER, Decoder, Frame, FrameError, FrameType, HEADER_LEN, MAGIC,
    MAX_ENCODED_FRAME_LEN, MAX_PAYLOAD_LEN, MAX_RAW_FRAME_LEN, MAX_WIRE_FRAME_LEN,
    MIN_RAW_FRAME_LEN, VERSION,
};
pub use session::{
    DeviceConfig, DeviceEvent, DeviceHello, DeviceSession, Fid, HostConfig, HostEvent, HostSession,
    SessionError,
};
