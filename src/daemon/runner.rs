//! The async shell around one closed-loop [`Session`]: feeds it acquisitions (after they are
//! durable), operator cancels, console reconnects and deadlines; commits everything each step
//! produced in one store transaction ([`SessionStep`]); only then publishes the events and
//! sends the approved waveforms to the console. The session's computation (design, fit) runs
//! on the blocking pool.
//!
//! Invariants: a waveform reaches a console only as an [`crate::safety::ApprovedWaveform`]
//! produced by the console's interlock, and only after it is stored as sent; a restart
//! resumes from the last committed checkpoint (and feeds acquisitions committed after it).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use num_complex::Complex64 as C64;
use serde_json::json;
use tokio::sync::mpsc;

use super::{DaemonError, SessionNotice, Shared, pb};
use crate::control::{AcquisitionInput, ConsoleProfile, Outcome, Output, Session, SessionSpec};
use crate::store::{NewFit, NewWaveform, SessionState, SessionStep};

/// Seconds since the Unix epoch, never decreasing within a runner (the interlock refuses a
/// clock that goes backwards).
struct Clock {
    last: f64,
}

impl Clock {
    fn now(&mut self) -> f64 {
        let t = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0.0, |d| d.as_secs_f64());
        self.last = self.last.max(t);
        self.last
    }
}

/// What to do with a session when its runner starts.
pub enum Launch {
    /// A new session: start the loop.
    Start,
    /// A restored session; acquisitions committed after its checkpoint are fed first.
    Resume(Vec<AcquisitionInput>),
}

/// Starts a runner task for `session` on `console`. Returns once the session's mailbox is
/// registered (so notices sent afterwards are not lost).
pub fn launch(shared: Shared, session: Session, console: ConsoleProfile, launch: Launch) {
    let (tx, rx) = mpsc::unbounded_channel();
    shared.sessions.insert(session.id(), tx);
    shared
        .sessions
        .insert_cancel_token(session.id(), session.cancel_token());
    tokio::spawn(run(shared, session, console, launch, rx));
}

async fn run(
    shared: Shared,
    session: Session,
    console: ConsoleProfile,
    launch: Launch,
    mut rx: mpsc::UnboundedReceiver<SessionNotice>,
) {
    let id = session.id().to_string();
    let mut clock = Clock { last: 0.0 };
    let mut connections = shared.consoles.subscribe();
    let mut session = Some(session);
    let first = match launch {
        Launch::Start => vec![Input::Start],
        Launch::Resume(later) => {
            let mut v: Vec<Input> = later.into_iter().map(Input::Acquisition).collect();
            v.push(Input::Resumed);
            if shared.consoles.is_connected(&console.id) {
                v.push(Input::Connected);
            }
            v
        }
    };
    for input in first {
        if !step(&shared, &mut session, &console, input, &mut clock).await {
            shared.sessions.remove(&id);
            return;
        }
    }
    loop {
        let deadline = session.as_ref().and_then(Session::poll_timeout);
        let sleep = async {
            match deadline {
                Some(d) => {
                    let wait = (d - clock.now()).max(0.0);
                    tokio::time::sleep(Duration::from_secs_f64(wait.min(3600.0))).await;
                }
                None => std::future::pending::<()>().await,
            }
        };
        let input = tokio::select! {
            n = rx.recv() => match n {
                None | Some(SessionNotice::Shutdown) => break,
                Some(SessionNotice::Cancel(r)) => Input::Cancel(r),
                Some(SessionNotice::ConsoleConnected) => Input::Connected,
                Some(SessionNotice::Acquisition(aid)) => {
                    match load_acquisition(&shared, aid).await {
                        Ok(a) => Input::Acquisition(a),
                        Err(e) => {
                            tracing::error!(session = %id, acquisition = aid, "loading an acquisition: {e}");
                            continue;
                        }
                    }
                }
            },
            c = connections.recv() => match c {
                Ok(cid) if cid == console.id => Input::Connected,
                Ok(_) => continue,
                Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {
                    if shared.consoles.is_connected(&console.id) { Input::Connected } else { continue }
                }
                Err(_) => continue,
            },
            () = sleep => Input::Timeout,
        };
        if !step(&shared, &mut session, &console, input, &mut clock).await {
            break;
        }
    }
    shared.sessions.remove(&id);
}

enum Input {
    Start,
    Resumed,
    Acquisition(AcquisitionInput),
    Cancel(String),
    Connected,
    Timeout,
}

/// Runs one input through the session on the blocking pool, commits its outputs, then
/// publishes and sends. Returns false when the runner should stop.
async fn step(
    shared: &Shared,
    slot: &mut Option<Session>,
    console: &ConsoleProfile,
    input: Input,
    clock: &mut Clock,
) -> bool {
    let Some(mut session) = slot.take() else {
        return false;
    };
    let now = clock.now();
    let interlocks = shared.interlocks.clone();
    let profile = console.clone();
    let resumed = matches!(input, Input::Resumed);
    let joined = tokio::task::spawn_blocking(move || {
        let r = interlocks.with(&profile, |il| match input {
            Input::Start => session.start(now, il),
            Input::Resumed => {}
            Input::Acquisition(a) => session.handle_acquisition(a, now, il),
            Input::Cancel(r) => session.handle_cancel(&r),
            Input::Connected => session.handle_console_connected(now, il),
            Input::Timeout => session.handle_timeout(now, il),
        });
        (session, r)
    })
    .await;
    let (mut session, r) = match joined {
        Ok(x) => x,
        Err(e) => {
            tracing::error!("a session step panicked: {e}");
            return false;
        }
    };
    if let Err(e) = r {
        session.handle_fault(&format!("the console's limits are invalid: {e}"));
    }
    let sid = session.id().to_string();
    let mut st = SessionStep {
        session_id: sid.clone(),
        ..SessionStep::default()
    };
    if resumed {
        st.events.push((
            "resumed".into(),
            json!({"acquisitions_used": session.used().len()}),
        ));
    }
    let mut outgoing = Vec::new();
    while let Some(o) = session.poll_output() {
        match o {
            Output::Send(o) => {
                let a = &o.approved;
                st.waveforms.push(NewWaveform {
                    id: o.waveform_id.clone(),
                    session_id: sid.clone(),
                    dt_s: a.dt(),
                    samples: a
                        .ux()
                        .iter()
                        .zip(a.uy())
                        .map(|(&x, &y)| C64::new(x, y))
                        .collect(),
                    approved: true,
                });
                outgoing.push(pb::DaemonMessage {
                    msg: Some(pb::daemon_message::Msg::Waveform(pb::WaveformCommand {
                        waveform_id: o.waveform_id,
                        session_id: sid.clone(),
                        raster_s: a.dt(),
                        ux: a.ux().to_vec(),
                        uy: a.uy().to_vec(),
                        tr_s: o.tr_s,
                        acquisitions: o.acquisitions,
                        averages: o.averages,
                        probe: o.probe,
                    })),
                });
            }
            Output::Event { kind, payload } => st.events.push((kind, payload)),
            Output::Fit {
                acquisition_id,
                params,
            } => st.fits.push(NewFit {
                session_id: sid.clone(),
                acquisition_id,
                params,
            }),
            Output::Checkpoint(cp) => st.checkpoint = Some(cp),
            Output::Finished { outcome, .. } => {
                st.state = Some(match outcome {
                    Outcome::Converged => SessionState::Converged,
                    Outcome::Failed => SessionState::Failed,
                    Outcome::Cancelled => SessionState::Cancelled,
                });
            }
        }
    }
    let done = session.is_done();
    let committed = shared.store.call(move |s| s.commit_session_step(&st)).await;
    match committed {
        Ok(Ok(events)) => {
            for e in events {
                let _ = shared.events.send(e);
            }
        }
        Ok(Err(e)) => {
            tracing::error!(session = %sid, "committing a session step: {e}");
            return false;
        }
        Err(e) => {
            tracing::error!(session = %sid, "committing a session step: {e}");
            return false;
        }
    }
    for m in outgoing {
        if let Err(e) = shared.consoles.send(&console.id, m).await {
            tracing::info!(session = %sid, "waveform queued until the console connects: {e}");
        }
    }
    if done {
        return false;
    }
    *slot = Some(session);
    true
}

async fn load_acquisition(shared: &Shared, id: i64) -> Result<AcquisitionInput, DaemonError> {
    let a = shared.store.call(move |s| s.get_acquisition(id)).await??;
    Ok(input_of(a))
}

/// A stored acquisition as the session's input.
fn input_of(a: crate::store::Acquisition) -> AcquisitionInput {
    AcquisitionInput {
        id: a.id,
        waveform_id: a.data.waveform_id,
        fid: a.data.samples,
        dwell_s: a.data.dwell_s,
        averages: a.data.averages,
    }
}

/// The console profile stored with a console (its hello).
pub fn profile_of(c: &crate::store::Console) -> Result<ConsoleProfile, String> {
    serde_json::from_value(c.info.limits.clone())
        .map_err(|e| format!("console {}: stored profile unreadable: {e}", c.info.id))
}

/// Resumes every open session in the store (after a restart): a session with a checkpoint
/// continues from it; one without starts. Returns how many runners started. A session that
/// cannot be resumed (unreadable spec, console gone) is marked failed with an event.
pub async fn resume_open_sessions(shared: &Shared) -> Result<usize, DaemonError> {
    let open = shared.store.call(|s| s.open_sessions()).await??;
    let mut started = 0;
    for sess in open {
        let sid = sess.id.clone();
        match prepare_resume(shared, &sess).await {
            Ok((session, console, launch_kind)) => {
                launch(shared.clone(), session, console, launch_kind);
                started += 1;
            }
            Err(reason) => {
                tracing::error!(session = %sid, "cannot resume: {reason}");
                let st = SessionStep {
                    session_id: sid.clone(),
                    events: vec![("failed".into(), json!({"reason": reason}))],
                    state: Some(SessionState::Failed),
                    ..SessionStep::default()
                };
                let events = shared
                    .store
                    .call(move |s| s.commit_session_step(&st))
                    .await??;
                for e in events {
                    let _ = shared.events.send(e);
                }
            }
        }
    }
    Ok(started)
}

async fn prepare_resume(
    shared: &Shared,
    sess: &crate::store::Session,
) -> Result<(Session, ConsoleProfile, Launch), String> {
    let spec: SessionSpec = serde_json::from_value(sess.spec.clone())
        .map_err(|e| format!("stored spec unreadable: {e}"))?;
    let cid = sess.console_id.clone();
    let console = shared
        .store
        .call(move |s| s.get_console(&cid))
        .await
        .map_err(|e| e.to_string())?
        .map_err(|e| e.to_string())?;
    let profile = profile_of(&console)?;
    let sid = sess.id.clone();
    let (checkpoint, acquisitions) = shared
        .store
        .call(move |s| {
            Ok::<_, crate::store::StoreError>((
                s.session_checkpoint(&sid)?,
                s.list_acquisitions(&sid)?,
            ))
        })
        .await
        .map_err(|e| e.to_string())?
        .map_err(|e| e.to_string())?;
    let inputs: Vec<AcquisitionInput> = acquisitions.into_iter().map(input_of).collect();
    let sid = sess.id.clone();
    let spec2 = spec.clone();
    let profile2 = profile.clone();
    tokio::task::spawn_blocking(move || match checkpoint {
        None => Session::new(&sid, spec2, profile2)
            .map(|s| (s, Launch::Start))
            .map_err(|e| e.to_string()),
        Some(cp) => {
            let parsed: crate::control::Checkpoint = serde_json::from_value(cp.clone())
                .map_err(|e| format!("stored checkpoint unreadable: {e}"))?;
            // The acquisitions the checkpoint used, in its order; the rest came after it.
            let mut by_id: std::collections::HashMap<i64, AcquisitionInput> =
                inputs.into_iter().map(|a| (a.id, a)).collect();
            let used: Vec<AcquisitionInput> = parsed
                .used
                .iter()
                .filter_map(|id| by_id.remove(id))
                .collect();
            let mut later: Vec<AcquisitionInput> = by_id.into_values().collect();
            later.sort_by_key(|a| a.id);
            Session::restore(&sid, spec2, profile2, &cp, used)
                .map(|s| (s, Launch::Resume(later)))
                .map_err(|e| e.to_string())
        }
    })
    .await
    .map_err(|e| e.to_string())?
    .map(|(s, l)| (s, profile, l))
}
