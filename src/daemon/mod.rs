//! The daemon's shell: tonic services over the sans-IO core (`control`), the store actor,
//! configuration, systemd notification and shutdown. Everything here is I/O glue; decisions
//! live in `control`, `safety` and `store`.
//!
//! Shared state ([`Shared`]): the store actor ([`StoreHandle`], one thread owning the SQLite
//! connection, group-committing concurrent ingestions), the registry of connected consoles
//! ([`ConsoleRegistry`], each with the sender of its Connect stream), the mailboxes of running
//! sessions ([`SessionHub`]) and the live event feed (a broadcast of stored events).

pub mod config;
pub mod console;
pub mod design;
pub mod export;
pub mod notify;
pub mod pb;
pub mod runner;
pub mod serial;
pub mod server;
pub mod sessions;
pub mod sim_link;
pub mod tls;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use tokio::sync::{broadcast, mpsc, oneshot};

use crate::control::ConsoleProfile;
use crate::store::{Event, Ingested, NewAcquisition, Store, StoreError};

/// Errors of the daemon's shell.
#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    /// The store actor has stopped (shutdown or a fatal error).
    #[error("the store is shut down")]
    StoreClosed,
    /// A store operation failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The console is not connected.
    #[error("console {0} is not connected")]
    NotConnected(String),
}

type Job = Box<dyn FnOnce(&mut Store) + Send>;

enum StoreMsg {
    Call(Job),
    Ingest(
        Box<NewAcquisition>,
        oneshot::Sender<Result<Ingested, StoreError>>,
    ),
}

/// Largest number of acquisitions committed in one transaction.
pub const MAX_GROUP_COMMIT: usize = 64;

/// Counters of the store actor's group commits.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct StoreStats {
    /// Transactions that committed a group of acquisitions.
    pub group_commits: u64,
    /// Acquisitions handled in those groups (stored, duplicate or refused).
    pub acquisitions: u64,
    /// Wall time the actor spent in those group transactions, commit and fsync included (s).
    pub busy_seconds: f64,
}

/// The store actor: one thread owns the [`Store`]; callers send it closures. Concurrent
/// ingestions queued together are committed in one transaction (group commit: one fsync for
/// many acks); each caller still gets its own outcome, only after the commit.
#[derive(Clone)]
pub struct StoreHandle {
    tx: std::sync::mpsc::Sender<StoreMsg>,
    stats: Arc<[std::sync::atomic::AtomicU64; 3]>,
}

impl StoreHandle {
    /// Moves `store` to a new thread; it runs until every handle is dropped, then the thread
    /// ends (join the handle to wait for the last commit).
    pub fn spawn(store: Store) -> (StoreHandle, std::thread::JoinHandle<()>) {
        let (tx, rx) = std::sync::mpsc::channel::<StoreMsg>();
        let stats: Arc<[std::sync::atomic::AtomicU64; 3]> = Arc::default();
        let counters = stats.clone();
        let join = std::thread::Builder::new()
            .name("spinloop-store".into())
            .spawn(move || store_loop(store, rx, &counters))
            .expect("spawning the store thread");
        (StoreHandle { tx, stats }, join)
    }

    /// Group-commit counters since the actor started (mean group size = acquisitions /
    /// group_commits).
    pub fn stats(&self) -> StoreStats {
        use std::sync::atomic::Ordering::Relaxed;
        StoreStats {
            group_commits: self.stats[0].load(Relaxed),
            acquisitions: self.stats[1].load(Relaxed),
            busy_seconds: self.stats[2].load(Relaxed) as f64 * 1e-9,
        }
    }

    /// Runs `f` on the store thread and returns its result.
    pub async fn call<R: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Store) -> R + Send + 'static,
    ) -> Result<R, DaemonError> {
        let (otx, orx) = oneshot::channel();
        let job: Job = Box::new(move |s| {
            let _ = otx.send(f(s));
        });
        self.tx
            .send(StoreMsg::Call(job))
            .map_err(|_| DaemonError::StoreClosed)?;
        orx.await.map_err(|_| DaemonError::StoreClosed)
    }

    /// Stores one acquisition durably (group-committed with any others queued at the same
    /// time); returns only after the commit.
    pub async fn ingest(&self, a: NewAcquisition) -> Result<Ingested, DaemonError> {
        let (otx, orx) = oneshot::channel();
        self.tx
            .send(StoreMsg::Ingest(Box::new(a), otx))
            .map_err(|_| DaemonError::StoreClosed)?;
        Ok(orx.await.map_err(|_| DaemonError::StoreClosed)??)
    }
}

fn store_loop(
    mut store: Store,
    rx: std::sync::mpsc::Receiver<StoreMsg>,
    stats: &[std::sync::atomic::AtomicU64; 3],
) {
    let mut pending: Option<StoreMsg> = None;
    loop {
        let msg = match pending.take() {
            Some(m) => m,
            None => match rx.recv() {
                Ok(m) => m,
                Err(_) => return,
            },
        };
        match msg {
            StoreMsg::Call(job) => job(&mut store),
            StoreMsg::Ingest(first, reply) => {
                let mut batch = vec![*first];
                let mut replies = vec![reply];
                while batch.len() < MAX_GROUP_COMMIT {
                    match rx.try_recv() {
                        Ok(StoreMsg::Ingest(a, r)) => {
                            batch.push(*a);
                            replies.push(r);
                        }
                        Ok(other) => {
                            pending = Some(other);
                            break;
                        }
                        Err(_) => break,
                    }
                }
                stats[0].fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                stats[1].fetch_add(batch.len() as u64, std::sync::atomic::Ordering::Relaxed);
                let started = std::time::Instant::now();
                let outcome = store.insert_acquisitions(&batch);
                let busy = u64::try_from(started.elapsed().as_nanos()).unwrap_or(u64::MAX);
                stats[2].fetch_add(busy, std::sync::atomic::Ordering::Relaxed);
                match outcome {
                    Ok(outcomes) => {
                        for (r, o) in replies.into_iter().zip(outcomes) {
                            let _ = r.send(o);
                        }
                    }
                    Err(e) => {
                        // The group transaction failed as a whole (SQLite: I/O, busy, ...):
                        // nothing of it was written. Fall back to one transaction per item so
                        // each caller gets its own, true outcome.
                        tracing::warn!(
                            "group commit of {} failed ({e}); committing one by one",
                            batch.len()
                        );
                        for (a, r) in batch.iter().zip(replies) {
                            let _ = r.send(store.insert_acquisition(a));
                        }
                    }
                }
            }
        }
    }
}

/// A connected console: its profile and the sender of its Connect stream.
#[derive(Clone)]
pub struct ConsoleLink {
    /// What it declared.
    pub profile: ConsoleProfile,
    /// Messages to the console.
    pub tx: mpsc::Sender<Result<pb::DaemonMessage, tonic::Status>>,
    /// Distinguishes successive connections of one console.
    pub generation: u64,
}

/// The consoles connected now. A console that connects again replaces its older link.
#[derive(Clone, Default)]
pub struct ConsoleRegistry {
    inner: Arc<Mutex<(u64, HashMap<String, ConsoleLink>)>>,
    connected: Arc<Mutex<Option<broadcast::Sender<String>>>>,
}

impl ConsoleRegistry {
    /// Registers a connection; returns its generation.
    pub fn register(
        &self,
        profile: ConsoleProfile,
        tx: mpsc::Sender<Result<pb::DaemonMessage, tonic::Status>>,
    ) -> u64 {
        let id = profile.id.clone();
        let generation = {
            let mut g = self.inner.lock().unwrap_or_else(|e| e.into_inner());
            g.0 += 1;
            let generation = g.0;
            g.1.insert(
                id.clone(),
                ConsoleLink {
                    profile,
                    tx,
                    generation,
                },
            );
            generation
        };
        let _ = self.connections().send(id);
        generation
    }

    /// Removes a connection if it is still the console's current one.
    pub fn unregister(&self, id: &str, generation: u64) {
        let mut g = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        if g.1.get(id).is_some_and(|l| l.generation == generation) {
            g.1.remove(id);
        }
    }

    /// The console's current link.
    pub fn get(&self, id: &str) -> Option<ConsoleLink> {
        let g = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        g.1.get(id).cloned()
    }

    /// How many consoles are connected now.
    pub fn count(&self) -> usize {
        let g = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        g.1.len()
    }

    /// Whether the console is connected now.
    pub fn is_connected(&self, id: &str) -> bool {
        self.get(id).is_some()
    }

    /// A feed of console ids, one each time a console (re)connects.
    pub fn subscribe(&self) -> broadcast::Receiver<String> {
        self.connections().subscribe()
    }

    fn connections(&self) -> broadcast::Sender<String> {
        let mut c = self.connected.lock().unwrap_or_else(|e| e.into_inner());
        c.get_or_insert_with(|| broadcast::channel(64).0).clone()
    }

    /// Sends a message on the console's stream.
    pub async fn send(&self, id: &str, msg: pb::DaemonMessage) -> Result<(), DaemonError> {
        let link = self
            .get(id)
            .ok_or_else(|| DaemonError::NotConnected(id.into()))?;
        link.tx
            .send(Ok(msg))
            .await
            .map_err(|_| DaemonError::NotConnected(id.into()))
    }
}

/// What a running session is told by the rest of the daemon.
#[derive(Debug, Clone)]
pub enum SessionNotice {
    /// An acquisition of this session was committed (store id).
    Acquisition(i64),
    /// An operator cancelled it.
    Cancel(String),
    /// Its console (re)connected.
    ConsoleConnected,
    /// The daemon is shutting down.
    Shutdown,
}

/// The mailboxes of the running sessions.
#[derive(Clone, Default)]
pub struct SessionHub {
    inner: Arc<Mutex<HashMap<String, mpsc::UnboundedSender<SessionNotice>>>>,
    cancels: Arc<Mutex<HashMap<String, crate::control::CancelToken>>>,
}

impl SessionHub {
    /// Registers a running session's mailbox.
    pub fn insert(&self, id: &str, tx: mpsc::UnboundedSender<SessionNotice>) {
        let mut g = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        g.insert(id.to_string(), tx);
    }

    /// Registers a running session's cancel token: a `Cancel` notice also sets it, so a
    /// long computation (a design) stops at its next iteration instead of finishing first.
    pub fn insert_cancel_token(&self, id: &str, token: crate::control::CancelToken) {
        let mut g = self.cancels.lock().unwrap_or_else(|e| e.into_inner());
        g.insert(id.to_string(), token);
    }

    /// Removes a session's mailbox (it ended).
    pub fn remove(&self, id: &str) {
        let mut g = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        g.remove(id);
        let mut c = self.cancels.lock().unwrap_or_else(|e| e.into_inner());
        c.remove(id);
    }

    /// Delivers a notice; false if the session is not running.
    pub fn notify(&self, id: &str, notice: SessionNotice) -> bool {
        if let SessionNotice::Cancel(reason) = &notice {
            let c = self.cancels.lock().unwrap_or_else(|e| e.into_inner());
            if let Some(t) = c.get(id) {
                t.cancel(reason);
            }
        }
        let g = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        g.get(id).is_some_and(|tx| tx.send(notice).is_ok())
    }

    /// Delivers a notice to every running session.
    pub fn notify_all(&self, notice: SessionNotice) {
        let g = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        for tx in g.values() {
            let _ = tx.send(notice.clone());
        }
    }

    /// Ids of the running sessions.
    pub fn running(&self) -> Vec<String> {
        let g = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        let mut v: Vec<String> = g.keys().cloned().collect();
        v.sort();
        v
    }
}

/// The safety interlock of every console (one per console, shared by its sessions, so the
/// rolling energy window sees every play). Nothing reaches a console without passing it.
/// Sessions on one console take turns (a console plays one thing at a time); sessions on
/// different consoles do not wait for each other.
#[derive(Clone, Default)]
pub struct Interlocks {
    inner: Arc<Mutex<HashMap<String, Arc<Mutex<crate::safety::Interlock>>>>>,
}

impl Interlocks {
    /// Runs `f` with the console's interlock, created from (or updated to) the profile's
    /// limits.
    pub fn with<R>(
        &self,
        profile: &ConsoleProfile,
        f: impl FnOnce(&mut crate::safety::Interlock) -> R,
    ) -> Result<R, crate::safety::SafetyError> {
        let one = {
            let mut g = self.inner.lock().unwrap_or_else(|e| e.into_inner());
            match g.get(&profile.id) {
                Some(il) => il.clone(),
                None => {
                    let il = Arc::new(Mutex::new(crate::safety::Interlock::new(profile.limits)?));
                    g.insert(profile.id.clone(), il.clone());
                    il
                }
            }
        };
        let mut il = one.lock().unwrap_or_else(|e| e.into_inner());
        if *il.limits() != profile.limits {
            il.set_limits(profile.limits)?;
        }
        Ok(f(&mut il))
    }
}

/// Everything the services share.
#[derive(Clone)]
pub struct Shared {
    /// The store actor.
    pub store: StoreHandle,
    /// Connected consoles.
    pub consoles: ConsoleRegistry,
    /// Running sessions.
    pub sessions: SessionHub,
    /// Every stored event, live (watchers replay from the store, then follow this).
    pub events: broadcast::Sender<Event>,
    /// Per-console safety interlocks.
    pub interlocks: Interlocks,
}

impl Shared {
    /// Shared state over a store actor.
    pub fn new(store: StoreHandle) -> Shared {
        Shared {
            store,
            consoles: ConsoleRegistry::default(),
            sessions: SessionHub::default(),
            events: broadcast::channel(1024).0,
            interlocks: Interlocks::default(),
        }
    }

    /// Appends an event to the store and publishes it to watchers.
    pub async fn emit(
        &self,
        session_id: Option<&str>,
        kind: &str,
        payload: serde_json::Value,
    ) -> Result<Event, DaemonError> {
        let sid = session_id.map(str::to_string);
        let kind = kind.to_string();
        let ev = self
            .store
            .call(move |s| {
                let seq = s.append_event(sid.as_deref(), &kind, &payload)?;
                s.events_since(sid.as_deref(), seq - 1, 1)
            })
            .await??;
        let ev = ev.into_iter().next().ok_or(DaemonError::StoreClosed)?;
        let _ = self.events.send(ev.clone());
        Ok(ev)
    }
}
