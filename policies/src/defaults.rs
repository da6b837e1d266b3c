//! Every default value, in one place, with the Istio source it follows
//! (see `reference/istio-envoy.md` §4).

use std::time::Duration;

/// When a CanaryPolicy's rollout starts without `startOn`: on `augur rollout start`, so that
/// loading a policy never sends traffic to a canary by itself (augur's own choice; Argo Rollouts
/// starts a rollout when its pod template changes).
pub const START_ON: crate::StartOn = crate::StartOn::Command;
/// Namespace of a document without `metadata.namespace`.
pub const NAMESPACE: &str = "default";
/// Kubernetes cluster domain used to qualify short host names.
pub const CLUSTER_DOMAIN: &str = "svc.cluster.local";
/// Mirror percentage when `mirrorPercentage` is absent: "all the traffic (100%) will be mirrored".
pub const MIRROR_PERCENTAGE: f64 = 100.0;
/// Weight of a lone destination: "it will receive all traffic".
pub const SINGLE_DESTINATION_WEIGHT: u32 = 100;
/// `redirect.redirectCode` when absent (301 Moved Permanently).
pub const REDIRECT_CODE: u16 = 301;
/// Retries when a route has no `retries` block (pilot's default retry policy).
pub const RETRY_ATTEMPTS: u32 = 2;
/// `retryOn` when a route has no `retries` block.
pub const RETRY_ON: &str =
    "connect-failure,refused-stream,unavailable,cancelled,retriable-status-codes";
/// Load balancer when none is configured: `defaultLBAlgorithm()` is LEAST_REQUEST.
pub const LOAD_BALANCER: crate::LbPolicy = crate::LbPolicy::LeastRequest;
/// `connectionPool.tcp.maxConnections` (2^32-1).
pub const MAX_CONNECTIONS: u32 = u32::MAX;
/// `connectionPool.tcp.connectTimeout`.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// `connectionPool.{tcp,http}.idleTimeout`.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(3600);
/// `http1MaxPendingRequests`, `http2MaxRequests`, `maxRetries` (2^32-1).
pub const MAX_REQUESTS: u32 = u32::MAX;
/// `maxRequestsPerConnection`: 0 = unlimited.
pub const MAX_REQUESTS_PER_CONNECTION: u32 = 0;
/// `outlierDetection.consecutive5xxErrors` (0 disables).
pub const CONSECUTIVE_5XX_ERRORS: u32 = 5;
/// `outlierDetection.interval`.
pub const OUTLIER_INTERVAL: Duration = Duration::from_secs(10);
/// `outlierDetection.baseEjectionTime` (multiplied by the ejection count).
pub const BASE_EJECTION_TIME: Duration = Duration::from_secs(30);
/// `outlierDetection.maxEjectionPercent`.
pub const MAX_EJECTION_PERCENT: f64 = 10.0;
/// `outlierDetection.minHealthPercent`.
pub const MIN_HEALTH_PERCENT: f64 = 0.0;
/// CanaryPolicy analysis interval.
pub const ANALYSIS_INTERVAL: Duration = Duration::from_secs(60);
/// CanaryPolicy minimum samples per arm before a verdict.
pub const ANALYSIS_MIN_SAMPLES: u32 = 100;
/// CanaryPolicy significance level.
pub const ANALYSIS_ALPHA: f64 = 0.05;
/// CanaryPolicy failed analyses before rollback.
pub const FAILURE_LIMIT: u32 = 1;
/// CanaryPolicy inconclusive measurements (gates that reached `maxDuration`) tolerated before
/// `onInconclusive` (Argo Rollouts' default, 0).
pub const INCONCLUSIVE_LIMIT: u32 = 0;
/// How long an analysis gate waits for its metrics to be shown within their allowances.
pub const ANALYSIS_MAX_DURATION: Duration = Duration::from_secs(3600);
/// Bursts up to this long are left out of a rate metric's Fail (the error trigger's window).
pub const ANALYSIS_BURST_WINDOW: Duration = Duration::from_secs(120);
/// A rollback trigger's false-firing budget per hour.
pub const TRIGGER_ALPHA: f64 = 0.01;
/// CanaryPolicy consecutive metric errors tolerated.
pub const CONSECUTIVE_ERROR_LIMIT: u32 = 4;
/// How far behind now a Prometheus source reads: a scrape stamped before the read time may land
/// up to its timeout later (Prometheus' default `scrape_timeout`, 10 s), and a remote-write store
/// (Thanos, Mimir) adds its batching (5 s by default); 30 s is twice a common 15 s scrape
/// interval and covers both with margin.
pub const PROMETHEUS_SCRAPE_LAG: Duration = Duration::from_secs(30);
/// Ground-truth label time-to-live.
pub const LABEL_TTL: Duration = Duration::from_secs(600);

/// Shadow model worker threads, each with its own ONNX Runtime session.
pub const SHADOW_WORKERS: u32 = 1;
/// Mirrored images waiting for the shadow model; beyond it they are dropped and counted.
pub const SHADOW_QUEUE_CAPACITY: u32 = 64;
/// Largest micro-batch when the model's batch dimension is dynamic.
pub const SHADOW_MAX_BATCH: u32 = 8;
/// How long a worker waits to fill a micro-batch after its first image.
pub const SHADOW_MAX_BATCH_WAIT: Duration = Duration::from_millis(2);
/// ONNX Runtime intra-op threads per session.
pub const SHADOW_INTRA_OP_THREADS: u32 = 1;
