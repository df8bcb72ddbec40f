//! The systemd integration: readiness and watchdog notifications (`Type=notify`), and
//! socket activation (`pimsync.socket`), which lets a restart queue connections in the
//! kernel instead of refusing them. Outside systemd (no `NOTIFY_SOCKET`, no `LISTEN_FDS`)
//! every function here does nothing.

use std::os::fd::FromRawFd;
use std::os::unix::net::UnixDatagram;
use std::time::Duration;

/// Sends a state line (`READY=1`, `STOPPING=1`, `WATCHDOG=1`, `STATUS=…`) to the service
/// manager. Failures are logged, never fatal: the daemon works without systemd.
pub fn notify(state: &str) {
    let Some(path) = std::env::var_os("NOTIFY_SOCKET") else {
        return;
    };
    let result = UnixDatagram::unbound().and_then(|socket| {
        let bytes = path.as_encoded_bytes();
        match bytes.strip_prefix(b"@") {
            // An abstract socket address (Linux).
            Some(name) => {
                use std::os::linux::net::SocketAddrExt;
                let addr = std::os::unix::net::SocketAddr::from_abstract_name(name)?;
                socket.send_to_addr(state.as_bytes(), &addr)
            }
            None => socket.send_to(state.as_bytes(), &path),
        }
    });
    if let Err(error) = result {
        tracing::warn!(%error, "cannot notify systemd");
    }
}

/// The watchdog interval systemd expects pings at (`WatchdogSec=`), halved for margin.
pub fn watchdog_interval() -> Option<Duration> {
    let usec: u64 = std::env::var("WATCHDOG_USEC").ok()?.parse().ok()?;
    if let Ok(pid) = std::env::var("WATCHDOG_PID") {
        if pid.parse::<u32>().ok() != Some(std::process::id()) {
            return None;
        }
    }
    Some(Duration::from_micros(usec / 2)).filter(|d| !d.is_zero())
}

/// The listening socket systemd passed (`LISTEN_FDS`, first fd 3), if it passed one to
/// this process.
pub fn activated_listener() -> Option<std::net::TcpListener> {
    let pid: u32 = std::env::var("LISTEN_PID").ok()?.parse().ok()?;
    let fds: u32 = std::env::var("LISTEN_FDS").ok()?.parse().ok()?;
    if pid != std::process::id() || fds < 1 {
        return None;
    }
    // SAFETY: systemd's socket activation protocol hands this process fd 3 as an open,
    // listening socket (checked above: LISTEN_PID is us, LISTEN_FDS >= 1); nothing else
    // in the process owns fd 3, and the environment is cleared below so it is taken once.
    let listener = unsafe { std::net::TcpListener::from_raw_fd(3) };
    // SAFETY: called once at start-up, before the runtime starts other threads.
    unsafe {
        std::env::remove_var("LISTEN_PID");
        std::env::remove_var("LISTEN_FDS");
        std::env::remove_var("LISTEN_FDNAMES");
    }
    Some(listener)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn without_systemd_nothing_happens() {
        // The test environment has neither variable.
        assert!(std::env::var_os("LISTEN_FDS").is_none() || activated_listener().is_none());
        notify("READY=1");
    }
}
