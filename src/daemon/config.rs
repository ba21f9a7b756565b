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
