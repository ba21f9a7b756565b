//! `spinloop` as the daemon's client (`sessions …`, `consoles …`) and the main job
//! (`spinloop run`: the closed loop against a built-in simulated console). Human-readable
//! output by default, `--json` for scripts. Thin: every call is one gRPC request.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use clap::{Args, Subcommand};
use serde_json::json;
use tokio_stream::StreamExt;
use tonic::transport::Channel;

use spinloop::daemon::pb;

/// How to reach the daemon.
#[derive(Args, Debug, Clone)]
pub struct Connection {
    /// The daemon's Unix socket.
    #[arg(long, env = "SPINLOOP_SOCKET", global = true)]
    socket: Option<PathBuf>,
    /// Connect over TCP instead (e.g. 10.0.0.5:50051); with TLS if --tls-ca is given.
    #[arg(long, global = true)]
    tcp: Option<std::net::SocketAddr>,
    /// CA certificate (PEM) that signed the daemon's certificate.
    #[arg(long, global = true, requires = "tcp")]
    tls_ca: Option<PathBuf>,
    /// Client certificate (PEM) for TLS client authentication.
    #[arg(long, global = true, requires = "tls_ca")]
    tls_cert: Option<PathBuf>,
    /// Client key (PEM).
    #[arg(long, global = true, requires = "tls_cert")]
    tls_key: Option<PathBuf>,
    /// Server name to expect in the daemon's certificate.
    #[arg(long, global = true, default_value = "localhost")]
    tls_domain: String,
    /// Print JSON instead of text.
    #[arg(long, global = true)]
    json: bool,
}

impl Connection {
    async fn channel(&self) -> Result<Channel> {
        if let Some(addr) = self.tcp {
            let tls = match &self.tls_ca {
                Some(ca) => {
                    let ca =
                        std::fs::read(ca).with_context(|| format!("reading {}", ca.display()))?;
                    let id = match (&self.tls_cert, &self.tls_key) {
                        (Some(c), Some(k)) => Some((
                            std::fs::read(c).with_context(|| format!("reading {}", c.display()))?,
                            std::fs::read(k).with_context(|| format!("reading {}", k.display()))?,
                        )),
                        _ => None,
                    };
                    Some(spinloop::daemon::tls::client_config(
                        &ca,
                        id.as_ref().map(|(c, k)| (c.as_slice(), k.as_slice())),
                        &self.tls_domain,
                    ))
                }
                None => None,
            };
            return spinloop::daemon::server::tcp_channel(addr, tls)
                .await
                .with_context(|| format!("connecting to {addr}"));
        }
        let path = self.socket.clone().unwrap_or_else(|| {
            spinloop::daemon::config::default_socket(
                std::env::var_os("RUNTIME_DIRECTORY").as_deref(),
            )
        });
        spinloop::daemon::server::unix_channel(&path)
            .await
            .with_context(|| format!("connecting to the daemon at {}", path.display()))
    }
}

/// `spinloop sessions …`
#[derive(Subcommand, Debug)]
pub enum SessionsCmd {
    /// List sessions.
    List {
        /// Only this console's.
        #[arg(long)]
        console: Option<String>,
        /// Only open sessions.
        #[arg(long)]
        open: bool,
    },
    /// One session: state, counts, the latest fitted hardware.
    Show {
        /// Session id.
        id: String,
    },
    /// Follow a session's events (from the start) until it ends.
    Watch {
        /// Session id.
        id: String,
        /// Start after this event sequence number.
        #[arg(long, default_value_t = 0)]
        after: i64,
        /// Keep following after the session ended (until interrupted).
        #[arg(long)]
        follow: bool,
    },
    /// Write every FID (NIfTI-MRS), waveform (Pulseq, Bruker, JSON), fit and event.
    Export {
        /// Session id.
        id: String,
        /// Output directory (created).
        #[arg(long)]
        out: PathBuf,
    },
    /// Cancel an open session.
    Cancel {
        /// Session id.
        id: String,
        /// Why (recorded in the session's events).
        #[arg(long, default_value = "")]
        reason: String,
    },
    /// Create a session from a spec file (JSON, the SessionSpec message's fields).
    Create {
        /// Spec file (JSON).
        spec: PathBuf,
    },
}

/// `spinloop consoles …`
#[derive(Subcommand, Debug)]
pub enum ConsolesCmd {
    /// Consoles the daemon knows (connected now or seen before).
    List,
}

fn state_name(s: i32) -> &'static str {
    match pb::SessionState::try_from(s) {
        Ok(pb::SessionState::Open) => "open",
        Ok(pb::SessionState::Converged) => "converged",
        Ok(pb::SessionState::Failed) => "failed",
        Ok(pb::SessionState::Cancelled) => "cancelled",
        _ => "unknown",
    }
}

fn session_json(s: &pb::Session) -> serde_json::Value {
    json!({
        "id": s.id, "console_id": s.console_id, "state": state_name(s.state),
        "label": s.label, "created_ms": s.created_ms, "updated_ms": s.updated_ms,
        "acquisitions": s.acquisitions, "waveforms": s.waveforms, "fits": s.fits,
        "hardware": s.hardware.iter().map(|p| json!({
            "name": p.name, "value": p.value, "std_error": p.std_error, "unit": p.unit,
        })).collect::<Vec<_>>(),
        "spec": serde_json::from_str::<serde_json::Value>(&s.spec_json).unwrap_or_default(),
    })
}

fn print_session(s: &pb::Session) {
    println!(
        "session {}  [{}]  console {}",
        s.id,
        state_name(s.state),
        s.console_id
    );
    if !s.label.is_empty() {
        println!("  {}", s.label);
    }
    println!(
        "  {} acquisitions, {} waveforms, {} fits",
        s.acquisitions, s.waveforms, s.fits
    );
    for p in &s.hardware {
        if p.std_error.is_finite() {
            println!(
                "  {:<14} {:>12.6} ± {:<10.3e} {}",
                p.name, p.value, p.std_error, p.unit
            );
        } else {
            println!(
                "  {:<14} {:>12.6}   (held fixed) {}",
                p.name, p.value, p.unit
            );
        }
    }
}

/// One line for a person.
pub fn describe_event(e: &pb::SessionEvent) -> String {
    let p: serde_json::Value = serde_json::from_str(&e.payload_json).unwrap_or_default();
    let f = |k: &str| p[k].as_f64().unwrap_or(f64::NAN);
    let body = match e.kind.as_str() {
        "waveform_sent" => format!(
            "{} {}: peak {:.0} Hz, energy {:.2} Hz²s{}",
            if p["probe"].as_bool() == Some(true) {
                "probe"
            } else {
                "waveform"
            },
            p["waveform_id"].as_str().unwrap_or(""),
            f("peak_b1_hz"),
            f("energy_hz2s"),
            if p["repeat"].as_bool() == Some(true) {
                " (repeat)"
            } else {
                ""
            }
        ),
        "fit" => {
            let params = p["parameters"].as_array().cloned().unwrap_or_default();
            let s: Vec<String> = params
                .iter()
                .filter(|q| {
                    matches!(
                        q["name"].as_str(),
                        Some("b1_scale" | "b0_offset_hz" | "phase0_rad")
                    )
                })
                .map(|q| {
                    format!(
                        "{} {:.4}±{:.1e}",
                        q["name"].as_str().unwrap_or(""),
                        q["value"].as_f64().unwrap_or(f64::NAN),
                        q["std_error"].as_f64().unwrap_or(f64::NAN)
                    )
                })
                .collect();
            format!("fit of {} FIDs: {}", p["acquisitions_used"], s.join(", "))
        }
        "objective" => format!(
            "objective measured {:.5} vs predicted {:.5}",
            f("measured"),
            f("predicted")
        ),
        "designed" => format!(
            "designed round {}: predicted {:.5} ({} iterations)",
            p["round"],
            f("predicted"),
            p["iterations"]
        ),
        "probe" => format!("probe: {}", p["reason"].as_str().unwrap_or("")),
        "converged" | "failed" | "cancelled" => p["reason"].as_str().unwrap_or("").to_string(),
        "acquisition" => format!(
            "acquisition {} of {}",
            p["acquisition_id"],
            p["waveform_id"].as_str().unwrap_or("")
        ),
        _ => e.payload_json.clone(),
    };
    format!("#{:<4} {:<14} {}", e.seq, e.kind, body)
}

/// Runs `spinloop sessions …`.
pub async fn sessions(conn: Connection, cmd: SessionsCmd) -> Result<()> {
    let mut c = pb::sessions_client::SessionsClient::new(conn.channel().await?);
    match cmd {
        SessionsCmd::List { console, open } => {
            let r = c
                .list_sessions(pb::ListSessionsRequest {
                    console_id: console.unwrap_or_default(),
                    open_only: open,
                })
                .await
                .context("ListSessions")?
                .into_inner();
            if conn.json {
                let v: Vec<_> = r.sessions.iter().map(session_json).collect();
                println!("{}", serde_json::to_string_pretty(&v)?);
            } else if r.sessions.is_empty() {
                println!("no sessions");
            } else {
                println!(
                    "{:<34} {:<10} {:<16} {:>5} {:>5}  label",
                    "id", "state", "console", "acq", "wave"
                );
                for s in &r.sessions {
                    println!(
                        "{:<34} {:<10} {:<16} {:>5} {:>5}  {}",
                        s.id,
                        state_name(s.state),
                        s.console_id,
                        s.acquisitions,
                        s.waveforms,
                        s.label
                    );
                }
            }
        }
        SessionsCmd::Show { id } => {
            let s = c
                .get_session(pb::GetSessionRequest { session_id: id })
                .await
                .context("GetSession")?
                .into_inner();
            if conn.json {
                println!("{}", serde_json::to_string_pretty(&session_json(&s))?);
            } else {
                print_session(&s);
            }
        }
        SessionsCmd::Watch { id, after, follow } => {
            let mut events = c
                .watch_session(pb::WatchSessionRequest {
                    session_id: id,
                    after_seq: after,
                    until_done: !follow,
                })
                .await
                .context("WatchSession")?
                .into_inner();
            while let Some(e) = events.next().await {
                let e = e.context("WatchSession stream")?;
                if conn.json {
                    let payload: serde_json::Value =
                        serde_json::from_str(&e.payload_json).unwrap_or_default();
                    println!(
                        "{}",
                        json!({"seq": e.seq, "session_id": e.session_id, "at_ms": e.at_ms,
                               "kind": e.kind, "payload": payload})
                    );
                } else {
                    println!("{}", describe_event(&e));
                }
            }
        }
        SessionsCmd::Export { id, out } => {
            let n = export(&mut c, &id, &out).await?;
            if conn.json {
                println!("{}", json!({"session_id": id, "dir": out, "files": n}));
            } else {
                println!("wrote {n} files to {}", out.display());
            }
        }
        SessionsCmd::Cancel { id, reason } => {
            let s = c
                .cancel_session(pb::CancelSessionRequest {
                    session_id: id,
                    reason,
                })
                .await
                .context("CancelSession")?
                .into_inner();
            if conn.json {
                println!("{}", serde_json::to_string_pretty(&session_json(&s))?);
            } else {
                print_session(&s);
            }
        }
        SessionsCmd::Create { spec } => {
            let text = std::fs::read_to_string(&spec)
                .with_context(|| format!("reading {}", spec.display()))?;
            let spec =
                spec_from_json(&text).with_context(|| format!("parsing {}", spec.display()))?;
            let s = c
                .create_session(pb::CreateSessionRequest { spec: Some(spec) })
                .await
                .context("CreateSession")?
                .into_inner();
            if conn.json {
                println!("{}", serde_json::to_string_pretty(&session_json(&s))?);
            } else {
                print_session(&s);
            }
        }
    }
    Ok(())
}

/// A spec file: the `spinloop::control::SessionSpec` JSON (the same shape the daemon stores),
/// turned into the request message.
fn spec_from_json(text: &str) -> Result<pb::SessionSpec> {
    let s: spinloop::control::SessionSpec = serde_json::from_str(text)?;
    Ok(spinloop::daemon::sessions::spec_to_pb(&s))
}

/// Writes a session's export under `out`; returns the number of files.
async fn export(
    c: &mut pb::sessions_client::SessionsClient<Channel>,
    id: &str,
    out: &std::path::Path,
) -> Result<usize> {
    let mut chunks = c
        .export_session(pb::ExportSessionRequest {
            session_id: id.to_string(),
        })
        .await
        .context("ExportSession")?
        .into_inner();
    let mut current: Option<(String, Vec<u8>)> = None;
    let mut n = 0;
    while let Some(ch) = chunks.next().await {
        let ch = ch.context("ExportSession stream")?;
        let rel = std::path::Path::new(&ch.path);
        if rel.is_absolute()
            || rel
                .components()
                .any(|c| !matches!(c, std::path::Component::Normal(_)))
        {
            bail!("refusing the export path {:?}", ch.path);
        }
        match &mut current {
            Some((p, d)) if *p == ch.path => d.extend_from_slice(&ch.data),
            _ => current = Some((ch.path.clone(), ch.data.clone())),
        }
        if ch.last
            && let Some((p, d)) = current.take()
        {
            let path = out.join(&p);
            if let Some(parent) = path.parent() {
                std::fs::create_dir_all(parent)
                    .with_context(|| format!("creating {}", parent.display()))?;
            }
            spinloop::formats::write_atomic(&path, &d)
                .with_context(|| format!("writing {}", path.display()))?;
            n += 1;
        }
    }
    Ok(n)
}

/// Runs `spinloop consoles …`.
pub async fn consoles(conn: Connection, cmd: ConsolesCmd) -> Result<()> {
    let mut c = pb::sessions_client::SessionsClient::new(conn.channel().await?);
    match cmd {
        ConsolesCmd::List => {
            let r = c
                .list_consoles(pb::ListConsolesRequest {})
                .await
                .context("ListConsoles")?
                .into_inner();
            if conn.json {
                let v: Vec<_> = r
                    .consoles
                    .iter()
                    .map(|k| {
                        json!({"console_id": k.console_id, "nucleus": k.nucleus, "f0_hz": k.f0_hz,
                               "connected": k.connected, "first_seen_ms": k.first_seen_ms,
                               "last_seen_ms": k.last_seen_ms,
                               "peak_b1_hz": k.limits.as_ref().map(|l| l.peak_b1_hz)})
                    })
                    .collect();
                println!("{}", serde_json::to_string_pretty(&v)?);
            } else if r.consoles.is_empty() {
                println!("no consoles");
            } else {
                for k in &r.consoles {
                    println!(
                        "{:<20} {:<4} {:>10.4} MHz  {}  peak B1 {} Hz",
                        k.console_id,
                        k.nucleus,
                        k.f0_hz * 1e-6,
                        if k.connected {
                            "connected   "
                        } else {
                            "disconnected"
                        },
                        k.limits.as_ref().map_or(f64::NAN, |l| l.peak_b1_hz)
                    );
                }
            }
        }
    }
    Ok(())
}

/// The main job: a daemon in this process, a simulated 3 T console with a hidden B1 error
/// connected over gRPC, one session created over gRPC; prints its events, the fitted
/// hardware against the hidden truth, and exports it.
pub async fn run_demo(
    data_dir: Option<PathBuf>,
    export_dir: Option<PathBuf>,
    plot_dir: Option<PathBuf>,
    seed: u64,
) -> Result<()> {
    use spinloop::control::SimConsole;
    use spinloop::daemon::config::DaemonConfig;
    use spinloop::daemon::sim_link::{LinkStats, demo, run_sim_console};

    let tmp = std::env::temp_dir().join(format!("spinloop-run-{}", std::process::id()));
    let data = data_dir.unwrap_or_else(|| tmp.join("data"));
    std::fs::create_dir_all(&tmp).with_context(|| format!("creating {}", tmp.display()))?;
    let config = DaemonConfig::new(&data, tmp.join("spinloopd.sock"));
    let daemon = spinloop::daemon::server::start_in_process(config)
        .await
        .context("starting the daemon")?;
    println!(
        "spinloopd (in process): {}; data in {}",
        daemon.listening,
        data.display()
    );
    let channel = spinloop::daemon::server::unix_channel(&daemon.socket)
        .await
        .context("connecting")?;

    let console_id = format!("sim-3t-{seed}");
    let profile = demo::profile(&console_id);
    let truth = demo::truth();
    let phantom = demo::phantom(&profile).map_err(|s| anyhow::anyhow!(s.message().to_string()))?;
    let sim = SimConsole::new(profile.clone(), phantom, truth, demo::NOISE_SD, seed)?;
    println!(
        "simulated console {console_id}: 3 T, hidden hardware B1 × {}, B0 {:+} Hz, phase {} rad",
        truth.b1_scale, truth.b0_offset_hz, truth.phase0_rad
    );
    let stats = Arc::new(LinkStats::default());
    let link = tokio::spawn(run_sim_console(channel.clone(), sim, stats.clone()));
    let mut sessions = pb::sessions_client::SessionsClient::new(channel.clone());
    for _ in 0..400 {
        let r = sessions
            .list_consoles(pb::ListConsolesRequest {})
            .await?
            .into_inner();
        if r.consoles
            .iter()
            .any(|c| c.console_id == console_id && c.connected)
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    let created = sessions
        .create_session(pb::CreateSessionRequest {
            spec: Some(demo::session_spec(&console_id)),
        })
        .await
        .context("CreateSession")?
        .into_inner();
    println!("session {}: {}", created.id, created.label);
    let mut events = sessions
        .watch_session(pb::WatchSessionRequest {
            session_id: created.id.clone(),
            after_seq: 0,
            until_done: true,
        })
        .await?
        .into_inner();
    let shared = daemon
        .shared()
        .cloned()
        .context("the in-process daemon has no shared state")?;
    let plot_dir = plot_dir.unwrap_or_else(|| tmp.join("plots"));
    let (spec, console) = {
        let id = created.id.clone();
        shared
            .store
            .call(move |st| -> Result<_> {
                let sess = st.get_session(&id)?;
                let console = st.get_console(&sess.console_id)?;
                let spec: spinloop::control::SessionSpec =
                    serde_json::from_value(sess.spec).context("the stored session spec")?;
                let profile = spinloop::daemon::runner::profile_of(&console)
                    .map_err(|e| anyhow::anyhow!(e))?;
                Ok((spec, profile))
            })
            .await??
    };
    let mut plots = super::plots::IterationPlots::new(&plot_dir, &spec, &console)?;
    while let Some(e) = events.next().await {
        let e = e?;
        println!("{}", describe_event(&e));
        if e.kind == "fit" || e.kind == "converged" {
            let id = created.id.clone();
            let snap = shared
                .store
                .call(move |st| super::plots::Snapshot::read(st, &id))
                .await??;
            for path in plots.update(&snap)? {
                println!("  plot {}", path.display());
            }
        }
    }
    if let Some(path) = plots.finish()? {
        println!("  plot {}", path.display());
    }
    let s = sessions
        .get_session(pb::GetSessionRequest {
            session_id: created.id.clone(),
        })
        .await?
        .into_inner();
    println!();
    print_session(&s);
    let truth_of = |name: &str| match name {
        "b1_scale" => Some(truth.b1_scale),
        "b0_offset_hz" => Some(truth.b0_offset_hz),
        "phase0_rad" => Some(truth.phase0_rad),
        "linewidth_hz" => Some(truth.linewidth_hz),
        "amplitude" => Some(truth.amplitude),
        "phase1_s" => Some(truth.phase1_s),
        _ => None,
    };
    println!("  fitted vs hidden truth:");
    for p in &s.hardware {
        if let Some(t) = truth_of(&p.name)
            && p.std_error.is_finite()
        {
            let z = (p.value - t) / p.std_error;
            println!(
                "    {:<14} fitted {:>10.5}  truth {:>10.5}  ({:+.2} σ)",
                p.name, p.value, t, z
            );
        }
    }
    let export_dir = export_dir.unwrap_or_else(|| tmp.join("export"));
    let n = export(&mut sessions, &created.id, &export_dir).await?;
    println!("exported {n} files to {}", export_dir.display());
    daemon.shutdown();
    daemon.join().await.context("daemon shutdown")?;
    link.abort();
    if s.state != pb::SessionState::Converged as i32 {
        bail!("the session ended {}", state_name(s.state));
    }
    Ok(())
}
