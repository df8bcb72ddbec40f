//! The systemd integration: the unit files, readiness notification.

use std::os::unix::net::UnixDatagram;
use std::process::Command;
use std::time::Duration;

use crate::harness::*;

fn unit_path(name: &str) -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("systemd")
        .join(name)
}

fn systemd_analyze() -> bool {
    let available = Command::new("systemd-analyze")
        .arg("--version")
        .output()
        .is_ok();
    if !available {
        eprintln!("systemd-analyze is not installed here: skipping the unit file checks");
    }
    available
}

#[test]
fn the_unit_files_verify_and_the_service_is_hardened() {
    if !systemd_analyze() {
        return;
    }
    // verify checks that ExecStart exists: point it at the binary under test.
    let dir = tempfile::tempdir().unwrap();
    let unit = std::fs::read_to_string(unit_path("pimsync.service"))
        .unwrap()
        .replace("/usr/local/bin/pimsync", binary());
    std::fs::write(dir.path().join("pimsync.service"), unit).unwrap();
    std::fs::copy(
        unit_path("pimsync.socket"),
        dir.path().join("pimsync.socket"),
    )
    .unwrap();
    let verify = Command::new("systemd-analyze")
        .arg("verify")
        .arg(dir.path().join("pimsync.service"))
        .arg(dir.path().join("pimsync.socket"))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&verify.stderr);
    assert!(verify.status.success(), "systemd-analyze verify:\n{stderr}");

    let security = Command::new("systemd-analyze")
        .args(["security", "--offline=true"])
        .arg(dir.path().join("pimsync.service"))
        .output()
        .unwrap();
    let report = String::from_utf8_lossy(&security.stdout);
    let exposure: f64 = report
        .lines()
        .find_map(|line| line.split("pimsync.service: ").nth(1))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no exposure level in:\n{report}"));
    assert!(exposure <= 2.0, "exposure {exposure} > 2.0:\n{report}");
}

#[test]
fn ready_arrives_over_notify_socket_after_the_listener_is_bound() {
    let dir = tempfile::tempdir().unwrap();
    let socket_path = dir.path().join("notify.sock");
    let socket = UnixDatagram::bind(&socket_path).unwrap();
    socket
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    let daemon = Daemon::start_with_env(
        dir.path(),
        &config_text(dir.path(), "", ""),
        &[("NOTIFY_SOCKET", socket_path.to_str().unwrap())],
    );
    let mut buffer = [0u8; 512];
    let n = socket.recv(&mut buffer).unwrap();
    let message = String::from_utf8_lossy(&buffer[..n]).into_owned();
    assert!(message.starts_with("READY=1"), "{message}");
    assert!(message.contains(&daemon.addr.to_string()), "{message}");
    let status = daemon.terminate();
    assert!(status.success());
    let n = socket.recv(&mut buffer).unwrap();
    assert_eq!(&buffer[..n], b"STOPPING=1");
}
