//! The data plane's one clock. Everything in this crate that measures time asks it, so that
//! an in-process test running on tokio's paused time (`tokio::time::pause`) controls every
//! timeout, back-off and latency the proxy sees. `proxy/clippy.toml` forbids
//! `std::time::Instant::now` everywhere else, as linkerd2-proxy does.

use std::time::Instant;

/// Now, on tokio's clock (the system's monotonic clock unless a test paused it).
#[allow(clippy::disallowed_methods)]
pub fn now() -> Instant {
    tokio::time::Instant::now().into_std()
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    #[tokio::test(start_paused = true)]
    async fn follows_tokios_paused_time() {
        let before = super::now();
        tokio::time::advance(Duration::from_secs(3600)).await;
        assert_eq!(super::now() - before, Duration::from_secs(3600));
    }
}
