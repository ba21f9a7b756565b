//! The `Design` service: offline simulation and optimization of problem files (the TOML
//! `spinloop optimize` reads), streaming optimizer progress. Stateless; the computation runs
//! on the blocking pool, and a client that cancels its `Optimize` call stops the optimizer at
//! its next iteration.

use std::pin::Pin;

use tokio_stream::Stream;
use tonic::{Request, Response, Status};

use super::pb;
use crate::design::optimize::Control;
use crate::design::problem::{DesignProblem, ProblemSpec, WaveformFile};

/// Largest problem file accepted (bytes).
pub const MAX_PROBLEM_BYTES: usize = 1 << 20;

/// The `Design` service (stateless).
#[derive(Clone, Default)]
pub struct DesignService;

impl DesignService {
    /// The service.
    pub fn new() -> Self {
        DesignService
    }
}

type BoxStream<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send + 'static>>;

fn invalid(e: impl std::fmt::Display) -> Status {
    Status::invalid_argument(e.to_string())
}

fn problem(text: &str) -> Result<DesignProblem, Status> {
    if text.trim().is_empty() {
        return Err(Status::invalid_argument("problem_toml: empty"));
    }
    if text.len() > MAX_PROBLEM_BYTES {
        return Err(Status::invalid_argument(format!(
            "problem_toml: {} bytes exceeds {MAX_PROBLEM_BYTES}",
            text.len()
        )));
    }
    let spec = ProblemSpec::from_toml(text, "problem_toml").map_err(invalid)?;
    DesignProblem::build(spec).map_err(invalid)
}

/// Checks a request's waveform against the problem's pulse and the hardware interlock.
fn waveform(
    p: &DesignProblem,
    w: &pb::Waveform,
    what: &str,
) -> Result<(Vec<f64>, Vec<f64>), Status> {
    let file = WaveformFile {
        dt: w.dt_s,
        ux: w.ux.clone(),
        uy: w.uy.clone(),
        peak_b1_hz: None,
        name: None,
    };
    // warm_start checks segments and raster; the limits check catches NaN and over-limit.
    p.warm_start(&file)
        .map_err(|e| Status::invalid_argument(format!("{what}: {e}")))?;
    p.spec
        .limits
        .check_waveform(&w.ux, &w.uy, w.dt_s, None)
        .map_err(|e| Status::invalid_argument(format!("{what}: {e}")))?;
    Ok((w.ux.clone(), w.uy.clone()))
}

fn parts_map(parts: Vec<(String, f64)>) -> std::collections::HashMap<String, f64> {
    parts.into_iter().collect()
}

#[tonic::async_trait]
impl pb::design_server::Design for DesignService {
    async fn simulate(
        &self,
        r: Request<pb::SimulateRequest>,
    ) -> Result<Response<pb::SimulateResponse>, Status> {
        let q = r.into_inner();
        let out = tokio::task::spawn_blocking(move || -> Result<pb::SimulateResponse, Status> {
            let mut p = problem(&q.problem_toml)?;
            let (ux, uy) = match &q.waveform {
                Some(w) => waveform(&p, w, "waveform")?,
                None => p.reference.clone(),
            };
            let signals = p.signals(&ux, &uy).map_err(invalid)?;
            let parts = p.part_values(&ux, &uy).map_err(invalid)?;
            let mut fids = Vec::new();
            for (m, member) in p.members.iter().enumerate() {
                for (k, name) in p.spec.molecules.iter().enumerate() {
                    fids.push(pb::SimulatedFid {
                        molecule: name.clone(),
                        b1: member.b1,
                        b0_hz: member.b0_hz,
                        samples: signals
                            .fid(m, k)
                            .iter()
                            .flat_map(|c| [c.re, c.im])
                            .collect(),
                    });
                }
            }
            Ok(pb::SimulateResponse {
                dwell_s: p.experiment.acquisition.dwell,
                f0_hz: p.field.f0_mhz * 1e6,
                carrier_ppm: p.spec.carrier_ppm,
                fids,
                objective_parts: parts_map(parts),
            })
        })
        .await
        .map_err(|e| Status::internal(e.to_string()))??;
        Ok(Response::new(out))
    }

    type OptimizeStream = BoxStream<pb::OptimizeProgress>;
    async fn optimize(
        &self,
        r: Request<pb::OptimizeRequest>,
    ) -> Result<Response<Self::OptimizeStream>, Status> {
        let q = r.into_inner();
        // Validate synchronously so a bad request fails the call, not the stream.
        let mut p = tokio::task::spawn_blocking({
            let text = q.problem_toml.clone();
            move || problem(&text)
        })
        .await
        .map_err(|e| Status::internal(e.to_string()))??;
        if q.max_iterations > 0 {
            p.spec.optimizer.max_iterations = q.max_iterations as usize;
        }
        let x0 = match &q.warm_start {
            Some(w) => {
                waveform(&p, w, "warm_start")?;
                p.warm_start(&WaveformFile {
                    dt: w.dt_s,
                    ux: w.ux.clone(),
                    uy: w.uy.clone(),
                    peak_b1_hz: None,
                    name: None,
                })
                .map_err(invalid)?
            }
            None => p.initial_parameters().map_err(invalid)?,
        };
        let (tx, rx) = tokio::sync::mpsc::channel(64);
        tokio::task::spawn_blocking(move || {
            let progress_tx = tx.clone();
            let result = p.optimize_from(&x0, |it| {
                let msg = pb::OptimizeProgress {
                    iteration: u32::try_from(it.iteration).unwrap_or(u32::MAX),
                    loss: it.loss,
                    gradient_norm: it.grad_norm,
                    evaluations: u32::try_from(it.evaluations).unwrap_or(u32::MAX),
                    ..Default::default()
                };
                // A closed stream (the client went away) stops the optimizer.
                if progress_tx.blocking_send(Ok(msg)).is_err() {
                    Control::Stop
                } else {
                    Control::Continue
                }
            });
            let last = match result {
                Ok(r) => {
                    let (ux, uy) = r.optimized;
                    Ok(pb::OptimizeProgress {
                        iteration: u32::try_from(r.optimizer.history.len().saturating_sub(1))
                            .unwrap_or(u32::MAX),
                        loss: r.optimizer.loss,
                        gradient_norm: r.optimizer.history.last().map_or(f64::NAN, |h| h.grad_norm),
                        evaluations: r
                            .optimizer
                            .history
                            .last()
                            .map_or(0, |h| u32::try_from(h.evaluations).unwrap_or(u32::MAX)),
                        waveform: Some(pb::Waveform {
                            dt_s: p.param.dt,
                            ux,
                            uy,
                        }),
                        stop_reason: format!("{:?}", r.optimizer.reason),
                        done: true,
                        objective_parts: parts_map(r.parts_optimized),
                    })
                }
                Err(e) => Err(Status::internal(format!("optimization failed: {e}"))),
            };
            let _ = tx.blocking_send(last);
        });
        Ok(Response::new(Box::pin(
            tokio_stream::wrappers::ReceiverStream::new(rx),
        )))
    }
}
