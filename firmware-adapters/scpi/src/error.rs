//! Owns [`ScpiError`], the error of everything that reads bytes from the wire: definite-length
//! blocks ([`crate::block`]), instrument responses ([`crate::response`]) and the message framer
//! ([`crate::framer`]).

use thiserror::Error;

/// Malformed or unusable SCPI data on the wire.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ScpiError {
    /// The response or message was empty (after removing the terminator and white space).
    #[error("empty response")]
    Empty,
    /// A block was expected but the data does not start with `#`.
    #[error("not an IEEE 488.2 block: expected '#', found byte 0x{found:02X}")]
    NotABlock {
        /// The first byte found.
        found: u8,
    },
    /// `#0`: an indefinite-length block, which ends at EOI and cannot be delimited on a serial
    /// line (its bytes may contain the LF terminator).
    #[error(
        "indefinite-length block (#0) is not supported over a serial line; use a definite-length block (#<n><length><bytes>)"
    )]
    IndefiniteBlock,
    /// The block header is malformed (bad digit count or non-digit length character).
    #[error("malformed block header: {0}")]
    BadBlockHeader(String),
    /// The block declares more bytes than are present.
    #[error("truncated block: header declares {declared} data bytes, only {available} present")]
    TruncatedBlock {
        /// Data bytes the header declares.
        declared: usize,
        /// Data bytes present.
        available: usize,
    },
    /// A block is longer than the configured maximum.
    #[error("block of {declared} bytes exceeds the maximum of {max} bytes")]
    BlockTooLong {
        /// Data bytes the header declares.
        declared: usize,
        /// The limit.
        max: usize,
    },
    /// Bytes follow a complete response where none may.
    #[error("{count} unexpected bytes after the response")]
    TrailingData {
        /// Number of extra bytes.
        count: usize,
    },
    /// The text is not valid UTF-8.
    #[error("response is not valid UTF-8")]
    NotUtf8,
    /// Not a valid NR1/NR2/NR3 (or `#H`/`#Q`/`#B`) number.
    #[error("not a valid number: {0:?}")]
    BadNumber(String),
    /// A number outside the range of the expected type.
    #[error("number out of range: {0:?}")]
    NumberOutOfRange(String),
    /// Not a valid quoted string (missing or unbalanced quotes).
    #[error("not a valid quoted string: {0:?}")]
    BadString(String),
    /// An `*IDN?` response without four comma-separated fields.
    #[error("*IDN? response must have 4 comma-separated fields, found {fields}: {text:?}")]
    BadIdn {
        /// Fields found.
        fields: usize,
        /// The response text.
        text: String,
    },
    /// A `SYST:ERR?` response that is not `<code>,"<message>"`.
    #[error("SYST:ERR? response must be <code>,\"<message>\": {0:?}")]
    BadErrorEntry(String),
    /// An `*OPC?` response other than `1`.
    #[error("*OPC? response must be 1, got {0:?}")]
    BadOpc(String),
    /// A message (line plus any blocks) longer than the configured maximum; it is discarded.
    #[error("message exceeds the maximum length of {max} bytes and was discarded")]
    MessageTooLong {
        /// The limit.
        max: usize,
    },
    /// A block's length is not a multiple of the sample size.
    #[error("block of {len} bytes is not a whole number of {sample_size}-byte samples")]
    BadSampleCount {
        /// Block data length.
        len: usize,
        /// Bytes per sample.
        sample_size: usize,
    },
}
