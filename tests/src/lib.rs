//! Helpers for the end-to-end tests: the real `augur` binary, upstream HTTP servers that say
//! who they are, and a plain HTTP/1.1 client that sends exactly the bytes a test asks for.

pub mod augur;
pub mod echo_origin;
pub mod envoy;
pub mod faulty;
pub mod http;
pub mod metrics;
pub mod nginx;
pub mod policy;
pub mod prometheus;
pub mod upstream;

use std::net::TcpListener;
use std::time::{Duration, Instant};

/// A free loopback port (bound once to ask the kernel, then released).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("no free loopback port")
}

/// Polls `check` every 50 ms until it returns `Some`, or panics with `what` after `timeout`.
pub fn wait_for<T>(what: &str, timeout: Duration, mut check: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = check() {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}
