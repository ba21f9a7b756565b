//! Owns DAC scaling: a complex RF waveform in Hz of B1 (I/Q `f64` samples) to signed 16-bit
//! DAC codes for the I and Q channels, the amplitude limit check, the quantization error
//! report, the inverse (codes → Hz) and the wire encoding of codes.
//!
//! # Scaling
//!
//! A [`DacConfig`] fixes `full_scale_hz`, the B1 amplitude (Hz) a channel reaches at code
//! `±max_code` (`max_code` = 32767 for a 16-bit DAC, 8191 for a 14-bit one). One LSB is
//! `lsb = full_scale_hz / max_code` Hz and each channel is converted independently:
//!
//! ```text
//! code = round_half_away_from_zero(value_hz / lsb)      value_hz = code * lsb
//! ```
//!
//! so the error per channel is at most `lsb / 2` and the error of the complex sample
//! (|ΔI + iΔQ|) at most `lsb / √2` ([`DacConfig::max_channel_error_hz`],
//! [`DacConfig::max_magnitude_error_hz`]).
//!
//! # Limits — never clipped
//!
//! A waveform is refused as a whole, with the index of the first offending sample, if it is
//! empty, any channel value is NaN or infinite ([`DacError::NonFinite`]), a sample's magnitude
//! `|B1| = √(I² + Q²)` exceeds `amplitude_limit_hz` ([`DacError::OverLimit`]) or a channel
//! would need a code beyond `±max_code` ([`DacError::ExceedsFullScale`]). Nothing is clipped.
//!
//! # Wire encoding
//!
//! Codes travel as interleaved I/Q pairs of `i16`, little-endian (`FORM:BORD SWAP`): sample
//! *k* occupies bytes `4k..4k+4` as `I_lo I_hi Q_lo Q_hi` ([`encode_codes`],
//! [`decode_codes`]).

use thiserror::Error;

/// One I/Q sample in Hz of B1: `[I, Q]`.
pub type IqHz = [f64; 2];

/// One I/Q sample as DAC codes: `[I, Q]`.
pub type IqCode = [i16; 2];

/// DAC channel, for error reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Channel {
    /// In-phase (real part).
    I,
    /// Quadrature (imaginary part).
    Q,
}

/// DAC full scale and amplitude limit.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct DacConfig {
    /// B1 amplitude in Hz at code `±max_code` on either channel. Finite, > 0.
    pub full_scale_hz: f64,
    /// Largest code magnitude: 32767 (16-bit), 8191 (14-bit), ... In `1..=32767`.
    pub max_code: i16,
    /// Largest accepted sample magnitude `√(I² + Q²)` in Hz (the RF safety / amplifier
    /// limit). Finite, > 0; may exceed `full_scale_hz` (then only the full-scale check
    /// applies to single channels).
    pub amplitude_limit_hz: f64,
}

impl DacConfig {
    /// A 16-bit (±32767) configuration with the amplitude limit equal to the full scale.
    pub fn new_16bit(full_scale_hz: f64) -> Self {
        Self {
            full_scale_hz,
            max_code: i16::MAX,
            amplitude_limit_hz: full_scale_hz,
        }
    }

    /// Checks the configuration invariants documented on the fields.
    pub fn validate(&self) -> Result<(), DacError> {
        let bad = |what: &str| Err(DacError::InvalidConfig(what.to_string()));
        if !(self.full_scale_hz.is_finite() && self.full_scale_hz > 0.0) {
            return bad("full_scale_hz must be finite and > 0");
        }
        if self.max_code < 1 {
            return bad("max_code must be in 1..=32767");
        }
        if !(self.amplitude_limit_hz.is_finite() && self.amplitude_limit_hz > 0.0) {
            return bad("amplitude_limit_hz must be finite and > 0");
        }
        Ok(())
    }

    /// Hz per code step.
    pub fn lsb_hz(&self) -> f64 {
        self.full_scale_hz / f64::from(self.max_code)
    }

    /// Bound on the per-channel quantization error: half an LSB.
    pub fn max_channel_error_hz(&self) -> f64 {
        0.5 * self.lsb_hz()
    }

    /// Bound on the magnitude of the complex quantization error: `lsb / √2`.
    pub fn max_magnitude_error_hz(&self) -> f64 {
        self.lsb_hz() * std::f64::consts::FRAC_1_SQRT_2
    }
}

/// Why a waveform (or configuration) was refused. Nothing is ever clipped.
#[derive(Debug, Clone, PartialEq, Error)]
pub enum DacError {
    /// The configuration violates an invariant.
    #[error("invalid DAC configuration: {0}")]
    InvalidConfig(String),
    /// The waveform has no samples.
    #[error("empty waveform")]
    Empty,
    /// A channel value is NaN or infinite.
    #[error("sample {index}: {channel:?} channel is not finite ({value})")]
    NonFinite {
        /// Sample index.
        index: usize,
        /// Channel.
        channel: Channel,
        /// The value.
        value: f64,
    },
    /// A sample's magnitude exceeds the amplitude limit.
    #[error(
        "sample {index}: |B1| = {magnitude_hz} Hz exceeds the amplitude limit of {limit_hz} Hz"
    )]
    OverLimit {
        /// Sample index.
        index: usize,
        /// `√(I² + Q²)` in Hz.
        magnitude_hz: f64,
        /// [`DacConfig::amplitude_limit_hz`].
        limit_hz: f64,
    },
    /// A channel value needs a code beyond `±max_code`.
    #[error(
        "sample {index}: {channel:?} = {value} Hz exceeds the DAC full scale of ±{full_scale_hz} Hz"
    )]
    ExceedsFullScale {
        /// Sample index.
        index: usize,
        /// Channel.
        channel: Channel,
        /// The value in Hz.
        value: f64,
        /// [`DacConfig::full_scale_hz`].
        full_scale_hz: f64,
    },
}

/// The quantized waveform and its quantization error.
#[derive(Debug, Clone, PartialEq)]
pub struct Quantized {
    /// DAC codes, one `[I, Q]` per sample.
    pub codes: Vec<IqCode>,
    /// Quantization error statistics.
    pub report: QuantizationReport,
}

/// Quantization error of one waveform (actual, not the bound).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct QuantizationReport {
    /// Number of samples.
    pub samples: usize,
    /// Hz per code step.
    pub lsb_hz: f64,
    /// Largest per-channel error |value − code·lsb| in Hz (≤ `lsb_hz / 2`).
    pub max_channel_error_hz: f64,
    /// Largest complex error |Δ| in Hz (≤ `lsb_hz / √2`).
    pub max_magnitude_error_hz: f64,
    /// RMS over samples of the complex error |Δ| in Hz.
    pub rms_error_hz: f64,
    /// Peak input magnitude √(I² + Q²) in Hz.
    pub peak_hz: f64,
}

/// Converts a waveform in Hz to DAC codes, refusing it (see the module docs) rather than
/// clipping. The configuration is validated first.
pub fn scale(config: &DacConfig, waveform: &[IqHz]) -> Result<Quantized, DacError> {
    config.validate()?;
    if waveform.is_empty() {
        return Err(DacError::Empty);
    }
    let lsb = config.lsb_hz();
    let max = f64::from(config.max_code);
    let mut codes = Vec::with_capacity(waveform.len());
    let mut max_ch = 0.0f64;
    let mut max_mag = 0.0f64;
    let mut sum_sq = 0.0f64;
    let mut peak = 0.0f64;
    for (index, &[i, q]) in waveform.iter().enumerate() {
        for (channel, value) in [(Channel::I, i), (Channel::Q, q)] {
            if !value.is_finite() {
                return Err(DacError::NonFinite {
                    index,
                    channel,
                    value,
                });
            }
        }
        let magnitude_hz = i.hypot(q);
        if magnitude_hz > config.amplitude_limit_hz {
            return Err(DacError::OverLimit {
                index,
                magnitude_hz,
                limit_hz: config.amplitude_limit_hz,
            });
        }
        peak = peak.max(magnitude_hz);
        let mut pair = [0i16; 2];
        let mut err = [0.0f64; 2];
        for (k, (channel, value)) in [(Channel::I, i), (Channel::Q, q)].into_iter().enumerate() {
            let c = (value / lsb).round();
            if c.abs() > max {
                return Err(DacError::ExceedsFullScale {
                    index,
                    channel,
                    value,
                    full_scale_hz: config.full_scale_hz,
                });
            }
            // |c| <= max_code <= 32767: exact conversion.
            pair[k] = c as i16;
            err[k] = value - c * lsb;
            max_ch = max_ch.max(err[k].abs());
        }
        let e = err[0].hypot(err[1]);
        max_mag = max_mag.max(e);
        sum_sq += e * e;
        codes.push(pair);
    }
    let n = codes.len();
    Ok(Quantized {
        codes,
        report: QuantizationReport {
            samples: n,
            lsb_hz: lsb,
            max_channel_error_hz: max_ch,
            max_magnitude_error_hz: max_mag,
            rms_error_hz: (sum_sq / n as f64).sqrt(),
            peak_hz: peak,
        },
    })
}

/// Converts DAC codes back to Hz (`code · lsb` per channel).
pub fn unscale(config: &DacConfig, codes: &[IqCode]) -> Vec<IqHz> {
    let lsb = config.lsb_hz();
    codes
        .iter()
        .map(|&[i, q]| [f64::from(i) * lsb, f64::from(q) * lsb])
        .collect()
}

/// Codes as interleaved little-endian `i16` I/Q bytes (4 bytes per sample).
pub fn encode_codes(codes: &[IqCode]) -> Vec<u8> {
    let mut out = Vec::with_capacity(codes.len() * 4);
    for &[i, q] in codes {
        out.extend_from_slice(&i.to_le_bytes());
        out.extend_from_slice(&q.to_le_bytes());
    }
    out
}

/// Decodes interleaved `i16` I/Q bytes, little-endian if `little_endian` else big-endian.
/// Returns `None` if the length is not a multiple of 4.
pub fn decode_codes(bytes: &[u8], little_endian: bool) -> Option<Vec<IqCode>> {
    if !bytes.len().is_multiple_of(4) {
        return None;
    }
    let conv = |b: [u8; 2]| {
        if little_endian {
            i16::from_le_bytes(b)
        } else {
            i16::from_be_bytes(b)
        }
    };
    Some(
        bytes
            .chunks_exact(4)
            .map(|c| [conv([c[0], c[1]]), conv([c[2], c[3]])])
            .collect(),
    )
}

/// FID points as interleaved `f32` I/Q bytes (8 bytes per point), little-endian if
/// `little_endian` else big-endian.
pub fn encode_f32_pairs(points: &[[f32; 2]], little_endian: bool) -> Vec<u8> {
    let mut out = Vec::with_capacity(points.len() * 8);
    for &[i, q] in points {
        for v in [i, q] {
            if little_endian {
                out.extend_from_slice(&v.to_le_bytes());
            } else {
                out.extend_from_slice(&v.to_be_bytes());
            }
        }
    }
    out
}

/// Decodes interleaved little-endian `f32` I/Q bytes. Returns `None` if the length is not a
/// multiple of 8.
pub fn decode_f32_pairs(bytes: &[u8]) -> Option<Vec<[f32; 2]>> {
    if !bytes.len().is_multiple_of(8) {
        return None;
    }
    Some(
        bytes
            .chunks_exact(8)
            .map(|c| {
                [
                    f32::from_le_bytes([c[0], c[1], c[2], c[3]]),
                    f32::from_le_bytes([c[4], c[5], c[6], c[7]]),
                ]
            })
            .collect(),
    )
}
