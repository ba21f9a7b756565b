//! spinloopd: the daemon. Reads its configuration (a TOML file, overridden by flags), opens the
//! store, listens on a Unix socket (and optionally TCP with TLS client certificates), tells
//! systemd it is ready, keeps the watchdog fed while the store answers, and shuts down
//! gracefully on SIGTERM or SIGINT. The work is in `spinloop::daemon`.

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use clap::Parser;

use spinloop::daemon::config::{ConfigFile, LogFormat, TlsFiles};
use spinloop::daemon::{notify, server};

#[derive(Parser)]
#[command(
    name = "spinloopd",
    version,
    about = "spinloop daemon: takes FIDs from MR consoles over gRPC, stores them durably and closes the calibration loop"
)]
struct Args {
    /// Configuration file (TOML; see systemd/spinloopd.toml). Default:
    /// $CONFIGURATION_DIRECTORY/spinloopd.toml if it exists.
    #[arg(long, env = "SPINLOOPD_CONFIG")]
    config: Option<PathBuf>,
    /// Data directory (default: $STATE_DIRECTORY).
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// Unix socket path (default: $RUNTIME_DIRECTORY/spinloopd.sock).
    #[arg(long)]
    socket: Option<PathBuf>,
    /// Also listen on TCP (a non-loopback address needs --tls-*).
    #[arg(long)]
    tcp: Option<SocketAddr>,
    /// TLS server certificate (PEM).
    #[arg(long, requires_all = ["tls_key", "tls_client_ca"])]
    tls_cert: Option<PathBuf>,
    /// TLS server key (PEM).
    #[arg(long, requires_all = ["tls_cert", "tls_client_ca"])]
    tls_key: Option<PathBuf>,
    /// CA that signs client certificates (PEM).
    #[arg(long, requires_all = ["tls_cert", "tls_key"])]
    tls_client_ca: Option<PathBuf>,
    /// Largest gRPC message (bytes).
    #[arg(long)]
    max_message_bytes: Option<usize>,
    /// Log format: text or json.
    #[arg(long)]
    log_format: Option<LogFormat>,
    /// Log filter (RUST_LOG wins when set).
    #[arg(long)]
    log_level: Option<String>,
}

fn main() -> Result<()> {
    let args = Args::parse();
    // --config, else $CONFIGURATION_DIRECTORY/spinloopd.toml when it exists (systemd's
    // ConfigurationDirectory=), else defaults.
    let config_path = args.config.clone().or_else(|| {
        let dir = std::env::var_os("CONFIGURATION_DIRECTORY")?;
        let first = std::env::split_paths(&dir).next()?;
        Some(first.join("spinloopd.toml")).filter(|p| p.exists())
    });
    let file = match &config_path {
        Some(p) => ConfigFile::load(p)?,
        None => ConfigFile::default(),
    };
    let tls = match (args.tls_cert, args.tls_key, args.tls_client_ca) {
        (Some(cert), Some(key), Some(client_ca)) => Some(TlsFiles {
            cert,
            key,
            client_ca,
        }),
        (None, None, None) => None,
        _ => bail!("--tls-cert, --tls-key and --tls-client-ca go together"),
    };
    let flags = ConfigFile {
        data_dir: args.data_dir,
        unix_socket: args.socket,
        tcp: args.tcp,
        tls,
        max_message_bytes: args.max_message_bytes,
        log_format: args.log_format,
        log_level: args.log_level,
        ..ConfigFile::default()
    };
    let config = file
        .overridden_by(flags)
        .resolve()
        .context("configuration")?;
    init_logging(config.log_format, &config.log_level);

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("spinloopd")
        .build()
        .context("starting the tokio runtime")?;
    let result = runtime.block_on(async move {
        let handle = server::start_in_process(config)
            .await
            .context("starting the daemon")?;
        let listening = handle.listening.clone();
        if let Some(shared) = handle.shared() {
            notify::ready(&notify::status_line(&listening, shared));
        }
        let watchdog = handle
            .shared()
            .and_then(|s| notify::spawn_watchdog(s.clone(), listening.clone()));
        // Stop the watchdog as soon as shutdown starts: it holds the shared state, and the
        // store thread ends (last commit on disk) only when every holder is gone.
        let watchdog_abort = watchdog.as_ref().map(|w| w.abort_handle());
        let r = handle
            .run_until(async move {
                signal().await;
                if let Some(a) = watchdog_abort {
                    a.abort();
                }
            })
            .await;
        r.context("serving")?;
        tracing::info!("stopped");
        Ok(())
    });
    // Every commit has landed; do not wait long for stray blocking tasks (a notify send to a
    // receiver that stopped reading).
    runtime.shutdown_timeout(std::time::Duration::from_secs(2));
    result
}

/// Resolves on SIGTERM or SIGINT (and sends STOPPING=1).
async fn signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let term = signal(SignalKind::terminate());
    let int = signal(SignalKind::interrupt());
    match (term, int) {
        (Ok(mut t), Ok(mut i)) => {
            tokio::select! {
                _ = t.recv() => tracing::info!("SIGTERM"),
                _ = i.recv() => tracing::info!("SIGINT"),
            }
        }
        _ => {
            // No signal handlers: fall back to Ctrl-C only.
            let _ = tokio::signal::ctrl_c().await;
        }
    }
    notify::stopping("stopping: draining streams and commits");
}

fn init_logging(format: LogFormat, level: &str) {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_default_env()
        .or_else(|_| EnvFilter::try_new(level))
        .unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}
