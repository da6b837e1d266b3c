//! Istio's `networking.istio.io` kinds (v1, v1beta1, v1alpha3), read with
//! Istio's semantics. Fields Istio defines that augur does not implement are
//! warnings that name the field; fields Istio does not define are errors (as
//! `istioctl validate` and the API server's strict field validation make
//! them), unless the loader is told to allow them.

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
    "serviceAccount",
    "subjectAltNames",
    "status",
    "mirror_percent",
    "percent",
    "gateways",
    "endpointSelector",
];

/// Istio fields that augur ignores only under one parent: `(parent, field)`. A ServiceEntry
/// endpoint's `weight` is Istio's; a `weight` anywhere else is not.
const UNSUPPORTED_UNDER: &[(&str, &str)] = &[("endpoints", "weight")];

/// Kubernetes object metadata that augur does not use (what `kubectl get -o yaml` adds).
const KUBERNETES_METADATA: &[&str] = &[
    "uid",
    "resourceVersion",
    "generation",
    "creationTimestamp",
    "deletionTimestamp",
    "deletionGracePeriodSeconds",
    "managedFields",
    "ownerReferences",
    "finalizers",
    "generateName",
    "selfLink",
];

/// Why a field that the raw types do not read is ignored, when Istio (or Kubernetes) defines
/// it: `None` for a field neither defines (a typo, or a field from a newer Istio).
pub(crate) fn known_but_ignored(path: &str) -> Option<String> {
    let field = crate::fields::field_name(path);
    let parent = path
        .rsplit_once('.')
        .map(|(p, _)| crate::fields::field_name(p))
        .unwrap_or_default();
    if parent == "metadata" && path.matches('.').count() == 1 {
        return KUBERNETES_METADATA
            .contains(&field)
            .then(|| format!("`{field}` is Kubernetes metadata that augur does not use; ignored"));
    }
    let known = UNSUPPORTED.contains(&field) || UNSUPPORTED_UNDER.contains(&(parent, field));
    known.then(|| format!("`{field}` is not supported by augur; ignored"))
}
