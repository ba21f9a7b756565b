//! The gRPC server: one router per listener with `grpc.health.v1`, server reflection (v1 and
//! v1alpha, covering `spinloop.v1` and the health service), `Console`, `Sessions` and
//! `Design`; listeners on a Unix socket (the default; mode 0660; or the socket systemd passes
//! by socket activation, see [`UnixSocket::from_systemd`]) and optionally TCP, with TLS
//! requiring client certificates; graceful shutdown; and client-side helpers
//! ([`unix_channel`], [`tcp_channel`]) plus an in-process daemon ([`start_in_process`]) for
//! tests, benchmarks and `spinloop run`.
//!
//! # Shutdown order
//! 1. health turns NOT_SERVING and the listeners stop accepting;
//! 2. open Connect streams stop reading, wait for their in-flight commits and send those acks,
//!    then end with UNAVAILABLE; unary calls in progress finish (bounded by
//!    [`GRACE_PERIOD`]);
//! 3. running sessions get [`SessionNotice::Shutdown`];
//! 4. a final call through the store actor (FIFO) guarantees every queued commit has landed,
//!    the socket file is removed (unless systemd owns it) and the store thread is joined.
//!
//! Every ack is sent after its commit, so even a `kill -9` at any point loses no acknowledged
//! acquisition; the orderly path only avoids cutting streams mid-commit.

use std::future::Future;
use std::net::SocketAddr;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::Duration;

use hyper_util::rt::TokioIo;
use tokio::net::{TcpListener, UnixListener, UnixStream};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio_stream::wrappers::{TcpListenerStream, UnixListenerStream};
use tonic::codegen::http;
use tonic::transport::{Channel, ClientTlsConfig, Endpoint, Server, ServerTlsConfig, Uri};
use tonic_health::ServingStatus;

use super::config::{ConfigError, DaemonConfig};
use super::console::ConsoleService;
use super::design::DesignService;
use super::pb;
use super::pb::console_server::ConsoleServer;
use super::pb::design_server::DesignServer;
use super::pb::sessions_server::SessionsServer;
use super::sessions::SessionsService;
use super::tls::{TlsError, TlsPem};
use super::{DaemonError, SessionNotice, Shared, StoreHandle};
use crate::store::{Store, StoreError};

/// How long in-flight RPCs may take to finish after shutdown starts.
pub const GRACE_PERIOD: Duration = Duration::from_secs(10);

/// How long shutdown waits for the store thread to end.
const STORE_JOIN_TIMEOUT: Duration = Duration::from_secs(5);

/// Errors of starting or running the server.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    /// Bad configuration.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The store could not be opened.
    #[error("opening the store: {0}")]
    Store(#[from] StoreError),
    /// The daemon's shared state failed.
    #[error(transparent)]
    Daemon(#[from] DaemonError),
    /// TLS material.
    #[error(transparent)]
    Tls(#[from] TlsError),
    /// A listener could not be set up.
    #[error("{what} {target}: {source}")]
    Listen {
        /// What was being done.
        what: &'static str,
        /// The socket path or address.
        target: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The socket path is in use or not a socket.
    #[error("unix socket {}: {reason}", path.display())]
    Socket {
        /// The path.
        path: PathBuf,
        /// Why it cannot be used.
        reason: String,
    },
    /// tonic's transport failed.
    #[error("gRPC transport: {0}")]
    Transport(#[from] tonic::transport::Error),
    /// Building server reflection failed.
    #[error("server reflection: {0}")]
    Reflection(String),
    /// A server task panicked or was cancelled.
    #[error("server task: {0}")]
    Task(String),
}

fn listen_err(
    what: &'static str,
    target: impl std::fmt::Display,
) -> impl FnOnce(std::io::Error) -> ServerError {
    let target = target.to_string();
    move |source| ServerError::Listen {
        what,
        target,
        source,
    }
}

/// A bound Unix socket, removed again at shutdown if it is still ours.
pub struct UnixSocket {
    listener: UnixListener,
    path: PathBuf,
    dev_ino: (u64, u64),
    /// Whether the daemon created the socket file (and so removes it at shutdown). A socket
    /// passed by systemd belongs to its `.socket` unit and outlives the daemon.
    owned: bool,
}

impl UnixSocket {
    /// Binds `path` with permission bits `mode`: a stale socket file (nobody listening) is
    /// removed first; a live one or a non-socket file is an error. The socket is bound under a
    /// temporary name in the same directory, given its mode, then renamed into place, so the
    /// final path never exists with looser permissions. Creates the parent directory if needed.
    /// Must run inside a tokio runtime.
    pub fn bind(path: &Path, mode: u32) -> Result<UnixSocket, ServerError> {
        use std::os::unix::fs::FileTypeExt;
        let shown = path.display().to_string();
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent).map_err(listen_err(
                "creating the socket directory",
                parent.display(),
            ))?;
        }
        match std::fs::symlink_metadata(path) {
            Ok(m) if m.file_type().is_socket() => {
                if std::os::unix::net::UnixStream::connect(path).is_ok() {
                    return Err(ServerError::Socket {
                        path: path.to_path_buf(),
                        reason:
                            "another process is listening on it (is spinloopd already running?)"
                                .into(),
                    });
                }
                std::fs::remove_file(path)
                    .map_err(listen_err("removing the stale socket", &shown))?;
            }
            Ok(_) => {
                return Err(ServerError::Socket {
                    path: path.to_path_buf(),
                    reason: "exists and is not a socket; refusing to replace it".into(),
                });
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(listen_err("inspecting", &shown)(e)),
        }
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "spinloopd.sock".into());
        let tmp = path.with_file_name(format!(".{name}.{}.tmp", std::process::id()));
        let _ = std::fs::remove_file(&tmp);
        let listener = UnixListener::bind(&tmp).map_err(listen_err("binding", &shown))?;
        let placed = std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(mode))
            .and_then(|()| std::fs::rename(&tmp, path));
        if let Err(e) = placed {
            let _ = std::fs::remove_file(&tmp);
            return Err(listen_err("setting the mode of", &shown)(e));
        }
        let meta = std::fs::symlink_metadata(path).map_err(listen_err("inspecting", &shown))?;
        Ok(UnixSocket {
            listener,
            path: path.to_path_buf(),
            dev_ino: (meta.dev(), meta.ino()),
            owned: true,
        })
    }

    /// The listening Unix socket systemd passed by socket activation (`spinloopd.socket`), if
    /// any: `LISTEN_PID` must name this process and `LISTEN_FDS` count the descriptors from
    /// fd 3; the one named `spinloopd` (`FileDescriptorName=`), or else the first, is taken.
    /// It must be a listening `AF_UNIX` stream socket bound to a path, else an error. Its mode
    /// and owner are the `.socket` unit's (`SocketMode=`, `SocketGroup=`), and it is left in
    /// place at shutdown. Must run inside a tokio runtime.
    pub fn from_systemd() -> Result<Option<UnixSocket>, ServerError> {
        use std::os::fd::FromRawFd;
        let fds: Vec<(std::os::fd::RawFd, String)> = match sd_notify::listen_fds_with_names() {
            Ok(fds) => fds.collect(),
            Err(e) => {
                return Err(ServerError::Socket {
                    path: PathBuf::from("LISTEN_FDS"),
                    reason: format!("reading systemd's socket-activation variables: {e}"),
                });
            }
        };
        let Some((fd, name)) = fds
            .iter()
            .find(|(_, n)| n == "spinloopd")
            .or_else(|| fds.first())
            .cloned()
        else {
            return Ok(None);
        };
        let shown = format!("fd {fd} ({name}) from systemd");
        // SAFETY: systemd passes descriptors 3 .. 3 + LISTEN_FDS to the process named by
        // LISTEN_PID (checked by sd_notify above) for it to own; nothing else in this process
        // takes them, and this is done once per descriptor (the daemon starts once).
        let std_listener = unsafe { std::os::unix::net::UnixListener::from_raw_fd(fd) };
        let path = std_listener
            .local_addr()
            .ok()
            .and_then(|a| a.as_pathname().map(Path::to_path_buf))
            .ok_or_else(|| ServerError::Socket {
                path: PathBuf::from(&shown),
                reason: "is not a Unix stream socket bound to a path (check ListenStream= in \
                         spinloopd.socket)"
                    .into(),
            })?;
        std_listener
            .set_nonblocking(true)
            .map_err(listen_err("making non-blocking", &shown))?;
        let listener =
            UnixListener::from_std(std_listener).map_err(listen_err("adopting", &shown))?;
        let meta =
            std::fs::symlink_metadata(&path).map_err(listen_err("inspecting", path.display()))?;
        Ok(Some(UnixSocket {
            listener,
            path,
            dev_ino: (meta.dev(), meta.ino()),
            owned: false,
        }))
    }

    /// The socket's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn remove_if_ours(path: &Path, dev_ino: (u64, u64)) {
        if let Ok(m) = std::fs::symlink_metadata(path)
            && (m.dev(), m.ino()) == dev_ino
        {
            let _ = std::fs::remove_file(path);
        }
    }
}

/// What to listen on.
#[derive(Default)]
pub struct Listeners {
    /// The Unix socket.
    pub unix: Option<UnixSocket>,
    /// A TCP listener, with TLS (client certificates required) if configured.
    pub tcp: Option<(TcpListener, Option<ServerTlsConfig>)>,
}

impl Listeners {
    /// Binds what the configuration asks for.
    pub async fn bind(config: &DaemonConfig) -> Result<Listeners, ServerError> {
        // TLS material and TCP first: a failure there leaves no socket file behind.
        let tcp = match config.tcp {
            None => None,
            Some(addr) => {
                let tls = match &config.tls {
                    Some(files) => Some(super::tls::server_config(&TlsPem::load(files)?)),
                    None => None,
                };
                let l = TcpListener::bind(addr)
                    .await
                    .map_err(listen_err("binding", addr))?;
                Some((l, tls))
            }
        };
        let unix = match UnixSocket::from_systemd()? {
            Some(activated) => Some(activated),
            None => Some(UnixSocket::bind(&config.unix_socket, config.socket_mode)?),
        };
        Ok(Listeners { unix, tcp })
    }

    /// A human description (`unix:/run/...; tcp+tls:1.2.3.4:5`).
    pub fn describe(&self) -> String {
        let mut parts = Vec::new();
        if let Some(u) = &self.unix {
            parts.push(format!("unix:{}", u.path.display()));
        }
        if let Some((l, tls)) = &self.tcp {
            let addr = l
                .local_addr()
                .map(|a| a.to_string())
                .unwrap_or_else(|_| "?".into());
            parts.push(format!(
                "{}:{addr}",
                if tls.is_some() { "tcp+tls" } else { "tcp" }
            ));
        }
        parts.join(", ")
    }
}

/// Options of [`serve`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ServeOptions {
    /// Largest decoded message (bytes).
    pub max_message_bytes: usize,
    /// Acquisitions of one Connect stream committed at once.
    pub max_in_flight: usize,
}

impl ServeOptions {
    /// From the configuration.
    pub fn from_config(c: &DaemonConfig) -> ServeOptions {
        ServeOptions {
            max_message_bytes: c.max_message_bytes,
            max_in_flight: c.max_in_flight,
        }
    }
}

/// tonic reports an inbound message beyond the decode limit as OUT_OF_RANGE in a
/// trailers-only response; the API promises RESOURCE_EXHAUSTED. (Streams map it themselves.)
fn oversize_to_resource_exhausted<B>(mut r: http::Response<B>) -> http::Response<B> {
    // `Status::into_http` leaves the status in the response's extensions.
    let oversize = r
        .extensions()
        .get::<tonic::Status>()
        .is_some_and(super::console::is_oversize);
    if oversize {
        r.headers_mut()
            .insert("grpc-status", http::HeaderValue::from_static("8"));
    }
    r
}

async fn stopped(mut rx: watch::Receiver<bool>) {
    let _ = rx.wait_for(|v| *v).await;
}

/// Serves every service on `listeners` until `shutdown` resolves, then shuts down gracefully
/// (see the module documentation). Returns early with an error if a listener fails.
pub async fn serve(
    shared: Shared,
    listeners: Listeners,
    options: ServeOptions,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), ServerError> {
    let (stop_tx, stop_rx) = watch::channel(false);
    let (reporter, health) = tonic_health::server::health_reporter();
    reporter
        .set_serving::<ConsoleServer<ConsoleService>>()
        .await;
    reporter
        .set_serving::<SessionsServer<SessionsService>>()
        .await;
    reporter.set_serving::<DesignServer<DesignService>>().await;
    reporter
        .set_service_status("", ServingStatus::Serving)
        .await;
    let reflection_v1 = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(pb::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1()
        .map_err(|e| ServerError::Reflection(e.to_string()))?;
    let reflection_v1alpha = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(pb::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1alpha()
        .map_err(|e| ServerError::Reflection(e.to_string()))?;
    let limit = options.max_message_bytes;
    let console = ConsoleServer::new(ConsoleService::new(
        shared.clone(),
        stop_rx.clone(),
        options.max_in_flight,
    ))
    .max_decoding_message_size(limit);
    let sessions =
        SessionsServer::new(SessionsService::new(shared.clone())).max_decoding_message_size(limit);
    let design = DesignServer::new(DesignService::new()).max_decoding_message_size(limit);

    let router = |builder: Server| {
        builder
            .layer(tower::util::MapResponseLayer::new(
                oversize_to_resource_exhausted::<tonic::body::Body>,
            ))
            .add_service(health.clone())
            .add_service(reflection_v1.clone())
            .add_service(reflection_v1alpha.clone())
            .add_service(console.clone())
            .add_service(sessions.clone())
            .add_service(design.clone())
    };

    let mut tasks: Vec<JoinHandle<Result<(), tonic::transport::Error>>> = Vec::new();
    let mut socket_file = None;
    if let Some(u) = listeners.unix {
        if u.owned {
            socket_file = Some((u.path.clone(), u.dev_ino));
        }
        let incoming = UnixListenerStream::new(u.listener);
        let fut = router(Server::builder())
            .serve_with_incoming_shutdown(incoming, stopped(stop_rx.clone()));
        tasks.push(tokio::spawn(fut));
    }
    if let Some((l, tls)) = listeners.tcp {
        let mut builder = Server::builder();
        if let Some(tls) = tls {
            builder = builder.tls_config(tls)?;
        }
        let incoming = TcpListenerStream::new(l);
        let fut = router(builder).serve_with_incoming_shutdown(incoming, stopped(stop_rx.clone()));
        tasks.push(tokio::spawn(fut));
    }

    // Run until asked to stop, or until a listener fails.
    let mut failure: Option<ServerError> = None;
    {
        let any_ended = futures::future::select_all(tasks.iter_mut());
        tokio::select! {
            () = shutdown => {}
            (r, _, _) = any_ended => {
                failure = Some(match r {
                    Ok(Ok(())) => ServerError::Task("a listener stopped unexpectedly".into()),
                    Ok(Err(e)) => ServerError::Transport(e),
                    Err(e) => ServerError::Task(e.to_string()),
                });
            }
        }
    }
    tracing::info!("shutting down: draining streams and in-flight commits");
    reporter
        .set_service_status("", ServingStatus::NotServing)
        .await;
    reporter
        .set_not_serving::<ConsoleServer<ConsoleService>>()
        .await;
    let _ = stop_tx.send(true);
    let deadline = tokio::time::Instant::now() + GRACE_PERIOD;
    for t in tasks {
        let abort = t.abort_handle();
        match tokio::time::timeout_at(deadline, t).await {
            Ok(Ok(Ok(()))) => {}
            Ok(Ok(Err(e))) => tracing::warn!("listener ended with an error: {e}"),
            Ok(Err(e)) if e.is_cancelled() => {}
            Ok(Err(e)) => tracing::warn!("listener task failed: {e}"),
            Err(_) => {
                tracing::warn!("in-flight RPCs did not finish within {GRACE_PERIOD:?}; closing");
                abort.abort();
            }
        }
    }
    shared.sessions.notify_all(SessionNotice::Shutdown);
    // The store actor is FIFO: once this answers, every commit queued before it has landed.
    let _ = shared.store.call(|_| ()).await;
    if let Some((path, dev_ino)) = socket_file {
        UnixSocket::remove_if_ours(&path, dev_ino);
    }
    match failure {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

/// A daemon running inside this process (tests, benchmarks, `spinloop run`).
pub struct DaemonHandle {
    /// The Unix socket it listens on.
    pub socket: PathBuf,
    /// The TCP address it listens on, if any (the bound port when configured as `:0`).
    pub tcp: Option<SocketAddr>,
    /// What it listens on, for humans.
    pub listening: String,
    shared: Option<Shared>,
    stop: watch::Sender<bool>,
    task: JoinHandle<Result<(), ServerError>>,
}

impl DaemonHandle {
    /// The daemon's shared state (store actor, registries).
    pub fn shared(&self) -> Option<&Shared> {
        self.shared.as_ref()
    }

    /// Starts a graceful shutdown (returns at once; [`DaemonHandle::join`] waits for it).
    pub fn shutdown(&self) {
        let _ = self.stop.send(true);
    }

    /// Waits for the daemon to stop (after [`DaemonHandle::shutdown`], or a failure): every
    /// commit has landed and the store is closed when this returns.
    pub async fn join(mut self) -> Result<(), ServerError> {
        drop(self.shared.take());
        match (&mut self.task).await {
            Ok(r) => r,
            Err(e) => Err(ServerError::Task(e.to_string())),
        }
    }

    /// Runs until `signal` resolves (or the daemon fails), then shuts down and joins.
    pub async fn run_until(mut self, signal: impl Future<Output = ()>) -> Result<(), ServerError> {
        tokio::select! {
            () = signal => {}
            r = &mut self.task => {
                return match r {
                    Ok(r) => r,
                    Err(e) => Err(ServerError::Task(e.to_string())),
                };
            }
        }
        self.shutdown();
        self.join().await
    }
}

/// Opens the store in `config.data_dir`, resumes open sessions, binds the listeners and serves
/// in a background task. Returns once the daemon is listening.
pub async fn start_in_process(config: DaemonConfig) -> Result<DaemonHandle, ServerError> {
    config.validate()?;
    let dir = config.data_dir.clone();
    let store = tokio::task::spawn_blocking(move || Store::open(&dir))
        .await
        .map_err(|e| ServerError::Task(e.to_string()))??;
    let (handle, store_thread) = StoreHandle::spawn(store);
    let shared = Shared::new(handle);
    let listeners = match Listeners::bind(&config).await {
        Ok(l) => l,
        Err(e) => {
            drop(shared);
            let _ = tokio::task::spawn_blocking(move || store_thread.join()).await;
            return Err(e);
        }
    };
    let resumed = super::sessions::resume_open_sessions(&shared).await?;
    if resumed > 0 {
        tracing::info!("resumed {resumed} open sessions");
    }
    let socket = match &listeners.unix {
        Some(u) => u.path.clone(),
        None => config.unix_socket.clone(),
    };
    let tcp = match &listeners.tcp {
        Some((l, _)) => Some(
            l.local_addr()
                .map_err(listen_err("reading the address of", "tcp"))?,
        ),
        None => None,
    };
    let listening = listeners.describe();
    let (stop, stop_rx) = watch::channel(false);
    let serve_shared = shared.clone();
    let options = ServeOptions::from_config(&config);
    // Serial consoles: each bridge is a client of the socket served below (it retries until
    // the server accepts).
    let serial =
        super::serial::start_all(&config.serial_consoles, &config.data_dir, &socket, &stop_rx)
            .map_err(|e| ServerError::Task(e.to_string()))?;
    let task = tokio::spawn(async move {
        let r = serve(serve_shared, listeners, options, stopped(stop_rx)).await;
        for t in serial {
            if tokio::time::timeout(GRACE_PERIOD, t).await.is_err() {
                tracing::warn!("a serial console did not stop within {GRACE_PERIOD:?}");
            }
        }
        // Wait for the store thread to end (every handle dropped) so the last commit is on
        // disk and the connection closed; tasks still holding the shared state (a session
        // runner) may keep it alive, so the wait is bounded. Commits are synchronous, so
        // nothing acknowledged depends on this.
        let joined = tokio::time::timeout(
            STORE_JOIN_TIMEOUT,
            tokio::task::spawn_blocking(move || store_thread.join()),
        )
        .await;
        if joined.is_err() {
            tracing::warn!("the store thread is still referenced after shutdown; not waiting");
        }
        r
    });
    tracing::info!("listening on {listening}");
    Ok(DaemonHandle {
        socket,
        tcp,
        listening,
        shared: Some(shared),
        stop,
        task,
    })
}

/// A client channel over the daemon's Unix socket.
pub async fn unix_channel(path: impl AsRef<Path>) -> Result<Channel, tonic::transport::Error> {
    let path = path.as_ref().to_path_buf();
    Endpoint::from_static("http://[::]:50051")
        .connect_with_connector(tower::service_fn(move |_: Uri| {
            let path = path.clone();
            async move { Ok::<_, std::io::Error>(TokioIo::new(UnixStream::connect(path).await?)) }
        }))
        .await
}

/// A client channel over TCP, with TLS if `tls` is given ([`super::tls::client_config`]).
pub async fn tcp_channel(
    addr: SocketAddr,
    tls: Option<ClientTlsConfig>,
) -> Result<Channel, tonic::transport::Error> {
    let scheme = if tls.is_some() { "https" } else { "http" };
    let mut ep = Endpoint::from_shared(format!("{scheme}://{addr}"))?
        .connect_timeout(Duration::from_secs(5));
    if let Some(t) = tls {
        ep = ep.tls_config(t)?;
    }
    ep.connect().await
}
