//! Consistent Overhead Byte Stuffing (Cheshire & Baker, 1999).
//!
//! COBS rewrites a message so that it contains no `0x00` byte, which then serves as an
//! unambiguous frame delimiter. The encoded message is a sequence of blocks; each block starts
//! with a code byte `n` in `1..=255` followed by `n - 1` non-zero data bytes. A block with
//! `n < 255` stands for its data bytes followed by one `0x00`, except that the implicit zero
//! after the last block is dropped; a block with `n == 255` stands for its 254 data bytes with
//! no zero after them.
//!
//! The encoder here is the canonical one (as in the paper and the Wikipedia examples): a message
//! that ends exactly after a full 254-byte block gets no trailing empty block, so 254 non-zero
//! bytes encode to `0xFF` followed by the 254 bytes. The decoder also accepts the alternative
//! form with a trailing `0x01` block. Encoding `n` bytes yields at most
//! [`max_encoded_len`]`(n)` bytes. The delimiter itself is not part of the COBS encoding.

use thiserror::Error;

/// Why a byte string is not a valid COBS encoding.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum CobsError {
    /// The input is empty; every COBS encoding has at least one code byte.
    #[error("empty COBS block sequence (no code byte)")]
    Empty,
    /// A `0x00` byte occurs inside the encoding (it may only appear as the delimiter).
    #[error("zero byte inside COBS data at offset {offset}")]
    ZeroByte {
        /// Offset of the zero byte in the encoded input.
        offset: usize,
    },
    /// A block's code byte announces more data bytes than remain in the input.
    #[error(
        "truncated COBS block at offset {offset}: code {code} needs {needed} data bytes, only {available} remain"
    )]
    Truncated {
        /// Offset of the block's code byte.
        offset: usize,
        /// The code byte.
        code: u8,
        /// Data bytes the block needs (`code - 1`).
        needed: usize,
        /// Data bytes left in the input.
        available: usize,
    },
    /// The caller's output buffer is too small for the decoded message.
    #[error("COBS output buffer too small ({capacity} bytes)")]
    OutputTooSmall {
        /// Size of the output buffer that was supplied.
        capacity: usize,
    },
}

/// Upper bound on the COBS encoding of a `len`-byte message: `len + max(1, ceil(len / 254))`.
pub const fn max_encoded_len(len: usize) -> usize {
    let blocks = len.div_ceil(254);
    len + if blocks == 0 { 1 } else { blocks }
}

/// Appends the COBS encoding of `input` to `out` (no delimiter).
pub fn encode_into(input: &[u8], out: &mut Vec<u8>) {
    out.reserve(max_encoded_len(input.len()));
    let mut code_idx = out.len();
    out.push(0); // placeholder for the first code byte
    let mut code: u8 = 1;
    for (i, &b) in input.iter().enumerate() {
        if b == 0 {
            out[code_idx] = code;
            code_idx = out.len();
            out.push(0);
            code = 1;
        } else {
            out.push(b);
            code += 1;
            if code == 0xFF {
                out[code_idx] = code;
                code = 1;
                if i + 1 == input.len() {
                    // Canonical form: no empty block after a full block that ends the message.
                    return;
                }
                code_idx = out.len();
                out.push(0);
            }
        }
    }
    out[code_idx] = code;
}

/// The COBS encoding of `input` (no delimiter).
pub fn encode(input: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(max_encoded_len(input.len()));
    encode_into(input, &mut out);
    out
}

/// Decodes the COBS encoding `input` (without delimiter) into `out`, returning the decoded
/// length. Allocates nothing; the decoded message is never longer than `input.len() - 1`.
pub fn decode_to_slice(input: &[u8], out: &mut [u8]) -> Result<usize, CobsError> {
    if input.is_empty() {
        return Err(CobsError::Empty);
    }
    let too_small = CobsError::OutputTooSmall {
        capacity: out.len(),
    };
    let mut pos = 0;
    let mut written = 0;
    while pos < input.len() {
        let code = input[pos];
        if code == 0 {
            return Err(CobsError::ZeroByte { offset: pos });
        }
        let needed = usize::from(code) - 1;
        let start = pos + 1;
        let available = input.len() - start;
        if needed > available {
            return Err(CobsError::Truncated {
                offset: pos,
                code,
                needed,
                available,
            });
        }
        let data = &input[start..start + needed];
        if let Some(z) = data.iter().position(|&b| b == 0) {
            return Err(CobsError::ZeroByte { offset: start + z });
        }
        let dst = out.get_mut(written..written + needed).ok_or(too_small)?;
        dst.copy_from_slice(data);
        written += needed;
        pos = start + needed;
        if code != 0xFF && pos < input.len() {
            *out.get_mut(written).ok_or(too_small)? = 0;
            written += 1;
        }
    }
    Ok(written)
}

/// Decodes the COBS encoding `input` (without delimiter) into a new vector.
pub fn decode(input: &[u8]) -> Result<Vec<u8>, CobsError> {
    let mut out = vec![0; input.len().saturating_sub(1)];
    let n = decode_to_slice(input, &mut out)?;
    out.truncate(n);
    Ok(out)
}
