//! Serial transport: thin blocking shells that run a [`HostSession`] or a [`DeviceSession`]
//! over a serial port on a driver thread. They own the port, the clock and the reopen policy;
//! all protocol logic stays in the sans-IO sessions.
//!
//! * [`HostDriver`] (daemon side) opens a device path (8N1, no flow control, raw, via the
//!   `serialport` crate without libudev), pumps bytes between the port and its
//!   [`HostSession`], waits at most until the session's next timeout, takes [`HostCommand`]s
//!   through a channel and hands every [`HostEvent`] to a caller-supplied callback. On a read
//!   or write error (`EIO`/hang-up when the cable or USB adapter is unplugged, or the other end
//!   of a pseudo-terminal closes) it drops the port — the session reports
//!   [`HostEvent::LinkLost`] and fails what was pending — then keeps trying to reopen the *same
//!   path* with a bounded exponential backoff and redoes the `HELLO` once it is back. Nothing
//!   has to be restarted on a replug.
//! * [`DeviceDriver`] (firmware side, for simulated consoles and tests) runs a
//!   [`DeviceSession`] over a port it is given. Read errors (no peer on the other end yet) are
//!   waited out. [`DeviceDriver::shutdown`] returns the session, so a simulated console keeps
//!   its committed waveforms and unconfirmed FIDs across a simulated unplug.
//!
//! Commands are fire-and-forget; a command the session refuses is reported as an event
//! ([`HostEvent::RequestRejected`], [`DeviceEvent::RequestRejected`]), so callbacks may issue
//! commands themselves without deadlocking. Callbacks run on the driver thread and should be
//! quick.

use std::io;
use std::path::PathBuf;
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender, TryRecvError};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use num_complex::Complex32;
use serialport::{DataBits, FlowControl, Parity, SerialPort, StopBits};
use thiserror::Error;

use crate::session::{DeviceEvent, DeviceSession, HostConfig, HostEvent, HostRequest, HostSession};

/// Why a driver could not be used.
#[derive(Debug, Error)]
pub enum DriverError {
    /// The driver thread has stopped (shut down or panicked in a callback).
    #[error("the serial driver thread has stopped")]
    Stopped,
    /// The driver thread could not be started.
    #[error("cannot start the serial driver thread: {0}")]
    Spawn(#[from] io::Error),
}

/// How a [`HostDriver`] reaches its port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SerialConfig {
    /// Device path, e.g. `/dev/ttyUSB0` or a stable symlink such as `/dev/serial/by-id/…`.
    pub path: PathBuf,
    /// Baud rate (8N1, no flow control).
    pub baud_rate: u32,
    /// Longest a read blocks; bounds command latency.
    pub poll_interval: Duration,
    /// First delay before reopening after the port was lost or could not be opened.
    pub reopen_backoff_min: Duration,
    /// Longest delay between reopen attempts (the delay doubles up to it).
    pub reopen_backoff_max: Duration,
}

impl SerialConfig {
    /// `path` at `baud_rate`, 5 ms poll interval, reopen backoff 50 ms doubling to 2 s.
    pub fn new(path: impl Into<PathBuf>, baud_rate: u32) -> Self {
        Self {
            path: path.into(),
            baud_rate,
            poll_interval: Duration::from_millis(5),
            reopen_backoff_min: Duration::from_millis(50),
            reopen_backoff_max: Duration::from_secs(2),
        }
    }
}

/// Opens `config.path` 8N1, no flow control, raw, with the poll interval as read timeout.
pub fn open_port(config: &SerialConfig) -> serialport::Result<Box<dyn SerialPort>> {
    let path = config.path.to_string_lossy().into_owned();
    serialport::new(path, config.baud_rate)
        .data_bits(DataBits::Eight)
        .parity(Parity::None)
        .stop_bits(StopBits::One)
        .flow_control(FlowControl::None)
        .timeout(config.poll_interval)
        .open()
}

/// A command for a [`HostDriver`]'s session.
#[derive(Debug, Clone, PartialEq)]
pub enum HostCommand {
    /// [`HostSession::upload`].
    Upload {
        /// Waveform id.
        waveform_id: u32,
        /// Samples, B1 in Hz.
        samples: Vec<Complex32>,
    },
    /// [`HostSession::play`].
    Play {
        /// Committed waveform id.
        waveform_id: u32,
        /// Acquisition id.
        acquisition_id: u32,
        /// Averages (≥ 1).
        averages: u32,
    },
    /// [`HostSession::fid_stored`].
    FidStored {
        /// Acquisition id now durable.
        acquisition_id: u32,
    },
    /// Stop the driver thread (the port is closed).
    Shutdown,
}

/// What a port read or write told us.
enum Io {
    Fine,
    Lost,
}

fn read_into(port: &mut dyn SerialPort, buf: &mut [u8], got: &mut Vec<u8>) -> Io {
    match port.read(buf) {
        Ok(0) => Io::Lost,
        Ok(n) => {
            got.extend_from_slice(&buf[..n]);
            Io::Fine
        }
        Err(e)
            if matches!(
                e.kind(),
                io::ErrorKind::TimedOut | io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted
            ) =>
        {
            Io::Fine
        }
        Err(_) => Io::Lost,
    }
}

fn write_out(port: &mut dyn SerialPort, bytes: &[u8]) -> Io {
    match port.write_all(bytes) {
        Ok(()) => Io::Fine,
        // The peer is not reading: drop the buffer, the link retransmits.
        Err(e) if e.kind() == io::ErrorKind::TimedOut => Io::Fine,
        Err(_) => Io::Lost,
    }
}

/// Runs a [`HostSession`] over a serial port on its own thread. See the [module docs](self).
#[derive(Debug)]
pub struct HostDriver {
    commands: Sender<HostCommand>,
    thread: Option<JoinHandle<HostSession>>,
}

impl HostDriver {
    /// Starts the driver thread. It opens `serial.path` (retrying with backoff until it
    /// exists), says `HELLO`, and calls `on_event` for every [`HostEvent`].
    pub fn spawn(
        serial: SerialConfig,
        session: HostConfig,
        on_event: impl FnMut(HostEvent) + Send + 'static,
    ) -> Result<Self, DriverError> {
        let (tx, rx) = mpsc::channel();
        let thread = thread::Builder::new()
            .name("spinloop-serial-host".into())
            .spawn(move || host_loop(serial, session, rx, on_event))?;
        Ok(Self {
            commands: tx,
            thread: Some(thread),
        })
    }

    /// A sender for commands, for other threads.
    pub fn commands(&self) -> Sender<HostCommand> {
        self.commands.clone()
    }

    /// Sends a command.
    pub fn send(&self, command: HostCommand) -> Result<(), DriverError> {
        self.commands
            .send(command)
            .map_err(|_| DriverError::Stopped)
    }

    /// Queues an upload ([`HostCommand::Upload`]).
    pub fn upload(&self, waveform_id: u32, samples: Vec<Complex32>) -> Result<(), DriverError> {
        self.send(HostCommand::Upload {
            waveform_id,
            samples,
        })
    }

    /// Queues a play ([`HostCommand::Play`]).
    pub fn play(
        &self,
        waveform_id: u32,
        acquisition_id: u32,
        averages: u32,
    ) -> Result<(), DriverError> {
        self.send(HostCommand::Play {
            waveform_id,
            acquisition_id,
            averages,
        })
    }

    /// Confirms an FID durable ([`HostCommand::FidStored`]).
    pub fn fid_stored(&self, acquisition_id: u32) -> Result<(), DriverError> {
        self.send(HostCommand::FidStored { acquisition_id })
    }

    /// Stops the thread, closes the port and returns the session.
    pub fn shutdown(mut self) -> Result<HostSession, DriverError> {
        let _ = self.commands.send(HostCommand::Shutdown);
        let thread = self.thread.take().ok_or(DriverError::Stopped)?;
        thread.join().map_err(|_| DriverError::Stopped)
    }
}

impl Drop for HostDriver {
    fn drop(&mut self) {
        if let Some(thread) = self.thread.take() {
            let _ = self.commands.send(HostCommand::Shutdown);
            let _ = thread.join();
        }
    }
}

fn host_command(session: &mut HostSession, command: HostCommand, now: Instant) -> bool {
    let (request, result) = match command {
        HostCommand::Shutdown => return false,
        HostCommand::Upload {
            waveform_id,
            samples,
        } => (
            HostRequest::Upload { waveform_id },
            session.upload(waveform_id, &samples, now),
        ),
        HostCommand::Play {
            waveform_id,
            acquisition_id,
            averages,
        } => (
            HostRequest::Play {
                waveform_id,
                acquisition_id,
            },
            session.play(waveform_id, acquisition_id, averages, now),
        ),
        HostCommand::FidStored { acquisition_id } => (
            HostRequest::FidStored { acquisition_id },
            session.fid_stored(acquisition_id, now),
        ),
    };
    if let Err(error) = result {
        session.report_rejected(request, error);
    }
    true
}

fn host_loop(
    serial: SerialConfig,
    config: HostConfig,
    commands: Receiver<HostCommand>,
    mut on_event: impl FnMut(HostEvent),
) -> HostSession {
    let mut session = HostSession::new(config, Instant::now());
    let mut port: Option<Box<dyn SerialPort>> = None;
    let mut backoff = serial.reopen_backoff_min;
    let mut next_open = Instant::now();
    let mut buf = vec![0u8; 4096];
    let mut received = Vec::new();
    loop {
        let now = Instant::now();
        if port.is_none() && now >= next_open {
            match open_port(&serial) {
                Ok(mut p) => {
                    backoff = serial.reopen_backoff_min;
                    session.reconnect(now);
                    // Terminate whatever partial frame the peer holds.
                    if let Io::Fine = write_out(p.as_mut(), &[crate::DELIMITER]) {
                        port = Some(p);
                    }
                }
                Err(_) => {
                    next_open = now + backoff;
                    backoff = (backoff * 2).min(serial.reopen_backoff_max);
                }
            }
        }
        if session.poll_timeout().is_some_and(|at| at <= now) {
            session.handle_timeout(now);
        }
        let mut lost = false;
        while let Some(bytes) = session.poll_transmit() {
            if let Some(p) = port.as_mut()
                && let Io::Lost = write_out(p.as_mut(), &bytes)
            {
                lost = true;
            }
        }
        while let Some(event) = session.poll_event() {
            on_event(event);
        }
        match port.as_mut() {
            Some(p) if !lost => {
                received.clear();
                if let Io::Lost = read_into(p.as_mut(), &mut buf, &mut received) {
                    lost = true;
                }
                if !received.is_empty() {
                    session.handle_input(&received, Instant::now());
                }
                loop {
                    match commands.try_recv() {
                        Ok(c) => {
                            if !host_command(&mut session, c, Instant::now()) {
                                return session;
                            }
                        }
                        Err(TryRecvError::Empty) => break,
                        Err(TryRecvError::Disconnected) => return session,
                    }
                }
            }
            Some(_) => {}
            None => {
                let wait = next_open
                    .saturating_duration_since(Instant::now())
                    .min(serial.poll_interval)
                    .max(Duration::from_millis(1));
                match commands.recv_timeout(wait) {
                    Ok(c) => {
                        if !host_command(&mut session, c, Instant::now()) {
                            return session;
                        }
                    }
                    Err(RecvTimeoutError::Timeout) => {}
                    Err(RecvTimeoutError::Disconnected) => return session,
                }
            }
        }
        if lost {
            port = None;
            let now = Instant::now();
            session.reconnect(now);
            next_open = now + backoff;
        }
    }
}

/// A command for a [`DeviceDriver`]'s session.
#[derive(Debug, Clone, PartialEq)]
pub enum DeviceCommand {
    /// [`DeviceSession::complete_acquisition`].
    CompleteAcquisition {
        /// Acquisition id from [`DeviceEvent::PlayRequested`].
        acquisition_id: u32,
        /// Acquired points.
        points: Vec<Complex32>,
        /// Device timestamp, µs.
        timestamp_us: u64,
    },
    /// Stop the driver thread and hand the session back.
    Shutdown,
}

/// Runs a [`DeviceSession`] over a serial port on its own thread (a simulated console's end).
#[derive(Debug)]
pub struct DeviceDriver {
    commands: Sender<DeviceCommand>,
    thread: Option<JoinHandle<DeviceSession>>,
}

impl DeviceDriver {
    /// Starts the driver thread on `port` (an open port whose read timeout bounds command
    /// latency, e.g. 5 ms). The session's link is reset first (a new port is a new cable); its
    /// waveforms and retained FIDs are kept. `on_event` gets every [`DeviceEvent`].
    pub fn spawn(
        port: Box<dyn SerialPort>,
        session: DeviceSession,
        on_event: impl FnMut(DeviceEvent) + Send + 'static,
    ) -> Result<Self, DriverError> {
        let (tx, rx) = mpsc::channel();
        let thread = thread::Builder::new()
            .name("spinloop-serial-device".into())
            .spawn(move || device_loop(port, session, rx, on_event))?;
        Ok(Self {
            commands: tx,
            thread: Some(thread),
        })
    }

    /// A sender for commands, for other threads.
    pub fn commands(&self) -> Sender<DeviceCommand> {
        self.commands.clone()
    }

    /// Completes an acquisition ([`DeviceCommand::CompleteAcquisition`]).
    pub fn complete_acquisition(
        &self,
        acquisition_id: u32,
        points: Vec<Complex32>,
        timestamp_us: u64,
    ) -> Result<(), DriverError> {
        self.commands
            .send(DeviceCommand::CompleteAcquisition {
                acquisition_id,
                points,
                timestamp_us,
            })
            .map_err(|_| DriverError::Stopped)
    }

    /// Stops the thread, closes the port (an "unplug") and returns the session.
    pub fn shutdown(mut self) -> Result<DeviceSession, DriverError> {
        let _ = self.commands.send(DeviceCommand::Shutdown);
        let thread = self.thread.take().ok_or(DriverError::Stopped)?;
        thread.join().map_err(|_| DriverError::Stopped)
    }
}

impl Drop for DeviceDriver {
    fn drop(&mut self) {
        if let Some(thread) = self.thread.take() {
            let _ = self.commands.send(DeviceCommand::Shutdown);
            let _ = thread.join();
        }
    }
}

fn device_loop(
    mut port: Box<dyn SerialPort>,
    mut session: DeviceSession,
    commands: Receiver<DeviceCommand>,
    mut on_event: impl FnMut(DeviceEvent),
) -> DeviceSession {
    let poll = port.timeout().max(Duration::from_millis(1));
    session.reset_link(Instant::now());
    let mut buf = vec![0u8; 4096];
    let mut received = Vec::new();
    loop {
        loop {
            match commands.try_recv() {
                Ok(DeviceCommand::CompleteAcquisition {
                    acquisition_id,
                    points,
                    timestamp_us,
                }) => {
                    if let Err(error) = session.complete_acquisition(
                        acquisition_id,
                        points,
                        timestamp_us,
                        Instant::now(),
                    ) {
                        session.report_rejected(acquisition_id, error);
                    }
                }
                Ok(DeviceCommand::Shutdown) | Err(TryRecvError::Disconnected) => return session,
                Err(TryRecvError::Empty) => break,
            }
        }
        let now = Instant::now();
        if session.poll_timeout().is_some_and(|at| at <= now) {
            session.handle_timeout(now);
        }
        let mut broken = false;
        while let Some(bytes) = session.poll_transmit() {
            if let Io::Lost = write_out(port.as_mut(), &bytes) {
                broken = true;
            }
        }
        while let Some(event) = session.poll_event() {
            on_event(event);
        }
        received.clear();
        if broken {
            thread::sleep(poll);
        } else if let Io::Lost = read_into(port.as_mut(), &mut buf, &mut received) {
            // Nobody on the other end (yet): wait, the host may open it later.
            thread::sleep(poll);
        }
        if !received.is_empty() {
            session.handle_input(&received, Instant::now());
        }
    }
}
