//! Bit-exact encoding of complex sample arrays as BLOBs.
//!
//! Layout: for each sample, `re` then `im`, each the 8 little-endian bytes of `f64::to_bits`.
//! No conversion through text or through another float width ever happens, so decoding returns
//! values whose `to_bits` equal the inserted ones (including `-0.0`, subnormals and the signs
//! and payloads of any stored bit pattern).

use num_complex::Complex64;

use super::StoreError;

/// Bytes per complex sample (two little-endian f64).
pub const BYTES_PER_SAMPLE: usize = 16;

/// Encode samples as little-endian `(re, im)` f64 pairs.
pub fn encode_samples(samples: &[Complex64]) -> Vec<u8> {
    let mut out = Vec::with_capacity(samples.len() * BYTES_PER_SAMPLE);
    for s in samples {
        out.extend_from_slice(&s.re.to_le_bytes());
        out.extend_from_slice(&s.im.to_le_bytes());
    }
    out
}

/// Decode a BLOB written by [`encode_samples`]; its length must be a multiple of 16.
pub fn decode_samples(bytes: &[u8]) -> Result<Vec<Complex64>, StoreError> {
    if !bytes.len().is_multiple_of(BYTES_PER_SAMPLE) {
        return Err(StoreError::Corrupt {
            what: "samples",
            detail: format!(
                "{} bytes is not a multiple of {BYTES_PER_SAMPLE}",
                bytes.len()
            ),
        });
    }
    let mut out = Vec::with_capacity(bytes.len() / BYTES_PER_SAMPLE);
    for chunk in bytes.chunks_exact(BYTES_PER_SAMPLE) {
        let (re, im) = chunk.split_at(8);
        out.push(Complex64::new(f64_le(re), f64_le(im)));
    }
    Ok(out)
}

fn f64_le(b: &[u8]) -> f64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(b);
    f64::from_le_bytes(a)
}
