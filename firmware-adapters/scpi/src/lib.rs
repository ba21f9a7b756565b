//! Sans-IO SCPI adapter for arbitrary-waveform generators and SCPI-speaking consoles.
//!
//! The spinloop daemon reaches some RF hardware over a serial line that speaks SCPI rather than
//! spinloop's framed firmware protocol. This crate implements that path without doing any I/O
//! or reading any clock (in the style of `quinn-proto`): callers feed received bytes and
//! [`std::time::Instant`]s in and poll bytes, events and timer deadlines out.
//!
//! | Module | Owns |
//! |---|---|
//! | [`block`] | IEEE 488.2 definite-length blocks (`#` *n* *length* *bytes*); `#0` rejected |
//! | [`response`] | [`parse_response`]: NR1/NR2/NR3, strings, `*IDN?`, `SYST:ERR?`, `*OPC?`, blocks; total (never panics) |
//! | [`dac`] | Hz of B1 → `i16` DAC codes, amplitude limit (refuse, never clip), quantization report, inverse |
//! | [`framer`] | splitting a byte stream into LF-terminated messages, carrying blocks through |
//! | [`command`] | parsing program messages (`;`-separated units, parameters), short/long header matching |
//! | [`client`] | [`AwgClient`], the console-side session state machine |
//! | [`instrument`] | [`SimInstrument`], a simulated instrument speaking the same dialogue, with fault injection and an [`AcquisitionHook`] for physics |
//!
//! # The dialogue (contract a site's instrument must speak)
//!
//! Transport: a byte stream (serial 8N1 — blocks need 8 data bits — or TCP). Every program
//! message and every response ends with LF (`\n`); a CR before it is ignored. Headers are
//! case-insensitive and may be given in short or long form (`WAV`/`WAVeform`). A message may
//! carry several units separated by `;` (a leading `:` starts at the root). Binary data travels
//! in **definite-length blocks** only (`#<n><length><bytes>`, e.g. `#41024` + 1024 bytes);
//! `#0` (indefinite) is not allowed. Byte order is selected with `FORM:BORD`; the client
//! always sets `SWAP` (little-endian). A query that fails produces **no response** and an entry
//! in the error queue (IEEE 488.2), so the client's timeout catches it.
//!
//! | Command / query | Response | Meaning |
//! |---|---|---|
//! | `*CLS` | — | clear the error queue |
//! | `*RST` | — | reset settings: byte order `NORM`, no selection, acquisition id 0 |
//! | `*IDN?` | `<manufacturer>,<model>,<serial>,<firmware>` | identify |
//! | `*OPC?` | `1` | all previous commands complete |
//! | `SYST:ERR?` | `<code>,"<message>"`, `0,"No error"` when empty | pop the oldest error-queue entry |
//! | `FORM:BORD SWAP` \| `NORM` | — | block byte order: little- \| big-endian |
//! | `WAV:DATA <name>,<block>` | — | store waveform `<name>`: block of interleaved `i16` I/Q DAC codes (4 bytes per point, `FORM:BORD` order), codes within `±max_code` |
//! | `WAV:CRC? <name>` | NR1 `u32` | CRC-32C of the data bytes of the last `WAV:DATA` block received for `<name>`, as received (whether or not it was accepted) |
//! | `WAV:SEL <name>` | — | select the waveform to play |
//! | `ACQ:ID <n>` | — | acquisition id (`u64`) for the next `INIT` |
//! | `INIT` | — | play the selected waveform and acquire; the FID is stored under the acquisition id |
//! | `FETC:FID? <n>` | block | FID of acquisition `<n>`: interleaved `f32` I/Q pairs (8 bytes per point, `FORM:BORD` order) |
//! | `FETC:CRC? <n>` | NR1 `u32` | CRC-32C of the `FETC:FID? <n>` block data |
//! | `FETC:DWEL? <n>` | NR3 seconds | dwell time of acquisition `<n>` |
//!
//! CRC-32C is the Castagnoli CRC (reflected polynomial `0x82F63B78`, init and final XOR
//! `0xFFFFFFFF`; `"123456789"` → `0xE3069283`), [`spinloop_firmware::crc32c()`].
//!
//! ## Sequences the client sends
//!
//! Waveform names are [`ClientConfig::name_prefix`] (default `SL`) + the waveform id in decimal;
//! command texts are configurable templates ([`ClientConfig`]); the defaults are shown.
//!
//! * **Connect** (on [`AwgClient::new`] and [`AwgClient::reconnect`]): `*CLS`, [`*RST` if
//!   [`ClientConfig::reset_on_connect`]], `*IDN?` (model checked against
//!   [`ClientConfig::expected_model`]), `FORM:BORD SWAP`, `SYST:ERR?` until `0`. →
//!   [`ClientEvent::Connected`] / [`ClientEvent::ConnectFailed`].
//! * **Upload** ([`AwgClient::upload`]): the waveform is scaled to DAC codes first and refused
//!   with a [`DacError`] (nothing sent) if it has NaN/inf, exceeds the amplitude limit or the
//!   full scale. Then `WAV:DATA SL<id>,<block>`, `WAV:CRC? SL<id>`; on a CRC mismatch `*CLS`
//!   and the upload again, at most [`ClientConfig::max_upload_retries`] times; then `*OPC?`,
//!   `SYST:ERR?` until `0` (any non-zero entry fails the upload with that code and message).
//!   → [`ClientEvent::Uploaded`] / [`ClientEvent::UploadFailed`].
//! * **Play** ([`AwgClient::play`]): `WAV:SEL SL<id>;:ACQ:ID <acq>;:INIT`, `*OPC?`,
//!   `SYST:ERR?` until `0`. → [`ClientEvent::Played`] / [`ClientEvent::PlayFailed`].
//! * **Fetch** ([`AwgClient::fetch`]): `FETC:FID? <acq>`, `FETC:CRC? <acq>` (mismatch: fetch
//!   again, at most [`ClientConfig::max_fetch_retries`] times), `FETC:DWEL? <acq>`. →
//!   [`ClientEvent::Fid`] / [`ClientEvent::FetchFailed`].
//! * **Timeout / resync**: every query has a deadline ([`ClientConfig::query_timeout`], plus
//!   [`ClientConfig::byte_time`] per byte sent since the previous query, extended while a
//!   response is arriving). When it passes, or a response cannot be parsed, the running
//!   operation fails ([`FailReason::Timeout`] / [`FailReason::BadResponse`]), the client sends
//!   `*CLS`, discards input for [`ClientConfig::drain_time`], reports [`ClientEvent::Resynced`]
//!   and continues with queued operations.
//!
//! Operations run one at a time in call order; every operation ends with exactly one event.
//!
//! # Example
//!
//! ```
//! use std::time::Instant;
//! use spinloop_scpi::{AwgClient, ClientConfig, ClientEvent, DacConfig, EchoHook,
//!                     InstrumentConfig, SimInstrument};
//!
//! let now = Instant::now();
//! let dac = DacConfig { full_scale_hz: 1000.0, max_code: 8191, amplitude_limit_hz: 800.0 };
//! let mut client = AwgClient::new(ClientConfig::new(dac), now).unwrap();
//! let mut inst = SimInstrument::new(
//!     InstrumentConfig { dac, ..InstrumentConfig::default() },
//!     Box::new(EchoHook { dwell_s: 1e-5 }),
//! );
//! client.upload(1, &[[100.0, -50.0], [200.0, 0.0]], now).unwrap();
//! client.play(1, 10, now).unwrap();
//! client.fetch(10, now).unwrap();
//! // The I/O loop: here, in memory.
//! loop {
//!     let mut moved = false;
//!     while let Some(b) = client.poll_transmit() { inst.handle_input(&b, now); moved = true; }
//!     while let Some(b) = inst.poll_transmit() { client.handle_input(&b, now); moved = true; }
//!     if !moved { break; }
//! }
//! let events: Vec<_> = std::iter::from_fn(|| client.poll_event()).collect();
//! assert!(matches!(events[0], ClientEvent::Connected { .. }));
//! assert!(matches!(events[1], ClientEvent::Uploaded { id: 1, attempts: 1, .. }));
//! assert_eq!(events[2], ClientEvent::Played { id: 1, acquisition: 10 });
//! let ClientEvent::Fid { points, dwell_s, .. } = &events[3] else { panic!() };
//! assert_eq!(points.len(), 2);
//! assert!((points[0][0] - 100.0).abs() <= 0.5 * 1000.0 / 8191.0 + 1e-4);
//! assert_eq!(*dwell_s, 1e-5);
//! ```
#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod block;
pub mod client;
pub mod command;
pub mod dac;
pub mod error;
pub mod framer;
pub mod instrument;
pub mod response;

pub use block::{decode_block, encode_block};
pub use client::{
    AcquisitionId, AwgClient, ClientConfig, ClientError, ClientEvent, ConnectionState, FailReason,
    WaveformId,
};
pub use dac::{DacConfig, DacError, QuantizationReport};
pub use error::ScpiError;
pub use instrument::{
    AcquisitionHook, AcquisitionRequest, EchoHook, Fid, InstrumentConfig, InstrumentEvent,
    SimInstrument,
};
pub use response::{ErrorEntry, Idn, Response, ResponseKind, parse_response};
