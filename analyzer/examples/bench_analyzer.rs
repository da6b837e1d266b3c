//! What the analyzer costs: the time to take in and judge 1M samples (stable and canary, 80/20,
//! lognormal latencies, 1% errors, predictions with scores and half of them labelled) under each
//! method, and the memory one arm's evidence holds whatever the traffic.
//!
//! Run by `bench/run.sh` (`cargo run --release -p augur-analyzer --example bench_analyzer`);
//! prints one JSON object. Memory is measured as the process's resident-set growth over 1,000
//! clones of a filled arm, so it includes allocator overhead and not just `size_of`.

use std::time::Instant;

use augur_analyzer::judge::{Evidence, Judge};
use augur_analyzer::spec::{AnalysisSpec, Method, MetricKind, MetricSpec};
use augur_model::{Arm, Sample};

/// Samples judged in one run.
const SAMPLES: usize = 1_000_000;
/// Filled arms cloned to measure memory per arm.
const CLONES: usize = 1_000;

/// A tiny deterministic generator (SplitMix64), so every run judges the same stream.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in (0, 1).
    fn unit(&mut self) -> f64 {
        ((self.next() >> 11) as f64 + 0.5) / (1u64 << 53) as f64
    }

    /// Standard normal (Box-Muller).
    fn normal(&mut self) -> f64 {
        let (u, v) = (self.unit(), self.unit());
        (-2.0 * u.ln()).sqrt() * (2.0 * std::f64::consts::PI * v).cos()
    }
}

/// The benchmark's sample stream: 80% stable, 20% canary (5% slower), as a proxy records them.
fn samples() -> Vec<Sample> {
    let mut rng = Rng(7);
    (0..SAMPLES)
        .map(|i| {
            let canary = rng.unit() < 0.2;
            let shift = if canary { 0.05 } else { 0.0 };
            let score = rng.unit();
            let positive = score > 0.5;
            Sample {
                t: i as f64 / 1000.0,
                request_id: None,
                route: None,
                arm: if canary { Arm::Canary } else { Arm::Stable },
                upstream: None,
                status: if rng.unit() < 0.01 { 503 } else { 200 },
                response_flags: None,
                latency_ms: (1.0 + shift + 0.5 * rng.normal()).exp(),
                bytes: Some(64),
                score: Some(score),
                label: Some(if positive { "PNEUMONIA" } else { "NORMAL" }.to_owned()),
                truth: (i % 2 == 0).then(|| {
                    let right = rng.unit() < 0.9;
                    if positive == right {
                        "PNEUMONIA"
                    } else {
                        "NORMAL"
                    }
                    .to_owned()
                }),
            }
        })
        .collect()
}

/// The resident set of this process, in KiB (0 where /proc is not there).
fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0)
}

fn main() {
    let stream = samples();
    let mut spec = AnalysisSpec::default();
    spec.metrics.push(MetricSpec::new(
        "latency-p50",
        MetricKind::Latency { quantile: 0.5 },
    ));
    let mut methods = Vec::new();
    let mut evidence = Evidence::default();
    for (name, method) in [
        ("sequential", Method::Sequential),
        ("mann_whitney", Method::MannWhitney),
        ("threshold", Method::Threshold),
    ] {
        spec.method = method;
        let start = Instant::now();
        evidence = Evidence::default();
        for sample in &stream {
            evidence.record(sample, &spec.positive_label);
        }
        let recorded = start.elapsed();
        let look = Instant::now();
        let verdicts = Judge::new().evaluate(&spec, &evidence);
        let judged = look.elapsed();
        let outcomes: Vec<String> = verdicts
            .iter()
            .map(|v| format!("{}={:?}", v.metric, v.outcome))
            .collect();
        methods.push(serde_json::json!({
            "method": name,
            "record_ns_per_sample": recorded.as_nanos() as f64 / SAMPLES as f64,
            "record_ms_total": recorded.as_secs_f64() * 1e3,
            "judge_ms": judged.as_secs_f64() * 1e3,
            "total_ms": (recorded + judged).as_secs_f64() * 1e3,
            "verdicts": outcomes,
        }));
    }
    // Memory: clone the filled stable arm many times and divide the growth of the resident set.
    let before = rss_kib();
    let arms: Vec<_> = (0..CLONES).map(|_| evidence.stable.clone()).collect();
    let after = rss_kib();
    let per_arm = (after.saturating_sub(before)) as f64 * 1024.0 / arms.len() as f64;
    let serialized = serde_json::to_vec(&evidence.stable).map_or(0, |v| v.len());
    let out = serde_json::json!({
        "samples": SAMPLES,
        "stable_samples": evidence.stable.window.requests,
        "canary_samples": evidence.canary.window.requests,
        "methods": methods,
        "memory_per_arm_bytes": per_arm,
        "serialized_arm_bytes": serialized,
    });
    println!("{out}");
}
