//! Token buckets per client, as Envoy's `local_ratelimit` keeps them: a bucket holds up to
//! `maxTokens`, gains `tokensPerFill` at every `fillInterval`, and a request takes one token.
//!
//! The buckets live for the whole process, outside the policy snapshot, keyed by the
//! ApiProtection's `namespace/name` and the client: a hot reload keeps every client's count (a
//! smaller new `maxTokens` clamps it), so reloading is no way around a limit.
//!
//! Memory is bounded: at most `max_clients` buckets are tracked. A bucket that has refilled to
//! full is the same as no bucket, so such idle buckets are swept when a shard is full; if none
//! is idle, new clients of that shard share one overflow bucket per protection until some are.
//! Clients are stored as keyed 64-bit hashes, never as the addresses, keys or header values.

use std::collections::HashMap;
use std::hash::{BuildHasher, RandomState};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use augur_policies::RateLimit;

/// Buckets tracked at most, by default (about 5 MiB).
pub const DEFAULT_MAX_CLIENTS: usize = 100_000;

/// Independent locks, so that workers rarely wait on each other.
const SHARDS: usize = 16;

/// A shard that is full is swept at most this often.
const SWEEP_EVERY: Duration = Duration::from_secs(1);

/// One client's bucket.
#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: u64,
    last_fill: Instant,
    /// When it will be full again if nothing takes from it: then it can be forgotten.
    full_at: Instant,
}

#[derive(Debug)]
struct Shard {
    buckets: HashMap<u64, Bucket>,
    last_sweep: Option<Instant>,
}

/// Every client's bucket, for every protection.
#[derive(Debug)]
pub struct Limiter {
    shards: Vec<Mutex<Shard>>,
    per_shard: usize,
    hasher: RandomState,
}

impl Default for Limiter {
    fn default() -> Self {
        Self::new(DEFAULT_MAX_CLIENTS)
    }
}

impl Limiter {
    /// A limiter tracking at most about `max_clients` buckets.
    pub fn new(max_clients: usize) -> Self {
        let shards = (0..SHARDS)
            .map(|_| {
                Mutex::new(Shard {
                    buckets: HashMap::new(),
                    last_sweep: None,
                })
            })
            .collect();
        Self {
            shards,
            per_shard: max_clients.div_ceil(SHARDS).max(1),
            hasher: RandomState::new(),
        }
    }

    /// Takes a token from the bucket of `client` under `protection`; `false` when it is empty.
    pub fn take(&self, protection: &str, client: &[u8], limit: &RateLimit, now: Instant) -> bool {
        let key = self.hasher.hash_one((protection, client));
        let shard = &self.shards[(key % SHARDS as u64) as usize];
        let mut shard = match shard.lock() {
            Ok(s) => s,
            Err(poisoned) => poisoned.into_inner(),
        };
        let key = if shard.buckets.contains_key(&key) || shard.buckets.len() < self.per_shard {
            key
        } else {
            shard.sweep(now);
            if shard.buckets.len() < self.per_shard {
                key
            } else {
                // Full of busy clients: newcomers share one bucket per protection.
                self.hasher.hash_one((protection, "augur:overflow"))
            }
        };
        let bucket = shard.buckets.entry(key).or_insert(Bucket {
            tokens: u64::from(limit.max_tokens),
            last_fill: now,
            full_at: now,
        });
        bucket.take(limit, now)
    }

    /// Buckets tracked now.
    pub fn tracked(&self) -> usize {
        self.shards
            .iter()
            .map(|s| s.lock().map_or(0, |s| s.buckets.len()))
            .sum()
    }
}

impl Shard {
    fn sweep(&mut self, now: Instant) {
        if self
            .last_sweep
            .is_some_and(|t| now.saturating_duration_since(t) < SWEEP_EVERY)
        {
            return;
        }
        self.last_sweep = Some(now);
        self.buckets.retain(|_, b| b.full_at > now);
    }
}

impl Bucket {
    fn take(&mut self, limit: &RateLimit, now: Instant) -> bool {
        let max = u64::from(limit.max_tokens);
        let per_fill = u64::from(limit.tokens_per_fill);
        let interval = limit.fill_interval;
        let elapsed = now.saturating_duration_since(self.last_fill);
        let fills = (elapsed.as_nanos() / interval.as_nanos().max(1)) as u64;
        if fills > 0 {
            self.tokens = self.tokens.saturating_add(fills.saturating_mul(per_fill));
            self.last_fill += interval.saturating_mul(u32::try_from(fills).unwrap_or(u32::MAX));
        }
        // A reload may have shrunk the bucket.
        self.tokens = self.tokens.min(max);
        let allowed = self.tokens > 0;
        if allowed {
            self.tokens -= 1;
        }
        let missing = max - self.tokens;
        let fills_to_full = missing.div_ceil(per_fill.max(1));
        self.full_at = self.last_fill
            + interval.saturating_mul(u32::try_from(fills_to_full).unwrap_or(u32::MAX));
        allowed
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use augur_policies::RateLimitKey;

    fn limit(max: u32, per_fill: u32, secs: u64) -> RateLimit {
        RateLimit {
            key: RateLimitKey::SourceIp,
            max_tokens: max,
            tokens_per_fill: per_fill,
            fill_interval: Duration::from_secs(secs),
        }
    }

    #[test]
    fn hundred_per_minute_then_refill() {
        let l = Limiter::default();
        let rl = limit(100, 100, 60);
        let t0 = crate::clock::now();
        for i in 0..100 {
            assert!(l.take("ns/p", b"10.0.0.1", &rl, t0), "request {i}");
        }
        assert!(
            !l.take("ns/p", b"10.0.0.1", &rl, t0),
            "the 101st is limited"
        );
        assert!(
            l.take("ns/p", b"10.0.0.2", &rl, t0),
            "another client has its own bucket"
        );
        assert!(
            l.take("ns/other", b"10.0.0.1", &rl, t0),
            "another protection too"
        );
        let t59 = t0 + Duration::from_secs(59);
        assert!(!l.take("ns/p", b"10.0.0.1", &rl, t59), "no partial fills");
        let t60 = t0 + Duration::from_secs(60);
        for _ in 0..100 {
            assert!(l.take("ns/p", b"10.0.0.1", &rl, t60));
        }
        assert!(!l.take("ns/p", b"10.0.0.1", &rl, t60));
    }

    #[test]
    fn a_smaller_bucket_after_reload_clamps_the_count() {
        let l = Limiter::default();
        let t0 = crate::clock::now();
        assert!(l.take("p", b"c", &limit(100, 100, 60), t0));
        let smaller = limit(2, 2, 60);
        assert!(l.take("p", b"c", &smaller, t0));
        assert!(l.take("p", b"c", &smaller, t0));
        assert!(!l.take("p", b"c", &smaller, t0));
    }

    #[test]
    fn memory_is_bounded_idle_buckets_are_swept_and_newcomers_share_overflow() {
        let l = Limiter::new(SHARDS * 4);
        let rl = limit(1, 1, 10);
        let t0 = crate::clock::now();
        for i in 0..10_000u32 {
            l.take("p", &i.to_be_bytes(), &rl, t0);
        }
        assert!(l.tracked() <= SHARDS * 4 + SHARDS, "{}", l.tracked());
        // Every tracked client is busy (empty bucket): a newcomer lands in the shared,
        // already empty overflow bucket.
        assert!(!l.take("p", b"newcomer", &rl, t0));
        // Once their buckets have refilled they are idle and make room.
        let later = t0 + Duration::from_secs(11);
        assert!(l.take("p", b"newcomer", &rl, later));
        assert!(l.tracked() <= SHARDS * 4 + SHARDS);
    }
}
