//! What a console declared in its hello: the fixed facts a session designs for.

use serde::{Deserialize, Serialize};

use crate::physics::PhysicsError;
use crate::safety::ConsoleLimits;

/// A console's declared profile (validated by [`ConsoleProfile::validate`]).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConsoleProfile {
    /// Stable id: 1..=64 characters of letters, digits, `-`, `_`, `.`.
    pub id: String,
    /// Observed nucleus (`1H`).
    pub nucleus: String,
    /// Larmor frequency (Hz).
    pub f0_hz: f64,
    /// RF raster (s).
    pub rf_raster_s: f64,
    /// Complex points per FID.
    pub sample_count: usize,
    /// Dwell time (s).
    pub dwell_s: f64,
    /// Repetition time waveforms are played at (s).
    pub tr_s: f64,
    /// Hard limits.
    pub limits: ConsoleLimits,
    /// Free-form software identification.
    #[serde(default)]
    pub software: String,
}

/// Largest FID a console may declare (complex points).
pub const MAX_SAMPLE_COUNT: usize = 1 << 20;

/// Checks an id (console, session, waveform, idempotency key): 1..=`max` characters of ASCII
/// letters, digits, `-`, `_`, `.`, `:`.
pub fn check_id(field: &str, id: &str, max: usize) -> Result<(), PhysicsError> {
    if id.is_empty() || id.len() > max {
        return Err(PhysicsError::invalid(
            field,
            format!("{id:?}"),
            format!("must be 1..={max} characters"),
        ));
    }
    if let Some(c) = id
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | ':')))
    {
        return Err(PhysicsError::invalid(
            field,
            format!("{id:?}"),
            format!("character {c:?} is not allowed (letters, digits, '-', '_', '.', ':')"),
        ));
    }
    Ok(())
}

impl ConsoleProfile {
    /// Checks every field: the id, a known nucleus, f0, raster, dwell and TR finite and
    /// positive, 1 ≤ sample_count ≤ [`MAX_SAMPLE_COUNT`], and the limits
    /// ([`ConsoleLimits::validate`]); the limits' raster must equal the console's RF raster.
    pub fn validate(&self) -> Result<(), PhysicsError> {
        check_id("console_id", &self.id, 64)?;
        if self.nucleus.trim() != "1H" {
            return Err(PhysicsError::invalid(
                "nucleus",
                &self.nucleus,
                "only 1H consoles are supported",
            ));
        }
        for (field, v) in [
            ("f0_hz", self.f0_hz),
            ("rf_raster_s", self.rf_raster_s),
            ("dwell_s", self.dwell_s),
            ("tr_s", self.tr_s),
        ] {
            crate::physics::error::positive(field, v)?;
        }
        if self.sample_count == 0 || self.sample_count > MAX_SAMPLE_COUNT {
            return Err(PhysicsError::invalid(
                "sample_count",
                self.sample_count,
                format!("must be 1..={MAX_SAMPLE_COUNT}"),
            ));
        }
        self.limits
            .validate()
            .map_err(|e| PhysicsError::invalid("limits", "", e.to_string()))?;
        if self.limits.raster_s != self.rf_raster_s {
            return Err(PhysicsError::invalid(
                "limits.raster_s",
                self.limits.raster_s,
                format!("must equal rf_raster_s = {}", self.rf_raster_s),
            ));
        }
        Ok(())
    }
}
