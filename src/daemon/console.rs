//! The `Console` service: a console's link to the daemon.
//!
//! # Connect (bidirectional stream)
//! The first message must be a hello. It is validated into a [`ConsoleProfile`]
//! (INVALID_ARGUMENT naming the field), stored (`upsert_console`, the whole profile as the
//! console's `limits` JSON), registered in the [`super::ConsoleRegistry`] and answered with a
//! `Welcome`. Anything else first, or a second hello, ends the stream with
//! FAILED_PRECONDITION. Then every acquisition is validated against the hello ([`check`]) and
//! the waveform it names (known, sent, and sent to a session of *this* console); a valid one is
//! handed to the store actor and acknowledged with an `Ack` **only after its commit**; an
//! invalid one gets a `Nack` with the code the unary call would return, nothing is stored and
//! the stream stays open. Heartbeats are ignored.
//!
//! **Concurrency and ack order.** Up to `max_in_flight` acquisitions of one stream are being
//! committed at once, so the store actor can group-commit them (with those of other streams)
//! in one transaction. Acks are sent as commits complete, so they may arrive **out of order**
//! relative to the acquisitions; consoles match them by idempotency key. A Nack for an
//! acquisition that failed validation is sent at once, possibly before the Acks of earlier
//! acquisitions. An Ack is never sent before its commit.
//!
//! On shutdown a stream stops reading, waits for its in-flight commits, sends their acks, and
//! ends with UNAVAILABLE. When the stream ends the console is unregistered.
//!
//! # SubmitAcquisition (unary)
//! The same checks against the console's profile (live if connected, else as stored by its
//! last hello: a console that never said hello is NOT_FOUND). Returns the Ack after commit.
//!
//! Oversized messages (beyond the configured decode limit) are RESOURCE_EXHAUSTED: on the
//! stream by this module, for unary calls by the server's response layer
//! ([`super::server`]).

use std::collections::HashMap;
use std::pin::Pin;
use std::sync::{Arc, Mutex};

use futures::stream::FuturesUnordered;
use num_complex::Complex64;
use tokio::sync::{mpsc, watch};
use tokio_stream::wrappers::ReceiverStream;
use tokio_stream::{Stream, StreamExt};
use tonic::{Code, Request, Response, Status, Streaming};

use super::pb;
use super::{DaemonError, SessionNotice, Shared};
use crate::control::{ConsoleProfile, check_id};
use crate::safety::{ConsoleLimits, EnergyWindow};
use crate::store::{ConsoleInfo, Ingested, NewAcquisition, StoreError};

/// Longest idempotency key or waveform id accepted.
pub const MAX_ID_LEN: usize = 128;

/// Relative tolerance between an acquisition's dwell and the hello's.
pub const DWELL_REL_TOL: f64 = 1e-9;

/// Outbound queue of one Connect stream (acks, nacks, waveform commands).
const OUTBOUND_QUEUE: usize = 256;

/// Waveform lookups kept before the cache is cleared.
const WAVEFORM_CACHE_MAX: usize = 65_536;

type Outbound = mpsc::Sender<Result<pb::DaemonMessage, Status>>;
type BoxStream<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send + 'static>>;
type Pending = Pin<Box<dyn std::future::Future<Output = Result<pb::Ack, (String, Status)>> + Send>>;

/// The `Console` service.
#[derive(Clone)]
pub struct ConsoleService {
    shared: Shared,
    shutdown: watch::Receiver<bool>,
    max_in_flight: usize,
    /// waveform id → (session id, console id) for waveforms known to have been sent.
    waveforms: Arc<Mutex<HashMap<String, (String, String)>>>,
}

impl ConsoleService {
    /// The service; `shutdown` turning true makes open streams drain and end;
    /// `max_in_flight` bounds the commits one stream has pending at once.
    pub fn new(shared: Shared, shutdown: watch::Receiver<bool>, max_in_flight: usize) -> Self {
        ConsoleService {
            shared,
            shutdown,
            max_in_flight: max_in_flight.max(1),
            waveforms: Arc::default(),
        }
    }

    /// The session a sent waveform belongs to, if it was sent to a session of `console`.
    async fn waveform_session(&self, console: &str, waveform_id: &str) -> Result<String, Status> {
        let cached = {
            let g = self.waveforms.lock().unwrap_or_else(|e| e.into_inner());
            g.get(waveform_id).cloned()
        };
        let (session, owner) = match cached {
            Some(x) => x,
            None => {
                let id = waveform_id.to_string();
                let found = self
                    .shared
                    .store
                    .call(move |s| -> Result<Option<(String, String)>, StoreError> {
                        let w = match s.get_waveform(&id) {
                            Ok(w) => w,
                            Err(StoreError::NotFound { .. }) => return Ok(None),
                            Err(e) => return Err(e),
                        };
                        if w.sent_ms.is_none() {
                            return Ok(None);
                        }
                        let session = s.get_session(&w.data.session_id)?;
                        Ok(Some((session.id, session.console_id)))
                    })
                    .await
                    .map_err(daemon_status)?
                    .map_err(store_status)?;
                let Some(found) = found else {
                    return Err(Status::failed_precondition(format!(
                        "waveform_id {waveform_id:?}: the daemon never sent this waveform"
                    )));
                };
                let mut g = self.waveforms.lock().unwrap_or_else(|e| e.into_inner());
                if g.len() >= WAVEFORM_CACHE_MAX {
                    g.clear();
                }
                g.insert(waveform_id.to_string(), found.clone());
                found
            }
        };
        if owner != console {
            return Err(Status::failed_precondition(format!(
                "waveform_id {waveform_id:?} was sent to console {owner:?}, not to {console:?}"
            )));
        }
        Ok(session)
    }

    /// Full validation of one acquisition: fields, then the waveform. Returns what to store.
    async fn prepare(
        &self,
        profile: &ConsoleProfile,
        a: pb::Acquisition,
    ) -> Result<NewAcquisition, Status> {
        let checked = check(profile, &a)?;
        let session_id = self.waveform_session(&profile.id, &a.waveform_id).await?;
        Ok(NewAcquisition {
            session_id,
            console_id: profile.id.clone(),
            idempotency_key: a.idempotency_key,
            waveform_id: a.waveform_id,
            dwell_s: a.dwell_s,
            f0_hz: a.f0_hz,
            averages: a.averages,
            coil: a.coil,
            n_samples: checked.len(),
            samples: checked,
        })
    }

    /// The profile of a console for a unary call: live, else from its stored hello.
    async fn profile_of(&self, console_id: &str) -> Result<ConsoleProfile, Status> {
        check_id("console_id", console_id, 64)
            .map_err(|e| Status::invalid_argument(e.to_string()))?;
        if let Some(link) = self.shared.consoles.get(console_id) {
            return Ok(link.profile);
        }
        let id = console_id.to_string();
        let console = self
            .shared
            .store
            .call(move |s| s.get_console(&id))
            .await
            .map_err(daemon_status)?;
        let console = match console {
            Ok(c) => c,
            Err(StoreError::NotFound { .. }) => {
                return Err(Status::not_found(format!(
                    "console_id {console_id:?}: unknown console (it must say hello on a Connect \
                     stream at least once)"
                )));
            }
            Err(e) => return Err(store_status(e)),
        };
        serde_json::from_value::<ConsoleProfile>(console.info.limits).map_err(|e| {
            Status::not_found(format!(
                "console_id {console_id:?}: no hello stored for this console ({e}); it must say \
                 hello on a Connect stream first"
            ))
        })
    }
}

/// Maps a daemon error to a status (the store actor gone → UNAVAILABLE).
fn daemon_status(e: DaemonError) -> Status {
    match e {
        DaemonError::Store(s) => store_status(s),
        DaemonError::StoreClosed => Status::unavailable("the daemon is shutting down"),
        DaemonError::NotConnected(c) => {
            Status::failed_precondition(format!("console {c} is not connected"))
        }
    }
}

/// The gRPC code of a store error.
pub fn store_status(e: StoreError) -> Status {
    let msg = e.to_string();
    match e {
        StoreError::Invalid { .. } => Status::invalid_argument(msg),
        StoreError::Conflict(_) => Status::already_exists(msg),
        StoreError::NotFound { .. } => Status::not_found(msg),
        StoreError::NoDataDir | StoreError::SchemaTooNew { .. } => Status::failed_precondition(msg),
        StoreError::Sqlite(_) | StoreError::Io { .. } | StoreError::Corrupt { .. } => {
            Status::internal(msg)
        }
    }
}

/// Maps a decode failure of an inbound message: tonic reports an oversized message as
/// OUT_OF_RANGE; the API promises RESOURCE_EXHAUSTED.
pub fn map_decode_error(s: Status) -> Status {
    if is_oversize(&s) {
        Status::resource_exhausted(format!("message too large: {}", s.message()))
    } else {
        s
    }
}

/// Whether a status is tonic's "decoded message length too large".
pub fn is_oversize(s: &Status) -> bool {
    s.code() == Code::OutOfRange && s.message().contains("message length too large")
}

/// Validates a hello into a profile (INVALID_ARGUMENT naming the field).
pub fn profile_from_hello(h: pb::ConsoleHello) -> Result<ConsoleProfile, Status> {
    let Some(l) = h.limits else {
        return Err(Status::invalid_argument("limits: missing from the hello"));
    };
    let window = if l.energy_window_s > 0.0 {
        Some(EnergyWindow {
            window_s: l.energy_window_s,
            max_energy_hz2s: l.window_max_energy_hz2s,
        })
    } else if l.energy_window_s == 0.0 {
        None
    } else {
        return Err(Status::invalid_argument(format!(
            "limits.energy_window_s = {}: must be 0 (none) or > 0",
            l.energy_window_s
        )));
    };
    let profile = ConsoleProfile {
        id: h.console_id,
        nucleus: h.nucleus,
        f0_hz: h.f0_hz,
        rf_raster_s: h.rf_raster_s,
        sample_count: h.sample_count as usize,
        dwell_s: h.dwell_s,
        tr_s: h.tr_s,
        limits: ConsoleLimits {
            peak_b1_hz: l.peak_b1_hz,
            max_energy_hz2s: l.max_energy_hz2s,
            max_duration_s: l.max_duration_s,
            raster_s: h.rf_raster_s,
            max_duty_cycle: l.max_duty_cycle,
            window,
        },
        software: h.software,
    };
    profile
        .validate()
        .map_err(|e| Status::invalid_argument(format!("hello: {e}")))?;
    Ok(profile)
}

/// Checks an acquisition's own fields against the console's profile (no store access):
/// ids, exactly 2 × sample_count finite doubles, dwell > 0 and equal to the hello's (relative
/// 1e-9), f0 > 0, averages ≥ 1. Returns the complex samples.
pub fn check(profile: &ConsoleProfile, a: &pb::Acquisition) -> Result<Vec<Complex64>, Status> {
    let bad = |m: String| Status::invalid_argument(m);
    check_id("idempotency_key", &a.idempotency_key, MAX_ID_LEN).map_err(|e| bad(e.to_string()))?;
    check_id("waveform_id", &a.waveform_id, MAX_ID_LEN).map_err(|e| bad(e.to_string()))?;
    let want = profile.sample_count.saturating_mul(2);
    if a.samples.len() != want {
        return Err(bad(format!(
            "samples: expected {want} doubles (2 x sample_count {} from the hello), got {}",
            profile.sample_count,
            a.samples.len()
        )));
    }
    if let Some(i) = a.samples.iter().position(|x| !x.is_finite()) {
        return Err(bad(format!(
            "samples[{i}] = {} ({} of point {}): samples must be finite",
            a.samples[i],
            if i % 2 == 0 { "re" } else { "im" },
            i / 2
        )));
    }
    if !a.dwell_s.is_finite() || a.dwell_s <= 0.0 {
        return Err(bad(format!(
            "dwell_s = {}: must be finite and > 0",
            a.dwell_s
        )));
    }
    if (a.dwell_s - profile.dwell_s).abs() > DWELL_REL_TOL * profile.dwell_s {
        return Err(bad(format!(
            "dwell_s = {}: differs from the hello's dwell_s = {}",
            a.dwell_s, profile.dwell_s
        )));
    }
    if !a.f0_hz.is_finite() || a.f0_hz <= 0.0 {
        return Err(bad(format!("f0_hz = {}: must be finite and > 0", a.f0_hz)));
    }
    if a.averages == 0 {
        return Err(bad("averages = 0: must be at least 1".into()));
    }
    Ok(a.samples
        .chunks_exact(2)
        .map(|c| Complex64::new(c[0], c[1]))
        .collect())
}

/// Stores one prepared acquisition; returns its Ack after the commit and notifies the session
/// of a new one.
async fn commit(shared: Shared, a: NewAcquisition) -> Result<pb::Ack, (String, Status)> {
    let key = a.idempotency_key.clone();
    let session_id = a.session_id.clone();
    match shared.store.ingest(a).await {
        Ok(r) => {
            if let Ingested::Stored { id } = r {
                shared
                    .sessions
                    .notify(&session_id, SessionNotice::Acquisition(id));
            }
            Ok(pb::Ack {
                idempotency_key: key,
                acquisition_id: r.id(),
                duplicate: matches!(r, Ingested::Duplicate { .. }),
                session_id,
            })
        }
        Err(e) => Err((key, daemon_status(e))),
    }
}

fn nack(key: String, s: &Status) -> pb::DaemonMessage {
    pb::DaemonMessage {
        msg: Some(pb::daemon_message::Msg::Nack(pb::Nack {
            idempotency_key: key,
            code: s.code() as i32,
            message: s.message().to_string(),
        })),
    }
}

fn ack_msg(a: pb::Ack) -> pb::DaemonMessage {
    pb::DaemonMessage {
        msg: Some(pb::daemon_message::Msg::Ack(a)),
    }
}

fn outcome_msg(r: Result<pb::Ack, (String, Status)>) -> pb::DaemonMessage {
    match r {
        Ok(a) => ack_msg(a),
        Err((key, s)) => nack(key, &s),
    }
}

impl ConsoleService {
    /// One Connect stream, start to end.
    async fn run_stream(self, mut inbound: Streaming<pb::ConsoleMessage>, tx: Outbound) {
        use pb::console_message::Msg;
        let mut shutdown = self.shutdown.clone();
        if *shutdown.borrow() {
            let _ = tx
                .send(Err(Status::unavailable("spinloopd is shutting down")))
                .await;
            return;
        }
        // The hello.
        let first = tokio::select! {
            m = inbound.next() => m,
            _ = shutdown.changed() => {
                let _ = tx.send(Err(Status::unavailable("spinloopd is shutting down"))).await;
                return;
            }
        };
        let hello = match first {
            None => return,
            Some(Err(s)) => {
                let _ = tx.send(Err(map_decode_error(s))).await;
                return;
            }
            Some(Ok(pb::ConsoleMessage {
                msg: Some(Msg::Hello(h)),
            })) => h,
            Some(Ok(_)) => {
                let _ = tx
                    .send(Err(Status::failed_precondition(
                        "the first message on a Connect stream must be a hello",
                    )))
                    .await;
                return;
            }
        };
        let profile = match profile_from_hello(hello) {
            Ok(p) => p,
            Err(s) => {
                let _ = tx.send(Err(s)).await;
                return;
            }
        };
        let limits = match serde_json::to_value(&profile) {
            Ok(v) => v,
            Err(e) => {
                let _ = tx
                    .send(Err(Status::internal(format!("encoding the profile: {e}"))))
                    .await;
                return;
            }
        };
        let info = ConsoleInfo {
            id: profile.id.clone(),
            nucleus: profile.nucleus.clone(),
            f0_hz: profile.f0_hz,
            limits,
        };
        let stored = self
            .shared
            .store
            .call(move |s| s.upsert_console(&info))
            .await;
        if let Err(s) = stored
            .map_err(daemon_status)
            .and_then(|r| r.map_err(store_status))
        {
            let _ = tx.send(Err(s)).await;
            return;
        }
        let console_id = profile.id.clone();
        let generation = self.shared.consoles.register(profile.clone(), tx.clone());
        tracing::info!(console = %console_id, software = %profile.software, "console connected");
        let welcome = pb::DaemonMessage {
            msg: Some(pb::daemon_message::Msg::Welcome(pb::Welcome {
                daemon_version: env!("CARGO_PKG_VERSION").to_string(),
                console_id: console_id.clone(),
            })),
        };
        let _ = tx.send(Ok(welcome)).await;

        let mut in_flight: FuturesUnordered<Pending> = FuturesUnordered::new();
        let mut fatal: Option<Status> = None;
        loop {
            tokio::select! {
                biased;
                Some(done) = in_flight.next(), if !in_flight.is_empty() => {
                    let _ = tx.send(Ok(outcome_msg(done))).await;
                }
                _ = shutdown.changed() => {
                    fatal = Some(Status::unavailable("spinloopd is shutting down"));
                    break;
                }
                m = inbound.next(), if in_flight.len() < self.max_in_flight => match m {
                    None => break,
                    Some(Err(s)) => {
                        fatal = Some(map_decode_error(s));
                        break;
                    }
                    Some(Ok(pb::ConsoleMessage { msg: Some(Msg::Acquisition(a)) })) => {
                        let key = a.idempotency_key.clone();
                        match self.prepare(&profile, a).await {
                            Ok(new) => in_flight.push(Box::pin(commit(self.shared.clone(), new))),
                            Err(s) => {
                                tracing::debug!(console = %console_id, key = %key, "nack: {}", s.message());
                                let _ = tx.send(Ok(nack(key, &s))).await;
                            }
                        }
                    }
                    Some(Ok(pb::ConsoleMessage { msg: Some(Msg::Hello(_)) })) => {
                        fatal = Some(Status::failed_precondition(
                            "a second hello on the same Connect stream",
                        ));
                        break;
                    }
                    Some(Ok(_)) => {} // heartbeat (or an empty message)
                },
            }
        }
        // Every accepted acquisition is committed and answered, even if the console left.
        while let Some(done) = in_flight.next().await {
            let _ = tx.send(Ok(outcome_msg(done))).await;
        }
        if let Some(s) = fatal {
            let _ = tx.send(Err(s)).await;
        }
        self.shared.consoles.unregister(&console_id, generation);
        tracing::info!(console = %console_id, "console disconnected");
    }
}

#[tonic::async_trait]
impl pb::console_server::Console for ConsoleService {
    type ConnectStream = BoxStream<pb::DaemonMessage>;

    async fn connect(
        &self,
        request: Request<Streaming<pb::ConsoleMessage>>,
    ) -> Result<Response<Self::ConnectStream>, Status> {
        let inbound = request.into_inner();
        let (tx, rx) = mpsc::channel(OUTBOUND_QUEUE);
        tokio::spawn(self.clone().run_stream(inbound, tx));
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }

    async fn submit_acquisition(
        &self,
        request: Request<pb::SubmitAcquisitionRequest>,
    ) -> Result<Response<pb::Ack>, Status> {
        if *self.shutdown.borrow() {
            return Err(Status::unavailable("spinloopd is shutting down"));
        }
        let r = request.into_inner();
        let Some(a) = r.acquisition else {
            return Err(Status::invalid_argument("acquisition: missing"));
        };
        let profile = self.profile_of(&r.console_id).await?;
        let new = self.prepare(&profile, a).await?;
        commit(self.shared.clone(), new)
            .await
            .map(Response::new)
            .map_err(|(_, s)| s)
    }
}
