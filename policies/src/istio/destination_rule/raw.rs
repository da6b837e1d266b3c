//! Raw serde shape of a DestinationRule `spec` and its validation.

use std::collections::BTreeMap;

use serde::Deserialize;

use super::*;
use crate::context::Ctx;
use crate::yaml::join;

/// `spec` of a DestinationRule.
#[derive(Debug, Default, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub(crate) struct RawDestinationRuleSpec {
    pub(crate) host: Option<String>,
    pub(crate) traffic_policy: Option<RawTrafficPolicy>,
    pub(crate) subsets: Option<Vec<RawSubset>>,
}

#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub(crate) struct RawSubset {
    name: Option<String>,
    labels: Option<BTreeMap<String, String>>,
    traffic_policy: Option<RawTrafficPolicy>,
}

#[derive(Debug, Clone, Default, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub(crate) struct RawTrafficPolicy {
    load_balancer: Option<RawLoadBalancer>,
    connection_pool: Option<RawConnectionPool>,
    outlier_detection: Option<RawOutlier>,
    tls: Option<RawTls>,
}

#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
struct RawLoadBalancer {
    simple: Option<String>,
    consistent_hash: Option<RawConsistentHash>,
}

#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
struct RawConsistentHash {
    http_header_name: Option<String>,
    http_cookie: Option<RawCookie>,
    use_source_ip: Option<bool>,
    http_query_parameter_name: Option<String>,
}

#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
struct RawCookie {
    name: Option<String>,
    path: Option<String>,
    ttl: Option<String>,
}

#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
struct RawConnectionPool {
    tcp: Option<RawTcp>,
    http: Option<RawHttp>,
}

#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
struct RawTcp {
    max_connections: Option<u32>,
    connect_timeout: Option<String>,
    max_connection_duration: Option<String>,
    idle_timeout: Option<String>,
}

#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
struct RawHttp {
    #[serde(rename = "http1MaxPendingRequests")]
    http1_max_pending_requests: Option<u32>,
    #[serde(rename = "http2MaxRequests")]
    http2_max_requests: Option<u32>,
    max_requests_per_connection: Option<u32>,
    max_retries: Option<u32>,
    idle_timeout: Option<String>,
    h2_upgrade_policy: Option<String>,
    use_client_protocol: Option<bool>,
}

#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
struct RawOutlier {
    #[serde(rename = "consecutive5xxErrors")]
    consecutive_5xx_errors: Option<u32>,
    consecutive_gateway_errors: Option<u32>,
    interval: Option<String>,
    base_ejection_time: Option<String>,
    max_ejection_percent: Option<f64>,
    min_health_percent: Option<f64>,
}

#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
struct RawTls {
    mode: Option<String>,
    ca_certificates: Option<String>,
    client_certificate: Option<String>,
    private_key: Option<String>,
    sni: Option<String>,
    insecure_skip_verify: Option<bool>,
}

impl RawDestinationRuleSpec {
    pub(crate) fn validate(&self, metadata: ObjectMeta, cx: &mut Ctx<'_>) -> DestinationRule {
        let host = match &self.host {
            Some(h) if !h.is_empty() => h.clone(),
            _ => {
                cx.error("spec.host", "is required");
                String::new()
            }
        };
        let base = self.traffic_policy.clone().unwrap_or_default();
        let traffic_policy = base.validate(cx, "spec.trafficPolicy");
        let mut subsets: Vec<Subset> = Vec::new();
        for (i, s) in self.subsets.iter().flatten().enumerate() {
            let p = format!("spec.subsets[{i}]");
            let name = match &s.name {
                Some(n) if !n.is_empty() => n.clone(),
                _ => {
                    cx.error(&join(&p, "name"), "is required");
                    continue;
                }
            };
            if subsets.iter().any(|o| o.name == name) {
                cx.error(&join(&p, "name"), format!("duplicate subset name {name:?}"));
            }
            let traffic_policy = s.traffic_policy.as_ref().map(|tp| {
                tp.merged_over(&base)
                    .validate(cx, &join(&p, "trafficPolicy"))
            });
            subsets.push(Subset {
                name,
                labels: s.labels.clone().unwrap_or_default(),
                traffic_policy,
            });
        }
        DestinationRule {
            metadata,
            host,
            traffic_policy,
            subsets,
        }
    }
}

impl RawTrafficPolicy {
    /// Field-by-field: the subset's settings win, the rule's fill the gaps.
    fn merged_over(&self, base: &RawTrafficPolicy) -> RawTrafficPolicy {
        RawTrafficPolicy {
            load_balancer: self
                .load_balancer
                .clone()
                .or_else(|| base.load_balancer.clone()),
            connection_pool: self
                .connection_pool
                .clone()
                .or_else(|| base.connection_pool.clone()),
            outlier_detection: self
                .outlier_detection
                .clone()
                .or_else(|| base.outlier_detection.clone()),
            tls: self.tls.clone().or_else(|| base.tls.clone()),
        }
    }

    fn validate(&self, cx: &mut Ctx<'_>, path: &str) -> TrafficPolicy {
        TrafficPolicy {
            load_balancer: self
                .load_balancer
                .as_ref()
                .map_or(LoadBalancer::Simple(defaults::LOAD_BALANCER), |lb| {
                    lb.validate(cx, &join(path, "loadBalancer"))
                }),
            connection_pool: self
                .connection_pool
                .as_ref()
                .map(|c| c.validate(cx, &join(path, "connectionPool")))
                .unwrap_or_default(),
            outlier_detection: self
                .outlier_detection
                .as_ref()
                .map(|o| o.validate(cx, &join(path, "outlierDetection"))),
            tls: self
                .tls
                .as_ref()
                .map(|t| t.validate(cx, &join(path, "tls"))),
        }
    }
}

impl RawLoadBalancer {
    fn validate(&self, cx: &mut Ctx<'_>, path: &str) -> LoadBalancer {
        let fallback = LoadBalancer::Simple(defaults::LOAD_BALANCER);
        match (&self.simple, &self.consistent_hash) {
            (Some(_), Some(_)) => {
                cx.error(path, "only one of simple or consistentHash may be set");
                fallback
            }
            (Some(s), None) => LoadBalancer::Simple(match s.as_str() {
                "UNSPECIFIED" => LbPolicy::Unspecified,
                "ROUND_ROBIN" => LbPolicy::RoundRobin,
                "LEAST_REQUEST" => LbPolicy::LeastRequest,
                "LEAST_CONN" => {
                    cx.warn(
                        &join(path, "simple"),
                        "LEAST_CONN is deprecated; using LEAST_REQUEST",
                    );
                    LbPolicy::LeastRequest
                }
                "RANDOM" => LbPolicy::Random,
                "PASSTHROUGH" => LbPolicy::Passthrough,
                other => {
                    cx.error(&join(path, "simple"), format!("unknown load balancer {other:?} (expected ROUND_ROBIN, LEAST_REQUEST, RANDOM, PASSTHROUGH or UNSPECIFIED)"));
                    defaults::LOAD_BALANCER
                }
            }),
            (None, Some(h)) => h
                .validate(cx, &join(path, "consistentHash"))
                .map_or(fallback, LoadBalancer::ConsistentHash),
            (None, None) => fallback,
        }
    }
}

impl RawConsistentHash {
    fn validate(&self, cx: &mut Ctx<'_>, path: &str) -> Option<ConsistentHash> {
        let mut found = Vec::new();
        if let Some(h) = &self.http_header_name {
            found.push(ConsistentHash::HttpHeaderName(h.to_ascii_lowercase()));
        }
        if let Some(c) = &self.http_cookie {
            let p = join(path, "httpCookie");
            let name = c.name.clone().unwrap_or_else(|| {
                cx.error(&join(&p, "name"), "is required");
                String::new()
            });
            let ttl = cx.duration(&join(&p, "ttl"), &c.ttl);
            found.push(ConsistentHash::HttpCookie {
                name,
                path: c.path.clone(),
                ttl,
            });
        }
        if self.use_source_ip == Some(true) {
            found.push(ConsistentHash::UseSourceIp);
        }
        if let Some(q) = &self.http_query_parameter_name {
            found.push(ConsistentHash::HttpQueryParameterName(q.clone()));
        }
        if found.len() != 1 {
            cx.error(path, "exactly one of httpHeaderName, httpCookie, useSourceIp or httpQueryParameterName is required");
            return None;
        }
        found.pop()
    }
}

impl RawConnectionPool {
    fn validate(&self, cx: &mut Ctx<'_>, path: &str) -> ConnectionPool {
        let mut pool = ConnectionPool::default();
        if let Some(t) = &self.tcp {
            let p = join(path, "tcp");
            pool.max_connections = t.max_connections.unwrap_or(pool.max_connections);
            pool.connect_timeout = cx
                .duration(&join(&p, "connectTimeout"), &t.connect_timeout)
                .unwrap_or(pool.connect_timeout);
            pool.max_connection_duration = cx.duration(
                &join(&p, "maxConnectionDuration"),
                &t.max_connection_duration,
            );
            pool.tcp_idle_timeout = cx
                .duration(&join(&p, "idleTimeout"), &t.idle_timeout)
                .unwrap_or(pool.tcp_idle_timeout);
        }
        if let Some(h) = &self.http {
            let p = join(path, "http");
            pool.http1_max_pending_requests = h
                .http1_max_pending_requests
                .unwrap_or(pool.http1_max_pending_requests);
            pool.http2_max_requests = h.http2_max_requests.unwrap_or(pool.http2_max_requests);
            pool.max_requests_per_connection = h
                .max_requests_per_connection
                .unwrap_or(pool.max_requests_per_connection);
            pool.max_retries = h.max_retries.unwrap_or(pool.max_retries);
            pool.http_idle_timeout = cx
                .duration(&join(&p, "idleTimeout"), &h.idle_timeout)
                .unwrap_or(pool.http_idle_timeout);
            pool.h2_upgrade = match h.h2_upgrade_policy.as_deref() {
                None | Some("DEFAULT") | Some("DO_NOT_UPGRADE") => false,
                Some("UPGRADE") => true,
                Some(other) => {
                    cx.error(
                        &join(&p, "h2UpgradePolicy"),
                        format!("unknown h2UpgradePolicy {other:?} (expected DEFAULT, DO_NOT_UPGRADE or UPGRADE)"),
                    );
                    false
                }
            };
            pool.use_client_protocol = h.use_client_protocol.unwrap_or(false);
        }
        pool
    }
}

impl RawOutlier {
    fn validate(&self, cx: &mut Ctx<'_>, path: &str) -> OutlierDetection {
        let pct = |cx: &mut Ctx<'_>, field: &str, v: Option<f64>, default: f64| {
            Percent::check(cx, &join(path, field), v.unwrap_or(default))
                .or(Percent::new(default))
                .unwrap_or(Percent::FULL)
        };
        OutlierDetection {
            consecutive_5xx_errors: self
                .consecutive_5xx_errors
                .unwrap_or(defaults::CONSECUTIVE_5XX_ERRORS),
            consecutive_gateway_errors: self.consecutive_gateway_errors,
            interval: cx
                .duration(&join(path, "interval"), &self.interval)
                .unwrap_or(defaults::OUTLIER_INTERVAL),
            base_ejection_time: cx
                .duration(&join(path, "baseEjectionTime"), &self.base_ejection_time)
                .unwrap_or(defaults::BASE_EJECTION_TIME),
            max_ejection_percent: pct(
                cx,
                "maxEjectionPercent",
                self.max_ejection_percent,
                defaults::MAX_EJECTION_PERCENT,
            ),
            min_health_percent: pct(
                cx,
                "minHealthPercent",
                self.min_health_percent,
                defaults::MIN_HEALTH_PERCENT,
            ),
        }
    }
}

impl RawTls {
    fn validate(&self, cx: &mut Ctx<'_>, path: &str) -> ClientTls {
        let mode = match self.mode.as_deref().unwrap_or("DISABLE") {
            "DISABLE" => TlsMode::Disable,
            "SIMPLE" => TlsMode::Simple,
            "MUTUAL" => TlsMode::Mutual,
            "ISTIO_MUTUAL" => TlsMode::IstioMutual,
            other => {
                cx.error(&join(path, "mode"), format!("unknown TLS mode {other:?} (expected DISABLE, SIMPLE, MUTUAL or ISTIO_MUTUAL)"));
                TlsMode::Disable
            }
        };
        if mode == TlsMode::Mutual
            && (self.client_certificate.is_none() || self.private_key.is_none())
        {
            cx.error(path, "MUTUAL mode needs clientCertificate and privateKey");
        }
        ClientTls {
            mode,
            ca_certificates: self.ca_certificates.clone(),
            client_certificate: self.client_certificate.clone(),
            private_key: self.private_key.clone(),
            sni: self.sni.clone(),
            insecure_skip_verify: self.insecure_skip_verify.unwrap_or(false),
        }
    }
}
