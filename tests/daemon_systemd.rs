//! systemd integration: the service and socket units pass `systemd-analyze verify` and the
//! service `systemd-analyze security --offline=true --threshold=20` (exposure ≤ 2.0); the
//! sysusers.d and tmpfiles.d files create the user (in dialout) and directories with the
//! owners and modes the unit expects, applied under a scratch `--root`; the example
//! configuration parses; the real `spinloopd` speaks sd_notify (READY=1 with a STATUS= line
//! once listening, WATCHDOG=1 at WATCHDOG_USEC/2, STOPPING=1 on SIGTERM) and serves on a
//! socket passed by socket activation (`systemd-socket-activate`), which it leaves in place.
//! Each check that needs a systemd tool is skipped, with a message, when the tool is not
//! installed (or, for `--root` installs, when not running as root).

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

#[test]
fn unit_verifies_and_is_hardened() {
    if !have("systemd-analyze") {
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
    for class in ["char-ttyUSB", "char-ttyACM", "char-ttyS"] {
        assert!(unit.contains(&format!("DeviceAllow={class} rw")), "{class}");
    }
    assert!(unit.contains("SupplementaryGroups=dialout"));
    assert!(unit.contains("DevicePolicy=closed"));
    let path = tmp.0.join("spinloopd.service");
    std::fs::write(&path, unit).unwrap();
    let socket_unit = tmp.0.join("spinloopd.socket");
    std::fs::copy(repo("systemd/spinloopd.socket"), &socket_unit).unwrap();
    let out = Command::new("systemd-analyze")
        .arg("verify")
        .arg(&path)
        .arg(&socket_unit)
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

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
}

fn have(tool: &str) -> bool {
    Command::new(tool)
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

#[test]
fn sysusers_and_tmpfiles_create_the_user_and_directories() {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    if !(have("systemd-sysusers") && have("systemd-tmpfiles")) {
        eprintln!("SKIPPED: systemd-sysusers/systemd-tmpfiles are not installed");
        return;
    }
    if !is_root() {
        eprintln!("SKIPPED: --root installs chown, which needs root");
        return;
    }
    let tmp = Tmp::new("root");
    let root = &tmp.0;
    std::fs::create_dir_all(root.join("etc")).unwrap();
    std::fs::write(root.join("etc/passwd"), "root:x:0:0:root:/root:/bin/sh\n").unwrap();
    std::fs::write(root.join("etc/group"), "root:x:0:\ndialout:x:20:\n").unwrap();
    let out = Command::new("systemd-sysusers")
        .arg(format!("--root={}", root.display()))
        .arg(repo("systemd/sysusers.d/spinloopd.conf"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let passwd = std::fs::read_to_string(root.join("etc/passwd")).unwrap();
    let user = passwd
        .lines()
        .find(|l| l.starts_with("spinloopd:"))
        .unwrap_or_else(|| panic!("no spinloopd user: {passwd}"));
    let fields: Vec<&str> = user.split(':').collect();
    let uid: u32 = fields[2].parse().unwrap();
    assert_eq!(fields[5], "/var/lib/spinloop");
    let group = std::fs::read_to_string(root.join("etc/group")).unwrap();
    let dialout = group.lines().find(|l| l.starts_with("dialout:")).unwrap();
    assert!(
        dialout
            .rsplit(':')
            .next()
            .unwrap()
            .split(',')
            .any(|m| m == "spinloopd"),
        "spinloopd is not in dialout: {group}"
    );
    let out = Command::new("systemd-tmpfiles")
        .arg("--create")
        .arg(format!("--root={}", root.display()))
        .arg(repo("systemd/tmpfiles.d/spinloopd.conf"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for (dir, mode) in [("run/spinloopd", 0o750), ("var/lib/spinloop", 0o700)] {
        let m = std::fs::metadata(root.join(dir)).unwrap();
        assert!(m.is_dir(), "{dir}");
        assert_eq!(m.permissions().mode() & 0o7777, mode, "{dir}");
        assert_eq!(m.uid(), uid, "{dir}");
    }
    // The unit's directories are the ones tmpfiles.d creates.
    let unit = std::fs::read_to_string(repo("systemd/spinloopd.service")).unwrap();
    assert!(unit.contains("StateDirectory=spinloop\n"));
    assert!(unit.contains("RuntimeDirectory=spinloopd\n"));
    let socket = std::fs::read_to_string(repo("systemd/spinloopd.socket")).unwrap();
    assert!(socket.contains("ListenStream=/run/spinloopd/spinloopd.sock"));
    assert!(socket.contains("FileDescriptorName=spinloopd"));
}

#[test]
fn serves_on_a_socket_passed_by_socket_activation() {
    if !have("systemd-socket-activate") {
        eprintln!("SKIPPED: systemd-socket-activate is not installed");
        return;
    }
    let tmp = Tmp::new("activate");
    let activated = tmp.0.join("activated.sock");
    let configured = tmp.0.join("configured.sock");
    // systemd-socket-activate binds the socket, waits for the first connection, then execs
    // the daemon with LISTEN_FDS=1, LISTEN_PID, LISTEN_FDNAMES=spinloopd.
    let mut child = Command::new("systemd-socket-activate")
        .arg("-l")
        .arg(&activated)
        .arg("--fdname=spinloopd")
        .arg(env!("CARGO_BIN_EXE_spinloopd"))
        .arg("--data-dir")
        .arg(tmp.0.join("data"))
        .arg("--socket")
        .arg(&configured)
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let t0 = Instant::now();
    while !activated.exists() {
        assert!(
            t0.elapsed() < Duration::from_secs(10),
            "the socket never appeared"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    // The first client connects before the daemon exists: it waits in the backlog.
    let out = Command::new(env!("CARGO_BIN_EXE_spinloop"))
        .args(["consoles", "list", "--json", "--socket"])
        .arg(&activated)
        .output()
        .unwrap();
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let t0 = Instant::now();
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if t0.elapsed() > Duration::from_secs(15) {
            let _ = child.kill();
            panic!("spinloopd did not exit after SIGTERM");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(
        out.status.success(),
        "client over the activated socket: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "[]");
    assert!(status.success(), "{status}");
    assert!(tmp.0.join("data/spinloop.sqlite3").exists());
    // It served on the passed socket, never bound its configured one, and left systemd's
    // socket in place.
    assert!(!configured.exists());
    assert!(activated.exists());
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
    assert!(c.serial_consoles.is_empty());
    // The commented serial-console examples are valid configuration.
    let start = text.find("# [[serial_console]]").expect("serial example");
    let uncommented: String = text[start..]
        .lines()
        .filter_map(|l| l.strip_prefix("# "))
        .filter(|l| l.starts_with('[') || l.contains(" = "))
        .map(|l| format!("{l}\n"))
        .collect();
    let file = ConfigFile::from_toml(&uncommented, "serial example").unwrap();
    let c = file
        .resolve_with(Some("/var/lib/spinloop".as_ref()), None)
        .unwrap();
    assert_eq!(c.serial_consoles.len(), 2);
    assert_eq!(c.serial_consoles[1].f0_hz, Some(500.13e6));
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
