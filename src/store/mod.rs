//! The durable store: embedded SQLite (bundled, WAL) holding consoles, sessions, acquisitions,
//! waveforms, fits and events.
//!
//! # What it owns
//! One database file, `spinloop.sqlite3`, in the data directory ([`Store::data_dir`]: the
//! configured path, else systemd's `$STATE_DIRECTORY`). The schema is versioned with
//! `PRAGMA user_version` and migrated forward on [`Store::open`] ([`schema`]); a database from
//! a newer build is refused, never modified.
//!
//! This is an edge module: it does file I/O and reads the system clock for row timestamps. Its
//! API is synchronous (one [`Store`] wraps one connection); the async daemon calls it from
//! `spawn_blocking`. Nothing here assumes it is the only process using the file: writes take
//! SQLite's write lock (`BEGIN IMMEDIATE`) and a busy timeout covers contention.
//!
//! # Invariants
//! - **Ack after commit.** Every write method returns `Ok` only after its transaction has
//!   committed with `synchronous = FULL` in WAL mode, so the row survives a process kill or a
//!   power loss from that point on. The daemon acknowledges an acquisition only after
//!   [`Store::insert_acquisition`] returned `Ok`.
//! - **Bit-exact samples.** Acquisition and waveform samples are stored as little-endian
//!   `(re, im)` f64 pairs ([`codec`]) and read back with identical bits.
//! - **Idempotent ingestion.** `(console_id, idempotency_key)` is unique. A retry of a stored
//!   acquisition returns [`Ingested::Duplicate`] with the original id and writes nothing; a
//!   retry under the same key with *different* content is a [`StoreError::Conflict`].
//! - **Validated at the boundary; nothing written on error.** Empty or non-finite samples,
//!   a bad dwell, f0 or sample count, unknown sessions or consoles are rejected before any
//!   write; every error rolls back the whole call.
//! - **Restart resumes.** [`Store::open_sessions`] lists the sessions still `open`, which is what
//!   a restarted daemon resumes. A terminal state (`converged`, `failed`, `cancelled`) is final.
//!
//! # Example
//! ```
//! use spinloop::store::{ConsoleInfo, Ingested, NewAcquisition, NewSession, Store};
//! use num_complex::Complex64;
//! let dir = std::env::temp_dir().join(format!("spinloop-doc-{}", std::process::id()));
//! let mut store = Store::open(&dir)?;
//! store.upsert_console(&ConsoleInfo {
//!     id: "c1".into(), nucleus: "1H".into(), f0_hz: 123.2e6, limits: serde_json::json!({}),
//! })?;
//! store.create_session(&NewSession {
//!     id: "s1".into(), console_id: "c1".into(), spec: serde_json::json!({"target": "Glu"}),
//! })?;
//! let acq = NewAcquisition {
//!     session_id: "s1".into(), console_id: "c1".into(), idempotency_key: "k1".into(),
//!     waveform_id: "w1".into(), dwell_s: 2.5e-4, f0_hz: 123.2e6, averages: 1,
//!     coil: "head".into(), n_samples: 2, samples: vec![Complex64::new(1.0, -0.0); 2],
//! };
//! let first = store.insert_acquisition(&acq)?; // committed: safe to ack
//! assert_eq!(store.insert_acquisition(&acq)?, Ingested::Duplicate { id: first.id() });
//! # drop(store); std::fs::remove_dir_all(&dir).ok();
//! # Ok::<(), spinloop::store::StoreError>(())
//! ```

pub mod codec;
mod error;
mod model;
pub mod schema;

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use num_complex::Complex64;
use rusqlite::{Connection, OptionalExtension, Row, TransactionBehavior, params};
use serde_json::Value;

pub use error::StoreError;
pub use model::{
    Acquisition, Console, ConsoleInfo, Event, Fit, Ingested, NewAcquisition, NewFit, NewSession,
    NewWaveform, Session, SessionState, SessionStep, Waveform,
};
pub use schema::SCHEMA_VERSION;

/// File name of the database inside the data directory.
pub const DB_FILE: &str = "spinloop.sqlite3";

/// How long a write waits for another connection's write lock before failing.
pub const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// A handle on the database (one SQLite connection).
#[derive(Debug)]
pub struct Store {
    conn: Connection,
    path: PathBuf,
}

impl Store {
    /// Open (creating if needed) the database in `dir`: creates the directory and
    /// `spinloop.sqlite3`, sets WAL, `synchronous = FULL`, foreign keys and the busy timeout,
    /// and migrates the schema to [`SCHEMA_VERSION`].
    ///
    /// # Errors
    /// [`StoreError::Io`] if the directory cannot be created, [`StoreError::SchemaTooNew`] if
    /// the database comes from a newer build (it is left untouched), [`StoreError::Sqlite`]
    /// otherwise.
    pub fn open(dir: &Path) -> Result<Store, StoreError> {
        std::fs::create_dir_all(dir).map_err(|source| StoreError::Io {
            what: "creating the data directory",
            path: dir.to_path_buf(),
            source,
        })?;
        let path = dir.join(DB_FILE);
        let mut conn = Connection::open(&path)?;
        conn.busy_timeout(BUSY_TIMEOUT)?;
        // Refuse a newer database before changing anything about it (even its journal mode).
        let found = schema::version(&conn)?;
        if found > SCHEMA_VERSION {
            return Err(StoreError::SchemaTooNew {
                found,
                known: SCHEMA_VERSION,
            });
        }
        let mode: String =
            conn.pragma_update_and_check(None, "journal_mode", "WAL", |r| r.get(0))?;
        if !mode.eq_ignore_ascii_case("wal") {
            return Err(StoreError::Corrupt {
                what: "journal mode",
                detail: format!("SQLite refused WAL (journal_mode is {mode})"),
            });
        }
        conn.pragma_update(None, "synchronous", "FULL")?;
        conn.pragma_update(None, "foreign_keys", "ON")?;
        schema::migrate(&mut conn)?;
        Ok(Store { conn, path })
    }

    /// The data directory: `config` if given, else the first entry of systemd's
    /// `$STATE_DIRECTORY` (a colon-separated list), else [`StoreError::NoDataDir`].
    pub fn data_dir(config: Option<&Path>) -> Result<PathBuf, StoreError> {
        let env = std::env::var_os("STATE_DIRECTORY");
        data_dir_from(config, env.as_deref())
    }

    /// Path of the database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The schema version of the open database (equals [`SCHEMA_VERSION`] after `open`).
    pub fn schema_version(&self) -> Result<i64, StoreError> {
        schema::version(&self.conn)
    }

    // ---- consoles -------------------------------------------------------------------------

    /// Insert or update a console from its hello: `first_seen` is kept, `last_seen` set to now,
    /// nucleus, f0 and limits replaced.
    pub fn upsert_console(&mut self, info: &ConsoleInfo) -> Result<Console, StoreError> {
        non_empty("console.id", &info.id)?;
        non_empty("console.nucleus", &info.nucleus)?;
        positive_finite("console.f0_hz", info.f0_hz)?;
        let limits = to_json(&info.limits);
        let now = now_ms();
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        tx.execute(
            "INSERT INTO consoles (id, nucleus, f0_hz, limits, first_seen_ms, last_seen_ms)
             VALUES (?1, ?2, ?3, ?4, ?5, ?5)
             ON CONFLICT (id) DO UPDATE SET nucleus = excluded.nucleus, f0_hz = excluded.f0_hz,
                 limits = excluded.limits, last_seen_ms = excluded.last_seen_ms",
            params![info.id, info.nucleus, info.f0_hz, limits, now],
        )?;
        let console = get_console_in(&tx, &info.id)?;
        tx.commit()?;
        Ok(console)
    }

    /// One console.
    pub fn get_console(&self, id: &str) -> Result<Console, StoreError> {
        get_console_in(&self.conn, id)
    }

    /// All consoles, by id.
    pub fn list_consoles(&self) -> Result<Vec<Console>, StoreError> {
        let mut stmt = self
            .conn
            .prepare_cached(&format!("SELECT {CONSOLE_COLS} FROM consoles ORDER BY id"))?;
        let rows = stmt.query_map([], console_row)?;
        collect_nested(rows)
    }

    // ---- sessions -------------------------------------------------------------------------

    /// Create an `open` session on an existing console; an existing id is a conflict.
    pub fn create_session(&mut self, s: &NewSession) -> Result<Session, StoreError> {
        non_empty("session.id", &s.id)?;
        let spec = to_json(&s.spec);
        let now = now_ms();
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        if !exists(&tx, "SELECT 1 FROM consoles WHERE id = ?1", &s.console_id)? {
            return Err(StoreError::not_found("console", &s.console_id));
        }
        if exists(&tx, "SELECT 1 FROM sessions WHERE id = ?1", &s.id)? {
            return Err(StoreError::Conflict(format!(
                "session {} already exists",
                s.id
            )));
        }
        tx.execute(
            "INSERT INTO sessions (id, console_id, spec, state, created_ms, updated_ms)
             VALUES (?1, ?2, ?3, 'open', ?4, ?4)",
            params![s.id, s.console_id, spec, now],
        )?;
        let session = get_session_in(&tx, &s.id)?;
        tx.commit()?;
        Ok(session)
    }

    /// One session.
    pub fn get_session(&self, id: &str) -> Result<Session, StoreError> {
        get_session_in(&self.conn, id)
    }

    /// All sessions, oldest first.
    pub fn list_sessions(&self) -> Result<Vec<Session>, StoreError> {
        let mut stmt = self.conn.prepare_cached(&format!(
            "SELECT {SESSION_COLS} FROM sessions ORDER BY created_ms, id"
        ))?;
        let rows = stmt.query_map([], session_row)?;
        collect_nested(rows)
    }

    /// The sessions still `open`, oldest first: what a restarted daemon resumes.
    pub fn open_sessions(&self) -> Result<Vec<Session>, StoreError> {
        let mut stmt = self.conn.prepare_cached(&format!(
            "SELECT {SESSION_COLS} FROM sessions WHERE state = 'open' ORDER BY created_ms, id"
        ))?;
        let rows = stmt.query_map([], session_row)?;
        collect_nested(rows)
    }

    /// Change a session's state. Setting the current state again is a no-op; leaving a
    /// terminal state is a [`StoreError::Conflict`].
    pub fn set_session_state(
        &mut self,
        id: &str,
        state: SessionState,
    ) -> Result<Session, StoreError> {
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        let current = get_session_in(&tx, id)?;
        if current.state == state {
            return Ok(current);
        }
        if current.state.is_terminal() {
            return Err(StoreError::Conflict(format!(
                "session {id} is {}; it cannot become {state}",
                current.state
            )));
        }
        tx.execute(
            "UPDATE sessions SET state = ?2, updated_ms = ?3 WHERE id = ?1",
            params![id, state.as_str(), now_ms()],
        )?;
        let session = get_session_in(&tx, id)?;
        tx.commit()?;
        Ok(session)
    }

    /// The session's checkpoint (its state machine's persisted state), if any.
    pub fn session_checkpoint(&self, id: &str) -> Result<Option<Value>, StoreError> {
        let text: Option<Option<String>> = self
            .conn
            .query_row("SELECT checkpoint FROM sessions WHERE id = ?1", [id], |r| {
                r.get(0)
            })
            .optional()?;
        match text {
            None => Err(StoreError::not_found("session", id)),
            Some(None) => Ok(None),
            Some(Some(t)) => from_json("session.checkpoint", &t).map(Some),
        }
    }

    /// Commits one step of a session in one transaction (see [`SessionStep`]) and returns the
    /// stored events. Nothing is written on any error.
    pub fn commit_session_step(&mut self, step: &SessionStep) -> Result<Vec<Event>, StoreError> {
        let sid = step.session_id.as_str();
        let now = now_ms();
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        let current = get_session_in(&tx, sid)?;
        for w in &step.waveforms {
            non_empty("waveform.id", &w.id)?;
            positive_finite("waveform.dt_s", w.dt_s)?;
            finite_samples("waveform.samples", &w.samples)?;
            if w.session_id != sid {
                return Err(StoreError::invalid(
                    "waveform.session_id",
                    &w.session_id,
                    format!("the step is for session {sid}"),
                ));
            }
            if !w.approved {
                return Err(StoreError::Conflict(format!(
                    "waveform {} was not approved by the interlock; it cannot be sent",
                    w.id
                )));
            }
            let blob = codec::encode_samples(&w.samples);
            let existing: Option<(String, Vec<u8>)> = tx
                .query_row(
                    "SELECT session_id, samples FROM waveforms WHERE id = ?1",
                    [&w.id],
                    |r| Ok((r.get(0)?, r.get(1)?)),
                )
                .optional()?;
            match existing {
                Some((s, b)) if s == sid && b == blob => {
                    tx.execute(
                        "UPDATE waveforms SET sent_ms = ?2 WHERE id = ?1 AND sent_ms IS NULL",
                        params![w.id, now],
                    )?;
                }
                Some(_) => {
                    return Err(StoreError::Conflict(format!(
                        "waveform {} already exists with other content",
                        w.id
                    )));
                }
                None => {
                    tx.execute(
                        "INSERT INTO waveforms (id, session_id, dt_s, n_samples, samples,
                                                approved, created_ms, sent_ms)
                         VALUES (?1, ?2, ?3, ?4, ?5, 1, ?6, ?6)",
                        params![w.id, sid, w.dt_s, len_i64(w.samples.len()), blob, now],
                    )?;
                }
            }
        }
        for f in &step.fits {
            tx.execute(
                "INSERT INTO fits (session_id, acquisition_id, params, created_ms)
                 VALUES (?1, ?2, ?3, ?4)",
                params![sid, f.acquisition_id, to_json(&f.params), now],
            )?;
        }
        let mut seqs = Vec::with_capacity(step.events.len());
        for (kind, payload) in &step.events {
            non_empty("event.kind", kind)?;
            tx.execute(
                "INSERT INTO events (session_id, kind, payload, at_ms) VALUES (?1, ?2, ?3, ?4)",
                params![sid, kind, to_json(payload), now],
            )?;
            seqs.push(tx.last_insert_rowid());
        }
        if let Some(cp) = &step.checkpoint {
            tx.execute(
                "UPDATE sessions SET checkpoint = ?2, updated_ms = ?3 WHERE id = ?1",
                params![sid, to_json(cp), now],
            )?;
        }
        if let Some(state) = step.state
            && state != current.state
        {
            if current.state.is_terminal() {
                return Err(StoreError::Conflict(format!(
                    "session {sid} is {}; it cannot become {state}",
                    current.state
                )));
            }
            tx.execute(
                "UPDATE sessions SET state = ?2, updated_ms = ?3 WHERE id = ?1",
                params![sid, state.as_str(), now],
            )?;
        }
        tx.commit()?;
        Ok(step
            .events
            .iter()
            .zip(seqs)
            .map(|((kind, payload), seq)| Event {
                seq,
                session_id: Some(sid.to_string()),
                kind: kind.clone(),
                payload: payload.clone(),
                at_ms: now,
            })
            .collect())
    }

    // ---- acquisitions ---------------------------------------------------------------------

    /// Store one acquisition; returns only after the transaction committed, so the caller may
    /// acknowledge it. A retry with the same console and idempotency key returns
    /// [`Ingested::Duplicate`] with the original id (nothing written); the same key with other
    /// content is a [`StoreError::Conflict`].
    ///
    /// # Errors
    /// [`StoreError::Invalid`] for bad fields (empty or non-finite samples, naming the index;
    /// dwell or f0 not finite and positive; `n_samples` not matching; zero averages; empty ids),
    /// [`StoreError::NotFound`] for an unknown console or session, `Invalid` if the session runs
    /// on another console. Nothing is written on any error.
    pub fn insert_acquisition(&mut self, a: &NewAcquisition) -> Result<Ingested, StoreError> {
        validate_acquisition(a)?;
        let blob = codec::encode_samples(&a.samples);
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        let out = ingest_in(&tx, a, &blob)?;
        tx.commit()?;
        Ok(out)
    }

    /// Store a batch of acquisitions in one transaction (one fsync: group commit for a busy
    /// daemon). Each item gets its own outcome, exactly as [`Store::insert_acquisition`] would
    /// give it (a later item may be a duplicate of an earlier one); a rejected item writes
    /// nothing and does not affect the others. Returns after the commit. An SQLite failure
    /// aborts the whole batch (outer `Err`, nothing written).
    pub fn insert_acquisitions(
        &mut self,
        batch: &[NewAcquisition],
    ) -> Result<Vec<Result<Ingested, StoreError>>, StoreError> {
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        let mut out = Vec::with_capacity(batch.len());
        for a in batch {
            let r = validate_acquisition(a)
                .and_then(|()| ingest_in(&tx, a, &codec::encode_samples(&a.samples)));
            match r {
                Err(StoreError::Sqlite(e)) => return Err(StoreError::Sqlite(e)),
                r => out.push(r),
            }
        }
        tx.commit()?;
        Ok(out)
    }

    /// One acquisition, samples bit-identical to what was inserted.
    pub fn get_acquisition(&self, id: i64) -> Result<Acquisition, StoreError> {
        let mut stmt = self.conn.prepare_cached(&format!(
            "SELECT {ACQ_COLS} FROM acquisitions WHERE id = ?1"
        ))?;
        stmt.query_row([id], acquisition_row)
            .optional()?
            .ok_or_else(|| StoreError::not_found("acquisition", id.to_string()))?
    }

    /// A session's acquisitions in arrival order.
    pub fn list_acquisitions(&self, session_id: &str) -> Result<Vec<Acquisition>, StoreError> {
        if !exists(
            &self.conn,
            "SELECT 1 FROM sessions WHERE id = ?1",
            session_id,
        )? {
            return Err(StoreError::not_found("session", session_id));
        }
        let mut stmt = self.conn.prepare_cached(&format!(
            "SELECT {ACQ_COLS} FROM acquisitions WHERE session_id = ?1 ORDER BY id"
        ))?;
        let rows = stmt.query_map([session_id], acquisition_row)?;
        collect_nested(rows)
    }

    /// Number of stored acquisitions (all sessions).
    pub fn count_acquisitions(&self) -> Result<i64, StoreError> {
        Ok(self
            .conn
            .query_row("SELECT COUNT(*) FROM acquisitions", [], |r| r.get(0))?)
    }

    // ---- waveforms ------------------------------------------------------------------------

    /// Store a designed waveform (not yet sent). An existing id is a conflict.
    pub fn insert_waveform(&mut self, w: &NewWaveform) -> Result<(), StoreError> {
        non_empty("waveform.id", &w.id)?;
        positive_finite("waveform.dt_s", w.dt_s)?;
        finite_samples("waveform.samples", &w.samples)?;
        let blob = codec::encode_samples(&w.samples);
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        if !exists(&tx, "SELECT 1 FROM sessions WHERE id = ?1", &w.session_id)? {
            return Err(StoreError::not_found("session", &w.session_id));
        }
        if exists(&tx, "SELECT 1 FROM waveforms WHERE id = ?1", &w.id)? {
            return Err(StoreError::Conflict(format!(
                "waveform {} already exists",
                w.id
            )));
        }
        tx.execute(
            "INSERT INTO waveforms (id, session_id, dt_s, n_samples, samples, approved,
                                    created_ms, sent_ms)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, NULL)",
            params![
                w.id,
                w.session_id,
                w.dt_s,
                len_i64(w.samples.len()),
                blob,
                w.approved,
                now_ms()
            ],
        )?;
        tx.commit()?;
        Ok(())
    }

    /// Record that a waveform was sent to the console (idempotent: the first time is kept).
    /// A waveform the interlock did not approve cannot be marked sent ([`StoreError::Conflict`]).
    pub fn mark_waveform_sent(&mut self, id: &str) -> Result<(), StoreError> {
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        let approved: Option<bool> = tx
            .query_row("SELECT approved FROM waveforms WHERE id = ?1", [id], |r| {
                r.get(0)
            })
            .optional()?;
        match approved {
            None => return Err(StoreError::not_found("waveform", id)),
            Some(false) => {
                return Err(StoreError::Conflict(format!(
                    "waveform {id} was not approved by the interlock; it cannot be sent"
                )));
            }
            Some(true) => {}
        }
        tx.execute(
            "UPDATE waveforms SET sent_ms = ?2 WHERE id = ?1 AND sent_ms IS NULL",
            params![id, now_ms()],
        )?;
        tx.commit()?;
        Ok(())
    }

    /// Whether a waveform with this id was stored *and* sent. The daemon rejects acquisitions
    /// naming a waveform for which this is false.
    pub fn waveform_was_sent(&self, id: &str) -> Result<bool, StoreError> {
        exists(
            &self.conn,
            "SELECT 1 FROM waveforms WHERE id = ?1 AND sent_ms IS NOT NULL",
            id,
        )
    }

    /// One waveform, samples bit-identical to what was inserted.
    pub fn get_waveform(&self, id: &str) -> Result<Waveform, StoreError> {
        let mut stmt = self
            .conn
            .prepare_cached(&format!("SELECT {WAVE_COLS} FROM waveforms WHERE id = ?1"))?;
        stmt.query_row([id], waveform_row)
            .optional()?
            .ok_or_else(|| StoreError::not_found("waveform", id))?
    }

    /// A session's waveforms in the order they were stored.
    pub fn list_waveforms(&self, session_id: &str) -> Result<Vec<Waveform>, StoreError> {
        let mut stmt = self.conn.prepare_cached(&format!(
            "SELECT {WAVE_COLS} FROM waveforms WHERE session_id = ?1 ORDER BY rowid"
        ))?;
        let rows = stmt.query_map([session_id], waveform_row)?;
        collect_nested(rows)
    }

    // ---- fits -----------------------------------------------------------------------------

    /// Store a fit; returns its id. The session must exist, and the acquisition (if named)
    /// must belong to it.
    pub fn insert_fit(&mut self, f: &NewFit) -> Result<i64, StoreError> {
        let params_json = to_json(&f.params);
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        if !exists(&tx, "SELECT 1 FROM sessions WHERE id = ?1", &f.session_id)? {
            return Err(StoreError::not_found("session", &f.session_id));
        }
        if let Some(acq) = f.acquisition_id {
            let owner: Option<String> = tx
                .query_row(
                    "SELECT session_id FROM acquisitions WHERE id = ?1",
                    [acq],
                    |r| r.get(0),
                )
                .optional()?;
            match owner {
                None => return Err(StoreError::not_found("acquisition", acq.to_string())),
                Some(s) if s != f.session_id => {
                    return Err(StoreError::invalid(
                        "fit.acquisition_id",
                        acq,
                        format!("belongs to session {s}, not {}", f.session_id),
                    ));
                }
                Some(_) => {}
            }
        }
        tx.execute(
            "INSERT INTO fits (session_id, acquisition_id, params, created_ms)
             VALUES (?1, ?2, ?3, ?4)",
            params![f.session_id, f.acquisition_id, params_json, now_ms()],
        )?;
        let id = tx.last_insert_rowid();
        tx.commit()?;
        Ok(id)
    }

    /// A session's fits in the order they were stored.
    pub fn list_fits(&self, session_id: &str) -> Result<Vec<Fit>, StoreError> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT id, session_id, acquisition_id, params, created_ms FROM fits
             WHERE session_id = ?1 ORDER BY id",
        )?;
        let rows = stmt.query_map([session_id], |r| {
            let params: String = r.get(3)?;
            let (id, session_id, acquisition_id, created_ms) =
                (r.get(0)?, r.get(1)?, r.get(2)?, r.get(4)?);
            Ok(from_json("fit.params", &params).map(|params| Fit {
                id,
                data: NewFit {
                    session_id,
                    acquisition_id,
                    params,
                },
                created_ms,
            }))
        })?;
        collect_nested(rows)
    }

    // ---- events ---------------------------------------------------------------------------

    /// Append an event; returns its sequence number (strictly increasing, never reused).
    pub fn append_event(
        &mut self,
        session_id: Option<&str>,
        kind: &str,
        payload: &Value,
    ) -> Result<i64, StoreError> {
        non_empty("event.kind", kind)?;
        let payload = to_json(payload);
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        if let Some(s) = session_id
            && !exists(&tx, "SELECT 1 FROM sessions WHERE id = ?1", s)?
        {
            return Err(StoreError::not_found("session", s));
        }
        tx.execute(
            "INSERT INTO events (session_id, kind, payload, at_ms) VALUES (?1, ?2, ?3, ?4)",
            params![session_id, kind, payload, now_ms()],
        )?;
        let seq = tx.last_insert_rowid();
        tx.commit()?;
        Ok(seq)
    }

    /// Events with `seq > after` (all sessions if `session_id` is `None`), in order, at most
    /// `limit` of them. Pass the last seen `seq` to resume a watch (0 for the start).
    pub fn events_since(
        &self,
        session_id: Option<&str>,
        after: i64,
        limit: usize,
    ) -> Result<Vec<Event>, StoreError> {
        let limit = len_i64(limit);
        let mut stmt = self.conn.prepare_cached(
            "SELECT seq, session_id, kind, payload, at_ms FROM events
             WHERE seq > ?1 AND (?2 IS NULL OR session_id = ?2) ORDER BY seq LIMIT ?3",
        )?;
        let rows = stmt.query_map(params![after, session_id, limit], |r| {
            let payload: String = r.get(3)?;
            let (seq, session_id, kind, at_ms) = (r.get(0)?, r.get(1)?, r.get(2)?, r.get(4)?);
            Ok(from_json("event.payload", &payload).map(|payload| Event {
                seq,
                session_id,
                kind,
                payload,
                at_ms,
            }))
        })?;
        collect_nested(rows)
    }
}

/// [`Store::data_dir`] without the environment: `config`, else the first entry of the
/// `state_directory` value (colon-separated, as systemd sets `$STATE_DIRECTORY`).
pub fn data_dir_from(
    config: Option<&Path>,
    state_directory: Option<&OsStr>,
) -> Result<PathBuf, StoreError> {
    if let Some(c) = config {
        if c.as_os_str().is_empty() {
            return Err(StoreError::invalid(
                "data_dir",
                "\"\"",
                "the configured data directory is empty",
            ));
        }
        return Ok(c.to_path_buf());
    }
    let Some(env) = state_directory else {
        return Err(StoreError::NoDataDir);
    };
    let first = first_entry(env);
    if first.as_os_str().is_empty() {
        return Err(StoreError::NoDataDir);
    }
    Ok(first)
}

/// The part of a colon-separated list before the first `:`.
#[cfg(unix)]
fn first_entry(list: &OsStr) -> PathBuf {
    use std::os::unix::ffi::OsStrExt;
    let bytes = list.as_bytes();
    let end = bytes.iter().position(|&b| b == b':').unwrap_or(bytes.len());
    PathBuf::from(OsStr::from_bytes(&bytes[..end]))
}

/// The part of a colon-separated list before the first `:`.
#[cfg(not(unix))]
fn first_entry(list: &OsStr) -> PathBuf {
    let s = list.to_string_lossy();
    PathBuf::from(s.split(':').next().unwrap_or_default())
}

// ---- helpers ------------------------------------------------------------------------------

const CONSOLE_COLS: &str = "id, nucleus, f0_hz, limits, first_seen_ms, last_seen_ms";
const SESSION_COLS: &str = "id, console_id, spec, state, created_ms, updated_ms";
const ACQ_COLS: &str = "id, session_id, console_id, idempotency_key, waveform_id, dwell_s, f0_hz, \
                        averages, coil, n_samples, samples, received_ms";
const WAVE_COLS: &str = "id, session_id, dt_s, n_samples, samples, approved, created_ms, sent_ms";

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

fn len_i64(n: usize) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

fn to_json(v: &Value) -> String {
    // Serializing a `Value` cannot fail (its map keys are strings).
    v.to_string()
}

fn from_json(what: &'static str, s: &str) -> Result<Value, StoreError> {
    serde_json::from_str(s).map_err(|e| StoreError::Corrupt {
        what,
        detail: e.to_string(),
    })
}

fn non_empty(field: &str, s: &str) -> Result<(), StoreError> {
    if s.is_empty() {
        return Err(StoreError::invalid(field, "\"\"", "must not be empty"));
    }
    Ok(())
}

fn positive_finite(field: &str, v: f64) -> Result<(), StoreError> {
    if !v.is_finite() || v <= 0.0 {
        return Err(StoreError::invalid(
            field,
            v,
            "must be finite and greater than zero",
        ));
    }
    Ok(())
}

fn finite_samples(field: &str, samples: &[Complex64]) -> Result<(), StoreError> {
    if samples.is_empty() {
        return Err(StoreError::invalid(field, "[]", "must not be empty"));
    }
    for (i, s) in samples.iter().enumerate() {
        if !s.re.is_finite() {
            return Err(StoreError::invalid(
                format!("{field}[{i}].re"),
                s.re,
                "samples must be finite",
            ));
        }
        if !s.im.is_finite() {
            return Err(StoreError::invalid(
                format!("{field}[{i}].im"),
                s.im,
                "samples must be finite",
            ));
        }
    }
    Ok(())
}

fn validate_acquisition(a: &NewAcquisition) -> Result<(), StoreError> {
    non_empty("session_id", &a.session_id)?;
    non_empty("console_id", &a.console_id)?;
    non_empty("idempotency_key", &a.idempotency_key)?;
    non_empty("waveform_id", &a.waveform_id)?;
    positive_finite("dwell_s", a.dwell_s)?;
    positive_finite("f0_hz", a.f0_hz)?;
    if a.averages == 0 {
        return Err(StoreError::invalid("averages", 0, "must be at least 1"));
    }
    finite_samples("samples", &a.samples)?;
    if a.n_samples != a.samples.len() {
        return Err(StoreError::invalid(
            "n_samples",
            a.n_samples,
            format!("{} samples were sent", a.samples.len()),
        ));
    }
    Ok(())
}

/// The body of an ingestion, inside the caller's write transaction. Writes at most one row, with
/// one statement, after every check passed.
fn ingest_in(tx: &Connection, a: &NewAcquisition, blob: &[u8]) -> Result<Ingested, StoreError> {
    let existing = tx
        .prepare_cached(
            "SELECT id, session_id, waveform_id, dwell_s, f0_hz, averages, coil, n_samples,
                    samples
             FROM acquisitions WHERE console_id = ?1 AND idempotency_key = ?2",
        )?
        .query_row(params![a.console_id, a.idempotency_key], |r| {
            Ok((
                r.get::<_, i64>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, String>(2)?,
                r.get::<_, f64>(3)?,
                r.get::<_, f64>(4)?,
                r.get::<_, i64>(5)?,
                r.get::<_, String>(6)?,
                r.get::<_, i64>(7)?,
                r.get::<_, Vec<u8>>(8)?,
            ))
        })
        .optional()?;
    if let Some((id, session, waveform, dwell, f0, averages, coil, n, samples)) = existing {
        let mut differs = Vec::new();
        if session != a.session_id {
            differs.push("session_id");
        }
        if waveform != a.waveform_id {
            differs.push("waveform_id");
        }
        if dwell.to_bits() != a.dwell_s.to_bits() {
            differs.push("dwell_s");
        }
        if f0.to_bits() != a.f0_hz.to_bits() {
            differs.push("f0_hz");
        }
        if averages != i64::from(a.averages) {
            differs.push("averages");
        }
        if coil != a.coil {
            differs.push("coil");
        }
        if n != len_i64(a.n_samples) {
            differs.push("n_samples");
        }
        if samples != blob {
            differs.push("samples");
        }
        if differs.is_empty() {
            return Ok(Ingested::Duplicate { id });
        }
        return Err(StoreError::Conflict(format!(
            "console {} already sent idempotency key {:?} (acquisition {id}) with different {}",
            a.console_id,
            a.idempotency_key,
            differs.join(", ")
        )));
    }
    if !exists(tx, "SELECT 1 FROM consoles WHERE id = ?1", &a.console_id)? {
        return Err(StoreError::not_found("console", &a.console_id));
    }
    let owner: Option<String> = tx
        .prepare_cached("SELECT console_id FROM sessions WHERE id = ?1")?
        .query_row([&a.session_id], |r| r.get(0))
        .optional()?;
    match owner {
        None => return Err(StoreError::not_found("session", &a.session_id)),
        Some(c) if c != a.console_id => {
            return Err(StoreError::invalid(
                "console_id",
                &a.console_id,
                format!("session {} runs on console {c}", a.session_id),
            ));
        }
        Some(_) => {}
    }
    tx.prepare_cached(
        "INSERT INTO acquisitions (session_id, console_id, idempotency_key, waveform_id, dwell_s,
             f0_hz, averages, coil, n_samples, samples, received_ms)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
    )?
    .execute(params![
        a.session_id,
        a.console_id,
        a.idempotency_key,
        a.waveform_id,
        a.dwell_s,
        a.f0_hz,
        a.averages,
        a.coil,
        len_i64(a.n_samples),
        blob,
        now_ms()
    ])?;
    Ok(Ingested::Stored {
        id: tx.last_insert_rowid(),
    })
}

fn exists(conn: &Connection, sql: &str, id: &str) -> Result<bool, StoreError> {
    Ok(conn
        .prepare_cached(sql)?
        .query_row([id], |_| Ok(()))
        .optional()?
        .is_some())
}

fn get_console_in(conn: &Connection, id: &str) -> Result<Console, StoreError> {
    conn.prepare_cached(&format!(
        "SELECT {CONSOLE_COLS} FROM consoles WHERE id = ?1"
    ))?
    .query_row([id], console_row)
    .optional()?
    .ok_or_else(|| StoreError::not_found("console", id))?
}

fn get_session_in(conn: &Connection, id: &str) -> Result<Session, StoreError> {
    conn.prepare_cached(&format!(
        "SELECT {SESSION_COLS} FROM sessions WHERE id = ?1"
    ))?
    .query_row([id], session_row)
    .optional()?
    .ok_or_else(|| StoreError::not_found("session", id))?
}

/// Row mappers return `Ok(Err(..))` for a row SQLite read fine but we cannot decode.
type Decoded<T> = rusqlite::Result<Result<T, StoreError>>;

fn console_row(r: &Row<'_>) -> Decoded<Console> {
    let limits: String = r.get(3)?;
    let limits = match from_json("console.limits", &limits) {
        Ok(v) => v,
        Err(e) => return Ok(Err(e)),
    };
    Ok(Ok(Console {
        info: ConsoleInfo {
            id: r.get(0)?,
            nucleus: r.get(1)?,
            f0_hz: r.get(2)?,
            limits,
        },
        first_seen_ms: r.get(4)?,
        last_seen_ms: r.get(5)?,
    }))
}

fn session_row(r: &Row<'_>) -> Decoded<Session> {
    let spec: String = r.get(2)?;
    let state: String = r.get(3)?;
    let spec = match from_json("session.spec", &spec) {
        Ok(v) => v,
        Err(e) => return Ok(Err(e)),
    };
    let Some(state) = SessionState::parse(&state) else {
        return Ok(Err(StoreError::Corrupt {
            what: "session state",
            detail: state,
        }));
    };
    Ok(Ok(Session {
        id: r.get(0)?,
        console_id: r.get(1)?,
        spec,
        state,
        created_ms: r.get(4)?,
        updated_ms: r.get(5)?,
    }))
}

fn acquisition_row(r: &Row<'_>) -> Decoded<Acquisition> {
    let blob: Vec<u8> = r.get(10)?;
    let samples = match codec::decode_samples(&blob) {
        Ok(s) => s,
        Err(e) => return Ok(Err(e)),
    };
    let n: i64 = r.get(9)?;
    let averages: i64 = r.get(7)?;
    let (Ok(n_samples), Ok(averages)) = (usize::try_from(n), u32::try_from(averages)) else {
        return Ok(Err(StoreError::Corrupt {
            what: "acquisition",
            detail: format!("n_samples {n} or averages {averages} out of range"),
        }));
    };
    Ok(Ok(Acquisition {
        id: r.get(0)?,
        data: NewAcquisition {
            session_id: r.get(1)?,
            console_id: r.get(2)?,
            idempotency_key: r.get(3)?,
            waveform_id: r.get(4)?,
            dwell_s: r.get(5)?,
            f0_hz: r.get(6)?,
            averages,
            coil: r.get(8)?,
            n_samples,
            samples,
        },
        received_ms: r.get(11)?,
    }))
}

fn waveform_row(r: &Row<'_>) -> Decoded<Waveform> {
    let blob: Vec<u8> = r.get(4)?;
    let samples = match codec::decode_samples(&blob) {
        Ok(s) => s,
        Err(e) => return Ok(Err(e)),
    };
    Ok(Ok(Waveform {
        data: NewWaveform {
            id: r.get(0)?,
            session_id: r.get(1)?,
            dt_s: r.get(2)?,
            samples,
            approved: r.get(5)?,
        },
        created_ms: r.get(6)?,
        sent_ms: r.get(7)?,
    }))
}

fn collect_nested<T>(
    rows: impl Iterator<Item = rusqlite::Result<Result<T, StoreError>>>,
) -> Result<Vec<T>, StoreError> {
    let mut out = Vec::new();
    for row in rows {
        out.push(row??);
    }
    Ok(out)
}
