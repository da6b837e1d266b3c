//! Outlier detection (DestinationRule `outlierDetection`): an endpoint that answers
//! `consecutive5xxErrors` 5xx (or connect failures) in a row — or `consecutiveGatewayErrors`
//! 502/503/504 — is ejected for `baseEjectionTime` × the number of times it has been ejected,
//! as long as no more than `maxEjectionPercent` of the cluster is out. Ejected endpoints are
//! skipped by the balancer; when every endpoint is out, traffic goes to all of them (Envoy's
//! panic mode), since refusing everything helps nobody.
//!
//! Ejections are decided on each response rather than on Envoy's `interval` sweep, so a dead
//! canary is taken out after its threshold of failures; the interval is not used.

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use augur_policies::OutlierDetection;

/// What an upstream attempt came to, for outlier detection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// A response with this status.
    Status(u16),
    /// No connection, or a reset before the response (counts as a 5xx, like Envoy's
    /// locally originated failures folded into `consecutive5xxErrors`).
    Failure,
}

/// Per-endpoint failure state of one cluster.
#[derive(Debug)]
pub struct Detector {
    policy: OutlierDetection,
    epoch: Instant,
    consecutive: Vec<AtomicU32>,
    gateway: Vec<AtomicU32>,
    ejections: Vec<AtomicU32>,
    /// Milliseconds since `epoch` until which each endpoint is out (0 = in).
    ejected_until: Vec<AtomicU64>,
}

impl Detector {
    /// A detector for `endpoints` endpoints.
    pub fn new(policy: OutlierDetection, endpoints: usize) -> Self {
        let counters = || {
            (0..endpoints)
                .map(|_| AtomicU32::new(0))
                .collect::<Vec<_>>()
        };
        Self {
            policy,
            epoch: crate::clock::now(),
            consecutive: counters(),
            gateway: counters(),
            ejections: counters(),
            ejected_until: (0..endpoints).map(|_| AtomicU64::new(0)).collect(),
        }
    }

    fn now_ms(&self) -> u64 {
        self.epoch.elapsed().as_millis() as u64
    }

    /// Whether endpoint `i` is ejected now.
    pub fn is_ejected(&self, i: usize) -> bool {
        self.ejected_until
            .get(i)
            .is_some_and(|u| u.load(Ordering::Relaxed) > self.now_ms())
    }

    fn ejected_count(&self) -> usize {
        (0..self.ejected_until.len())
            .filter(|i| self.is_ejected(*i))
            .count()
    }

    /// Records an attempt's outcome on endpoint `i`; returns whether it was ejected by it.
    pub fn report(&self, i: usize, outcome: Outcome) -> bool {
        let (Some(consecutive), Some(gateway)) = (self.consecutive.get(i), self.gateway.get(i))
        else {
            return false;
        };
        let (is_5xx, is_gateway) = match outcome {
            Outcome::Failure => (true, true),
            Outcome::Status(s) => ((500..600).contains(&s), matches!(s, 502..=504)),
        };
        let bump = |c: &AtomicU32, hit: bool| {
            if hit {
                c.fetch_add(1, Ordering::Relaxed) + 1
            } else {
                c.store(0, Ordering::Relaxed);
                0
            }
        };
        let n5xx = bump(consecutive, is_5xx);
        let ngw = bump(gateway, is_gateway);
        let over_5xx =
            self.policy.consecutive_5xx_errors > 0 && n5xx >= self.policy.consecutive_5xx_errors;
        let over_gw = self
            .policy
            .consecutive_gateway_errors
            .is_some_and(|t| t > 0 && ngw >= t);
        if !(over_5xx || over_gw) || self.is_ejected(i) {
            return false;
        }
        let total = self.ejected_until.len().max(1);
        let allowed = self.policy.max_ejection_percent.fraction() * total as f64;
        if (self.ejected_count() + 1) as f64 > allowed.max(0.0) + 1e-9 {
            return false;
        }
        let times = self
            .ejections
            .get(i)
            .map_or(1, |e| e.fetch_add(1, Ordering::Relaxed) + 1);
        let duration = self.policy.base_ejection_time.saturating_mul(times);
        if let Some(until) = self.ejected_until.get(i) {
            until.store(
                self.now_ms() + duration.as_millis() as u64,
                Ordering::Relaxed,
            );
        }
        consecutive.store(0, Ordering::Relaxed);
        gateway.store(0, Ordering::Relaxed);
        tracing::warn!(
            endpoint = i,
            for_ms = duration.as_millis() as u64,
            "outlier ejected"
        );
        true
    }

    /// How long endpoint `i` stays out (zero when it is in).
    pub fn remaining(&self, i: usize) -> Duration {
        let until = self
            .ejected_until
            .get(i)
            .map_or(0, |u| u.load(Ordering::Relaxed));
        Duration::from_millis(until.saturating_sub(self.now_ms()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use augur_policies::Percent;

    fn policy(max_percent: f64) -> OutlierDetection {
        OutlierDetection {
            consecutive_5xx_errors: 3,
            consecutive_gateway_errors: None,
            interval: Duration::from_secs(10),
            base_ejection_time: Duration::from_secs(30),
            max_ejection_percent: Percent::new(max_percent).unwrap(),
            min_health_percent: Percent::new(0.0).unwrap(),
        }
    }

    #[test]
    fn three_5xx_in_a_row_eject() {
        let d = Detector::new(policy(100.0), 2);
        assert!(!d.report(0, Outcome::Status(500)));
        assert!(
            !d.report(0, Outcome::Status(200)),
            "a success resets the count"
        );
        assert!(!d.report(0, Outcome::Status(503)));
        assert!(!d.report(0, Outcome::Failure));
        assert!(d.report(0, Outcome::Status(500)));
        assert!(d.is_ejected(0) && !d.is_ejected(1));
        assert!(d.remaining(0) > Duration::from_secs(29));
    }

    #[test]
    fn max_ejection_percent_keeps_some_in() {
        let d = Detector::new(policy(50.0), 2);
        for _ in 0..3 {
            d.report(0, Outcome::Status(500));
            d.report(1, Outcome::Status(500));
        }
        assert_eq!(
            usize::from(d.is_ejected(0)) + usize::from(d.is_ejected(1)),
            1
        );
    }
}
