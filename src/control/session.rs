//! The closed-loop session state machine (sans-IO, after quinn-proto and str0m).
//!
//! Inputs: [`Session::start`], [`Session::handle_acquisition`], [`Session::handle_cancel`],
//! [`Session::handle_console_connected`], [`Session::handle_timeout`] — each with the current
//! time (seconds on the caller's clock) and the console's [`Interlock`]. Outputs, pulled with
//! [`Session::poll_output`]: waveforms to send (only ever an [`ApprovedWaveform`]), events,
//! fit records, checkpoints (the state to persist, from which [`Session::restore`] resumes
//! after a restart) and the final outcome. [`Session::poll_timeout`] says when to call
//! `handle_timeout`. No sockets, no clocks, no threads: the computation (design, fit) runs
//! inside the handlers, so the shell calls them off its async runtime.
//!
//! The loop (DESIGN.md, "The closed loop"):
//! 1. design the initial waveform under the nominal hardware model; interlock; send;
//! 2. collect `acquisitions_per_round` FIDs of it; fit the hardware model to every FID so far
//!    (joint fit, each FID with the waveform it was measured with);
//! 3. if the fit cannot identify the B1 scale (σ above `probe_b1_sigma`), send a probe — the
//!    current design scaled (×0.5 or ×1.5, within the console's limits) to move its flip off the
//!    stationary point of the signal, whichever gives the smaller expected σ(B1) in the joint
//!    fit (Cramér–Rao bound at the estimate) — and fit again with its FIDs (at most
//!    [`MAX_PROBES`] per session);
//! 4. compare the objective measured (the played waveform under the fitted hardware) with the
//!    one predicted when it was sent; re-optimize warm-started under the fitted hardware;
//! 5. converged when the prediction held (relative tolerance) and re-optimization gains less
//!    than the tolerance; otherwise send the new waveform and repeat, within the budget.

use std::collections::VecDeque;

use num_complex::Complex64 as C64;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::ConsoleProfile;
use super::model::{HardwareEstimate, LoopModel};
use super::spec::SessionSpec;
use crate::physics::PhysicsError;
use crate::safety::{ApprovedWaveform, Interlock, Waveform};

/// Most probe waveforms one session sends.
pub const MAX_PROBES: u32 = 2;
/// Seconds to wait for the acquisitions of a sent waveform before sending it again.
pub const ACQUISITION_TIMEOUT_S: f64 = 120.0;
/// Sends of one waveform (the first and the repeats) before the session fails.
pub const MAX_SENDS: u32 = 4;

/// Errors of the control layer.
#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    /// The spec, the console or the physics refused.
    #[error(transparent)]
    Physics(#[from] PhysicsError),
    /// A checkpoint could not be read.
    #[error("checkpoint: {0}")]
    Checkpoint(String),
    /// An input arrived that the state does not accept.
    #[error("{0}")]
    Protocol(String),
}

/// A cancel request that reaches a session while it computes: the shell sets it when an
/// operator cancels; the session's long computations (designs) poll it and stop at their next
/// iteration, and the session then ends `Cancelled` with the reason.
#[derive(Debug, Clone, Default)]
pub struct CancelToken(std::sync::Arc<std::sync::Mutex<Option<String>>>);

impl CancelToken {
    /// Requests cancellation (the first reason is kept).
    pub fn cancel(&self, reason: &str) {
        let mut g = self.0.lock().unwrap_or_else(|e| e.into_inner());
        if g.is_none() {
            *g = Some(reason.to_string());
        }
    }

    /// The reason, if cancellation was requested.
    pub fn reason(&self) -> Option<String> {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Whether cancellation was requested.
    pub fn is_cancelled(&self) -> bool {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).is_some()
    }
}

/// How a session ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// The measured objective matched the prediction and could not be improved further.
    Converged,
    /// Budget exhausted, the console never acquired, or a computation failed.
    Failed,
    /// An operator cancelled it.
    Cancelled,
}

/// A waveform to send: approved by the interlock, with the console command's fields.
#[derive(Debug)]
pub struct Outgoing {
    /// Waveform id (`<session>-w<n>`).
    pub waveform_id: String,
    /// The approved samples.
    pub approved: ApprovedWaveform,
    /// Round it belongs to.
    pub round: u32,
    /// A probe (for identifiability), not a design.
    pub probe: bool,
    /// Acquisitions wanted.
    pub acquisitions: u32,
    /// Averages per acquisition.
    pub averages: u32,
    /// Repetition time (s).
    pub tr_s: f64,
    /// True if this id was sent before (a repeat after a reconnect or timeout).
    pub repeat: bool,
}

/// What the session asks its shell to do.
#[derive(Debug)]
pub enum Output {
    /// Store the waveform (approved), mark it sent, and send it to the console.
    Send(Outgoing),
    /// Append an event.
    Event {
        /// Event kind.
        kind: String,
        /// Payload.
        payload: Value,
    },
    /// Store a fit.
    Fit {
        /// The newest acquisition it used.
        acquisition_id: Option<i64>,
        /// Parameters, uncertainties and diagnostics.
        params: Value,
    },
    /// Persist this state (resume with [`Session::restore`]).
    Checkpoint(Value),
    /// The session ended.
    Finished {
        /// How.
        outcome: Outcome,
        /// Why, for a person.
        reason: String,
    },
}

/// An acquisition fed to the session (already durable).
#[derive(Debug, Clone)]
pub struct AcquisitionInput {
    /// Store id.
    pub id: i64,
    /// The waveform played.
    pub waveform_id: String,
    /// Samples.
    pub fid: Vec<C64>,
    /// Dwell (s).
    pub dwell_s: f64,
    /// Averages summed.
    pub averages: u32,
}

/// A waveform this session sent.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SentWaveform {
    /// Id.
    pub id: String,
    /// Round.
    pub round: u32,
    /// Probe or design.
    pub probe: bool,
    /// Segment duration (s).
    pub dt: f64,
    /// x samples (Hz).
    pub ux: Vec<f64>,
    /// y samples (Hz).
    pub uy: Vec<f64>,
    /// Objective predicted when it was sent (designs only).
    pub predicted: Option<f64>,
    /// Optimizer parameters (designs only; the warm start of the next design).
    pub theta: Option<Vec<f64>>,
}

/// Where the loop is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Phase {
    /// Not started.
    Idle,
    /// Waiting for acquisitions of the current waveform.
    Collecting,
    /// Ended.
    Done,
}

/// The persisted state (everything but the FIDs, which the store keeps).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Checkpoint {
    /// Phase.
    pub phase: Phase,
    /// Design round (0 = the nominal design).
    pub round: u32,
    /// Every waveform sent, in order.
    pub waveforms: Vec<SentWaveform>,
    /// Index of the waveform being collected.
    pub current: Option<usize>,
    /// The latest design (index into `waveforms`).
    pub design: Option<usize>,
    /// Acquisitions of the current waveform so far.
    pub collected: u32,
    /// Acquisition ids used (in order).
    pub used: Vec<i64>,
    /// Current hardware estimate.
    pub estimate: HardwareEstimate,
    /// Probes sent.
    pub probes: u32,
    /// Sends of the current waveform.
    pub sends: u32,
    /// When to act if nothing arrives (caller's clock, s).
    pub deadline_s: Option<f64>,
    /// Fits done.
    pub fits: u32,
}

/// The session.
pub struct Session {
    id: String,
    spec: SessionSpec,
    console: ConsoleProfile,
    model: LoopModel,
    cp: Checkpoint,
    data: Vec<AcquisitionInput>,
    out: VecDeque<Output>,
    cancel: CancelToken,
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session")
            .field("id", &self.id)
            .field("phase", &self.cp.phase)
            .field("round", &self.cp.round)
            .finish_non_exhaustive()
    }
}

impl Session {
    /// A new session: compiles and checks the spec against the console (every design check)
    /// without starting.
    pub fn new(
        id: &str,
        spec: SessionSpec,
        console: ConsoleProfile,
    ) -> Result<Session, ControlError> {
        super::check_id("session_id", id, 64)?;
        let problem = spec.problem(&console)?;
        let model = LoopModel::new(problem, spec.ensemble.clone())?;
        Ok(Session {
            id: id.to_string(),
            spec,
            console,
            model,
            cp: Checkpoint {
                phase: Phase::Idle,
                round: 0,
                waveforms: Vec::new(),
                current: None,
                design: None,
                collected: 0,
                used: Vec::new(),
                estimate: HardwareEstimate::NOMINAL,
                probes: 0,
                sends: 0,
                deadline_s: None,
                fits: 0,
            },
            data: Vec::new(),
            out: VecDeque::new(),
            cancel: CancelToken::default(),
        })
    }

    /// Resumes from a checkpoint and the acquisitions it had used (from the store). Feed any
    /// later acquisitions with [`Session::handle_acquisition`] and call
    /// [`Session::handle_console_connected`] when the console is there to resend.
    pub fn restore(
        id: &str,
        spec: SessionSpec,
        console: ConsoleProfile,
        checkpoint: &Value,
        used: Vec<AcquisitionInput>,
    ) -> Result<Session, ControlError> {
        let cp: Checkpoint = serde_json::from_value(checkpoint.clone())
            .map_err(|e| ControlError::Checkpoint(e.to_string()))?;
        let mut s = Session::new(id, spec, console)?;
        let ids: Vec<i64> = used.iter().map(|a| a.id).collect();
        if ids != cp.used {
            return Err(ControlError::Checkpoint(format!(
                "the checkpoint used acquisitions {:?} but {:?} were given",
                cp.used, ids
            )));
        }
        s.data = used;
        s.cp = cp;
        Ok(s)
    }

    /// The token that cancels this session even in the middle of a computation.
    pub fn cancel_token(&self) -> CancelToken {
        self.cancel.clone()
    }

    /// Ends the session `Cancelled` if its token was set; true if it did.
    fn cancelled_midway(&mut self) -> bool {
        match self.cancel.reason() {
            Some(r) if self.cp.phase != Phase::Done => {
                let r = if r.is_empty() {
                    "cancelled by an operator".to_string()
                } else {
                    r
                };
                self.finish(Outcome::Cancelled, r);
                true
            }
            _ => false,
        }
    }

    /// Session id.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The checkpoint (current state).
    pub fn checkpoint(&self) -> &Checkpoint {
        &self.cp
    }

    /// Whether the session has ended.
    pub fn is_done(&self) -> bool {
        self.cp.phase == Phase::Done
    }

    /// Acquisition ids the session has used.
    pub fn used(&self) -> &[i64] {
        &self.cp.used
    }

    /// The next output, if any.
    pub fn poll_output(&mut self) -> Option<Output> {
        self.out.pop_front()
    }

    /// When [`Session::handle_timeout`] should be called (caller's clock, s).
    pub fn poll_timeout(&self) -> Option<f64> {
        if self.cp.phase == Phase::Collecting {
            self.cp.deadline_s
        } else {
            None
        }
    }

    fn event(&mut self, kind: &str, payload: Value) {
        self.out.push_back(Output::Event {
            kind: kind.to_string(),
            payload,
        });
    }

    fn checkpoint_out(&mut self) {
        if let Ok(v) = serde_json::to_value(&self.cp) {
            self.out.push_back(Output::Checkpoint(v));
        }
    }

    fn finish(&mut self, outcome: Outcome, reason: String) {
        self.cp.phase = Phase::Done;
        self.cp.deadline_s = None;
        let kind = match outcome {
            Outcome::Converged => "converged",
            Outcome::Failed => "failed",
            Outcome::Cancelled => "cancelled",
        };
        let final_waveform = self
            .cp
            .design
            .and_then(|i| self.cp.waveforms.get(i))
            .map(|w| w.id.clone());
        self.event(
            kind,
            json!({
                "reason": reason,
                "round": self.cp.round,
                "acquisitions": self.cp.used.len(),
                "final_waveform": final_waveform,
                "hardware": self.cp.estimate,
            }),
        );
        self.checkpoint_out();
        self.out.push_back(Output::Finished { outcome, reason });
    }

    fn fail(&mut self, reason: String) {
        self.finish(Outcome::Failed, reason);
    }

    /// Starts the loop: designs the initial waveform under the nominal model and sends it.
    pub fn start(&mut self, now_s: f64, interlock: &mut Interlock) {
        if self.cp.phase != Phase::Idle {
            return;
        }
        self.event(
            "started",
            json!({
                "console_id": self.console.id,
                "budget": self.spec.budget,
                "convergence": self.spec.convergence,
            }),
        );
        let estimate = self.cp.estimate;
        let designed = self.model.design(&estimate, None, &self.cancel);
        if self.cancelled_midway() {
            return;
        }
        match designed {
            Ok(d) => {
                self.event(
                    "designed",
                    json!({
                        "round": 0,
                        "predicted": d.predicted,
                        "iterations": d.iterations,
                        "stop": d.stop,
                        "hardware": estimate,
                    }),
                );
                let w = self.design_waveform(d);
                self.send_new(w, now_s, interlock);
            }
            Err(e) => self.fail(format!("initial design failed: {e}")),
        }
    }

    /// The id of the next waveform this session sends (`<session>-w<n>`, n from 1).
    fn next_waveform_id(&self) -> String {
        format!("{}-w{}", self.id, self.cp.waveforms.len() + 1)
    }

    /// A design of the current round as the next waveform to send.
    fn design_waveform(&self, d: super::Design) -> SentWaveform {
        SentWaveform {
            id: self.next_waveform_id(),
            round: self.cp.round,
            probe: false,
            dt: d.dt,
            ux: d.ux,
            uy: d.uy,
            predicted: Some(d.predicted),
            theta: Some(d.theta),
        }
    }

    /// Whether the budget allows another waveform's acquisitions.
    fn budget_allows(&self) -> bool {
        self.cp.used.len() as u32 + self.spec.budget.acquisitions_per_round
            <= self.spec.budget.max_acquisitions
    }

    fn send_new(&mut self, w: SentWaveform, now_s: f64, interlock: &mut Interlock) {
        if !self.budget_allows() {
            let n = self.cp.used.len();
            self.fail(format!(
                "acquisition budget exhausted ({n} of {} used)",
                self.spec.budget.max_acquisitions
            ));
            return;
        }
        self.cp.waveforms.push(w);
        let idx = self.cp.waveforms.len() - 1;
        if !self.cp.waveforms[idx].probe {
            self.cp.design = Some(idx);
        }
        self.cp.current = Some(idx);
        self.cp.collected = 0;
        self.cp.sends = 0;
        self.cp.phase = Phase::Collecting;
        self.transmit(now_s, interlock, false);
    }

    /// Passes the current waveform through the interlock and queues it.
    fn transmit(&mut self, now_s: f64, interlock: &mut Interlock, repeat: bool) {
        let Some(w) = self
            .cp
            .current
            .and_then(|i| self.cp.waveforms.get(i))
            .cloned()
        else {
            return;
        };
        let numeric_id = self.cp.current.map_or(0, |i| i as u64 + 1);
        let proposal = Waveform {
            id: numeric_id,
            dt: w.dt,
            ux: w.ux.clone(),
            uy: w.uy.clone(),
        };
        match interlock.approve(proposal, self.console.tr_s, now_s) {
            Ok(approved) => {
                self.cp.sends += 1;
                self.cp.deadline_s = Some(now_s + ACQUISITION_TIMEOUT_S);
                self.event(
                    "waveform_sent",
                    json!({
                        "round": w.round,
                        "waveform_id": w.id,
                        "probe": w.probe,
                        "peak_b1_hz": approved.peak_hz(),
                        "energy_hz2s": approved.energy_hz2s(),
                        "duration_s": approved.duration_s(),
                        "repeat": repeat,
                        "predicted": w.predicted,
                    }),
                );
                self.checkpoint_out();
                self.out.push_back(Output::Send(Outgoing {
                    waveform_id: w.id,
                    approved,
                    round: w.round,
                    probe: w.probe,
                    acquisitions: self.spec.budget.acquisitions_per_round,
                    averages: self.spec.budget.averages,
                    tr_s: self.console.tr_s,
                    repeat,
                }));
            }
            Err(e) => {
                self.event(
                    "rejected",
                    json!({"waveform_id": w.id, "round": w.round, "reason": e.to_string()}),
                );
                self.fail(format!("the interlock refused waveform {}: {e}", w.id));
            }
        }
    }

    /// Operator cancel.
    pub fn handle_cancel(&mut self, reason: &str) {
        if self.cp.phase == Phase::Done {
            return;
        }
        let r = if reason.is_empty() {
            "cancelled by an operator".to_string()
        } else {
            reason.to_string()
        };
        self.finish(Outcome::Cancelled, r);
    }

    /// A fault outside the session (its console's limits became invalid, the store refused a
    /// step): the session ends `Failed` with the reason.
    pub fn handle_fault(&mut self, reason: &str) {
        if self.cp.phase != Phase::Done {
            self.fail(reason.to_string());
        }
    }

    /// The console (re)connected: resend the waveform being collected.
    pub fn handle_console_connected(&mut self, now_s: f64, interlock: &mut Interlock) {
        if self.cp.phase == Phase::Collecting {
            self.event("console_connected", json!({}));
            self.transmit(now_s, interlock, true);
        }
    }

    /// Time passed: a waveform whose acquisitions did not come is sent again, up to
    /// [`MAX_SENDS`] times, then the session fails.
    pub fn handle_timeout(&mut self, now_s: f64, interlock: &mut Interlock) {
        if self.cp.phase != Phase::Collecting {
            return;
        }
        let Some(deadline) = self.cp.deadline_s else {
            return;
        };
        if now_s < deadline {
            return;
        }
        if self.cp.sends >= MAX_SENDS {
            self.fail(format!(
                "no acquisitions after sending the waveform {} times",
                self.cp.sends
            ));
            return;
        }
        self.event("timeout", json!({"sends": self.cp.sends}));
        self.transmit(now_s, interlock, true);
    }

    /// A durable acquisition of this session. Acquisitions of any of the session's
    /// waveforms join the joint fit; those of the current waveform count toward its round.
    /// Unknown waveforms and duplicates are reported as events and ignored.
    pub fn handle_acquisition(
        &mut self,
        a: AcquisitionInput,
        now_s: f64,
        interlock: &mut Interlock,
    ) {
        if self.cp.used.contains(&a.id) {
            return;
        }
        let Some(widx) = self.cp.waveforms.iter().position(|w| w.id == a.waveform_id) else {
            self.event(
                "ignored",
                json!({"acquisition_id": a.id, "reason": "not a waveform of this session"}),
            );
            return;
        };
        if a.fid.len() != self.console.sample_count {
            self.event(
                "ignored",
                json!({"acquisition_id": a.id, "reason": "sample count differs from the console's"}),
            );
            return;
        }
        self.cp.used.push(a.id);
        let id = a.id;
        self.data.push(a);
        self.event(
            "acquisition",
            json!({"acquisition_id": id, "waveform_id": self.cp.waveforms[widx].id}),
        );
        if self.cp.phase != Phase::Collecting || Some(widx) != self.cp.current {
            self.checkpoint_out();
            return;
        }
        self.cp.collected += 1;
        if self.cp.collected < self.spec.budget.acquisitions_per_round {
            self.checkpoint_out();
            return;
        }
        self.cp.deadline_s = None;
        self.after_round(now_s, interlock);
    }

    fn measurements(&self) -> Vec<(SentWaveform, AcquisitionInput)> {
        self.data
            .iter()
            .filter_map(|a| {
                self.cp
                    .waveforms
                    .iter()
                    .find(|w| w.id == a.waveform_id)
                    .map(|w| (w.clone(), a.clone()))
            })
            .collect()
    }

    fn after_round(&mut self, now_s: f64, interlock: &mut Interlock) {
        let data = self.measurements();
        let last_id = self.cp.used.last().copied();
        let start = self.cp.estimate;
        let fit = self.model.fit(&data, &start);
        if self.cancelled_midway() {
            return;
        }
        let fit = match fit {
            Ok(f) => f,
            Err(e) => {
                self.fail(format!("the hardware fit failed: {e}"));
                return;
            }
        };
        self.cp.fits += 1;
        self.cp.estimate = fit.estimate;
        let poorly: Vec<String> = if fit.b1_sigma > self.spec.convergence.probe_b1_sigma {
            vec!["b1_scale".into()]
        } else {
            Vec::new()
        };
        let fit_payload = json!({
            "round": self.cp.round,
            "parameters": fit.parameters,
            "residual_rms": fit.residual_rms,
            "acquisitions_used": data.len(),
            "poorly_identified": poorly,
            "iterations": fit.iterations,
        });
        self.out.push_back(Output::Fit {
            acquisition_id: last_id,
            params: fit_payload.clone(),
        });
        self.event("fit", fit_payload);

        // Identifiability: probe before trusting the B1 scale.
        if !poorly.is_empty() && self.cp.probes < MAX_PROBES && self.budget_allows() {
            let Some(design) = self
                .cp
                .design
                .and_then(|i| self.cp.waveforms.get(i))
                .cloned()
            else {
                self.fail("no design to probe with".into());
                return;
            };
            let played: Vec<(Vec<f64>, Vec<f64>, u32)> = data
                .iter()
                .map(|(w, a)| (w.ux.clone(), w.uy.clone(), a.averages))
                .collect();
            let noise = if fit.noise_sd.is_finite() && fit.noise_sd > 0.0 {
                fit.noise_sd
            } else {
                f64::MIN_POSITIVE.sqrt()
            };
            let choice = self.model.choose_probe(
                &self.cp.estimate,
                &played,
                (&design.ux, &design.uy),
                self.spec.budget.averages,
                noise,
                &self.console,
            );
            match choice {
                Ok(Some(c)) => {
                    self.cp.probes += 1;
                    let probe = SentWaveform {
                        id: self.next_waveform_id(),
                        round: self.cp.round,
                        probe: true,
                        dt: design.dt,
                        ux: c.ux,
                        uy: c.uy,
                        predicted: None,
                        theta: None,
                    };
                    self.event(
                        "probe",
                        json!({
                            "reason": format!(
                                "σ(b1_scale) = {:.3e} exceeds {}", fit.b1_sigma,
                                self.spec.convergence.probe_b1_sigma),
                            "waveform_id": probe.id,
                            "scale": c.scale,
                            "expected_b1_sigma": c.expected_b1_sigma,
                        }),
                    );
                    self.send_new(probe, now_s, interlock);
                    return;
                }
                Ok(None) => self.event(
                    "probe_skipped",
                    json!({"reason": "no probe scale is within the console's limits"}),
                ),
                Err(e) => self.event(
                    "probe_skipped",
                    json!({"reason": format!("choosing a probe failed: {e}")}),
                ),
            }
        }

        let Some(design) = self
            .cp
            .design
            .and_then(|i| self.cp.waveforms.get(i))
            .cloned()
        else {
            self.fail("no design waveform was sent".into());
            return;
        };
        let estimate = self.cp.estimate;
        let measured = match self.model.objective(&estimate, &design.ux, &design.uy) {
            Ok(v) => v,
            Err(e) => {
                self.fail(format!("evaluating the objective failed: {e}"));
                return;
            }
        };
        let predicted = design.predicted.unwrap_or(measured);
        let tol = self.spec.convergence.objective_tolerance;
        let scale = predicted.abs().max(measured.abs()).max(1e-12);
        let prediction_held = (measured - predicted).abs() <= tol * scale;
        self.event(
            "objective",
            json!({
                "round": self.cp.round,
                "waveform_id": design.id,
                "measured": measured,
                "predicted": predicted,
                "prediction_held": prediction_held,
            }),
        );

        let next = self
            .model
            .design(&estimate, design.theta.as_deref(), &self.cancel);
        if self.cancelled_midway() {
            return;
        }
        let next = match next {
            Ok(d) => d,
            Err(e) => {
                self.fail(format!("re-optimization failed: {e}"));
                return;
            }
        };
        let gain = measured - next.predicted;
        let small_gain = gain <= tol * measured.abs().max(1e-12);
        self.event(
            "designed",
            json!({
                "round": self.cp.round + 1,
                "predicted": next.predicted,
                "gain": gain,
                "iterations": next.iterations,
                "stop": next.stop,
                "hardware": estimate,
            }),
        );
        if prediction_held && small_gain {
            let caveat = if poorly.is_empty() {
                String::new()
            } else {
                format!(
                    " (B1 scale still poorly identified after {} probes)",
                    self.cp.probes
                )
            };
            self.finish(
                Outcome::Converged,
                format!(
                    "round {}: measured objective {measured:.6} matches the prediction \
                     {predicted:.6} and re-optimization gains {gain:.2e}{caveat}",
                    self.cp.round
                ),
            );
            return;
        }
        if self.cp.round + 1 >= self.spec.budget.max_rounds {
            self.fail(format!(
                "round budget exhausted ({} rounds) before convergence",
                self.spec.budget.max_rounds
            ));
            return;
        }
        self.cp.round += 1;
        let w = self.design_waveform(next);
        self.send_new(w, now_s, interlock);
    }
}
