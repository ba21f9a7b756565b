//! Schema migrations: an ordered list of SQL scripts; the database's `PRAGMA user_version` is
//! the number of scripts already applied.
//!
//! Rules: scripts are append-only (never edit a released one; add a new one), each runs in the
//! same `BEGIN IMMEDIATE` transaction as the `user_version` bump, so a crash mid-migration
//! leaves the previous version intact. A database whose version is higher than
//! [`SCHEMA_VERSION`] is refused ([`StoreError::SchemaTooNew`]) and left untouched.

use rusqlite::{Connection, TransactionBehavior};

use super::StoreError;

/// Migration scripts, in order; script `i` takes the schema from version `i` to `i + 1`.
pub const MIGRATIONS: &[&str] = &[
    // v1: the initial schema. Times are Unix milliseconds (INTEGER); JSON columns are TEXT.
    r#"
CREATE TABLE consoles (
    id            TEXT PRIMARY KEY NOT NULL,
    nucleus       TEXT NOT NULL,
    f0_hz         REAL NOT NULL,
    limits        TEXT NOT NULL CHECK (json_valid(limits)),
    first_seen_ms INTEGER NOT NULL,
    last_seen_ms  INTEGER NOT NULL
) STRICT;

CREATE TABLE sessions (
    id            TEXT PRIMARY KEY NOT NULL,
    console_id    TEXT NOT NULL REFERENCES consoles(id),
    spec          TEXT NOT NULL CHECK (json_valid(spec)),
    state         TEXT NOT NULL CHECK (state IN ('open', 'converged', 'failed', 'cancelled')),
    created_ms    INTEGER NOT NULL,
    updated_ms    INTEGER NOT NULL
) STRICT;
CREATE INDEX sessions_by_state ON sessions(state);

CREATE TABLE waveforms (
    id            TEXT PRIMARY KEY NOT NULL,
    session_id    TEXT NOT NULL REFERENCES sessions(id),
    dt_s          REAL NOT NULL,
    n_samples     INTEGER NOT NULL,
    samples       BLOB NOT NULL,
    approved      INTEGER NOT NULL CHECK (approved IN (0, 1)),
    created_ms    INTEGER NOT NULL,
    sent_ms       INTEGER
) STRICT;
CREATE INDEX waveforms_by_session ON waveforms(session_id);

CREATE TABLE acquisitions (
    id              INTEGER PRIMARY KEY,
    session_id      TEXT NOT NULL REFERENCES sessions(id),
    console_id      TEXT NOT NULL REFERENCES consoles(id),
    idempotency_key TEXT NOT NULL,
    waveform_id     TEXT NOT NULL,
    dwell_s         REAL NOT NULL,
    f0_hz           REAL NOT NULL,
    averages        INTEGER NOT NULL,
    coil            TEXT NOT NULL,
    n_samples       INTEGER NOT NULL,
    samples         BLOB NOT NULL,
    received_ms     INTEGER NOT NULL,
    UNIQUE (console_id, idempotency_key)
) STRICT;
CREATE INDEX acquisitions_by_session ON acquisitions(session_id, id);

CREATE TABLE fits (
    id              INTEGER PRIMARY KEY,
    session_id      TEXT NOT NULL REFERENCES sessions(id),
    acquisition_id  INTEGER REFERENCES acquisitions(id),
    params          TEXT NOT NULL CHECK (json_valid(params)),
    created_ms      INTEGER NOT NULL
) STRICT;
CREATE INDEX fits_by_session ON fits(session_id, id);

CREATE TABLE events (
    seq             INTEGER PRIMARY KEY AUTOINCREMENT,
    session_id      TEXT REFERENCES sessions(id),
    kind            TEXT NOT NULL,
    payload         TEXT NOT NULL CHECK (json_valid(payload)),
    at_ms           INTEGER NOT NULL
) STRICT;
CREATE INDEX events_by_session ON events(session_id, seq);
"#,
    // v2: the closed-loop session's checkpoint (its state machine's persisted state, JSON),
    // written in the same transaction as the waveforms, fits and events of each step.
    r#"
ALTER TABLE sessions ADD COLUMN checkpoint TEXT CHECK (checkpoint IS NULL OR json_valid(checkpoint));
"#,
];

/// The schema version this build creates and understands (the number of migrations).
pub const SCHEMA_VERSION: i64 = MIGRATIONS.len() as i64;

/// The database's schema version (`PRAGMA user_version`).
pub fn version(conn: &Connection) -> Result<i64, StoreError> {
    Ok(conn.pragma_query_value(None, "user_version", |r| r.get(0))?)
}

/// Bring the database to [`SCHEMA_VERSION`], or refuse it if it is newer.
pub fn migrate(conn: &mut Connection) -> Result<(), StoreError> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    // Read the version inside the write transaction so two processes opening the same fresh
    // database cannot both run migration 1.
    let found: i64 = tx.pragma_query_value(None, "user_version", |r| r.get(0))?;
    if found > SCHEMA_VERSION {
        return Err(StoreError::SchemaTooNew {
            found,
            known: SCHEMA_VERSION,
        });
    }
    if found < 0 {
        return Err(StoreError::Corrupt {
            what: "schema version",
            detail: format!("negative user_version {found}"),
        });
    }
    for (i, sql) in MIGRATIONS.iter().enumerate().skip(found as usize) {
        tx.execute_batch(sql)?;
        tx.pragma_update(None, "user_version", i as i64 + 1)?;
    }
    tx.commit()?;
    Ok(())
}
