//! The serial transport of a simulated console: any [`ConsolePhysics`] behind spinloop's
//! console firmware protocol (`spinloop-firmware`) on the master end of a pseudo-terminal.
//! The daemon opens the slave end by path — through a symlink, as it would open a stable
//! `/dev/serial/by-id/…` name — configured as a `[[serial_console]]` ([`SerialConsole::config`]).
//!
//! The device states the profile in its HELLO (f0, RF raster, acquisition, B1 limit), answers
//! every `PLAY` with the physics' FID, retains FIDs until the daemon confirms them stored and
//! re-sends them after a reconnect. [`SerialConsole::unplug`] removes the symlink and closes the
//! pty (the daemon sees the cable pulled); [`SerialConsole::replug`] makes a new pty pair,
//! points the symlink at it and
//! keeps the device's session (its waveforms and unconfirmed FIDs), as a replugged USB adapter
//! would.
//!
//! # Time and raster
//! Acquisition n (counted over the console's life) is played at session time t = n·TR, the
//! clock of the hidden B0 drift, as in [`crate::grpc`]. The daemon holds each designed segment
//! for a whole number of RF samples; the device averages each segment's samples back to the
//! designed raster the physics simulates (exact for the piecewise-constant waveforms the
//! daemon sends).

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use num_complex::Complex32;
use serialport::{SerialPort, TTYPort};
use spinloop::control::ConsoleProfile;
use spinloop::daemon::config::{SerialConsoleConfig, SerialLimits, SerialProtocol};
use spinloop_firmware::app::Capabilities;
use spinloop_firmware::link::LinkConfig;
use spinloop_firmware::serial::{DeviceCommand, DeviceDriver};
use spinloop_firmware::{DeviceConfig, DeviceEvent, DeviceSession};

use crate::HilError;
use crate::console::ConsolePhysics;

/// Silence after which either end considers the link lost.
const LINK_TIMEOUT: Duration = Duration::from_millis(1500);

/// What the device saw.
#[derive(Debug, Default)]
pub struct SerialStats {
    /// `PLAY`s answered with an FID.
    pub acquired: AtomicU64,
    /// Acquisition ids whose FIDs the daemon confirmed stored.
    pub stored: Mutex<std::collections::BTreeSet<u32>>,
    /// Acquisitions the physics could not simulate (left unanswered).
    pub failed: AtomicU64,
    /// Unplugs so far.
    pub unplugs: AtomicU64,
}

/// An acquisition finished while unplugged: id, points, device timestamp (µs).
type Finished = (u32, Vec<Complex32>, u64);

/// A simulated console on a pseudo-terminal (module doc).
pub struct SerialConsole {
    link: PathBuf,
    profile: ConsoleProfile,
    driver: Option<DeviceDriver>,
    session: Option<DeviceSession>,
    physics: Arc<Mutex<dyn ConsolePhysics>>,
    /// The designed pulse's segment duration the physics simulates (s).
    segment_dt: f64,
    /// Where finished acquisitions go: the plugged-in driver's commands, or `None` while
    /// unplugged (they wait in `backlog` and are handed to the device session on replug — a
    /// device does not lose an acquisition because its cable is out).
    completions: Arc<Mutex<Option<std::sync::mpsc::Sender<DeviceCommand>>>>,
    backlog: Arc<Mutex<Vec<Finished>>>,
    /// Counters.
    pub stats: Arc<SerialStats>,
}

fn hil_err(what: &str) -> impl Fn(serialport::Error) -> HilError + '_ {
    move |e| HilError::Link(format!("{what}: {e}"))
}

fn link_config() -> LinkConfig {
    LinkConfig {
        link_timeout: LINK_TIMEOUT,
        heartbeat_interval: LINK_TIMEOUT / 3,
        ..LinkConfig::default()
    }
}

impl SerialConsole {
    /// Starts the console on a new pty whose slave `link` (a symlink, replaced if it exists)
    /// points at; `segment_dt` is the designed pulse's segment duration the physics simulates
    /// (a whole number of the profile's RF raster).
    pub fn start<P: ConsolePhysics + 'static>(
        physics: P,
        segment_dt: f64,
        link: &Path,
    ) -> Result<SerialConsole, HilError> {
        let profile = physics.profile().clone();
        let ns = |s: f64, what: &str| -> Result<u32, HilError> {
            let n = (s * 1e9).round();
            if !(n >= 1.0 && n <= f64::from(u32::MAX) && (s * 1e9 - n).abs() < 1e-3) {
                return Err(HilError::invalid(what, s, "must be a whole number of ns"));
            }
            Ok(n as u32)
        };
        let capabilities = Capabilities {
            f0_hz: profile.f0_hz,
            rf_dt_ns: ns(profile.rf_raster_s, "rf_raster_s")?,
            max_waveform_samples: ((profile.limits.max_duration_s / profile.rf_raster_s).floor()
                as u32)
                .max(1),
            acquisition_points: u32::try_from(profile.sample_count).map_err(|_| {
                HilError::invalid("sample_count", profile.sample_count, "too large")
            })?,
            dwell_ns: ns(profile.dwell_s, "dwell_s")?,
            max_b1_hz: profile.limits.peak_b1_hz,
        };
        let session = DeviceSession::new(
            DeviceConfig {
                link: link_config(),
                console_id: profile.id.clone(),
                capabilities,
                nonce_seed: 1,
            },
            Instant::now(),
        );
        let mut console = SerialConsole {
            link: link.to_path_buf(),
            profile,
            driver: None,
            session: Some(session),
            physics: Arc::new(Mutex::new(physics)),
            segment_dt,
            completions: Arc::new(Mutex::new(None)),
            backlog: Arc::new(Mutex::new(Vec::new())),
            stats: Arc::new(SerialStats::default()),
        };
        console.replug()?;
        Ok(console)
    }

    /// The `[[serial_console]]` table a daemon needs to reach this console.
    pub fn config(&self) -> SerialConsoleConfig {
        SerialConsole::config_for(&self.profile, &self.link)
    }

    /// The `[[serial_console]]` table for a console of `profile` at `link` (the daemon may be
    /// started before the console: it keeps trying to open the path).
    pub fn config_for(profile: &ConsoleProfile, link: &Path) -> SerialConsoleConfig {
        let l = &profile.limits;
        SerialConsoleConfig {
            id: profile.id.clone(),
            protocol: SerialProtocol::Firmware,
            device: link.to_path_buf(),
            baud: 115_200,
            nucleus: profile.nucleus.clone(),
            limits: SerialLimits {
                peak_b1_hz: l.peak_b1_hz,
                max_energy_hz2s: l.max_energy_hz2s,
                max_duration_s: l.max_duration_s,
                max_duty_cycle: l.max_duty_cycle,
                energy_window_s: l.window.map_or(0.0, |w| w.window_s),
                window_max_energy_hz2s: l.window.map_or(0.0, |w| w.max_energy_hz2s),
            },
            tr_s: profile.tr_s,
            f0_hz: None,
            rf_raster_s: None,
            sample_count: None,
            dwell_s: None,
            dac_full_scale_hz: None,
            link_timeout_ms: LINK_TIMEOUT.as_millis() as u64,
        }
    }

    /// Pulls the cable: the pty closes; the device keeps its session.
    pub fn unplug(&mut self) {
        // First route completions to the backlog: one already handed to the driver is
        // processed before its shutdown (its commands are in order).
        if let Ok(mut c) = self.completions.lock() {
            *c = None;
        }
        if let Some(d) = self.driver.take() {
            // The device name goes with the device, as udev removes `/dev/serial/by-id/…`:
            // the pty's number is free for reuse, and the daemon must not open someone
            // else's pty through a stale link.
            let _ = std::fs::remove_file(&self.link);
            self.session = d.shutdown().ok();
            self.stats.unplugs.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Plugs in (again): a new pty pair, the symlink re-pointed at its slave, the device's
    /// session carried over.
    pub fn replug(&mut self) -> Result<(), HilError> {
        self.unplug();
        let mut session = match self.session.take() {
            Some(s) => s,
            None => return Err(HilError::Link("the device session was lost".into())),
        };
        let finished = self
            .backlog
            .lock()
            .map(|mut b| std::mem::take(&mut *b))
            .unwrap_or_default();
        for (acq, points, timestamp_us) in finished {
            if let Err(e) = session.complete_acquisition(acq, points, timestamp_us, Instant::now())
            {
                tracing::error!("acquisition {acq} finished while unplugged: {e}");
            }
        }
        let (master, slave) = TTYPort::pair().map_err(hil_err("opening a pty"))?;
        let name = slave
            .name()
            .ok_or_else(|| HilError::Link("pty without a name".into()))?;
        drop(slave);
        // `pair` opens the master without close-on-exec: a process spawned later (the daemon)
        // would inherit it and keep the line up after an unplug. Keep a close-on-exec copy.
        let mut master = master
            .try_clone_native()
            .map_err(hil_err("duplicating the pty"))?;
        master
            .set_timeout(Duration::from_millis(2))
            .map_err(hil_err("pty timeout"))?;
        let io = |e: std::io::Error| HilError::Io {
            path: self.link.clone(),
            message: e.to_string(),
        };
        let tmp = self.link.with_extension("new");
        let _ = std::fs::remove_file(&tmp);
        std::os::unix::fs::symlink(&name, &tmp).map_err(io)?;
        std::fs::rename(&tmp, &self.link).map_err(io)?;
        self.driver = Some(self.spawn_driver(Box::new(master), session)?);
        Ok(())
    }

    fn spawn_driver(
        &self,
        port: Box<dyn SerialPort>,
        session: DeviceSession,
    ) -> Result<DeviceDriver, HilError> {
        // Plays are simulated on a worker, which completes them through the driver.
        let (play_tx, play_rx) = std::sync::mpsc::channel::<(u32, Vec<Complex32>, u32)>();
        let stats = self.stats.clone();
        let driver = DeviceDriver::spawn(port, session, move |e| match e {
            DeviceEvent::PlayRequested {
                samples,
                acquisition_id,
                averages,
                ..
            } => {
                let _ = play_tx.send((acquisition_id, samples.to_vec(), averages));
            }
            DeviceEvent::FidStored { acquisition_id } => {
                if let Ok(mut s) = stats.stored.lock() {
                    s.insert(acquisition_id);
                }
            }
            _ => {}
        })
        .map_err(|e| HilError::Link(e.to_string()))?;
        if let Ok(mut c) = self.completions.lock() {
            *c = Some(driver.commands());
        }
        let (physics, stats, profile, segment_dt) = (
            self.physics.clone(),
            self.stats.clone(),
            self.profile.clone(),
            self.segment_dt,
        );
        let (completions, backlog) = (self.completions.clone(), self.backlog.clone());
        std::thread::Builder::new()
            .name(format!("hil-serial-{}", profile.id))
            .spawn(move || {
                while let Ok((acq, samples, averages)) = play_rx.recv() {
                    let n = stats.acquired.load(Ordering::Relaxed);
                    let t_s = n as f64 * profile.tr_s;
                    let fid = physics
                        .lock()
                        .map_err(|_| HilError::Link("physics poisoned".into()))
                        .and_then(|mut p| {
                            play(&mut *p, &profile, segment_dt, &samples, averages, t_s)
                        });
                    match fid {
                        Ok(points) => {
                            stats.acquired.fetch_add(1, Ordering::Relaxed);
                            let timestamp_us = (t_s * 1e6) as u64;
                            let command = DeviceCommand::CompleteAcquisition {
                                acquisition_id: acq,
                                points: points.clone(),
                                timestamp_us,
                            };
                            // Under the lock, so an unplug sees it either in the driver's
                            // queue or in the backlog.
                            let sent = completions
                                .lock()
                                .ok()
                                .and_then(|c| c.as_ref().map(|tx| tx.send(command).is_ok()))
                                .unwrap_or(false);
                            if !sent && let Ok(mut b) = backlog.lock() {
                                b.push((acq, points, timestamp_us));
                            }
                        }
                        Err(e) => {
                            stats.failed.fetch_add(1, Ordering::Relaxed);
                            tracing::error!("acquisition {acq} not simulated: {e}");
                        }
                    }
                }
            })
            .map_err(|e| HilError::Link(e.to_string()))?;
        Ok(driver)
    }
}

impl Drop for SerialConsole {
    fn drop(&mut self) {
        self.unplug();
    }
}

/// The FID for RF samples at the profile's raster: each run of samples that make one designed
/// segment (the physics' own raster, `segment_dt`) is averaged back into that segment.
fn play(
    physics: &mut dyn ConsolePhysics,
    profile: &ConsoleProfile,
    segment_dt: f64,
    samples: &[Complex32],
    averages: u32,
    t_s: f64,
) -> Result<Vec<Complex32>, HilError> {
    let ratio = segment_dt / profile.rf_raster_s;
    let k = ratio.round() as usize;
    if k == 0 || (ratio - k as f64).abs() > 1e-6 || !samples.len().is_multiple_of(k) {
        return Err(HilError::invalid(
            "waveform",
            samples.len(),
            format!(
                "is not whole segments of {segment_dt} s at the RF raster {} s",
                profile.rf_raster_s
            ),
        ));
    }
    let (ux, uy): (Vec<f64>, Vec<f64>) = samples
        .chunks(k)
        .map(|c| {
            let (x, y) = c.iter().fold((0.0, 0.0), |(x, y), s| {
                (x + f64::from(s.re), y + f64::from(s.im))
            });
            (x / k as f64, y / k as f64)
        })
        .unzip();
    let fid = physics.acquire(&ux, &uy, segment_dt, averages, t_s)?;
    Ok(fid
        .iter()
        .map(|z| Complex32::new(z.re as f32, z.im as f32))
        .collect())
}
