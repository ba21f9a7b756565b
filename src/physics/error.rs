//! Typed errors of the physics core: every rejected input names the field and the value.

use thiserror::Error;

/// Errors raised by the physics core. Bad input never panics; it becomes one of these.
#[derive(Debug, Clone, PartialEq, Error)]
pub enum PhysicsError {
    /// A parameter is out of its domain (NaN, infinite, non-positive, out of range, ...).
    #[error("invalid {field} = {value}: {reason}")]
    InvalidParameter {
        /// Dotted path of the offending field, e.g. `Glu.fragments\[0\].spins[2].shift_ppm`.
        field: String,
        /// The value as given.
        value: String,
        /// Why it was rejected.
        reason: String,
    },
    /// A coupled fragment is larger than the Hilbert-space simulator supports.
    #[error("fragment {fragment} has {spins} spins; at most {max} coupled spins are supported")]
    TooManySpins {
        /// Name of the fragment.
        fragment: String,
        /// Its number of spins.
        spins: usize,
        /// The supported maximum.
        max: usize,
    },
    /// Sizes of arrays that must agree do not.
    #[error("size mismatch for {what}: expected {expected}, got {got}")]
    SizeMismatch {
        /// What was being sized.
        what: String,
        /// Expected length.
        expected: usize,
        /// Given length.
        got: usize,
    },
    /// A file (spin system, shape, …) could not be parsed; the message names the file and
    /// what was wrong.
    #[error("cannot parse {0}")]
    Parse(String),
    /// A name that is not in the built-in library.
    #[error("unknown metabolite {name:?}; known: {known}")]
    UnknownMetabolite {
        /// The requested name.
        name: String,
        /// The library's names, comma separated.
        known: String,
    },
    /// A file could not be read or written (the message names the path and the OS error).
    #[error("I/O error: {0}")]
    Io(String),
    /// A numerical kernel failed (eigensolver did not converge, non-finite intermediate).
    #[error("numerical failure in {0}")]
    Numerical(String),
}

impl PhysicsError {
    /// Shorthand for [`PhysicsError::InvalidParameter`].
    pub fn invalid(
        field: impl Into<String>,
        value: impl std::fmt::Display,
        reason: impl Into<String>,
    ) -> Self {
        PhysicsError::InvalidParameter {
            field: field.into(),
            value: value.to_string(),
            reason: reason.into(),
        }
    }
}

/// Checks that `x` is finite; names `field` otherwise.
pub fn finite(field: impl Into<String>, x: f64) -> Result<f64, PhysicsError> {
    if x.is_finite() {
        Ok(x)
    } else {
        Err(PhysicsError::invalid(field, x, "must be finite"))
    }
}

/// Checks that `x` is finite and strictly positive.
pub fn positive(field: impl Into<String>, x: f64) -> Result<f64, PhysicsError> {
    if x.is_finite() && x > 0.0 {
        Ok(x)
    } else {
        Err(PhysicsError::invalid(field, x, "must be finite and > 0"))
    }
}
