//! The demo's policy: the example canary policy's routes, steps, metrics and triggers, with the
//! intervals and windows shortened and the allowances widened, so that gates which open only on
//! evidence decide in a few minutes at the demo's 20 requests a second.

use std::path::Path;

/// The demo's analysis interval, seconds.
pub(super) const INTERVAL_S: u64 = 5;
/// Samples per arm (labelled ones for accuracy) before any verdict.
pub(super) const MIN_SAMPLES: u64 = 30;
/// The screen's explanation of why gates wait, and why the demo's allowances are wide.
pub(super) const WHY_GATES_WAIT: &str = concat!(
    "gates: each opens when every metric's anytime-valid bound of canary - stable is inside its ",
    "allowance, which takes canary requests; the demo's allowances are wider than the example ",
    "policy's (p95 +50%, errors +5 points, accuracy -10 points; the example's +20%, +1, -2 take ",
    "about half an hour at 20 requests/s: `augur policy explain --rate 20`) and its first step is ",
    "20%, so that ~20 requests/s decide in a few minutes",
);

/// The ports and models the policy points at.
pub(super) struct PolicyInputs<'a> {
    /// Stable's model servers (two replicas).
    pub(super) stable_ports: [u16; 2],
    /// The canary's model server (or the delay in front of it).
    pub(super) canary_port: u16,
    /// The shadow model (the stable model's file).
    pub(super) shadow_model: &'a Path,
    /// Its `preprocessing` block, indented by six spaces.
    pub(super) shadow_preprocessing: &'a str,
    /// Where the evidence comes from: the proxy's own samples (`None`), or, for the fleet, the
    /// Prometheus at this address scraping every sidecar.
    pub(super) prometheus: Option<std::net::SocketAddr>,
}

/// The policy file's text.
pub(super) fn yaml(p: &PolicyInputs<'_>) -> String {
    format!(
        r#"# Written by `augur demo`: policies/examples/canary-pneumonia.yaml with shorter intervals and
# wider allowances.
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata:
  name: pneumonia
spec:
  hosts: [pneumonia]
  http:
    - name: primary
      route:
        - destination: {{host: pneumonia, subset: v1}}
          weight: 100
        - destination: {{host: pneumonia, subset: v2}}
          weight: 0
      timeout: 10s
      retries:
        attempts: 2
        perTryTimeout: 5s
        retryOn: connect-failure,refused-stream,503
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata:
  name: pneumonia
spec:
  host: pneumonia
  trafficPolicy:
    connectionPool:
      tcp:
        connectTimeout: 1s
  subsets:
    - name: v1
      labels: {{version: v1}}
    - name: v2
      labels: {{version: v2}}
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata:
  name: pneumonia
spec:
  hosts: [pneumonia]
  location: MESH_INTERNAL
  ports:
    - {{number: 8500, name: http, protocol: HTTP}}
  resolution: STATIC
  endpoints:
    - address: 127.0.0.1
      ports: {{http: {stable_a}}}
      labels: {{version: v1}}
    - address: 127.0.0.1
      ports: {{http: {stable_b}}}
      labels: {{version: v1}}
    - address: 127.0.0.1
      ports: {{http: {canary}}}
      labels: {{version: v2}}
---
apiVersion: augur.dev/v1alpha1
kind: CanaryPolicy
metadata:
  name: pneumonia
spec:
  startOn: immediately
  trafficRouting:
    virtualService:
      name: pneumonia
      routes: [primary]
  stable: {{host: pneumonia, subset: v1}}
  canary: {{host: pneumonia, subset: v2}}
  steps:
    - setWeight: 20
    - analysis: {{}}
    - setWeight: 50
    - analysis: {{}}
    - setWeight: 80
    - analysis: {{}}
    - setWeight: 100
  analysis:
    interval: {interval}s
    minSamples: {min_samples}
    alpha: 0.05
    method: sequential
    maxDuration: 10m
    onInconclusive: hold
    failureLimit: 1
    burstWindow: 20s
    onNoData: hold
    source: {source}
    # Wider than the example's (+20%, +1 point, -2 points), and a first step at 20%: evidence for
    # a narrow allowance takes thousands of canary requests, more than a demonstration at 20
    # requests/s sends in a few minutes.
    metrics:
      - name: p95-latency
        kind: latency
        quantile: 0.95
        direction: increase
        allowedChange: {{relative: 0.5}}
      - name: error-rate
        kind: errorRate
        allowedChange: {{absolute: 5}}
        critical: true
      - name: accuracy
        kind: accuracy
        direction: decrease
        allowedChange: {{absolute: 10}}
  rollback:
    triggers:
      - name: error-rate-above-10
        metric: errorRate
        condition: {{above: 10}}
        window: 20s
        action: immediate
      - name: accuracy-drop
        metric: accuracy
        condition: {{dropBy: 25}}
        window: 30s
        action: staged
      - name: p95-latency-increase
        metric: latencyP95
        condition: {{increaseBy: 500ms}}
        window: 30s
        action: canaryOnly
  prediction:
    scorePointer: /confidence
    labelPointer: /prediction
    positiveLabel: PNEUMONIA
  shadow:
    model: {shadow}
    mirrorPercentage: 10
    preprocessing:
{preprocessing}  labels:
    ttl: 2m
    minLabelRate: 5
"#,
        stable_a = p.stable_ports[0],
        stable_b = p.stable_ports[1],
        canary = p.canary_port,
        interval = INTERVAL_S,
        min_samples = MIN_SAMPLES,
        shadow = serde_json::Value::from(p.shadow_model.display().to_string()),
        preprocessing = p.shadow_preprocessing,
        source = match p.prometheus {
            Some(addr) => format!("{{prometheus: {{address: \"http://{addr}\", scrapeLag: 2s}}}}"),
            None => "embedded".to_owned(),
        },
    )
}
