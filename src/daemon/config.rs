//! The daemon's configuration: a TOML file (`deny_unknown_fields`; example in
//! `systemd/spinloopd.toml`) whose values command-line flags override, resolved and checked
//! into a [`DaemonConfig`].
//!
//! Defaults: the data directory is systemd's `$STATE_DIRECTORY` ([`crate::store::Store::data_dir`]); the
//! Unix socket is `$RUNTIME_DIRECTORY/spinloopd.sock`, else `/run/spinloopd/spinloopd.sock`,
//! mode `0660`; no TCP listener. A TCP listener on a non-loopback address requires TLS with
//! client certificates (`tls.cert`, `tls.key`, `tls.client_ca`): the daemon refuses to start
//! otherwise.

use std::ffi::OsStr;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::store::StoreError;

/// Default largest decoded gRPC message (bytes): 16 MiB, room for a 1 Mi-point FID.
pub const DEFAULT_MAX_MESSAGE_BYTES: usize = 16 << 20;

/// Default number of acquisitions of one Connect stream being committed at once.
pub const DEFAULT_MAX_IN_FLIGHT: usize = 64;

/// Socket file name inside the runtime directory.
pub const SOCKET_NAME: &str = "spinloopd.sock";

/// The socket path when `$RUNTIME_DIRECTORY` is not set.
pub const FALLBACK_SOCKET: &str = "/run/spinloopd/spinloopd.sock";

/// Errors of the configuration; each names the setting and the file it came from.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("reading the configuration {}: {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The file is not valid TOML for this schema.
    #[error("parsing the configuration {origin}: {message}")]
    Parse {
        /// The file (or `"<string>"`).
        origin: String,
        /// The parser's message (it names the key and line).
        message: String,
    },
    /// A value is out of range or inconsistent with another.
    #[error("invalid configuration: {setting}: {reason}")]
    Invalid {
        /// The setting (`socket_mode`, `tls`, ...).
        setting: &'static str,
        /// Why.
        reason: String,
    },
    /// No data directory.
    #[error(transparent)]
    DataDir(#[from] StoreError),
}

fn invalid(setting: &'static str, reason: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        setting,
        reason: reason.into(),
    }
}

/// Log line format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines (journald adds the unit and time).
    #[default]
    Text,
    /// One JSON object per line.
    Json,
}

impl std::str::FromStr for LogFormat {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "text" => Ok(LogFormat::Text),
            "json" => Ok(LogFormat::Json),
            other => Err(format!("unknown log format {other:?} (text or json)")),
        }
    }
}

/// TLS files of the TCP listener (PEM).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsFiles {
    /// The server certificate chain.
    pub cert: PathBuf,
    /// The server's private key.
    pub key: PathBuf,
    /// The CA that signs client certificates; clients without one are refused.
    pub client_ca: PathBuf,
}

/// The configuration file (every key optional) — also the shape of the command-line overrides.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConfigFile {
    /// Where the database lives (default `$STATE_DIRECTORY`).
    pub data_dir: Option<PathBuf>,
    /// The Unix socket to listen on.
    pub unix_socket: Option<PathBuf>,
    /// Permission bits of the socket file (TOML accepts `0o660`).
    pub socket_mode: Option<u32>,
    /// TCP address to listen on too (e.g. `"127.0.0.1:50051"`); none by default.
    pub tcp: Option<SocketAddr>,
    /// TLS for the TCP listener.
    pub tls: Option<TlsFiles>,
    /// Largest decoded gRPC message (bytes); larger ones get RESOURCE_EXHAUSTED.
    pub max_message_bytes: Option<usize>,
    /// Acquisitions of one Connect stream committed concurrently (group commit).
    pub max_in_flight: Option<usize>,
    /// `text` or `json`.
    pub log_format: Option<LogFormat>,
    /// A tracing filter (`info`, `spinloop=debug,tonic=warn`); `RUST_LOG` wins when set.
    pub log_level: Option<String>,
    /// Consoles and RF hardware reached over a serial port (`[[serial_console]]` tables).
    #[serde(
        default,
        rename = "serial_console",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub serial_consoles: Vec<SerialConsoleConfig>,
}

/// The protocol a serial console speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SerialProtocol {
    /// spinloop's console firmware protocol (crate `spinloop-firmware`): the device states
    /// its f0, RF raster, acquisition and B1 limit in its HELLO.
    Firmware,
    /// A SCPI instrument (crate `spinloop-scpi`): an arbitrary-waveform generator with a
    /// receiver answering `FETC:FID?`; its f0, raster and acquisition come from this table.
    Scpi,
}

/// A console reached over a serial port (`[[serial_console]]` in the configuration file).
/// The daemon opens `device` itself, speaks `protocol` to it, and registers it as console
/// `id` exactly like a console connecting over gRPC: waveforms pass the same interlock,
/// acquisitions are acknowledged to the device only after they are committed. Unplugging
/// the device disconnects the console; the daemon keeps reopening the path (use a stable
/// name such as `/dev/serial/by-id/…`) and reconnects when it comes back.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SerialConsoleConfig {
    /// Console id (letters, digits, `-`, `_`, `.`; at most 64 bytes).
    pub id: String,
    /// `firmware` or `scpi`.
    pub protocol: SerialProtocol,
    /// The serial device path.
    pub device: PathBuf,
    /// Baud rate (8N1, no flow control).
    #[serde(default = "default_baud")]
    pub baud: u32,
    /// Nucleus (default `1H`).
    #[serde(default = "default_nucleus")]
    pub nucleus: String,
    /// The site's transmit limits for this console (required: the interlock enforces them).
    pub limits: SerialLimits,
    /// Repetition time of the sequence the console plays (s); 0 = unknown.
    #[serde(default)]
    pub tr_s: f64,
    /// Larmor frequency (Hz): required for `scpi`; for `firmware`, if set, must match the
    /// device's HELLO.
    pub f0_hz: Option<f64>,
    /// RF sample interval (s): required for `scpi`; for `firmware` as `f0_hz`.
    pub rf_raster_s: Option<f64>,
    /// Complex points per acquisition: required for `scpi`; for `firmware` as `f0_hz`.
    pub sample_count: Option<u32>,
    /// Acquisition dwell (s): required for `scpi`; for `firmware` as `f0_hz`.
    pub dwell_s: Option<f64>,
    /// SCPI: |B1| (Hz) at DAC full scale (required for `scpi`).
    pub dac_full_scale_hz: Option<f64>,
    /// Silence (ms) after which the link is considered lost (default 3000).
    #[serde(default = "default_link_timeout_ms")]
    pub link_timeout_ms: u64,
}

/// Transmit limits of a serial console (the same meaning as a gRPC console's hello).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SerialLimits {
    /// Largest |B1| of any sample (Hz); a `firmware` device's own limit also applies.
    pub peak_b1_hz: f64,
    /// Largest Σ|u|²·dt of one waveform (Hz²·s).
    pub max_energy_hz2s: f64,
    /// Longest waveform (s).
    pub max_duration_s: f64,
    /// Largest duty cycle at the TR (0..1; needs `tr_s`), 0 = not checked.
    #[serde(default)]
    pub max_duty_cycle: f64,
    /// Sliding energy window (s), 0 = none.
    #[serde(default)]
    pub energy_window_s: f64,
    /// Energy allowed within the window (Hz²·s).
    #[serde(default)]
    pub window_max_energy_hz2s: f64,
}

fn default_baud() -> u32 {
    115_200
}

fn default_nucleus() -> String {
    "1H".to_string()
}

fn default_link_timeout_ms() -> u64 {
    3000
}

impl SerialConsoleConfig {
    /// Checks what can be checked without the device.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let bad = |reason: String| invalid("serial_console", format!("{}: {reason}", self.id));
        crate::control::check_id("serial_console.id", &self.id, 64)
            .map_err(|e| invalid("serial_console", e.to_string()))?;
        if self.device.as_os_str().is_empty() {
            return Err(bad("device is empty".into()));
        }
        if !(50..=4_000_000).contains(&self.baud) {
            return Err(bad(format!("baud {} is outside 50..=4000000", self.baud)));
        }
        if !(100..=600_000).contains(&self.link_timeout_ms) {
            return Err(bad(format!(
                "link_timeout_ms {} is outside 100..=600000",
                self.link_timeout_ms
            )));
        }
        let l = &self.limits;
        for (name, v) in [
            ("limits.peak_b1_hz", l.peak_b1_hz),
            ("limits.max_energy_hz2s", l.max_energy_hz2s),
            ("limits.max_duration_s", l.max_duration_s),
        ] {
            if !(v.is_finite() && v > 0.0) {
                return Err(bad(format!("{name} = {v} must be finite and > 0")));
            }
        }
        for (name, v) in [
            ("limits.max_duty_cycle", l.max_duty_cycle),
            ("limits.energy_window_s", l.energy_window_s),
            ("limits.window_max_energy_hz2s", l.window_max_energy_hz2s),
            ("tr_s", self.tr_s),
        ] {
            if !(v.is_finite() && v >= 0.0) {
                return Err(bad(format!("{name} = {v} must be finite and ≥ 0")));
            }
        }
        for (name, v) in [
            ("f0_hz", self.f0_hz),
            ("rf_raster_s", self.rf_raster_s),
            ("dwell_s", self.dwell_s),
            ("dac_full_scale_hz", self.dac_full_scale_hz),
        ] {
            if let Some(v) = v
                && !(v.is_finite() && v > 0.0)
            {
                return Err(bad(format!("{name} = {v} must be finite and > 0")));
            }
        }
        if self.sample_count == Some(0) {
            return Err(bad("sample_count must be > 0".into()));
        }
        if self.protocol == SerialProtocol::Scpi {
            for (name, missing) in [
                ("f0_hz", self.f0_hz.is_none()),
                ("rf_raster_s", self.rf_raster_s.is_none()),
                ("sample_count", self.sample_count.is_none()),
                ("dwell_s", self.dwell_s.is_none()),
                ("dac_full_scale_hz", self.dac_full_scale_hz.is_none()),
            ] {
                if missing {
                    return Err(bad(format!(
                        "{name} is required for a scpi console (it has no capability handshake)"
                    )));
                }
            }
        }
        Ok(())
    }
}

impl ConfigFile {
    /// Parses TOML; `origin` names the source in errors.
    pub fn from_toml(text: &str, origin: &str) -> Result<ConfigFile, ConfigError> {
        toml::from_str(text).map_err(|e| ConfigError::Parse {
            origin: origin.to_string(),
            message: e.to_string(),
        })
    }

    /// Reads and parses a file.
    pub fn load(path: &Path) -> Result<ConfigFile, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        ConfigFile::from_toml(&text, &path.display().to_string())
    }

    /// `self` with every value `over` sets replacing it (flags over the file).
    pub fn overridden_by(self, over: ConfigFile) -> ConfigFile {
        ConfigFile {
            data_dir: over.data_dir.or(self.data_dir),
            unix_socket: over.unix_socket.or(self.unix_socket),
            socket_mode: over.socket_mode.or(self.socket_mode),
            tcp: over.tcp.or(self.tcp),
            tls: over.tls.or(self.tls),
            max_message_bytes: over.max_message_bytes.or(self.max_message_bytes),
            max_in_flight: over.max_in_flight.or(self.max_in_flight),
            log_format: over.log_format.or(self.log_format),
            log_level: over.log_level.or(self.log_level),
            serial_consoles: if over.serial_consoles.is_empty() {
                self.serial_consoles
            } else {
                over.serial_consoles
            },
        }
    }

    /// Fills defaults from the environment (`$STATE_DIRECTORY`, `$RUNTIME_DIRECTORY`) and
    /// checks everything.
    pub fn resolve(self) -> Result<DaemonConfig, ConfigError> {
        let state = std::env::var_os("STATE_DIRECTORY");
        let runtime = std::env::var_os("RUNTIME_DIRECTORY");
        self.resolve_with(state.as_deref(), runtime.as_deref())
    }

    /// [`ConfigFile::resolve`] with the environment passed in.
    pub fn resolve_with(
        self,
        state_directory: Option<&OsStr>,
        runtime_directory: Option<&OsStr>,
    ) -> Result<DaemonConfig, ConfigError> {
        let data_dir = crate::store::data_dir_from(self.data_dir.as_deref(), state_directory)?;
        let unix_socket = match self.unix_socket {
            Some(p) if p.as_os_str().is_empty() => {
                return Err(invalid("unix_socket", "the socket path is empty"));
            }
            Some(p) => p,
            None => default_socket(runtime_directory),
        };
        let config = DaemonConfig {
            data_dir,
            unix_socket,
            socket_mode: self.socket_mode.unwrap_or(0o660),
            tcp: self.tcp,
            tls: self.tls,
            max_message_bytes: self.max_message_bytes.unwrap_or(DEFAULT_MAX_MESSAGE_BYTES),
            max_in_flight: self.max_in_flight.unwrap_or(DEFAULT_MAX_IN_FLIGHT),
            log_format: self.log_format.unwrap_or_default(),
            log_level: self.log_level.unwrap_or_else(|| "info".to_string()),
            serial_consoles: self.serial_consoles,
        };
        config.validate()?;
        Ok(config)
    }
}

/// `$RUNTIME_DIRECTORY/spinloopd.sock` (first entry of the list), else [`FALLBACK_SOCKET`].
pub fn default_socket(runtime_directory: Option<&OsStr>) -> PathBuf {
    match runtime_directory {
        Some(list) => {
            let first = crate::store::data_dir_from(None, Some(list)).ok();
            match first {
                Some(dir) => dir.join(SOCKET_NAME),
                None => PathBuf::from(FALLBACK_SOCKET),
            }
        }
        None => PathBuf::from(FALLBACK_SOCKET),
    }
}

/// The resolved, checked configuration.
#[derive(Debug, Clone, PartialEq)]
pub struct DaemonConfig {
    /// Where the database lives.
    pub data_dir: PathBuf,
    /// The Unix socket path.
    pub unix_socket: PathBuf,
    /// Its permission bits (≤ 0o777; default 0o660, owner and group).
    pub socket_mode: u32,
    /// Optional TCP listener.
    pub tcp: Option<SocketAddr>,
    /// TLS of the TCP listener (required on a non-loopback address).
    pub tls: Option<TlsFiles>,
    /// Largest decoded message (bytes).
    pub max_message_bytes: usize,
    /// Acquisitions of one stream committed concurrently.
    pub max_in_flight: usize,
    /// Log line format.
    pub log_format: LogFormat,
    /// Tracing filter.
    pub log_level: String,
    /// Consoles on serial ports.
    pub serial_consoles: Vec<SerialConsoleConfig>,
}

impl DaemonConfig {
    /// Defaults with a data directory and socket path (tests, benches, `spinloop run`).
    pub fn new(data_dir: impl Into<PathBuf>, unix_socket: impl Into<PathBuf>) -> DaemonConfig {
        DaemonConfig {
            data_dir: data_dir.into(),
            unix_socket: unix_socket.into(),
            socket_mode: 0o660,
            tcp: None,
            tls: None,
            max_message_bytes: DEFAULT_MAX_MESSAGE_BYTES,
            max_in_flight: DEFAULT_MAX_IN_FLIGHT,
            log_format: LogFormat::Text,
            log_level: "info".into(),
            serial_consoles: Vec::new(),
        }
    }

    /// Checks ranges and the TCP/TLS rule.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.socket_mode > 0o777 {
            return Err(invalid(
                "socket_mode",
                format!(
                    "{:#o} has bits beyond 0o777 (write it as 0o660 in TOML)",
                    self.socket_mode
                ),
            ));
        }
        if self.socket_mode & 0o600 != 0o600 {
            return Err(invalid(
                "socket_mode",
                format!(
                    "{:#o} does not let the daemon's own user read and write the socket",
                    self.socket_mode
                ),
            ));
        }
        if !(1024..=(1usize << 30)).contains(&self.max_message_bytes) {
            return Err(invalid(
                "max_message_bytes",
                format!(
                    "{} is outside 1024..=1073741824 bytes",
                    self.max_message_bytes
                ),
            ));
        }
        if !(1..=4096).contains(&self.max_in_flight) {
            return Err(invalid(
                "max_in_flight",
                format!("{} is outside 1..=4096", self.max_in_flight),
            ));
        }
        if tracing_subscriber::EnvFilter::try_new(&self.log_level).is_err() {
            return Err(invalid(
                "log_level",
                format!(
                    "{:?} is not a tracing filter (e.g. \"info\" or \"spinloop=debug,warn\")",
                    self.log_level
                ),
            ));
        }
        match (&self.tcp, &self.tls) {
            (None, Some(_)) => {
                return Err(invalid(
                    "tls",
                    "TLS files are set but no tcp listener is configured",
                ));
            }
            (Some(addr), None) if !addr.ip().is_loopback() => {
                return Err(invalid(
                    "tcp",
                    format!(
                        "{addr} is not a loopback address: a remote listener needs TLS with client \
                         certificates (set tls.cert, tls.key and tls.client_ca, or \
                         --tls-cert/--tls-key/--tls-client-ca), or listen on 127.0.0.1/::1"
                    ),
                ));
            }
            _ => {}
        }
        let mut ids = std::collections::BTreeSet::new();
        for c in &self.serial_consoles {
            c.validate()?;
            if !ids.insert(c.id.as_str()) {
                return Err(invalid(
                    "serial_console",
                    format!("console id {:?} is configured twice", c.id),
                ));
            }
        }
        if let Some(tls) = &self.tls {
            for (what, p) in [
                ("tls.cert", &tls.cert),
                ("tls.key", &tls.key),
                ("tls.client_ca", &tls.client_ca),
            ] {
                if p.as_os_str().is_empty() {
                    return Err(invalid("tls", format!("{what} is empty")));
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_and_overrides() {
        let file = ConfigFile::from_toml(
            "data_dir = \"/var/lib/x\"\nsocket_mode = 0o660\nlog_format = \"json\"\n",
            "t",
        )
        .map_err(|e| e.to_string());
        let file = match file {
            Ok(f) => f,
            Err(e) => panic!("{e}"),
        };
        let over = ConfigFile {
            data_dir: Some("/tmp/y".into()),
            ..ConfigFile::default()
        };
        let c = file
            .overridden_by(over)
            .resolve_with(None, Some(OsStr::new("/run/a:/run/b")));
        let c = match c {
            Ok(c) => c,
            Err(e) => panic!("{e}"),
        };
        assert_eq!(c.data_dir, PathBuf::from("/tmp/y"));
        assert_eq!(c.unix_socket, PathBuf::from("/run/a/spinloopd.sock"));
        assert_eq!(c.socket_mode, 0o660);
        assert_eq!(c.log_format, LogFormat::Json);
        assert_eq!(default_socket(None), PathBuf::from(FALLBACK_SOCKET));
    }

    #[test]
    fn refusals() {
        assert!(ConfigFile::from_toml("bogus = 1", "t").is_err());
        let no_dir = ConfigFile::default().resolve_with(None, None);
        assert!(matches!(no_dir, Err(ConfigError::DataDir(_))));
        let remote = ConfigFile {
            data_dir: Some("/tmp/x".into()),
            tcp: Some("0.0.0.0:50051".parse().unwrap_or_else(|_| unreachable!())),
            ..ConfigFile::default()
        }
        .resolve_with(None, None);
        let msg = remote.err().map(|e| e.to_string()).unwrap_or_default();
        assert!(msg.contains("not a loopback"), "{msg}");
        let loopback = ConfigFile {
            data_dir: Some("/tmp/x".into()),
            tcp: Some("127.0.0.1:0".parse().unwrap_or_else(|_| unreachable!())),
            ..ConfigFile::default()
        }
        .resolve_with(None, None);
        assert!(loopback.is_ok());
        let mode = ConfigFile {
            data_dir: Some("/tmp/x".into()),
            socket_mode: Some(0o1777),
            ..ConfigFile::default()
        }
        .resolve_with(None, None);
        assert!(mode.is_err());
    }
}
