//! The store's error type: every failure names what was wrong and leaves the database unchanged.

use std::path::PathBuf;

/// Everything that can go wrong in the store.
///
/// Every error is returned before (or instead of) a commit: when a call returns an error, the
/// transaction it opened was rolled back and nothing it would have written is stored.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// SQLite itself failed (I/O error, database locked beyond the busy timeout, corruption, ...).
    #[error("sqlite: {0}")]
    Sqlite(#[from] rusqlite::Error),
    /// A filesystem operation on the data directory failed.
    #[error("{what} {}: {source}", path.display())]
    Io {
        /// What was being done ("creating the data directory", ...).
        what: &'static str,
        /// The path involved.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// An input failed validation at the store's boundary; nothing was written.
    #[error("invalid {field} = {value}: {reason}")]
    Invalid {
        /// The offending field (`samples[17]`, `dwell_s`, ...).
        field: String,
        /// The offending value, rendered for a human.
        value: String,
        /// Why it is rejected.
        reason: String,
    },
    /// The write contradicts what is already stored (same idempotency key with different
    /// content, an id reused for a different row, a finished session changing state).
    #[error("conflict: {0}")]
    Conflict(String),
    /// A referenced row does not exist.
    #[error("{kind} not found: {id}")]
    NotFound {
        /// The kind of row (`session`, `console`, `acquisition`, ...).
        kind: &'static str,
        /// The id that was looked up.
        id: String,
    },
    /// The database was written by a newer spinloop: its schema version is higher than this
    /// build knows. It is not touched; upgrade spinloop (or point it at another data directory).
    #[error(
        "database schema version {found} is newer than this build knows ({known}); \
         upgrade spinloop or use another data directory"
    )]
    SchemaTooNew {
        /// The version found in the database (`PRAGMA user_version`).
        found: i64,
        /// The newest version this build can migrate to.
        known: i64,
    },
    /// No data directory was configured and `$STATE_DIRECTORY` is not set.
    #[error(
        "no data directory: set `data_dir` in the configuration or run under systemd with \
         StateDirectory= (which sets $STATE_DIRECTORY)"
    )]
    NoDataDir,
    /// A stored value could not be decoded (a damaged or hand-edited database).
    #[error("corrupt stored {what}: {detail}")]
    Corrupt {
        /// What was being decoded.
        what: &'static str,
        /// What was wrong with it.
        detail: String,
    },
}

impl StoreError {
    /// Shorthand for [`StoreError::Invalid`].
    pub(crate) fn invalid(
        field: impl Into<String>,
        value: impl std::fmt::Display,
        reason: impl Into<String>,
    ) -> Self {
        StoreError::Invalid {
            field: field.into(),
            value: value.to_string(),
            reason: reason.into(),
        }
    }

    /// Shorthand for [`StoreError::NotFound`].
    pub(crate) fn not_found(kind: &'static str, id: impl Into<String>) -> Self {
        StoreError::NotFound {
            kind,
            id: id.into(),
        }
    }
}
