//! Owns IEEE 488.2 *definite-length arbitrary block* encoding and decoding (IEEE 488.2
//! §7.7.6 / §8.7.9).
//!
//! A block is `#`, one ASCII digit *n* in `1..=9` giving the number of length digits, *n* ASCII
//! decimal digits giving the byte count *L*, then exactly *L* raw bytes: `#14ABCD` carries the
//! four bytes `ABCD`, `#516384` is followed by 16384 bytes. Leading zeros in the length are
//! allowed on input (`#3004ABCD`); [`encode_block`] writes the shortest form. The
//! *indefinite* form `#0<bytes>` (ended by NL with EOI) cannot be delimited on a serial line,
//! whose bytes may contain NL, and is rejected with [`ScpiError::IndefiniteBlock`].

use crate::error::ScpiError;

/// Largest data length a block header can express (nine length digits).
pub const MAX_BLOCK_DATA_LEN: usize = 999_999_999;

/// The header `#<n><length>` for `len` data bytes.
///
/// # Panics
///
/// Never for `len <= MAX_BLOCK_DATA_LEN`; longer data cannot be expressed as a block and is a
/// programming error (callers bound waveform sizes far below this).
pub fn block_header(len: usize) -> Vec<u8> {
    assert!(
        len <= MAX_BLOCK_DATA_LEN,
        "block data of {len} bytes exceeds {MAX_BLOCK_DATA_LEN}"
    );
    let digits = len.to_string();
    let mut out = Vec::with_capacity(2 + digits.len());
    out.push(b'#');
    // `digits.len()` is 1..=9 because len <= 999_999_999.
    out.push(b'0' + digits.len() as u8);
    out.extend_from_slice(digits.as_bytes());
    out
}

/// `data` as a definite-length block: header followed by the bytes.
///
/// # Panics
///
/// If `data` is longer than [`MAX_BLOCK_DATA_LEN`] (see [`block_header`]).
pub fn encode_block(data: &[u8]) -> Vec<u8> {
    let mut out = block_header(data.len());
    out.extend_from_slice(data);
    out
}

/// The parsed header of a block at the start of some bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BlockHeader {
    /// Length of the header `#<n><digits>` in bytes (`2 + n`).
    pub header_len: usize,
    /// Number of data bytes that follow the header.
    pub data_len: usize,
}

impl BlockHeader {
    /// Total length of the block, header plus data.
    pub fn total_len(&self) -> usize {
        self.header_len + self.data_len
    }
}

/// Parses the header of a block at the start of `bytes`.
///
/// Returns `Ok(None)` when `bytes` is a valid but incomplete prefix of a header (more bytes
/// are needed to know the length), `Ok(Some(header))` once the header is complete (the data
/// may still be incomplete), and an error when `bytes` cannot start a definite-length block.
pub fn parse_block_header(bytes: &[u8]) -> Result<Option<BlockHeader>, ScpiError> {
    let Some(&first) = bytes.first() else {
        return Ok(None);
    };
    if first != b'#' {
        return Err(ScpiError::NotABlock { found: first });
    }
    let Some(&n) = bytes.get(1) else {
        return Ok(None);
    };
    let n = match n {
        b'0' => return Err(ScpiError::IndefiniteBlock),
        b'1'..=b'9' => usize::from(n - b'0'),
        other => {
            return Err(ScpiError::BadBlockHeader(format!(
                "length digit count must be 1-9, found byte 0x{other:02X}"
            )));
        }
    };
    let Some(digits) = bytes.get(2..2 + n) else {
        // Check what we have so far is digits, to fail early on garbage.
        if let Some(bad) = bytes[2..].iter().find(|b| !b.is_ascii_digit()) {
            return Err(ScpiError::BadBlockHeader(format!(
                "length digit expected, found byte 0x{bad:02X}"
            )));
        }
        return Ok(None);
    };
    let mut data_len = 0usize;
    for &d in digits {
        if !d.is_ascii_digit() {
            return Err(ScpiError::BadBlockHeader(format!(
                "length digit expected, found byte 0x{d:02X}"
            )));
        }
        // At most 9 digits: cannot overflow usize (>= 32 bits).
        data_len = data_len * 10 + usize::from(d - b'0');
    }
    Ok(Some(BlockHeader {
        header_len: 2 + n,
        data_len,
    }))
}

/// Decodes the block at the start of `bytes`: returns its data and the total number of bytes
/// the block occupies (so the caller can continue after it).
///
/// Errors: [`ScpiError::NotABlock`], [`ScpiError::IndefiniteBlock`],
/// [`ScpiError::BadBlockHeader`] (also for a header cut short), [`ScpiError::TruncatedBlock`].
pub fn decode_block(bytes: &[u8]) -> Result<(&[u8], usize), ScpiError> {
    let header = parse_block_header(bytes)?.ok_or_else(|| {
        if bytes.is_empty() {
            ScpiError::Empty
        } else {
            ScpiError::BadBlockHeader("header ends before its length digits".into())
        }
    })?;
    let data = &bytes[header.header_len.min(bytes.len())..];
    if data.len() < header.data_len {
        return Err(ScpiError::TruncatedBlock {
            declared: header.data_len,
            available: data.len(),
        });
    }
    Ok((&data[..header.data_len], header.total_len()))
}

/// Decodes a message that must consist of exactly one block, optionally followed by the
/// terminator (`\n` or `\r\n`); anything else after the block is [`ScpiError::TrailingData`].
pub fn decode_exact_block(bytes: &[u8]) -> Result<&[u8], ScpiError> {
    let (data, used) = decode_block(bytes)?;
    let rest = &bytes[used..];
    let rest = rest.strip_suffix(b"\n").unwrap_or(rest);
    let rest = rest.strip_suffix(b"\r").unwrap_or(rest);
    if rest.is_empty() {
        Ok(data)
    } else {
        Err(ScpiError::TrailingData { count: rest.len() })
    }
}
