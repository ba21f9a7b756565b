//! The adapter for devices speaking spinloop's console firmware protocol: a
//! `spinloop_firmware::serial::HostDriver` (its own thread: port, reopen policy, sans-IO
//! `HostSession`) whose events are translated into [`AdapterEvent`]s and whose commands come
//! from the bridge.

use std::time::Duration;

use num_complex::{Complex32, Complex64};
use spinloop_firmware::link::LinkConfig;
use spinloop_firmware::serial::{HostCommand, HostDriver, SerialConfig};
use spinloop_firmware::session::{HostConfig, HostEvent, HostRequest};
use tokio::sync::mpsc;

use super::{Adapter, AdapterCommand, AdapterEvent, DeviceInfo, SerialError};
use crate::daemon::config::SerialConsoleConfig;

/// The event a host event becomes, if any.
fn translate(e: HostEvent) -> Option<AdapterEvent> {
    Some(match e {
        HostEvent::Connected(hello) => {
            let c = hello.capabilities;
            AdapterEvent::Connected(DeviceInfo {
                f0_hz: c.f0_hz,
                rf_raster_s: f64::from(c.rf_dt_ns) * 1e-9,
                sample_count: c.acquisition_points,
                dwell_s: f64::from(c.dwell_ns) * 1e-9,
                max_b1_hz: Some(c.max_b1_hz),
                max_waveform_samples: Some(c.max_waveform_samples),
                software: format!(
                    "firmware console {:?} (protocol v{})",
                    hello.console_id, hello.protocol_version
                ),
            })
        }
        HostEvent::WaveformCommitted { waveform_id } => AdapterEvent::WaveformReady {
            waveform: waveform_id,
        },
        HostEvent::WaveformRejected {
            waveform_id,
            reason,
        } => AdapterEvent::WaveformFailed {
            waveform: waveform_id,
            reason: format!("rejected by the device: {reason:?}"),
        },
        HostEvent::UploadFailed { waveform_id } => AdapterEvent::WaveformFailed {
            waveform: waveform_id,
            reason: "the link was lost during the upload".into(),
        },
        HostEvent::Fid(f) => AdapterEvent::Fid {
            acquisition: f.acquisition_id,
            samples: f
                .points
                .iter()
                .map(|p: &Complex32| Complex64::new(f64::from(p.re), f64::from(p.im)))
                .collect(),
            dwell_s: f64::from(f.dwell_ns) * 1e-9,
        },
        HostEvent::FidRejected {
            acquisition_id,
            reason,
        } => AdapterEvent::Damaged {
            acquisition: acquisition_id,
            reason: reason.to_string(),
        },
        HostEvent::AcquisitionInterrupted { acquisition_id } => {
            tracing::debug!(acquisition_id, "acquisition interrupted by a link loss");
            return None;
        }
        HostEvent::DeviceError(report) => {
            AdapterEvent::DeviceError(format!("error {}: {}", report.code, report.message))
        }
        HostEvent::LinkLost => AdapterEvent::Lost("the serial link was lost".into()),
        HostEvent::ProtocolError(e) => {
            tracing::debug!("unusable frame from the device: {e}");
            return None;
        }
        HostEvent::RequestRejected { request, error } => match request {
            HostRequest::Upload { waveform_id } => AdapterEvent::WaveformFailed {
                waveform: waveform_id,
                reason: format!("upload refused: {error}"),
            },
            other => AdapterEvent::DeviceError(format!("{other:?} refused: {error}")),
        },
    })
}

/// Starts the driver on the configured device.
pub(super) fn spawn(cfg: &SerialConsoleConfig) -> Result<Adapter, SerialError> {
    let (tx, rx) = mpsc::unbounded_channel();
    let link_timeout = Duration::from_millis(cfg.link_timeout_ms);
    let link = LinkConfig {
        link_timeout,
        heartbeat_interval: link_timeout / 3,
        ..LinkConfig::default()
    };
    let nonce_seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as u32);
    let session = HostConfig {
        link,
        host_id: "spinloopd".into(),
        nonce_seed,
        ..HostConfig::default()
    };
    let serial = SerialConfig::new(&cfg.device, cfg.baud);
    let driver = HostDriver::spawn(serial, session, move |e| {
        if let Some(a) = translate(e) {
            let _ = tx.send(a);
        }
    })
    .map_err(|e| SerialError::Device {
        console: cfg.id.clone(),
        reason: e.to_string(),
    })?;
    let sink = driver.commands();
    let commands = Box::new(move |c: AdapterCommand| {
        let command = match c {
            AdapterCommand::Upload { waveform, samples } => HostCommand::Upload {
                waveform_id: waveform,
                samples: samples
                    .iter()
                    .map(|s| Complex32::new(s.re as f32, s.im as f32))
                    .collect(),
            },
            AdapterCommand::Play {
                waveform,
                acquisition,
                averages,
            } => HostCommand::Play {
                waveform_id: waveform,
                acquisition_id: acquisition,
                averages,
            },
            AdapterCommand::Stored { acquisition } => HostCommand::FidStored {
                acquisition_id: acquisition,
            },
            AdapterCommand::Shutdown => HostCommand::Shutdown,
        };
        let _ = sink.send(command);
    });
    Ok(Adapter {
        commands,
        events: rx,
        stop: Box::new(move || {
            let _ = driver.shutdown();
        }),
    })
}
