//! ApiProtection: the shape, defaults and every error at its `file:line:column`.

use std::time::Duration;

use augur_policies::{load_str, Diagnostic, KeysFrom, RateLimitKey, Severity};

const VS: &str = "apiVersion: networking.istio.io/v1
kind: VirtualService
metadata:
  name: model
spec:
  hosts: [model]
  http:
  - name: predict
    route:
    - destination: {host: model}
---
";

fn errors(yaml: &str) -> Vec<String> {
    match load_str("p.yaml", &format!("{VS}{yaml}")) {
        Ok(_) => panic!("expected errors"),
        Err(e) => e
            .diagnostics
            .iter()
            .filter(|d| d.severity == Severity::Error)
            .map(Diagnostic::to_string)
            .collect(),
    }
}

#[test]
fn a_protection_loads_with_envoy_bucket_defaults() {
    let yaml = format!(
        "{VS}apiVersion: augur.dev/v1alpha1
kind: ApiProtection
metadata: {{name: model-api}}
spec:
  virtualService: {{name: model, routes: [predict]}}
  apiKey:
    keysFrom: {{file: /etc/keys}}
  rateLimit:
    key: header:X-Client
    tokenBucket: {{maxTokens: 100, fillInterval: 60s}}
"
    );
    let loaded = load_str("p.yaml", &yaml).expect("valid");
    let p = &loaded.set.api_protections[0];
    assert_eq!(p.routes, ["predict"]);
    let key = p.api_key.as_ref().expect("apiKey");
    assert_eq!(key.header, "x-api-key");
    assert_eq!(key.keys_from, KeysFrom::File("/etc/keys".into()));
    assert!(!key.hide_credentials);
    let rl = p.rate_limit.as_ref().expect("rateLimit");
    assert_eq!(rl.key, RateLimitKey::Header("x-client".into()));
    assert_eq!((rl.max_tokens, rl.tokens_per_fill), (100, 100));
    assert_eq!(rl.fill_interval, Duration::from_secs(60));
}

#[test]
fn every_problem_is_reported_at_its_field() {
    let e = errors(
        "apiVersion: augur.dev/v1alpha1
kind: ApiProtection
metadata: {name: bad}
spec:
  virtualService: {name: model, routes: [nope]}
  apiKey:
    header: 'bad header'
    keysFrom: {file: a, env: B}
  rateLimit:
    key: cookie
    tokenBucket: {maxTokens: 0, fillInterval: 1m}
  extra: 1
",
    );
    assert_eq!(
        e,
        [
            "p.yaml:16:42: spec.virtualService.routes[0]: VirtualService default/model has no http route named \"nope\"",
            "p.yaml:18:5: spec.apiKey.header: \"bad header\" is not a valid header name",
            "p.yaml:19:5: spec.apiKey.keysFrom: exactly one of file or env is required, and not empty",
            "p.yaml:21:5: spec.rateLimit.key: must be sourceIP, apiKey or header:<name>, got \"cookie\"",
            "p.yaml:22:19: spec.rateLimit.tokenBucket.maxTokens: must be in 1..=4294967295, got 0",
            "p.yaml:23:3: spec.extra: unknown field `extra`",
        ],
        "{e:#?}"
    );
}

#[test]
fn unknown_virtual_service_missing_parts_and_double_protection() {
    let e = errors(
        "apiVersion: augur.dev/v1alpha1
kind: ApiProtection
metadata: {name: a}
spec:
  virtualService: {name: other}
  rateLimit: {key: apiKey}
---
apiVersion: augur.dev/v1alpha1
kind: ApiProtection
metadata: {name: b}
spec:
  virtualService: {name: model}
---
apiVersion: augur.dev/v1alpha1
kind: ApiProtection
metadata: {name: c}
spec:
  virtualService: {name: model, routes: [predict]}
  rateLimit: {tokenBucket: {maxTokens: 5, fillInterval: 1s}}
",
    );
    assert!(
        e.iter()
            .any(|l| l
                .contains("spec.virtualService.name: VirtualService default/other does not exist")),
        "{e:#?}"
    );
    assert!(
        e.iter()
            .any(|l| l.contains("spec.rateLimit.key: key apiKey needs spec.apiKey")),
        "{e:#?}"
    );
    assert!(
        e.iter()
            .any(|l| l.contains("spec.rateLimit.tokenBucket: is required")),
        "{e:#?}"
    );
    assert!(
        e.iter().any(|l| l.contains(
            "spec: at least one of apiKey, rateLimit or maxRequestBodyBytes is required"
        )),
        "{e:#?}"
    );
    assert!(
        e.iter()
            .any(|l| l.contains("already protected by ApiProtection default/b")),
        "{e:#?}"
    );
}
