//! The demo's policy: the example canary policy's routes, steps, metrics and triggers, with the
//! intervals and windows shortened so a run takes a few minutes on loopback.

use std::path::Path;

/// The demo's analysis interval, seconds.
pub(super) const INTERVAL_S: u64 = 5;
/// How long the canary bakes at 20% and at 50% before their analysis gates, seconds.
pub(super) const BAKE_S: [u64; 2] = [45, 30];
/// Samples per arm (labelled ones for accuracy) before any verdict.
pub(super) const MIN_SAMPLES: u64 = 10;

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
}

/// The policy file's text.
pub(super) fn yaml(p: &PolicyInputs<'_>) -> String {
    format!(
        r#"# Written by `augur demo`: policies/examples/canary-pneumonia.yaml with shorter intervals.
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
  trafficRouting:
    virtualService:
      name: pneumonia
      routes: [primary]
  stable: {{host: pneumonia, subset: v1}}
  canary: {{host: pneumonia, subset: v2}}
  steps:
    - setWeight: 5
    - analysis: {{}}
    - setWeight: 20
    # Bakes: the rollback triggers need a whole window of data at a weight that gives it, and
    # each analysis gate judges the evidence gathered since the start, so without them a canary
    # that slipped through 5% on thin evidence would pass the next gates at once.
    - pause: {{duration: {bake_20}s}}
    - analysis: {{}}
    - setWeight: 50
    - pause: {{duration: {bake_50}s}}
    - analysis: {{}}
    - setWeight: 100
  analysis:
    interval: {interval}s
    minSamples: {min_samples}
    alpha: 0.05
    method: sequential
    failureLimit: 1
    inconclusiveLimit: 3
    # NoData looks (too few labelled canary predictions yet at 5%) are expected for a while.
    consecutiveErrorLimit: 60
    onNoData: hold
    onInconclusive: hold
    source: embedded
    metrics:
      - name: p95-latency
        kind: latency
        quantile: 0.95
        direction: increase
        allowedChange: {{relative: 0.2}}
      - name: error-rate
        kind: errorRate
        allowedChange: {{absolute: 1}}
        critical: true
      - name: accuracy
        kind: accuracy
        direction: decrease
        allowedChange: {{absolute: 2}}
  rollback:
    triggers:
      - name: error-rate-above-10
        metric: errorRate
        condition: {{above: 10}}
        window: 20s
        action: immediate
      # 25 points, not the example's 5: the few labelled predictions per window of 16 repeated
      # images swing accuracy by more than 5 points from window to window.
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
        bake_20 = BAKE_S[0],
        bake_50 = BAKE_S[1],
        min_samples = MIN_SAMPLES,
        shadow = serde_json::Value::from(p.shadow_model.display().to_string()),
        preprocessing = p.shadow_preprocessing,
    )
}
