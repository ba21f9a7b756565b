//! Sans-IO SCPI adapter for arbitrary-waveform generators (crate docs written below).
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
