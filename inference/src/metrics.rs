//! The shadow model's counters, declared once.
//!
//! Plain atomics, so this crate needs no metrics library; the proxy reads a
//! [`MetricsSnapshot`] and exports it under its own registry, and the reference model server
//! renders it with [`MetricsSnapshot::render_prometheus`]:
//!
//! | name | type | labels |
//! |---|---|---|
//! | `augur_shadow_inferences_total` | counter | `outcome` = [`Outcome::as_str`] |
//! | `augur_shadow_latency_seconds` | histogram | — (enqueue → result, successful scores) |
//! | `augur_shadow_queue_depth` | gauge | — |
//! | `augur_shadow_submitted_total` | counter | — (images handed to the pool; each ends as one outcome) |
//! | `augur_shadow_batches_total` | counter | — |
//! | `augur_shadow_batch_images_total` | counter | — |

use std::fmt::Write as _;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::time::Duration;

/// Upper bounds (seconds) of the latency histogram buckets; `+Inf` is implied.
pub const LATENCY_BUCKETS: [f64; 12] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
];

/// How one submitted image ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Outcome {
    /// Scored.
    Success,
    /// The body could not be decoded (bad or hostile input).
    DecodeError,
    /// ONNX Runtime failed, or the output had an unexpected shape.
    InferenceError,
    /// Not queued: the queue was full (or the pool shut down).
    Dropped,
}

impl Outcome {
    /// All outcomes, in a fixed order.
    pub const ALL: [Outcome; 4] = [
        Outcome::Success,
        Outcome::DecodeError,
        Outcome::InferenceError,
        Outcome::Dropped,
    ];

    /// The `outcome` label value.
    pub const fn as_str(self) -> &'static str {
        match self {
            Outcome::Success => "success",
            Outcome::DecodeError => "decode_error",
            Outcome::InferenceError => "inference_error",
            Outcome::Dropped => "dropped",
        }
    }
}

/// Live counters, shared by the pool's workers and its owner.
#[derive(Debug, Default)]
pub struct ShadowMetrics {
    outcomes: [AtomicU64; 4],
    submitted: AtomicU64,
    queue_depth: AtomicI64,
    batches: AtomicU64,
    batch_images: AtomicU64,
    latency_buckets: [AtomicU64; LATENCY_BUCKETS.len()],
    latency_count: AtomicU64,
    latency_sum_ns: AtomicU64,
}

/// A point-in-time copy of [`ShadowMetrics`].
#[derive(Debug, Clone, PartialEq, Default)]
pub struct MetricsSnapshot {
    /// Count per [`Outcome`], in [`Outcome::ALL`] order.
    pub outcomes: [u64; 4],
    /// Jobs waiting in the queue.
    pub queue_depth: u64,
    /// Images handed to the pool; each ends as exactly one outcome, so `submitted` minus the
    /// outcomes' sum is what is queued or being scored.
    pub submitted: u64,
    /// `session.run` calls.
    pub batches: u64,
    /// Images in those calls (`batch_images / batches` is the mean batch size).
    pub batch_images: u64,
    /// Cumulative latency bucket counts, one per [`LATENCY_BUCKETS`] bound.
    pub latency_buckets: [u64; LATENCY_BUCKETS.len()],
    /// Number of latency observations.
    pub latency_count: u64,
    /// Sum of latencies, seconds.
    pub latency_sum_seconds: f64,
}

// === impl ShadowMetrics ===

impl ShadowMetrics {
    /// Counts one finished (or dropped) image.
    pub fn record(&self, outcome: Outcome) {
        self.outcomes[outcome as usize].fetch_add(1, Ordering::Relaxed);
    }

    /// Observes the latency of a successful score.
    pub fn observe_latency(&self, latency: Duration) {
        let secs = latency.as_secs_f64();
        if let Some(i) = LATENCY_BUCKETS.iter().position(|b| secs <= *b) {
            self.latency_buckets[i].fetch_add(1, Ordering::Relaxed);
        }
        self.latency_count.fetch_add(1, Ordering::Relaxed);
        let ns = u64::try_from(latency.as_nanos()).unwrap_or(u64::MAX);
        self.latency_sum_ns.fetch_add(ns, Ordering::Relaxed);
    }

    /// Counts one `session.run` of `images` images.
    pub fn record_batch(&self, images: usize) {
        self.batches.fetch_add(1, Ordering::Relaxed);
        self.batch_images
            .fetch_add(images as u64, Ordering::Relaxed);
    }

    /// Counts one image handed to the pool (queued, or dropped on a full queue).
    pub(crate) fn submitted(&self) {
        self.submitted.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn queue_add(&self, delta: i64) {
        self.queue_depth.fetch_add(delta, Ordering::Relaxed);
    }

    /// The count for one outcome.
    pub fn count(&self, outcome: Outcome) -> u64 {
        self.outcomes[outcome as usize].load(Ordering::Relaxed)
    }

    /// Copies the counters.
    pub fn snapshot(&self) -> MetricsSnapshot {
        let mut cumulative = 0;
        let latency_buckets = std::array::from_fn(|i| {
            cumulative += self.latency_buckets[i].load(Ordering::Relaxed);
            cumulative
        });
        MetricsSnapshot {
            outcomes: std::array::from_fn(|i| self.outcomes[i].load(Ordering::Relaxed)),
            queue_depth: self.queue_depth.load(Ordering::Relaxed).max(0) as u64,
            submitted: self.submitted.load(Ordering::Relaxed),
            batches: self.batches.load(Ordering::Relaxed),
            batch_images: self.batch_images.load(Ordering::Relaxed),
            latency_buckets,
            latency_count: self.latency_count.load(Ordering::Relaxed),
            latency_sum_seconds: self.latency_sum_ns.load(Ordering::Relaxed) as f64 / 1e9,
        }
    }
}

// === impl MetricsSnapshot ===

impl MetricsSnapshot {
    /// The count for one outcome.
    pub fn count(&self, outcome: Outcome) -> u64 {
        self.outcomes[outcome as usize]
    }

    /// Appends the Prometheus text exposition (format 0.0.4) of these values.
    pub fn render_prometheus(&self, out: &mut String) {
        let _ = writeln!(
            out,
            "# HELP augur_shadow_inferences_total Images submitted to the shadow model, by outcome.\n\
             # TYPE augur_shadow_inferences_total counter"
        );
        for o in Outcome::ALL {
            let _ = writeln!(
                out,
                "augur_shadow_inferences_total{{outcome=\"{}\"}} {}",
                o.as_str(),
                self.count(o)
            );
        }
        let _ = writeln!(
            out,
            "# HELP augur_shadow_latency_seconds Enqueue-to-result latency of scored images.\n\
             # TYPE augur_shadow_latency_seconds histogram"
        );
        for (bound, count) in LATENCY_BUCKETS.iter().zip(self.latency_buckets) {
            let _ = writeln!(
                out,
                "augur_shadow_latency_seconds_bucket{{le=\"{bound}\"}} {count}"
            );
        }
        let _ = writeln!(
            out,
            "augur_shadow_latency_seconds_bucket{{le=\"+Inf\"}} {c}\n\
             augur_shadow_latency_seconds_sum {}\n\
             augur_shadow_latency_seconds_count {c}",
            self.latency_sum_seconds,
            c = self.latency_count
        );
        let _ = writeln!(
            out,
            "# HELP augur_shadow_queue_depth Images waiting for a shadow worker.\n\
             # TYPE augur_shadow_queue_depth gauge\naugur_shadow_queue_depth {}\n\
             # HELP augur_shadow_submitted_total Images handed to the shadow model; each ends as one augur_shadow_inferences_total outcome.\n\
             # TYPE augur_shadow_submitted_total counter\naugur_shadow_submitted_total {}\n\
             # HELP augur_shadow_batches_total Inference calls (micro-batches).\n\
             # TYPE augur_shadow_batches_total counter\naugur_shadow_batches_total {}\n\
             # HELP augur_shadow_batch_images_total Images in those inference calls.\n\
             # TYPE augur_shadow_batch_images_total counter\naugur_shadow_batch_images_total {}",
            self.queue_depth, self.submitted, self.batches, self.batch_images
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_is_cumulative_and_renders() {
        let m = ShadowMetrics::default();
        m.observe_latency(Duration::from_micros(300));
        m.observe_latency(Duration::from_millis(20));
        m.observe_latency(Duration::from_secs(10));
        m.record(Outcome::Success);
        m.record(Outcome::Dropped);
        m.submitted();
        m.submitted();
        let s = m.snapshot();
        assert_eq!(s.submitted, 2);
        assert_eq!(s.latency_buckets[0], 1);
        assert_eq!(s.latency_buckets[5], 2);
        assert_eq!(s.latency_buckets[11], 2);
        assert_eq!(s.latency_count, 3);
        let mut text = String::new();
        s.render_prometheus(&mut text);
        assert!(text.contains("augur_shadow_inferences_total{outcome=\"dropped\"} 1"));
        assert!(text.contains("augur_shadow_submitted_total 2"));
        assert!(text.contains("augur_shadow_latency_seconds_bucket{le=\"+Inf\"} 3"));
    }
}
