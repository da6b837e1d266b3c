//! The Prometheus metric source: a fleet's evidence for a rollout, read over the Prometheus HTTP
//! API (or anything that speaks it: Thanos, Mimir) from the `augur_rollout_*` series every
//! sidecar exports (`proxy/src/evidence.rs`), summed over all sidecars, by arm.
//!
//! **Aligned windows.** Evidence is read in windows of the analysis interval `I` whose ends are
//! multiples of `I` (Unix time): the window ending at `T` is asked for at `time=T` with
//! `increase(...[I])`, and only once `T ≤ now − scrapeLag`, when every scrape stamped before
//! `T` has landed. So a read of the same window gives the same inputs again (after a restart,
//! or from another controller), and consecutive windows neither overlap nor leave gaps.
//!
//! **Every metric kind.** Requests by outcome, the latency histogram and the score histogram
//! become samples ([`Reading::samples`]) that the analyzer judges like live ones: one per
//! request, errors as 503, latencies at the geometric middle of their bucket, scores at the
//! middle of their tenth. They are spread evenly over the window, errors, latencies and scores
//! interleaved, so that every stretch of the window (a trigger's eighth) gets its share.
//! Labelled, correct and agreed predictions and the Brier sums become [`Tally`]s, fed to the
//! analyzer as counts (the Brier moments are exact from count, sum and sum of squares).
//!
//! Limits, said plainly: latency is known to the exported buckets' resolution (about 20% wide);
//! time is known to the window (a burst inside one window is spread over it); `increase()`
//! extrapolates to the window's edges, so counts are estimates, rounded; a series' very first
//! increments before its first scrape are not seen (sidecars create their series at zero to
//! keep that to the policy's first request).

use std::collections::BTreeMap;
use std::time::Duration;

use augur_analyzer::tally::{spread, Tally};
use augur_model::{Arm, Sample};
use augur_policies::PrometheusAddress;
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// How long one query may take before the read counts as failed.
pub const QUERY_TIMEOUT: Duration = Duration::from_secs(5);
/// Samples made per arm and window at most; larger counts are scaled down proportionally (the
/// rates stay, the tests see fewer samples: less power, never more confidence).
pub const MAX_SAMPLES_PER_WINDOW: u64 = 5_000;
/// One element of an instant vector: its labels and value.
pub type Series = (BTreeMap<String, String>, f64);

/// Largest Prometheus answer read.
const MAX_RESPONSE: usize = 8 * 1024 * 1024;

/// Why a read gave nothing.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    /// Connecting, sending or reading failed.
    #[error("prometheus at {address} unreachable: {source}")]
    Io {
        /// host:port.
        address: String,
        /// The error.
        #[source]
        source: std::io::Error,
    },
    /// No answer within [`QUERY_TIMEOUT`].
    #[error("prometheus at {0} did not answer within {QUERY_TIMEOUT:?}")]
    Timeout(String),
    /// The answer was not a successful instant-vector result.
    #[error("prometheus answered something unusable: {0}")]
    BadAnswer(String),
    /// The address is not `http://host:port[/prefix]` (the policy loader refuses those).
    #[error("unusable prometheus address: {0}")]
    Address(String),
}

/// One window of evidence: `(from, to]`, `to` a multiple of the interval.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Window {
    /// Start, Unix seconds.
    pub from: f64,
    /// End, Unix seconds.
    pub to: f64,
}

impl Window {
    /// The window of `interval_s` ending at `to`.
    pub fn ending(to: f64, interval_s: f64) -> Self {
        Window {
            from: to - interval_s,
            to,
        }
    }

    fn seconds(&self) -> f64 {
        self.to - self.from
    }
}

/// The end of the latest window that can be read at `now`: `⌊(now − lag) / I⌋ · I`.
pub fn aligned_end(now: f64, scrape_lag_s: f64, interval_s: f64) -> f64 {
    ((now - scrape_lag_s) / interval_s).floor() * interval_s
}

/// What one read gave: the window's requests as samples and its labels as tallies.
#[derive(Debug, Clone, PartialEq)]
pub struct Reading {
    /// The window read.
    pub window: Window,
    /// One sample per request (scaled to at most [`MAX_SAMPLES_PER_WINDOW`] per arm), in time
    /// order.
    pub samples: Vec<Sample>,
    /// Per arm, the labelled and compared predictions (only non-empty ones).
    pub tallies: Vec<Tally>,
}

/// Where and what to ask for one rollout.
#[derive(Debug, Clone, PartialEq)]
pub struct PrometheusSource {
    address: PrometheusAddress,
    selector: String,
    scrape_lag_s: f64,
}

impl PrometheusSource {
    /// A source for the rollout of `policy` (`namespace/name`, the sidecars' `policy` label);
    /// `extra` label matchers (the policy's `source.prometheus.query`, e.g. `cluster="eu-1"`)
    /// narrow every series read.
    pub fn new(
        address: &str,
        extra: Option<&str>,
        policy: &str,
        scrape_lag: Duration,
    ) -> Result<Self, SourceError> {
        let address = PrometheusAddress::parse(address).map_err(SourceError::Address)?;
        let mut selector = format!("policy=\"{}\"", escape(policy));
        if let Some(extra) = extra.map(str::trim).filter(|e| !e.is_empty()) {
            selector.push(',');
            selector.push_str(extra);
        }
        Ok(Self {
            address,
            selector,
            scrape_lag_s: scrape_lag.as_secs_f64(),
        })
    }

    /// How far behind now the source is read.
    pub fn scrape_lag_s(&self) -> f64 {
        self.scrape_lag_s
    }

    /// Where it reads, for status and logs.
    pub fn address(&self) -> String {
        format!("http://{}{}", self.address.host_port, self.address.prefix)
    }

    /// The three PromQL queries of a window of `seconds`: every counter (requests by outcome,
    /// labels, Brier sums, shadow comparisons) as `counter` by arm, the latency buckets and the
    /// score buckets by arm.
    pub fn queries(&self, seconds: f64) -> [String; 3] {
        let range = format!("{}s", seconds.round().max(1.0));
        let sel = &self.selector;
        let counter = |metric: &str, name: &str| {
            format!("label_replace(increase({metric}{{{sel}}}[{range}]), \"counter\", \"{name}\", \"\", \"\")")
        };
        let counters = [
            format!("label_replace(increase(augur_rollout_requests_total{{{sel}}}[{range}]), \"counter\", \"$1\", \"outcome\", \"(.*)\")"),
            counter("augur_rollout_labelled_total", "labelled"),
            counter("augur_rollout_correct_total", "correct"),
            counter("augur_rollout_brier_sum", "brier_sum"),
            counter("augur_rollout_brier_count", "brier_count"),
            counter("augur_rollout_brier_squares_sum", "brier_squares"),
            counter("augur_rollout_shadow_compared_total", "compared"),
            counter("augur_rollout_shadow_agreed_total", "agreed"),
        ]
        .join(" or ");
        [
            format!("sum by (arm, counter) ({counters})"),
            format!("sum by (arm, le) (increase(augur_rollout_latency_milliseconds_bucket{{{sel}}}[{range}]))"),
            format!("sum by (arm, le) (increase(augur_rollout_score_bucket{{{sel}}}[{range}]))"),
        ]
    }

    /// Reads `window` (asked at `time = window.to`).
    pub async fn read(&self, window: Window) -> Result<Reading, SourceError> {
        let [counters, latency, scores] = self.queries(window.seconds());
        let counters = self.query(&counters, window.to).await?;
        let latency = self.query(&latency, window.to).await?;
        let scores = self.query(&scores, window.to).await?;
        Ok(reading(window, &counters, &latency, &scores))
    }

    async fn query(&self, promql: &str, time: f64) -> Result<Vec<Series>, SourceError> {
        let path = format!(
            "{}/api/v1/query?query={}&time={time:.3}",
            self.address.prefix,
            percent_encode(promql)
        );
        let host_port = &self.address.host_port;
        let body = tokio::time::timeout(QUERY_TIMEOUT, get(host_port, &path))
            .await
            .map_err(|_| SourceError::Timeout(host_port.clone()))?
            .map_err(|source| SourceError::Io {
                address: host_port.clone(),
                source,
            })?;
        parse_vector(&body)
    }
}

/// The samples and tallies of one window from the three query results.
pub fn reading(
    window: Window,
    counters: &[Series],
    latency: &[Series],
    scores: &[Series],
) -> Reading {
    let mut samples = Vec::new();
    let mut tallies = Vec::new();
    for arm in [Arm::Stable, Arm::Canary] {
        let of_arm =
            |m: &BTreeMap<String, String>| m.get("arm").map(String::as_str) == Some(arm.as_str());
        let count = |name: &str| -> f64 {
            counters
                .iter()
                .filter(|(m, _)| of_arm(m) && m.get("counter").map(String::as_str) == Some(name))
                .map(|(_, v)| v.max(0.0))
                .sum()
        };
        let has = |name: &str| {
            counters
                .iter()
                .any(|(m, _)| of_arm(m) && m.get("counter").map(String::as_str) == Some(name))
        };
        let latency = buckets(latency.iter().filter(|(m, _)| of_arm(m)));
        let scores = buckets(scores.iter().filter(|(m, _)| of_arm(m)));
        let score_count = scores.iter().map(|b| b.1).sum::<f64>();
        samples.extend(arm_samples(
            arm,
            window,
            count("success") + count("error"),
            count("error"),
            &latency,
            &scores,
        ));
        let labelled = round(count("labelled"));
        let brier_sum = count("brier_sum");
        let mut tally = Tally::new(arm, window.from, window.to);
        tally.predictions = round(score_count);
        tally.labelled = labelled;
        tally.correct = round(count("correct")).min(labelled);
        // Sidecars without the count or the squares: every labelled prediction scored, and
        // the largest variance the sum allows (each term is in [0, 1], so b² ≤ b).
        tally.brier_count = if has("brier_count") {
            round(count("brier_count"))
        } else {
            labelled
        };
        tally.brier_sum = brier_sum;
        tally.brier_squares = if has("brier_squares") {
            count("brier_squares")
        } else {
            brier_sum
        };
        tally.compared = round(count("compared"));
        tally.agreed = round(count("agreed")).min(tally.compared);
        if !tally.is_empty() {
            tallies.push(tally);
        }
    }
    samples.sort_by(|a, b| a.t.total_cmp(&b.t));
    Reading {
        window,
        samples,
        tallies,
    }
}

fn round(x: f64) -> u64 {
    if x.is_finite() && x > 0.0 {
        x.round() as u64
    } else {
        0
    }
}

/// Per-bucket counts `(upper bound, count)` in order, from cumulative `le` buckets.
fn buckets<'a>(series: impl Iterator<Item = &'a Series>) -> Vec<(f64, f64)> {
    let mut cumulative: BTreeMap<u64, (f64, f64)> = BTreeMap::new();
    for (m, v) in series {
        let Some(le) = m.get("le") else { continue };
        let bound = if le == "+Inf" {
            f64::INFINITY
        } else if let Ok(b) = le.parse::<f64>() {
            b
        } else {
            continue;
        };
        // Keyed by the bound's bits (positive floats sort as their bits).
        let e = cumulative.entry(bound.to_bits()).or_insert((bound, 0.0));
        e.1 += v.max(0.0);
    }
    let mut previous = 0.0f64;
    cumulative
        .into_values()
        .map(|(bound, c)| {
            let in_bucket = (c - previous).max(0.0);
            previous = previous.max(c);
            (bound, in_bucket)
        })
        .collect()
}

/// Splits `n` among the buckets in proportion to their counts (largest remainders), and
/// returns one value per unit: each bucket's `value(lower, upper)`, in bucket order.
fn values_from(buckets: &[(f64, f64)], n: u64, value: impl Fn(f64, f64) -> f64) -> Vec<f64> {
    let total: f64 = buckets.iter().map(|b| b.1).sum();
    if n == 0 || total <= 0.0 {
        return Vec::new();
    }
    let shares: Vec<f64> = buckets.iter().map(|b| b.1 / total * n as f64).collect();
    let mut counts: Vec<u64> = shares.iter().map(|s| s.floor() as u64).collect();
    let mut left = n.saturating_sub(counts.iter().sum());
    let mut order: Vec<usize> = (0..shares.len()).collect();
    order.sort_by(|&a, &b| {
        (shares[b] - shares[b].floor()).total_cmp(&(shares[a] - shares[a].floor()))
    });
    for i in order {
        if left == 0 {
            break;
        }
        if shares[i] > 0.0 {
            counts[i] += 1;
            left -= 1;
        }
    }
    let mut out = Vec::with_capacity(n as usize);
    let mut lower = 0.0;
    for (&(upper, _), &c) in buckets.iter().zip(&counts) {
        let v = value(lower, upper);
        out.extend(std::iter::repeat_n(v, c as usize));
        if upper.is_finite() {
            lower = upper;
        }
    }
    out
}

/// A latency bucket's representative: the geometric middle of `(lower, upper]`; half the first
/// bound; 1.5 × the last finite bound for `+Inf`.
fn latency_value(lower: f64, upper: f64) -> f64 {
    match (lower > 0.0, upper.is_finite()) {
        (true, true) => (lower * upper).sqrt(),
        (false, true) => upper / 2.0,
        (_, false) => lower.max(1.0) * 1.5,
    }
}

/// A score bucket's representative: the middle of `(lower, upper]` within `[0, 1]`.
fn score_value(lower: f64, upper: f64) -> f64 {
    (lower + upper.min(1.0)) / 2.0
}

/// A permutation of `0..n` that spreads consecutive indices across the range: `i ↦ i·s mod n`
/// with the stride `s` coprime to `n`, near `n / φ` (consecutive multiples of the golden
/// ratio fall far apart).
fn stride(n: usize) -> usize {
    if n < 3 {
        return 1;
    }
    let gcd = |mut a: usize, mut b: usize| {
        while b != 0 {
            (a, b) = (b, a % b);
        }
        a
    };
    let mut s = ((n as f64) * 0.618_033_988_75).round() as usize;
    while gcd(s, n) != 1 {
        s += 1;
    }
    s
}

/// One arm's samples: `total` requests of which `errors` failed, spread evenly over `window`,
/// errors interleaved (every stretch of the window gets its share), latencies and scores drawn
/// from their histograms in an order that spreads them over the window too.
fn arm_samples(
    arm: Arm,
    window: Window,
    total: f64,
    errors: f64,
    latency: &[(f64, f64)],
    scores: &[(f64, f64)],
) -> Vec<Sample> {
    let total_n = round(total);
    if total_n == 0 {
        return Vec::new();
    }
    let scale = (MAX_SAMPLES_PER_WINDOW as f64 / total_n as f64).min(1.0);
    let n = round(total_n as f64 * scale).max(1);
    let errors = round(errors * scale).min(n);
    let latencies = values_from(latency, n, latency_value);
    let score_total: f64 = scores.iter().map(|b| b.1).sum();
    let scored = round(score_total * scale).min(n);
    let score_values = values_from(scores, scored, score_value);
    let (ls, ss) = (stride(latencies.len()), stride(score_values.len()));
    let mut next_score = 0usize;
    // Which requests carried a score: `scored` of `n`, interleaved as the errors are.
    spread(n, errors, window.from, window.to)
        .zip(spread(n, scored, window.from, window.to))
        .enumerate()
        .map(|(i, ((t, failed), (_, has_score)))| {
            let latency_ms = if latencies.is_empty() {
                f64::NAN
            } else {
                latencies[(i * ls) % latencies.len()]
            };
            let score = (has_score && !score_values.is_empty()).then(|| {
                let v = score_values[(next_score * ss) % score_values.len()];
                next_score += 1;
                v
            });
            Sample {
                score,
                ..Sample::new(t, arm, if failed { 503 } else { 200 }, latency_ms)
            }
        })
        .collect()
}

/// Reads `{"status":"success","data":{"resultType":"vector","result":[...]}}`.
fn parse_vector(body: &[u8]) -> Result<Vec<Series>, SourceError> {
    let json: Value =
        serde_json::from_slice(body).map_err(|e| SourceError::BadAnswer(e.to_string()))?;
    if json["status"] != "success" {
        let error = json["error"].as_str().unwrap_or("status is not success");
        return Err(SourceError::BadAnswer(error.to_owned()));
    }
    let result = json["data"]["result"]
        .as_array()
        .ok_or_else(|| SourceError::BadAnswer("no data.result".to_owned()))?;
    Ok(result
        .iter()
        .filter_map(|r| {
            let metric = r["metric"]
                .as_object()?
                .iter()
                .filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_owned())))
                .collect();
            let value: f64 = r["value"][1].as_str()?.parse().ok()?;
            value.is_finite().then_some((metric, value))
        })
        .collect())
}

/// One HTTP/1.1 GET with `Connection: close`; the body of a 200 answer.
async fn get(host_port: &str, path: &str) -> std::io::Result<Vec<u8>> {
    let mut stream = TcpStream::connect(host_port).await?;
    let request = format!("GET {path} HTTP/1.1\r\nHost: {host_port}\r\nAccept: application/json\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await?;
    let mut raw = Vec::new();
    (&mut stream)
        .take(MAX_RESPONSE as u64)
        .read_to_end(&mut raw)
        .await?;
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(|| std::io::Error::other("no end of headers"))?;
    let head = String::from_utf8_lossy(&raw[..split]);
    let status_ok = head.split(' ').nth(1) == Some("200");
    let chunked = head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked");
    let body = raw[split + 4..].to_vec();
    if !status_ok {
        return Err(std::io::Error::other(format!(
            "HTTP {}",
            head.lines().next().unwrap_or("")
        )));
    }
    Ok(if chunked { dechunk(&body) } else { body })
}

fn dechunk(mut body: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(line_end) = body.windows(2).position(|w| w == b"\r\n") {
        let size = std::str::from_utf8(&body[..line_end])
            .ok()
            .and_then(|s| usize::from_str_radix(s.trim(), 16).ok())
            .unwrap_or(0);
        let start = line_end + 2;
        if size == 0 || body.len() < start + size {
            break;
        }
        out.extend_from_slice(&body[start..start + size]);
        body = body.get(start + size + 2..).unwrap_or_default();
    }
    out
}

fn percent_encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

fn escape(s: &str) -> String {
    s.replace('\\', "\\\\").replace('"', "\\\"")
}

#[cfg(test)]
mod tests {
    use super::*;
    use augur_analyzer::window::LatencyHistogram;

    fn series(labels: &[(&str, &str)], value: f64) -> Series {
        (
            labels
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
            value,
        )
    }

    fn counter(arm: &str, name: &str, value: f64) -> Series {
        series(&[("arm", arm), ("counter", name)], value)
    }

    #[test]
    fn windows_are_aligned_to_the_interval_behind_the_scrape_lag() {
        // 10:00:47 with a 30 s lag and 60 s windows: the window ending 10:00:00 is the latest
        // that every scrape has reached; from 10:01:30 on, the one ending 10:01:00.
        let ten = 36_000.0;
        assert_eq!(aligned_end(ten + 47.0, 30.0, 60.0), ten);
        assert_eq!(aligned_end(ten + 89.9, 30.0, 60.0), ten);
        assert_eq!(aligned_end(ten + 90.0, 30.0, 60.0), ten + 60.0);
        assert_eq!(aligned_end(ten + 3.0, 2.0, 5.0), ten);
        assert_eq!(Window::ending(ten, 60.0).from, ten - 60.0);
    }

    #[test]
    fn queries_read_the_sidecars_series_of_the_policy_at_the_window_end() {
        let s = PrometheusSource::new(
            "http://prom:9090/prefix/",
            Some("cluster=\"eu-1\""),
            "default/pneumonia",
            Duration::from_secs(30),
        )
        .unwrap();
        assert_eq!(s.address(), "http://prom:9090/prefix");
        let [counters, latency, scores] = s.queries(60.0);
        let sel = "{policy=\"default/pneumonia\",cluster=\"eu-1\"}[60s]";
        assert!(
            counters.starts_with("sum by (arm, counter) ("),
            "{counters}"
        );
        for metric in [
            "augur_rollout_requests_total",
            "augur_rollout_labelled_total",
            "augur_rollout_correct_total",
            "augur_rollout_brier_sum",
            "augur_rollout_brier_count",
            "augur_rollout_brier_squares_sum",
            "augur_rollout_shadow_compared_total",
            "augur_rollout_shadow_agreed_total",
        ] {
            assert!(
                counters.contains(&format!("increase({metric}{sel})")),
                "{metric}: {counters}"
            );
        }
        assert_eq!(
            latency,
            format!("sum by (arm, le) (increase(augur_rollout_latency_milliseconds_bucket{sel}))")
        );
        assert_eq!(
            scores,
            format!("sum by (arm, le) (increase(augur_rollout_score_bucket{sel}))")
        );
        assert!(PrometheusSource::new("https://prom", None, "a/b", Duration::ZERO).is_err());
        assert_eq!(percent_encode("a b{\"}"), "a%20b%7B%22%7D");
    }

    #[test]
    fn counts_become_samples_spread_over_the_window() {
        let window = Window::ending(1_000_000.0, 60.0);
        let counters = [
            counter("canary", "success", 90.0),
            counter("canary", "error", 30.0),
            counter("stable", "success", 240.4),
        ];
        let latency = [
            series(&[("arm", "canary"), ("le", "10")], 60.0),
            series(&[("arm", "canary"), ("le", "25")], 120.0),
            series(&[("arm", "canary"), ("le", "+Inf")], 120.0),
            series(&[("arm", "stable"), ("le", "10")], 240.4),
            series(&[("arm", "stable"), ("le", "+Inf")], 240.4),
        ];
        let scores = [
            series(&[("arm", "canary"), ("le", "0.1")], 30.0),
            series(&[("arm", "canary"), ("le", "0.9")], 60.0),
            series(&[("arm", "canary"), ("le", "1")], 60.0),
            series(&[("arm", "canary"), ("le", "+Inf")], 60.0),
        ];
        let r = reading(window, &counters, &latency, &scores);
        let canary: Vec<&Sample> = r.samples.iter().filter(|s| s.arm == Arm::Canary).collect();
        assert_eq!(canary.len(), 120);
        assert_eq!(
            r.samples.iter().filter(|s| s.arm == Arm::Stable).count(),
            240
        );
        assert!(
            r.samples.windows(2).all(|w| w[0].t <= w[1].t),
            "in time order"
        );
        assert!(r
            .samples
            .iter()
            .all(|s| s.t > window.from && s.t < window.to));
        assert!(r.samples.iter().all(|s| s.latency_ms.is_finite()));
        // Each eighth of the window (a 2-minute trigger's bucket is 15 s) holds its share of
        // requests, errors, slow requests and scores.
        for eighth in 0..8 {
            let lo = window.from + eighth as f64 * 7.5;
            let in_it: Vec<&&Sample> = canary
                .iter()
                .filter(|s| s.t >= lo && s.t < lo + 7.5)
                .collect();
            assert_eq!(in_it.len(), 15, "eighth {eighth}");
            let errors = in_it.iter().filter(|s| s.is_error()).count();
            assert!(
                (3..=5).contains(&errors),
                "eighth {eighth}: {errors} errors"
            );
            let slow = in_it.iter().filter(|s| s.latency_ms > 10.0).count();
            assert!((6..=9).contains(&slow), "eighth {eighth}: {slow} slow");
            let scored = in_it.iter().filter(|s| s.score.is_some()).count();
            assert!(
                (7..=8).contains(&scored),
                "eighth {eighth}: {scored} scored"
            );
        }
        assert_eq!(canary.iter().filter(|s| s.is_error()).count(), 30);
        assert_eq!(
            canary.iter().filter(|s| s.latency_ms == 5.0).count(),
            60,
            "first bucket: half its bound"
        );
        let mid = (10.0f64 * 25.0).sqrt();
        assert_eq!(canary.iter().filter(|s| s.latency_ms == mid).count(), 60);
        assert_eq!(canary.iter().filter(|s| s.score == Some(0.05)).count(), 30);
        assert_eq!(
            canary.iter().filter(|s| s.score == Some(0.5)).count(),
            30,
            "(0.1, 0.9]"
        );
        // A re-read of the same answers gives the same samples.
        assert_eq!(reading(window, &counters, &latency, &scores), r);
    }

    #[test]
    fn a_latency_histogram_rebuilt_from_buckets_keeps_its_quantiles_to_a_bucket() {
        // 1,000 requests: 900 in (20, 25] ms, 100 in (500, 600] ms; the p95 is in the slow
        // bucket and is read at its geometric middle.
        let latency = [
            series(&[("arm", "canary"), ("le", "20")], 0.0),
            series(&[("arm", "canary"), ("le", "25")], 900.0),
            series(&[("arm", "canary"), ("le", "500")], 900.0),
            series(&[("arm", "canary"), ("le", "600")], 1000.0),
            series(&[("arm", "canary"), ("le", "+Inf")], 1000.0),
        ];
        let counters = [counter("canary", "success", 1000.0)];
        let r = reading(Window::ending(600.0, 60.0), &counters, &latency, &[]);
        let mut h = LatencyHistogram::new();
        for s in &r.samples {
            h.record(s.latency_ms);
        }
        let p95 = h.quantile(0.95).expect("p95");
        assert!((540.0..=555.0).contains(&p95), "{p95}");
        let p50 = h.quantile(0.5).expect("p50");
        assert!((22.0..=23.0).contains(&p50), "{p50}");
    }

    #[test]
    fn labels_brier_sums_and_shadow_counts_become_tallies() {
        let window = Window::ending(1_200.0, 60.0);
        let counters = [
            counter("canary", "labelled", 40.0),
            counter("canary", "correct", 30.2),
            counter("canary", "brier_sum", 6.0),
            counter("canary", "brier_count", 40.0),
            counter("canary", "brier_squares", 2.5),
            counter("canary", "compared", 50.0),
            counter("canary", "agreed", 45.0),
            counter("stable", "labelled", 10.0),
            counter("stable", "correct", 10.0),
            counter("stable", "brier_sum", 1.0),
        ];
        let scores = [series(&[("arm", "canary"), ("le", "+Inf")], 80.0)];
        let r = reading(window, &counters, &[], &scores);
        assert!(r.samples.is_empty(), "no requests in this window");
        let canary = r
            .tallies
            .iter()
            .find(|t| t.arm == Arm::Canary)
            .expect("canary");
        assert_eq!((canary.from, canary.to), (1_140.0, 1_200.0));
        assert_eq!(
            (canary.predictions, canary.labelled, canary.correct),
            (80, 40, 30)
        );
        assert_eq!(
            (canary.brier_count, canary.brier_sum, canary.brier_squares),
            (40, 6.0, 2.5)
        );
        assert_eq!((canary.compared, canary.agreed), (50, 45));
        let stable = r
            .tallies
            .iter()
            .find(|t| t.arm == Arm::Stable)
            .expect("stable");
        assert_eq!(
            (stable.brier_count, stable.brier_squares),
            (10, 1.0),
            "older sidecars: every labelled prediction scored, the largest variance"
        );
    }

    #[test]
    fn huge_windows_are_scaled_down_keeping_their_rates() {
        let counters = [
            counter("canary", "success", 90_000.0),
            counter("canary", "error", 10_000.0),
        ];
        let latency = [series(&[("arm", "canary"), ("le", "+Inf")], 100_000.0)];
        let r = reading(Window::ending(60.0, 60.0), &counters, &latency, &[]);
        assert_eq!(r.samples.len() as u64, MAX_SAMPLES_PER_WINDOW);
        assert_eq!(r.samples.iter().filter(|s| s.is_error()).count(), 500);
    }

    #[test]
    fn parses_prometheus_vectors_and_errors() {
        let ok = br#"{"status":"success","data":{"resultType":"vector","result":[
            {"metric":{"arm":"stable"},"value":[1700000000.1,"12.5"]}]}}"#;
        let v = parse_vector(ok).unwrap();
        assert_eq!(v[0].1, 12.5);
        let bad = br#"{"status":"error","error":"parse error"}"#;
        assert!(matches!(parse_vector(bad), Err(SourceError::BadAnswer(e)) if e == "parse error"));
    }
}
