//! Helpers for the end-to-end tests: the real `augur` binary, upstream HTTP servers that say
//! who they are, and a plain HTTP/1.1 client that sends exactly the bytes a test asks for.

pub mod augur;
pub mod cluster;
pub mod echo_origin;
pub mod envoy;
pub mod faulty;
pub mod http;
pub mod metrics;
pub mod netns;
pub mod nginx;
pub mod policy;
pub mod prometheus;
pub mod upstream;

use std::net::TcpListener;
use std::time::{Duration, Instant};

/// A loopback port that was free a moment ago (bound once to ask the kernel, then released):
/// another process may take it before it is used. Only for third-party servers that cannot
/// report the port they bound, and then through [`start_on_free_ports`], which starts them
/// again on another port when that happened; augur itself binds port 0 and reports its ports
/// (`--address-file`, used by [`augur::Proxy`]), and so does Envoy ([`envoy::Envoy`]); where
/// nothing may listen, use [`RefusedPort`].
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("no free loopback port")
}

/// How a third-party server's start on given ports ended (see [`start_on_free_ports`]).
pub enum Started<T> {
    /// It is up and serving on them.
    Up(T),
    /// It failed because another process had bound one of them first (`EADDRINUSE`).
    PortTaken,
}

/// Starts a third-party server that cannot bind port 0 and report the port it got (nginx,
/// Prometheus) on `n` loopback ports free a moment ago ([`free_port`]), and starts it again on
/// new ones for as long as it fails only because another process took one of them between
/// the pick and its bind. `start` gets the ports and says how the start ended; returns what it
/// started, with the ports it serves on. Panics after 20 tries, which parallel tests never
/// need.
pub fn start_on_free_ports<T>(
    n: usize,
    mut start: impl FnMut(&[u16]) -> Started<T>,
) -> (T, Vec<u16>) {
    const TRIES: usize = 20;
    for _ in 0..TRIES {
        let ports: Vec<u16> = (0..n).map(|_| free_port()).collect();
        if let Started::Up(server) = start(&ports) {
            return (server, ports);
        }
    }
    panic!("{TRIES} tries in a row found a picked port taken");
}

/// Polls `check` every 50 ms until it returns `Some`, or panics with `what` after `timeout`.
pub fn wait_for<T>(what: &str, timeout: Duration, check: impl FnMut() -> Option<T>) -> T {
    try_wait_for(timeout, check)
        .unwrap_or_else(|| panic!("timed out after {timeout:?} waiting for {what}"))
}

/// Polls `check` every 50 ms until it returns `Some`, or returns `None` after `timeout`
/// (for callers that explain a timeout better than [`wait_for`] can).
pub fn try_wait_for<T>(timeout: Duration, mut check: impl FnMut() -> Option<T>) -> Option<T> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = check() {
            return Some(v);
        }
        if Instant::now() >= deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Asserts that `observed` of `n` random picks is within 4σ of the share `p` (binomial).
/// Four, not three: the suites check shares many times, and at 3σ one failed by chance in CI
/// (347 of 1,000 at 30%, 3.25σ); a check fails by chance with probability 6e-5 at 4σ against
/// 3e-3 at 3σ, and at the tests' sample sizes 4σ still rules out the wrong shares they
/// guard against (0%, 50% or 100% where 20% or 30% is due).
pub fn assert_share_near(observed: usize, n: usize, p: f64) {
    let sigma = (n as f64 * p * (1.0 - p)).sqrt();
    let expected = n as f64 * p;
    assert!(
        (observed as f64 - expected).abs() <= 4.0 * sigma,
        "observed {observed} of {n}, expected {expected} ± {:.0} (4σ)",
        4.0 * sigma
    );
}

/// A loopback port where nothing listens, for as long as the value lives: the socket is bound
/// but never listens, so a connection to it is refused, and no other process (a test running
/// beside this one) can take the port meanwhile, as it could a port from [`free_port`].
pub struct RefusedPort {
    _socket: tokio::net::TcpSocket,
    /// The port.
    pub port: u16,
}

impl RefusedPort {
    /// Binds a new one.
    pub fn new() -> Self {
        let socket = tokio::net::TcpSocket::new_v4().expect("socket");
        socket
            .bind("127.0.0.1:0".parse().expect("address"))
            .expect("bind a loopback port");
        let port = socket.local_addr().expect("bound address").port();
        Self {
            _socket: socket,
            port,
        }
    }
}

impl Default for RefusedPort {
    fn default() -> Self {
        Self::new()
    }
}
