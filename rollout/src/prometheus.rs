//! The Prometheus metric source: fleet-wide evidence for a rollout when a model runs in many
//! pods, read over the Prometheus HTTP API from the Istio-standard series every sidecar exports.
//!
//! Each interval the source asks for the increase, per `destination_version`, of
//! `istio_requests_total` (by `response_code`) and of `istio_request_duration_milliseconds_bucket`
//! (by `le`) over the time since the last fetch, and turns those counts back into samples the
//! analyzer judges like the proxy's own: one per request, errors for 5xx, latencies at the
//! geometric middle of their bucket (so latency is known to Envoy's bucket resolution). An
//! unreachable, slow or empty Prometheus gives no samples: the analysis sees no data, counts a
//! consecutive error, and never promotes.

use std::collections::BTreeMap;
use std::time::Duration;

use augur_model::{Arm, Sample};
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// How long one query may take before the fetch counts as failed.
pub const QUERY_TIMEOUT: Duration = Duration::from_secs(5);
/// Samples made per arm and fetch at most; larger counts are scaled down proportionally.
pub const MAX_SAMPLES_PER_FETCH: f64 = 5_000.0;
/// One element of an instant vector: its labels and value.
type Series = (BTreeMap<String, String>, f64);

/// Largest Prometheus answer read.
const MAX_RESPONSE: usize = 8 * 1024 * 1024;

/// Why a fetch gave nothing.
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
    /// The address is not `http://host:port[/prefix]`.
    #[error("unsupported prometheus address {0:?}: expected http://host:port")]
    Address(String),
}

/// Where and what to ask for one rollout.
#[derive(Debug, Clone)]
pub struct PrometheusSource {
    host_port: String,
    prefix: String,
    selector: String,
    stable_version: String,
    canary_version: String,
}

impl PrometheusSource {
    /// A source for the rollout of `service` (FQDN) between two versions; `extra` label matchers
    /// (the policy's `source.prometheus.query`, e.g. `destination_workload_namespace="prod"`)
    /// narrow the series.
    pub fn new(
        address: &str,
        extra: Option<&str>,
        service: &str,
        stable_version: &str,
        canary_version: &str,
    ) -> Result<Self, SourceError> {
        let rest = address
            .strip_prefix("http://")
            .ok_or_else(|| SourceError::Address(address.to_owned()))?;
        let (host_port, prefix) = match rest.split_once('/') {
            Some((h, p)) => (h, format!("/{}", p.trim_end_matches('/'))),
            None => (rest, String::new()),
        };
        let host_port = if host_port.contains(':') {
            host_port.to_owned()
        } else {
            format!("{host_port}:80")
        };
        let mut selector = format!(
            "reporter=\"source\",destination_service=\"{service}\",destination_version=~\"{}|{}\"",
            escape(stable_version),
            escape(canary_version)
        );
        if let Some(extra) = extra.filter(|e| !e.trim().is_empty()) {
            selector.push(',');
            selector.push_str(extra.trim());
        }
        Ok(Self {
            host_port,
            prefix,
            selector,
            stable_version: stable_version.to_owned(),
            canary_version: canary_version.to_owned(),
        })
    }

    /// The samples of the last `window_s` seconds, stamped `now`.
    pub async fn fetch(&self, window_s: f64, now: f64) -> Result<Vec<Sample>, SourceError> {
        let range = format!("{}s", window_s.round().max(1.0));
        let requests = self
            .query(&format!(
                "sum by (destination_version, response_code) (increase(istio_requests_total{{{}}}[{range}]))",
                self.selector
            ))
            .await?;
        let buckets = self
            .query(&format!(
                "sum by (destination_version, le) (increase(istio_request_duration_milliseconds_bucket{{{}}}[{range}]))",
                self.selector
            ))
            .await?;
        let mut samples = Vec::new();
        for (arm, version) in [
            (Arm::Stable, &self.stable_version),
            (Arm::Canary, &self.canary_version),
        ] {
            samples.extend(arm_samples(arm, version, &requests, &buckets, now));
        }
        Ok(samples)
    }

    async fn query(&self, promql: &str) -> Result<Vec<Series>, SourceError> {
        let path = format!(
            "{}/api/v1/query?query={}",
            self.prefix,
            percent_encode(promql)
        );
        let body = tokio::time::timeout(QUERY_TIMEOUT, get(&self.host_port, &path))
            .await
            .map_err(|_| SourceError::Timeout(self.host_port.clone()))?
            .map_err(|source| SourceError::Io {
                address: self.host_port.clone(),
                source,
            })?;
        parse_vector(&body)
    }
}

/// The samples of one arm from the two query results.
fn arm_samples(
    arm: Arm,
    version: &str,
    requests: &[Series],
    buckets: &[Series],
    now: f64,
) -> Vec<Sample> {
    let of_arm = |m: &BTreeMap<String, String>| {
        m.get("destination_version").map(String::as_str) == Some(version)
    };
    let total: f64 = requests
        .iter()
        .filter(|(m, _)| of_arm(m))
        .map(|(_, v)| v)
        .sum();
    let errors: f64 = requests
        .iter()
        .filter(|(m, _)| of_arm(m))
        .filter(|(m, _)| {
            m.get("response_code")
                .is_some_and(|c| c.starts_with('5') || c == "0")
        })
        .map(|(_, v)| v)
        .sum();
    if total < 0.5 {
        return Vec::new();
    }
    let scale = (MAX_SAMPLES_PER_FETCH / total).min(1.0);
    // Cumulative bucket counts by upper bound, in order.
    let mut cumulative: Vec<(f64, f64)> = buckets
        .iter()
        .filter(|(m, _)| of_arm(m))
        .filter_map(|(m, v)| {
            let le = m.get("le")?;
            let bound = if le == "+Inf" {
                f64::INFINITY
            } else {
                le.parse().ok()?
            };
            Some((bound, *v))
        })
        .collect();
    cumulative.sort_by(|a, b| a.0.total_cmp(&b.0));
    let mut latencies = Vec::new();
    let (mut previous_bound, mut previous_count) = (0.0f64, 0.0f64);
    for (bound, count) in cumulative {
        let in_bucket = ((count - previous_count).max(0.0) * scale).round() as usize;
        let value = match (previous_bound > 0.0, bound.is_finite()) {
            (true, true) => (previous_bound * bound).sqrt(),
            (false, true) => bound / 2.0,
            (_, false) => previous_bound * 1.5,
        };
        latencies.extend(std::iter::repeat_n(value, in_bucket));
        previous_bound = if bound.is_finite() {
            bound
        } else {
            previous_bound
        };
        previous_count = count;
    }
    let n = (total * scale).round() as usize;
    let error_count = (errors * scale).round() as usize;
    (0..n)
        .map(|i| {
            let status = if i < error_count { 503 } else { 200 };
            Sample::new(
                now,
                arm,
                status,
                latencies.get(i).copied().unwrap_or(f64::NAN),
            )
        })
        .filter(|s| s.latency_ms.is_finite())
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

fn escape(s: &str) -> String {
    s.replace('\\', "\\\\").replace('"', "\\\"")
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

#[cfg(test)]
mod tests {
    use super::*;

    fn series(labels: &[(&str, &str)], value: f64) -> (BTreeMap<String, String>, f64) {
        (
            labels
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
            value,
        )
    }

    #[test]
    fn counts_become_samples_with_errors_and_bucketed_latency() {
        let requests = vec![
            series(
                &[("destination_version", "v2"), ("response_code", "200")],
                8.0,
            ),
            series(
                &[("destination_version", "v2"), ("response_code", "503")],
                2.0,
            ),
            series(
                &[("destination_version", "v1"), ("response_code", "200")],
                40.0,
            ),
        ];
        let buckets = vec![
            series(&[("destination_version", "v2"), ("le", "10")], 4.0),
            series(&[("destination_version", "v2"), ("le", "25")], 10.0),
            series(&[("destination_version", "v2"), ("le", "+Inf")], 10.0),
        ];
        let s = arm_samples(Arm::Canary, "v2", &requests, &buckets, 7.0);
        assert_eq!(s.len(), 10);
        assert_eq!(s.iter().filter(|x| x.status == 503).count(), 2);
        assert_eq!(
            s.iter().filter(|x| x.latency_ms == 5.0).count(),
            4,
            "first bucket: half its bound"
        );
        let mid = (10.0f64 * 25.0).sqrt();
        assert_eq!(s.iter().filter(|x| x.latency_ms == mid).count(), 6);
        assert!(s.iter().all(|x| x.arm == Arm::Canary && x.t == 7.0));
        assert!(arm_samples(Arm::Canary, "v3", &requests, &buckets, 7.0).is_empty());
    }

    #[test]
    fn parses_prometheus_vectors_and_errors() {
        let ok = br#"{"status":"success","data":{"resultType":"vector","result":[
            {"metric":{"destination_version":"v1"},"value":[1700000000.1,"12.5"]}]}}"#;
        let v = parse_vector(ok).unwrap();
        assert_eq!(v[0].1, 12.5);
        let bad = br#"{"status":"error","error":"parse error"}"#;
        assert!(matches!(parse_vector(bad), Err(SourceError::BadAnswer(e)) if e == "parse error"));
    }

    #[test]
    fn addresses_and_selectors() {
        let s = PrometheusSource::new(
            "http://prom:9090/prefix/",
            Some("destination_workload_namespace=\"prod\""),
            "m.default.svc.cluster.local",
            "v1",
            "v2",
        )
        .unwrap();
        assert_eq!(
            (s.host_port.as_str(), s.prefix.as_str()),
            ("prom:9090", "/prefix")
        );
        assert!(s
            .selector
            .ends_with(",destination_workload_namespace=\"prod\""));
        assert!(PrometheusSource::new("https://prom", None, "m", "v1", "v2").is_err());
        assert_eq!(percent_encode("a b{\"}"), "a%20b%7B%22%7D");
    }
}
