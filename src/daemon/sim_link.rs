//! The gRPC shell of a [`SimConsole`]: connects to a daemon's `Console` service like a real
//! console would — hello, then for every waveform command it plays the waveform (simulated)
//! and streams the FIDs with idempotency keys, counting the acks. Used by `spinloop run` (the
//! main job), the end-to-end tests and HIL scenarios.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use tokio::sync::{Mutex, mpsc};
use tokio_stream::StreamExt;
use tonic::transport::Channel;

use super::pb;
use crate::control::SimConsole;

/// What a simulated console saw.
#[derive(Debug, Default)]
pub struct LinkStats {
    /// Waveform commands received.
    pub waveforms: AtomicU64,
    /// Acquisitions sent.
    pub sent: AtomicU64,
    /// Acks received.
    pub acked: AtomicU64,
    /// Nacks received.
    pub nacked: AtomicU64,
}

/// The hello a profile declares.
pub fn hello_of(p: &crate::control::ConsoleProfile) -> pb::ConsoleHello {
    pb::ConsoleHello {
        console_id: p.id.clone(),
        nucleus: p.nucleus.clone(),
        f0_hz: p.f0_hz,
        rf_raster_s: p.rf_raster_s,
        sample_count: u32::try_from(p.sample_count).unwrap_or(u32::MAX),
        dwell_s: p.dwell_s,
        limits: Some(pb::ConsoleLimits {
            peak_b1_hz: p.limits.peak_b1_hz,
            max_energy_hz2s: p.limits.max_energy_hz2s,
            max_duration_s: p.limits.max_duration_s,
            max_duty_cycle: p.limits.max_duty_cycle,
            energy_window_s: p.limits.window.map_or(0.0, |w| w.window_s),
            window_max_energy_hz2s: p.limits.window.map_or(0.0, |w| w.max_energy_hz2s),
        }),
        software: p.software.clone(),
        tr_s: p.tr_s,
    }
}

/// Runs the console until the daemon closes the stream (or an error). The returned stats
/// are shared so a caller can watch them while it runs.
pub async fn run_sim_console(
    channel: Channel,
    console: SimConsole,
    stats: Arc<LinkStats>,
) -> Result<(), tonic::Status> {
    let mut client = pb::console_client::ConsoleClient::new(channel);
    let (tx, rx) = mpsc::channel::<pb::ConsoleMessage>(64);
    let hello = hello_of(&console.profile);
    tx.send(pb::ConsoleMessage {
        msg: Some(pb::console_message::Msg::Hello(hello)),
    })
    .await
    .map_err(|_| tonic::Status::internal("link closed"))?;
    let mut inbound = client
        .connect(tokio_stream::wrappers::ReceiverStream::new(rx))
        .await?
        .into_inner();
    let console = Arc::new(Mutex::new(console));
    while let Some(msg) = inbound.next().await {
        let msg = msg?;
        match msg.msg {
            Some(pb::daemon_message::Msg::Waveform(w)) => {
                stats.waveforms.fetch_add(1, Ordering::Relaxed);
                let n = w.acquisitions.max(1);
                for k in 0..n {
                    let c = console.clone();
                    let (ux, uy, averages) = (w.ux.clone(), w.uy.clone(), w.averages.max(1));
                    let fid = tokio::task::spawn_blocking(move || {
                        let mut c = c.blocking_lock();
                        let fid = c.acquire(&ux, &uy, averages);
                        (fid, c.profile.dwell_s, c.profile.f0_hz)
                    })
                    .await
                    .map_err(|e| tonic::Status::internal(e.to_string()))?;
                    let (fid, dwell, f0) = fid;
                    let fid = fid.map_err(|e| tonic::Status::internal(e.to_string()))?;
                    let samples = fid.iter().flat_map(|c| [c.re, c.im]).collect();
                    let a = pb::Acquisition {
                        // A repeat of a waveform (after a reconnect) gets new keys: it is a
                        // new measurement; retries of one measurement reuse its key.
                        idempotency_key: format!(
                            "{}-{}-{k}-{}",
                            w.waveform_id,
                            stats.waveforms.load(Ordering::Relaxed),
                            stats.sent.load(Ordering::Relaxed)
                        ),
                        waveform_id: w.waveform_id.clone(),
                        samples,
                        dwell_s: dwell,
                        f0_hz: f0,
                        averages,
                        coil: "sim".into(),
                    };
                    stats.sent.fetch_add(1, Ordering::Relaxed);
                    if tx
                        .send(pb::ConsoleMessage {
                            msg: Some(pb::console_message::Msg::Acquisition(a)),
                        })
                        .await
                        .is_err()
                    {
                        return Ok(());
                    }
                }
            }
            Some(pb::daemon_message::Msg::Ack(_)) => {
                stats.acked.fetch_add(1, Ordering::Relaxed);
            }
            Some(pb::daemon_message::Msg::Nack(n)) => {
                stats.nacked.fetch_add(1, Ordering::Relaxed);
                tracing::warn!("nack {}: {}", n.idempotency_key, n.message);
            }
            Some(pb::daemon_message::Msg::Welcome(_)) | None => {}
        }
    }
    Ok(())
}

/// The built-in scenario of `spinloop run` (and the end-to-end tests): a simulated 3 T
/// console whose transmit chain is off by a hidden B1 scale of 0.8 (and B0 +2 Hz, receiver
/// phase 0.3 rad, 1 Hz extra broadening), a phantom of NAA 12 mM and creatine 8 mM, and a
/// session designing a 0.8 ms excitation (40 segments) that maximizes the NAA singlet in a
/// pulse–acquire experiment.
pub mod demo {
    use crate::calibrate::HardwareModel;
    use crate::control::ConsoleProfile;
    use crate::daemon::pb;
    use crate::safety::ConsoleLimits;

    /// The simulated console's declared profile.
    pub fn profile(id: &str) -> ConsoleProfile {
        ConsoleProfile {
            id: id.to_string(),
            nucleus: "1H".into(),
            f0_hz: 123.2e6,
            rf_raster_s: 10e-6,
            sample_count: 512,
            dwell_s: 2.5e-4,
            tr_s: 2.0,
            limits: ConsoleLimits {
                peak_b1_hz: 2500.0,
                max_energy_hz2s: 1000.0,
                max_duration_s: 0.01,
                raster_s: 10e-6,
                max_duty_cycle: 0.1,
                window: None,
            },
            software: format!("spinloop-sim {}", env!("CARGO_PKG_VERSION")),
        }
    }

    /// The hidden truth.
    pub fn truth() -> HardwareModel {
        HardwareModel {
            b1_scale: 0.8,
            b0_offset_hz: 2.0,
            phase0_rad: 0.3,
            linewidth_hz: 1.0,
            amplitude: 1.0,
            ..HardwareModel::NOMINAL
        }
    }

    /// Noise SD per component of one transient.
    pub const NOISE_SD: f64 = 0.05;

    /// The session an operator creates.
    pub fn session_spec(console_id: &str) -> pb::SessionSpec {
        pb::SessionSpec {
            console_id: console_id.to_string(),
            targets: vec!["NAA".into(), "Cr".into()],
            concentrations: vec![12.0, 8.0],
            objective: vec![pb::ObjectivePart {
                kind: "enhancement".into(),
                metabolite: "NAA".into(),
                window_lo_ppm: 1.9,
                window_hi_ppm: 2.1,
                weight: 1.0,
                ..Default::default()
            }],
            sequence: Some(pb::Sequence {
                kind: "pulse_acquire".into(),
                ..Default::default()
            }),
            pulse: Some(pb::Pulse {
                segments: 40,
                dt_s: 20e-6,
                ..Default::default()
            }),
            constraints: Some(pb::Constraints {
                peak_b1_hz: 0.0,
                energy_weight: 0.05,
                smoothness_weight: 1e-3,
            }),
            budget: Some(pb::Budget {
                max_acquisitions: 12,
                max_rounds: 5,
                optimizer_iterations: 25,
                acquisitions_per_round: 1,
                averages: 1,
            }),
            convergence: Some(pb::Convergence {
                objective_tolerance: 0.02,
                probe_b1_sigma: 0.02,
            }),
            linewidth_hz: 4.0,
            label: "demo: NAA excitation under a hidden B1 error".into(),
            ..Default::default()
        }
    }

    /// The phantom the simulated console measures (the session's problem on this console).
    pub fn phantom(
        console: &ConsoleProfile,
    ) -> Result<crate::design::problem::ProblemSpec, tonic::Status> {
        let spec = crate::daemon::sessions::spec_from_pb(session_spec(&console.id))?;
        spec.problem(console)
            .map_err(|e| tonic::Status::invalid_argument(e.to_string()))
    }
}
