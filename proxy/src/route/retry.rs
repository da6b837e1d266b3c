//! Retry policy as Envoy's router applies it: `retryOn` tokens, bare status codes, attempts,
//! per-try timeout and the 25 ms exponential back-off.

use std::time::Duration;

use augur_policies::HttpRetry;

/// Envoy's base retry back-off interval.
pub const BACKOFF_BASE: Duration = Duration::from_millis(25);
/// Envoy caps the back-off at ten times the base.
pub const BACKOFF_MAX: Duration = Duration::from_millis(250);

/// What a retry is allowed on (Envoy's `x-envoy-retry-on` tokens).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RetryOn {
    /// Any 5xx response, or a reset/timeout before the response (`5xx`).
    pub five_xx: bool,
    /// 502, 503, 504 (`gateway-error`).
    pub gateway_error: bool,
    /// A reset or disconnect before response headers (`reset`).
    pub reset: bool,
    /// A failed connection attempt (`connect-failure`).
    pub connect_failure: bool,
    /// 409 (`retriable-4xx`).
    pub retriable_4xx: bool,
    /// An HTTP/2 REFUSED_STREAM (`refused-stream`).
    pub refused_stream: bool,
}

/// A compiled retry policy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Retries after the first attempt (max requests = 1 + attempts).
    pub attempts: u32,
    /// Timeout of each attempt (falls back to the route timeout).
    pub per_try_timeout: Option<Duration>,
    /// Conditions.
    pub on: RetryOn,
    /// Status codes retried (`retriable-status-codes` plus bare codes in `retryOn`).
    pub status_codes: Vec<u16>,
}

impl RetryPolicy {
    /// Compiles a route's `retries`, or Istio's default policy when it has none.
    pub fn compile(retries: Option<&HttpRetry>) -> Self {
        let default;
        let r = match retries {
            Some(r) => r,
            None => {
                default = HttpRetry::istio_default();
                &default
            }
        };
        let mut on = RetryOn::default();
        let mut status_codes = Vec::new();
        for token in r.retry_on.iter().map(|t| t.trim()) {
            match token {
                "5xx" => on.five_xx = true,
                "gateway-error" => on.gateway_error = true,
                "reset" | "reset-before-request" => on.reset = true,
                "connect-failure" => on.connect_failure = true,
                "retriable-4xx" => on.retriable_4xx = true,
                "refused-stream" => on.refused_stream = true,
                other => {
                    if let Ok(code) = other.parse::<u16>() {
                        status_codes.push(code);
                    }
                    // gRPC tokens (cancelled, unavailable, ...) and retriable-status-codes
                    // without codes have nothing to act on for plain HTTP.
                }
            }
        }
        Self {
            attempts: r.attempts,
            per_try_timeout: r.per_try_timeout,
            on,
            status_codes,
        }
    }

    /// Whether a response with `status` is retried.
    pub fn retries_status(&self, status: u16) -> bool {
        (self.on.five_xx && (500..600).contains(&status))
            || (self.on.gateway_error && matches!(status, 502..=504))
            || (self.on.retriable_4xx && status == 409)
            || self.status_codes.contains(&status)
    }

    /// Whether a failed connection attempt is retried.
    pub fn retries_connect_failure(&self) -> bool {
        self.on.connect_failure || self.on.five_xx || self.on.gateway_error
    }

    /// Whether a reset or timeout before response headers is retried: Envoy counts one as the
    /// 503/504 it becomes, so `5xx` and `gateway-error` retry it as `reset` does (checked
    /// against Envoy 1.40: a per-try timeout and an RST are both retried under `gateway-error`).
    pub fn retries_reset(&self) -> bool {
        self.on.reset || self.on.five_xx || self.on.gateway_error
    }

    /// The back-off before retry number `retry` (1-based): Envoy draws uniformly from
    /// `[0, (2^retry - 1) * 25ms)`, capped at 250 ms; `roll` is a uniform random `u64`.
    pub fn backoff(retry: u32, roll: u64) -> Duration {
        let factor = (1u64 << retry.min(10)).saturating_sub(1);
        let ceiling = (BACKOFF_BASE.as_millis() as u64)
            .saturating_mul(factor)
            .min(BACKOFF_MAX.as_millis() as u64);
        if ceiling == 0 {
            return Duration::ZERO;
        }
        Duration::from_millis(roll % ceiling)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn istio_default_retries_connect_failures_twice() {
        let p = RetryPolicy::compile(None);
        assert_eq!(p.attempts, 2);
        assert!(p.retries_connect_failure());
        assert!(
            !p.retries_status(500),
            "plain 5xx is not in Istio's default"
        );
    }

    #[test]
    fn bare_status_codes_and_tokens() {
        let r = HttpRetry {
            attempts: 3,
            per_try_timeout: Some(Duration::from_secs(2)),
            retry_on: vec!["503".into(), "reset".into()],
            retry_remote_localities: false,
        };
        let p = RetryPolicy::compile(Some(&r));
        assert!(p.retries_status(503));
        assert!(!p.retries_status(502));
        assert!(p.retries_reset());
        assert!(!p.retries_connect_failure());
        let gw = RetryPolicy::compile(Some(&HttpRetry {
            retry_on: vec!["gateway-error".into()],
            ..r
        }));
        assert!(gw.retries_status(502) && gw.retries_status(504) && !gw.retries_status(500));
    }

    #[test]
    fn resets_and_per_try_timeouts_retry_under_reset_5xx_and_gateway_error() {
        for (on, retried) in [
            ("reset", true),
            ("5xx", true),
            ("gateway-error", true),
            ("connect-failure", false),
            ("retriable-4xx", false),
        ] {
            let p = RetryPolicy::compile(Some(&HttpRetry {
                attempts: 2,
                per_try_timeout: None,
                retry_on: vec![on.into()],
                retry_remote_localities: false,
            }));
            assert_eq!(p.retries_reset(), retried, "retryOn: {on}");
        }
    }

    #[test]
    fn backoff_follows_envoys_schedule() {
        assert!(RetryPolicy::backoff(1, u64::MAX) < Duration::from_millis(25));
        assert!(RetryPolicy::backoff(2, u64::MAX) < Duration::from_millis(75));
        assert!(RetryPolicy::backoff(9, u64::MAX) < BACKOFF_MAX);
        assert_eq!(RetryPolicy::backoff(3, 0), Duration::ZERO);
    }
}
