//! The `Sessions` service (operators): create, inspect, cancel, watch and export closed-loop
//! sessions, and list consoles. Requests are validated here (clear `INVALID_ARGUMENT`s naming
//! the field, `NOT_FOUND` for unknown ids); the loop itself runs in [`super::runner`].

use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use serde_json::{Value, json};
use tokio::sync::broadcast::error::RecvError;
use tokio_stream::Stream;
use tonic::{Request, Response, Status};

use super::runner::{self, Launch, profile_of};
use super::{DaemonError, SessionNotice, Shared, pb};
use crate::control::{self, Session, SessionSpec};
use crate::store::{SessionState, StoreError};

/// The `Sessions` service over the shared daemon state.
#[derive(Clone)]
pub struct SessionsService {
    /// Shared daemon state.
    pub shared: Shared,
}

impl SessionsService {
    /// The service.
    pub fn new(shared: Shared) -> Self {
        SessionsService { shared }
    }
}

type BoxStream<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send + 'static>>;

/// Maps a store error to the gRPC status a caller should see.
pub fn store_status(e: StoreError) -> Status {
    match e {
        StoreError::Invalid { .. } => Status::invalid_argument(e.to_string()),
        StoreError::NotFound { .. } => Status::not_found(e.to_string()),
        StoreError::Conflict(_) => Status::already_exists(e.to_string()),
        other => Status::internal(other.to_string()),
    }
}

/// Runs `f` on the store thread; store and shutdown errors as gRPC statuses.
async fn db<R: Send + 'static>(
    shared: &Shared,
    f: impl FnOnce(&mut crate::store::Store) -> Result<R, StoreError> + Send + 'static,
) -> Result<R, Status> {
    shared
        .store
        .call(f)
        .await
        .map_err(daemon_status)?
        .map_err(store_status)
}

/// Maps a daemon error to a gRPC status.
pub fn daemon_status(e: DaemonError) -> Status {
    match e {
        DaemonError::Store(s) => store_status(s),
        DaemonError::StoreClosed => Status::unavailable("the daemon is shutting down"),
        DaemonError::NotConnected(c) => {
            Status::failed_precondition(format!("console {c} is not connected"))
        }
    }
}

fn state_pb(s: SessionState) -> pb::SessionState {
    match s {
        SessionState::Open => pb::SessionState::Open,
        SessionState::Converged => pb::SessionState::Converged,
        SessionState::Failed => pb::SessionState::Failed,
        SessionState::Cancelled => pb::SessionState::Cancelled,
    }
}

/// A [`SessionSpec`] as the request message: the exact inverse of [`spec_from_pb`] (unset
/// optional fields become the message's zero values, which `spec_from_pb` reads as unset).
pub fn spec_to_pb(s: &SessionSpec) -> pb::SessionSpec {
    let s = s.clone();
    pb::SessionSpec {
        console_id: s.console_id,
        problem_toml: s.problem_toml.unwrap_or_default(),
        targets: s.targets,
        concentrations: s.concentrations,
        objective: s
            .objective
            .into_iter()
            .map(|o| pb::ObjectivePart {
                kind: o.kind,
                metabolite: o.metabolite,
                window_lo_ppm: o.window_ppm.map_or(0.0, |w| w.0),
                window_hi_ppm: o.window_ppm.map_or(0.0, |w| w.1),
                weight: o.weight.unwrap_or(0.0),
                above: o.above,
                a: o.a,
                b: o.b,
            })
            .collect(),
        sequence: s.sequence.map(|q| pb::Sequence {
            kind: q.kind,
            te_ms: q.te_ms.unwrap_or(0.0),
            te1_ms: q.te1_ms.unwrap_or(0.0),
            te2_ms: q.te2_ms.unwrap_or(0.0),
            tm_ms: q.tm_ms.unwrap_or(0.0),
            pulses: q.pulses.unwrap_or_default(),
            grid_points: q
                .grid_points
                .map_or(0, |g| u32::try_from(g).unwrap_or(u32::MAX)),
        }),
        pulse: s.pulse.map(|p| pb::Pulse {
            segments: u32::try_from(p.segments).unwrap_or(u32::MAX),
            dt_s: p.dt_s,
            parameterization: p.parameterization.unwrap_or_default(),
            sine_terms: p
                .sine_terms
                .map_or(0, |t| u32::try_from(t).unwrap_or(u32::MAX)),
            fixed_edges: u32::try_from(p.fixed_edges).unwrap_or(u32::MAX),
        }),
        constraints: Some(pb::Constraints {
            peak_b1_hz: s.constraints.peak_b1_hz.unwrap_or(0.0),
            energy_weight: s.constraints.energy_weight,
            smoothness_weight: s.constraints.smoothness_weight,
        }),
        ensemble: Some(pb::Ensemble {
            b1: s.ensemble.b1,
            b0_hz: s.ensemble.b0_hz,
        }),
        budget: Some(pb::Budget {
            max_acquisitions: s.budget.max_acquisitions,
            max_rounds: s.budget.max_rounds,
            optimizer_iterations: s.budget.optimizer_iterations,
            acquisitions_per_round: s.budget.acquisitions_per_round,
            averages: s.budget.averages,
        }),
        convergence: Some(pb::Convergence {
            objective_tolerance: s.convergence.objective_tolerance,
            probe_b1_sigma: s.convergence.probe_b1_sigma,
        }),
        carrier_ppm: s.carrier_ppm.unwrap_or(0.0),
        linewidth_hz: s.linewidth_hz.unwrap_or(0.0),
        label: s.label,
    }
}

/// The control-layer spec of a request (structural checks only; the design checks run when
/// the session is compiled against its console).
pub fn spec_from_pb(p: pb::SessionSpec) -> Result<SessionSpec, Status> {
    let objective = p
        .objective
        .into_iter()
        .map(|o| {
            let window = (o.window_lo_ppm != 0.0 || o.window_hi_ppm != 0.0)
                .then_some((o.window_lo_ppm, o.window_hi_ppm));
            control::ObjectivePart {
                kind: o.kind,
                metabolite: o.metabolite,
                window_ppm: window,
                weight: (o.weight != 0.0).then_some(o.weight),
                above: o.above,
                a: o.a,
                b: o.b,
            }
        })
        .collect();
    let nz = |x: f64| (x != 0.0).then_some(x);
    let budget = p.budget.map_or_else(control::Budget::default, |b| {
        let d = control::Budget::default();
        let or = |v: u32, d: u32| if v == 0 { d } else { v };
        control::Budget {
            max_acquisitions: or(b.max_acquisitions, d.max_acquisitions),
            max_rounds: or(b.max_rounds, d.max_rounds),
            optimizer_iterations: or(b.optimizer_iterations, d.optimizer_iterations),
            acquisitions_per_round: or(b.acquisitions_per_round, d.acquisitions_per_round),
            averages: or(b.averages, d.averages),
        }
    });
    let convergence = p
        .convergence
        .map_or_else(control::Convergence::default, |c| {
            let d = control::Convergence::default();
            control::Convergence {
                objective_tolerance: nz(c.objective_tolerance).unwrap_or(d.objective_tolerance),
                probe_b1_sigma: nz(c.probe_b1_sigma).unwrap_or(d.probe_b1_sigma),
            }
        });
    let ensemble = match p.ensemble {
        Some(e) if !e.b1.is_empty() || !e.b0_hz.is_empty() => control::EnsembleSpec {
            b1: if e.b1.is_empty() { vec![1.0] } else { e.b1 },
            b0_hz: if e.b0_hz.is_empty() {
                vec![0.0]
            } else {
                e.b0_hz
            },
        },
        _ => control::EnsembleSpec::default(),
    };
    let spec = SessionSpec {
        console_id: p.console_id,
        problem_toml: (!p.problem_toml.trim().is_empty()).then_some(p.problem_toml),
        targets: p.targets,
        concentrations: p.concentrations,
        objective,
        sequence: p.sequence.map(|s| control::SequenceSpec {
            kind: s.kind,
            te_ms: nz(s.te_ms),
            te1_ms: nz(s.te1_ms),
            te2_ms: nz(s.te2_ms),
            tm_ms: nz(s.tm_ms),
            pulses: (!s.pulses.is_empty()).then_some(s.pulses),
            grid_points: (s.grid_points != 0).then_some(s.grid_points as usize),
        }),
        pulse: p.pulse.map(|q| control::PulseSpec {
            segments: q.segments as usize,
            dt_s: q.dt_s,
            parameterization: (!q.parameterization.is_empty()).then_some(q.parameterization),
            sine_terms: (q.sine_terms != 0).then_some(q.sine_terms as usize),
            fixed_edges: q.fixed_edges as usize,
        }),
        constraints: p
            .constraints
            .map_or_else(control::ConstraintSpec::default, |c| {
                control::ConstraintSpec {
                    peak_b1_hz: nz(c.peak_b1_hz),
                    energy_weight: c.energy_weight,
                    smoothness_weight: c.smoothness_weight,
                }
            }),
        ensemble,
        budget,
        convergence,
        carrier_ppm: nz(p.carrier_ppm),
        linewidth_hz: nz(p.linewidth_hz),
        label: p.label,
    };
    spec.validate()
        .map_err(|e| Status::invalid_argument(e.to_string()))?;
    Ok(spec)
}

static SESSION_COUNTER: AtomicU64 = AtomicU64::new(0);

fn new_session_id() -> String {
    let ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis());
    let n = SESSION_COUNTER.fetch_add(1, Ordering::Relaxed);
    format!("s{ms:x}-{}-{n}", std::process::id())
}

/// A session's summary (counts and the latest fit) as the API shows it.
pub async fn session_pb(shared: &Shared, id: &str) -> Result<pb::Session, Status> {
    let sid = id.to_string();
    let (s, acqs, waves, fits) = shared
        .store
        .call(move |st| {
            Ok::<_, StoreError>((
                st.get_session(&sid)?,
                st.list_acquisitions(&sid)?.len(),
                st.list_waveforms(&sid)?.len(),
                st.list_fits(&sid)?,
            ))
        })
        .await
        .map_err(daemon_status)?
        .map_err(store_status)?;
    let hardware = fits
        .last()
        .map(|f| params_pb(&f.data.params["parameters"]))
        .unwrap_or_default();
    let label = s.spec["label"].as_str().unwrap_or_default().to_string();
    Ok(pb::Session {
        id: s.id,
        console_id: s.console_id,
        state: state_pb(s.state) as i32,
        spec_json: s.spec.to_string(),
        created_ms: s.created_ms,
        updated_ms: s.updated_ms,
        acquisitions: u32::try_from(acqs).unwrap_or(u32::MAX),
        waveforms: u32::try_from(waves).unwrap_or(u32::MAX),
        fits: u32::try_from(fits.len()).unwrap_or(u32::MAX),
        hardware,
        label,
    })
}

fn params_pb(v: &Value) -> Vec<pb::Parameter> {
    v.as_array()
        .cloned()
        .unwrap_or_default()
        .into_iter()
        .map(|p| pb::Parameter {
            name: p["name"].as_str().unwrap_or_default().to_string(),
            value: p["value"].as_f64().unwrap_or(f64::NAN),
            std_error: p["std_error"].as_f64().unwrap_or(f64::NAN),
            unit: p["unit"].as_str().unwrap_or_default().to_string(),
        })
        .collect()
}

/// A stored event as the API shows it (typed detail for the main kinds).
pub fn event_pb(e: &crate::store::Event) -> pb::SessionEvent {
    use pb::session_event::Detail;
    let p = &e.payload;
    let u32_of = |k: &str| {
        p[k].as_u64()
            .map_or(0, |x| u32::try_from(x).unwrap_or(u32::MAX))
    };
    let detail = match e.kind.as_str() {
        "fit" => Some(Detail::Fit(pb::FitEvent {
            round: u32_of("round"),
            parameters: params_pb(&p["parameters"]),
            residual_rms: p["residual_rms"].as_f64().unwrap_or(f64::NAN),
            acquisitions_used: u32_of("acquisitions_used"),
            poorly_identified: p["poorly_identified"]
                .as_array()
                .map(|a| {
                    a.iter()
                        .filter_map(|x| x.as_str().map(str::to_string))
                        .collect()
                })
                .unwrap_or_default(),
        })),
        "objective" => Some(Detail::Objective(pb::ObjectiveEvent {
            round: u32_of("round"),
            waveform_id: p["waveform_id"].as_str().unwrap_or_default().to_string(),
            measured: p["measured"].as_f64().unwrap_or(f64::NAN),
            predicted: p["predicted"].as_f64().unwrap_or(f64::NAN),
        })),
        "waveform_sent" => Some(Detail::Waveform(pb::WaveformEvent {
            round: u32_of("round"),
            waveform_id: p["waveform_id"].as_str().unwrap_or_default().to_string(),
            probe: p["probe"].as_bool().unwrap_or(false),
            peak_b1_hz: p["peak_b1_hz"].as_f64().unwrap_or(f64::NAN),
            energy_hz2s: p["energy_hz2s"].as_f64().unwrap_or(f64::NAN),
            duration_s: p["duration_s"].as_f64().unwrap_or(f64::NAN),
        })),
        "converged" | "failed" | "cancelled" => Some(Detail::State(pb::StateEvent {
            state: match e.kind.as_str() {
                "converged" => pb::SessionState::Converged,
                "failed" => pb::SessionState::Failed,
                _ => pb::SessionState::Cancelled,
            } as i32,
            reason: p["reason"].as_str().unwrap_or_default().to_string(),
        })),
        _ => None,
    };
    pb::SessionEvent {
        seq: e.seq,
        session_id: e.session_id.clone().unwrap_or_default(),
        at_ms: e.at_ms,
        kind: e.kind.clone(),
        payload_json: e.payload.to_string(),
        detail,
    }
}

fn is_final(kind: &str) -> bool {
    matches!(kind, "converged" | "failed" | "cancelled")
}

fn check_session_id(id: &str) -> Result<(), Status> {
    control::check_id("session_id", id, 64).map_err(|e| Status::invalid_argument(e.to_string()))
}

#[tonic::async_trait]
impl pb::sessions_server::Sessions for SessionsService {
    async fn create_session(
        &self,
        r: Request<pb::CreateSessionRequest>,
    ) -> Result<Response<pb::Session>, Status> {
        let spec = r
            .into_inner()
            .spec
            .ok_or_else(|| Status::invalid_argument("spec: missing"))?;
        let spec = spec_from_pb(spec)?;
        let cid = spec.console_id.clone();
        let console = db(&self.shared, move |s| s.get_console(&cid)).await?;
        let profile = profile_of(&console).map_err(Status::internal)?;
        let id = new_session_id();
        // Compile and check the whole design against the console before storing anything.
        let (sid, spec2, profile2) = (id.clone(), spec.clone(), profile.clone());
        let session = tokio::task::spawn_blocking(move || Session::new(&sid, spec2, profile2))
            .await
            .map_err(|e| Status::internal(e.to_string()))?
            .map_err(|e| Status::invalid_argument(e.to_string()))?;
        let spec_json = serde_json::to_value(&spec).map_err(|e| Status::internal(e.to_string()))?;
        let new = crate::store::NewSession {
            id: id.clone(),
            console_id: spec.console_id.clone(),
            spec: spec_json,
        };
        db(&self.shared, move |s| s.create_session(&new)).await?;
        self.shared
            .emit(
                Some(&id),
                "created",
                json!({"console_id": spec.console_id, "label": spec.label}),
            )
            .await
            .map_err(daemon_status)?;
        runner::launch(self.shared.clone(), session, profile, Launch::Start);
        Ok(Response::new(session_pb(&self.shared, &id).await?))
    }

    async fn get_session(
        &self,
        r: Request<pb::GetSessionRequest>,
    ) -> Result<Response<pb::Session>, Status> {
        let id = r.into_inner().session_id;
        check_session_id(&id)?;
        Ok(Response::new(session_pb(&self.shared, &id).await?))
    }

    async fn list_sessions(
        &self,
        r: Request<pb::ListSessionsRequest>,
    ) -> Result<Response<pb::ListSessionsResponse>, Status> {
        let q = r.into_inner();
        let all = db(&self.shared, |s| s.list_sessions()).await?;
        let mut out = Vec::new();
        for s in all {
            if (!q.console_id.is_empty() && s.console_id != q.console_id)
                || (q.open_only && s.state.is_terminal())
            {
                continue;
            }
            out.push(session_pb(&self.shared, &s.id).await?);
        }
        Ok(Response::new(pb::ListSessionsResponse { sessions: out }))
    }

    async fn cancel_session(
        &self,
        r: Request<pb::CancelSessionRequest>,
    ) -> Result<Response<pb::Session>, Status> {
        let q = r.into_inner();
        check_session_id(&q.session_id)?;
        let sid = q.session_id.clone();
        let s = db(&self.shared, move |st| st.get_session(&sid)).await?;
        if s.state.is_terminal() {
            return Err(Status::failed_precondition(format!(
                "session {} already ended ({})",
                s.id, s.state
            )));
        }
        let reason = if q.reason.is_empty() {
            "cancelled by an operator".to_string()
        } else {
            q.reason.clone()
        };
        if self
            .shared
            .sessions
            .notify(&q.session_id, SessionNotice::Cancel(reason.clone()))
        {
            // The runner commits the cancel after its current step.
            for _ in 0..600 {
                let sid = q.session_id.clone();
                let st = db(&self.shared, move |st| st.get_session(&sid)).await?;
                if st.state.is_terminal() {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        } else {
            // No runner (it ended between the check and now, or never resumed): record here.
            let st = crate::store::SessionStep {
                session_id: q.session_id.clone(),
                events: vec![("cancelled".into(), json!({"reason": reason}))],
                state: Some(SessionState::Cancelled),
                ..Default::default()
            };
            let events = db(&self.shared, move |s| s.commit_session_step(&st)).await?;
            for e in events {
                let _ = self.shared.events.send(e);
            }
        }
        Ok(Response::new(
            session_pb(&self.shared, &q.session_id).await?,
        ))
    }

    type WatchSessionStream = BoxStream<pb::SessionEvent>;
    async fn watch_session(
        &self,
        r: Request<pb::WatchSessionRequest>,
    ) -> Result<Response<Self::WatchSessionStream>, Status> {
        let q = r.into_inner();
        check_session_id(&q.session_id)?;
        if q.after_seq < 0 {
            return Err(Status::invalid_argument("after_seq: must be ≥ 0"));
        }
        let sid = q.session_id.clone();
        let session = db(&self.shared, move |st| st.get_session(&sid)).await?;
        // Subscribe before replaying so nothing falls between the two.
        let mut live = self.shared.events.subscribe();
        let shared = self.shared.clone();
        let (tx, rx) = tokio::sync::mpsc::channel(64);
        tokio::spawn(async move {
            let mut last = q.after_seq;
            let mut ended = false;
            loop {
                let sid = q.session_id.clone();
                let batch = match shared
                    .store
                    .call(move |st| st.events_since(Some(&sid), last, 500))
                    .await
                {
                    Ok(Ok(b)) => b,
                    Ok(Err(e)) => {
                        let _ = tx.send(Err(store_status(e))).await;
                        return;
                    }
                    Err(e) => {
                        let _ = tx.send(Err(daemon_status(e))).await;
                        return;
                    }
                };
                let n = batch.len();
                for e in batch {
                    last = e.seq;
                    ended |= is_final(&e.kind);
                    if tx.send(Ok(event_pb(&e))).await.is_err() {
                        return;
                    }
                }
                if n < 500 {
                    break;
                }
            }
            if q.until_done && (ended || session.state.is_terminal()) {
                return;
            }
            loop {
                match live.recv().await {
                    Ok(e) => {
                        if e.session_id.as_deref() != Some(q.session_id.as_str()) || e.seq <= last {
                            continue;
                        }
                        last = e.seq;
                        let fin = is_final(&e.kind);
                        if tx.send(Ok(event_pb(&e))).await.is_err() {
                            return;
                        }
                        if fin && q.until_done {
                            return;
                        }
                    }
                    Err(RecvError::Lagged(_)) => {
                        // Catch up from the store.
                        let sid = q.session_id.clone();
                        let after = last;
                        if let Ok(Ok(batch)) = shared
                            .store
                            .call(move |st| st.events_since(Some(&sid), after, 10_000))
                            .await
                        {
                            for e in batch {
                                last = e.seq;
                                let fin = is_final(&e.kind);
                                if tx.send(Ok(event_pb(&e))).await.is_err() {
                                    return;
                                }
                                if fin && q.until_done {
                                    return;
                                }
                            }
                        }
                    }
                    Err(RecvError::Closed) => return,
                }
            }
        });
        Ok(Response::new(Box::pin(
            tokio_stream::wrappers::ReceiverStream::new(rx),
        )))
    }

    type ExportSessionStream = BoxStream<pb::ExportChunk>;
    async fn export_session(
        &self,
        r: Request<pb::ExportSessionRequest>,
    ) -> Result<Response<Self::ExportSessionStream>, Status> {
        let id = r.into_inner().session_id;
        check_session_id(&id)?;
        let sid = id.clone();
        let files = self
            .shared
            .store
            .call(move |st| super::export::session_files(st, &sid))
            .await
            .map_err(daemon_status)?
            .map_err(|e| match e {
                super::export::ExportError::Store(s) => store_status(s),
                other => Status::internal(other.to_string()),
            })?;
        let (tx, rx) = tokio::sync::mpsc::channel(8);
        tokio::spawn(async move {
            for (path, data) in files {
                let chunks: Vec<&[u8]> = if data.is_empty() {
                    vec![&[][..]]
                } else {
                    data.chunks(super::export::CHUNK).collect()
                };
                let n = chunks.len();
                for (i, c) in chunks.into_iter().enumerate() {
                    let m = pb::ExportChunk {
                        path: path.clone(),
                        data: c.to_vec(),
                        last: i + 1 == n,
                    };
                    if tx.send(Ok(m)).await.is_err() {
                        return;
                    }
                }
            }
        });
        Ok(Response::new(Box::pin(
            tokio_stream::wrappers::ReceiverStream::new(rx),
        )))
    }

    async fn list_consoles(
        &self,
        _r: Request<pb::ListConsolesRequest>,
    ) -> Result<Response<pb::ListConsolesResponse>, Status> {
        let all = db(&self.shared, |s| s.list_consoles()).await?;
        let consoles = all
            .into_iter()
            .map(|c| {
                let p = profile_of(&c).ok();
                pb::ConsoleRecord {
                    connected: self.shared.consoles.is_connected(&c.info.id),
                    console_id: c.info.id,
                    nucleus: c.info.nucleus,
                    f0_hz: c.info.f0_hz,
                    limits: p.map(|p| pb::ConsoleLimits {
                        peak_b1_hz: p.limits.peak_b1_hz,
                        max_energy_hz2s: p.limits.max_energy_hz2s,
                        max_duration_s: p.limits.max_duration_s,
                        max_duty_cycle: p.limits.max_duty_cycle,
                        energy_window_s: p.limits.window.map_or(0.0, |w| w.window_s),
                        window_max_energy_hz2s: p.limits.window.map_or(0.0, |w| w.max_energy_hz2s),
                    }),
                    first_seen_ms: c.first_seen_ms,
                    last_seen_ms: c.last_seen_ms,
                }
            })
            .collect();
        Ok(Response::new(pb::ListConsolesResponse { consoles }))
    }
}

/// Resumes every open session found in the store (after a restart). Returns how many.
pub async fn resume_open_sessions(shared: &Shared) -> Result<usize, DaemonError> {
    runner::resume_open_sessions(shared).await
}
