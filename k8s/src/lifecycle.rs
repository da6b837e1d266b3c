//! `augur wait` and `augur drain`: the lifecycle hooks of the injected proxy container.
//!
//! - `wait` (postStart, when the proxy is a regular first container) polls the status port's
//!   `/healthz/ready` every 500 ms until it answers 200 or the timeout passes, like
//!   `pilot-agent wait`; the kubelet starts the app containers only after it returns.
//! - `drain` (preStop) turns the proxy's health check to failing through the admin API
//!   (`POST /healthcheck/fail`), waits for endpoints to be withdrawn, then until no request is
//!   in flight (`augur_downstream_requests_active` in `/stats`, so a slow inference finishes)
//!   or the deadline passes, before the kubelet sends SIGTERM.
//!
//! Plain HTTP/1.1 over `std::net` to loopback: the hooks run once and need no runtime.

use std::io::{Read as _, Write as _};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use anyhow::{bail, Context as _};
use clap::Args;

/// Flags of `augur wait`.
#[derive(Debug, Clone, Args)]
pub struct WaitArgs {
    /// The proxy's status endpoint.
    #[arg(long, default_value = "127.0.0.1:15021")]
    pub status: SocketAddr,
    /// Give up after this many seconds.
    #[arg(long, default_value_t = 60)]
    pub timeout_seconds: u64,
    /// Poll period in milliseconds.
    #[arg(long, default_value_t = 500)]
    pub period_ms: u64,
}

/// Flags of `augur drain`.
#[derive(Debug, Clone, Args)]
pub struct DrainArgs {
    /// The proxy's admin endpoint.
    #[arg(long, default_value = "127.0.0.1:15000")]
    pub admin: SocketAddr,
    /// Seconds to wait after failing the health check (let endpoints update).
    #[arg(long, default_value_t = 5)]
    pub wait_seconds: u64,
    /// Longest wait, in seconds, for in-flight requests to finish (below Kubernetes' 30 s
    /// grace period).
    #[arg(long, default_value_t = 25)]
    pub max_seconds: u64,
}

/// Runs `augur wait`: returns once `/healthz/ready` answers 200.
pub fn run_wait(args: WaitArgs) -> anyhow::Result<()> {
    let attempts = (args.timeout_seconds * 1000)
        .div_ceil(args.period_ms.max(1))
        .max(1);
    let mut last = String::new();
    for _ in 0..attempts {
        match http_status(args.status, "GET", "/healthz/ready") {
            Ok(200) => return Ok(()),
            Ok(code) => last = format!("status {code}"),
            Err(err) => last = format!("{err:#}"),
        }
        std::thread::sleep(Duration::from_millis(args.period_ms));
    }
    bail!(
        "proxy not ready after {} s at {} ({last})",
        args.timeout_seconds,
        args.status
    )
}

/// Runs `augur drain`: fails the health check, then waits.
pub fn run_drain(args: DrainArgs) -> anyhow::Result<()> {
    let code = http_status(args.admin, "POST", "/healthcheck/fail")?;
    if code != 200 {
        bail!("POST /healthcheck/fail answered {code}");
    }
    std::thread::sleep(Duration::from_secs(args.wait_seconds));
    let deadline = std::time::Instant::now()
        + Duration::from_secs(args.max_seconds.saturating_sub(args.wait_seconds));
    while std::time::Instant::now() < deadline {
        match active_requests(args.admin) {
            Ok(0) => return Ok(()),
            Ok(_) => {}
            // The proxy is gone: nothing left to drain.
            Err(_) => return Ok(()),
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    bail!("requests still in flight after {} s", args.max_seconds)
}

/// Requests the proxy is serving now, from its `/stats`.
fn active_requests(admin: SocketAddr) -> anyhow::Result<u64> {
    let body = http_body(admin, "/stats?filter=^augur_downstream_requests_active$")?;
    body.lines()
        .find_map(|l| l.strip_prefix("augur_downstream_requests_active: "))
        .and_then(|v| v.trim().parse::<f64>().ok())
        .map(|v| v.max(0.0) as u64)
        .context("no augur_downstream_requests_active in /stats")
}

/// `GET path` and the response body.
fn http_body(addr: SocketAddr, path: &str) -> anyhow::Result<String> {
    let timeout = Duration::from_secs(2);
    let mut stream =
        TcpStream::connect_timeout(&addr, timeout).with_context(|| format!("connect {addr}"))?;
    stream.set_read_timeout(Some(timeout))?;
    // One write: `write!` on the socket would send each piece of the format in its own segment.
    let request = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes())?;
    let mut raw = String::new();
    stream.read_to_string(&mut raw)?;
    Ok(raw
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default())
}

/// Sends one request and returns the response's status code.
pub fn http_status(addr: SocketAddr, method: &str, path: &str) -> anyhow::Result<u16> {
    let timeout = Duration::from_secs(2);
    let mut stream =
        TcpStream::connect_timeout(&addr, timeout).with_context(|| format!("connect {addr}"))?;
    stream.set_read_timeout(Some(timeout))?;
    stream.set_write_timeout(Some(timeout))?;
    // One write: `write!` on the socket would send each piece of the format in its own segment,
    // and a server that answers after the first one and closes resets the rest.
    let request = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    );
    stream.write_all(request.as_bytes())?;
    // Read until the status line is complete: a response can arrive in several pieces.
    let mut head = Vec::with_capacity(64);
    let mut chunk = [0u8; 64];
    while !head.windows(2).any(|w| w == b"\r\n") && head.len() < 512 {
        let n = stream.read(&mut chunk)?;
        if n == 0 {
            break;
        }
        head.extend_from_slice(&chunk[..n]);
    }
    let line = String::from_utf8_lossy(&head);
    let line = line.lines().next().unwrap_or("");
    line.split_whitespace()
        .nth(1)
        .and_then(|code| code.parse().ok())
        .with_context(|| format!("not an HTTP response: {line:?}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpListener;

    fn answer_once(status: &'static str) -> SocketAddr {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = listener.local_addr().expect("addr");
        std::thread::spawn(move || {
            if let Ok((mut s, _)) = listener.accept() {
                // Read the whole head before answering: closing with unread bytes sends a reset.
                let mut head = Vec::new();
                let mut buf = [0u8; 512];
                while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                    match s.read(&mut buf) {
                        Ok(0) | Err(_) => break,
                        Ok(n) => head.extend_from_slice(&buf[..n]),
                    }
                }
                let _ = write!(s, "HTTP/1.1 {status}\r\nContent-Length: 0\r\n\r\n");
            }
        });
        addr
    }

    #[test]
    fn wait_returns_when_ready_and_drain_fails_the_healthcheck() {
        let status = answer_once("200 OK");
        run_wait(WaitArgs {
            status,
            timeout_seconds: 2,
            period_ms: 50,
        })
        .expect("ready");
        let admin = answer_once("200 OK");
        run_drain(DrainArgs {
            admin,
            wait_seconds: 0,
            max_seconds: 5,
        })
        .expect("drain");
        let closed = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("addr");
        assert!(run_wait(WaitArgs {
            status: closed,
            timeout_seconds: 0,
            period_ms: 10
        })
        .is_err());
    }
}
