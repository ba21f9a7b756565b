//! systemd integration: the unit file passes `systemd-analyze verify` and
//! `systemd-analyze security --offline=true --threshold=20` (skipped, with a message, when
//! systemd-analyze is not installed), the example configuration parses, and the real
//! `spinloopd` speaks sd_notify: READY=1 with a STATUS= line once listening, WATCHDOG=1 at
//! WATCHDOG_USEC/2, STOPPING=1 on SIGTERM.

use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use spinloop::daemon::config::ConfigFile;

struct Tmp(PathBuf);

impl Tmp {
    fn new(tag: &str) -> Tmp {
        let p = std::env::temp_dir().join(format!("spinloop-sd-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).unwrap();
        Tmp(p)
    }
}

impl Drop for Tmp {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn repo(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(path)
}

fn have_systemd_analyze() -> bool {
    Command::new("systemd-analyze")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

#[test]
fn unit_verifies_and_is_hardened() {
    if !have_systemd_analyze() {
        eprintln!("SKIPPED: systemd-analyze is not installed; the unit file was not checked");
        return;
    }
    let tmp = Tmp::new("unit");
    // verify checks that ExecStart= is executable: point it at the built binary.
    let unit = std::fs::read_to_string(repo("systemd/spinloopd.service")).unwrap();
    assert!(unit.contains("ExecStart=/usr/bin/spinloopd"));
    let unit = unit.replace(
        "ExecStart=/usr/bin/spinloopd",
        &format!("ExecStart={}", env!("CARGO_BIN_EXE_spinloopd")),
    );
    let path = tmp.0.join("spinloopd.service");
    std::fs::write(&path, unit).unwrap();
    let out = Command::new("systemd-analyze")
        .arg("verify")
        .arg(&path)
        .output()
        .unwrap();
    assert!(
        out.status.success() && out.stderr.is_empty(),
        "systemd-analyze verify: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let out = Command::new("systemd-analyze")
        .args(["security", "--offline=true", "--threshold=20"])
        .arg(&path)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    let summary = text
        .lines()
        .find(|l| l.contains("Overall exposure"))
        .unwrap_or("");
    println!("{summary}");
    assert!(out.status.success(), "systemd-analyze security: {text}");
}

#[test]
fn example_config_parses() {
    let text = std::fs::read_to_string(repo("systemd/spinloopd.toml")).unwrap();
    let file = ConfigFile::from_toml(&text, "systemd/spinloopd.toml").unwrap();
    let c = file
        .resolve_with(
            Some("/var/lib/spinloop".as_ref()),
            Some("/run/spinloopd".as_ref()),
        )
        .unwrap();
    assert_eq!(c.socket_mode, 0o660);
    assert_eq!(c.unix_socket, Path::new("/run/spinloopd/spinloopd.sock"));
    assert_eq!(c.data_dir, Path::new("/var/lib/spinloop"));
}

#[test]
fn sd_notify_ready_watchdog_stopping() {
    let tmp = Tmp::new("notify");
    let notify_path = tmp.0.join("notify.sock");
    let sock = UnixDatagram::bind(&notify_path).unwrap();
    sock.set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let socket = tmp.0.join("d.sock");
    let mut child = Command::new(env!("CARGO_BIN_EXE_spinloopd"))
        .arg("--data-dir")
        .arg(tmp.0.join("data"))
        .arg("--socket")
        .arg(&socket)
        .env("NOTIFY_SOCKET", &notify_path)
        .env("WATCHDOG_USEC", "200000")
        .env_remove("WATCHDOG_PID")
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let mut got: Vec<String> = Vec::new();
    let mut buf = [0u8; 4096];
    let mut recv_until = |got: &mut Vec<String>, want: &str, limit: Duration| {
        let t0 = Instant::now();
        while t0.elapsed() < limit {
            if let Ok(n) = sock.recv(&mut buf) {
                let m = String::from_utf8_lossy(&buf[..n]).into_owned();
                let hit = m.lines().any(|l| l == want);
                got.push(m);
                if hit {
                    return true;
                }
            }
        }
        false
    };
    let ready = recv_until(&mut got, "READY=1", Duration::from_secs(10));
    let watchdog = ready && recv_until(&mut got, "WATCHDOG=1", Duration::from_secs(5));
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let stopping = recv_until(&mut got, "STOPPING=1", Duration::from_secs(10));
    // Keep reading (a full datagram queue would block the daemon's sends) until it exits.
    let t0 = Instant::now();
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if t0.elapsed() > Duration::from_secs(15) {
            let _ = child.kill();
            panic!("spinloopd did not exit after SIGTERM: {got:?}");
        }
        if let Ok(n) = sock.recv(&mut buf) {
            got.push(String::from_utf8_lossy(&buf[..n]).into_owned());
        }
    };
    assert!(ready, "no READY=1: {got:?}");
    assert!(
        got.iter()
            .any(|m| m.contains("STATUS=listening on unix:") && m.contains("consoles")),
        "no STATUS line: {got:?}"
    );
    assert!(watchdog, "no WATCHDOG=1: {got:?}");
    assert!(stopping, "no STOPPING=1: {got:?}");
    assert!(status.success(), "{status}");
    assert!(!socket.exists());
}
