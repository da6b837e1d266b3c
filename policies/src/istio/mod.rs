//! Istio's `networking.istio.io` kinds (v1, v1beta1, v1alpha3), read with
//! Istio's semantics. Fields augur does not implement, and unknown fields,
//! are warnings that name the field.

pub(crate) mod common;
pub(crate) mod destination_rule;
pub(crate) mod service_entry;
pub(crate) mod virtual_service;

/// Fields Istio defines that augur knows about but does not implement.
const UNSUPPORTED: &[&str] = &[
    "corsPolicy",
    "delegate",
    "tcp",
    "tls",
    "exportTo",
    "workloadSelector",
    "localityLbSetting",
    "sourceLabels",
    "sourceNamespace",
    "statPrefix",
    "grpcStatus",
    "http2Error",
    "exponentialDelay",
    "retryIgnorePreviousHosts",
    "backoff",
    "maxConcurrentStreams",
    "tcpKeepalive",
    "splitExternalLocalOriginErrors",
    "consecutiveLocalOriginFailures",
    "consecutiveErrors",
    "warmup",
    "warmupDurationSecs",
    "tunnel",
    "proxyProtocol",
    "retryBudget",
    "ringHash",
    "maglev",
    "minimumRingSize",
    "portLevelSettings",
    "subjectAltNames",
    "credentialName",
    "caCrl",
    "network",
    "locality",
    "weight",
    "serviceAccount",
    "subjectAltNames",
    "status",
    "mirror_percent",
    "percent",
    "gateways",
    "endpointSelector",
];

/// The warning for a field of an Istio document that augur ignores.
pub(crate) fn ignored_field_message(path: &str) -> String {
    let field = crate::context::last_segment(path);
    let field = field.split('[').next().unwrap_or(field);
    if UNSUPPORTED.contains(&field) {
        format!("`{field}` is not supported by augur; ignored")
    } else {
        format!("unknown field `{field}`; ignored")
    }
}
