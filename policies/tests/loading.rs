//! Warnings, defaults, multi-document files and directory loading.

use std::time::Duration;

use augur_policies::{
    load_paths, load_paths_with, load_str, LbPolicy, LoadBalancer, LoadOptions, Severity,
};

const VS: &str = "apiVersion: networking.istio.io/v1
kind: VirtualService
metadata:
  name: reviews
spec:
  hosts: [reviews]
  http:
  - route:
    - destination: {host: reviews}
    corsPolicy:
      allowOrigins: [{exact: '*'}]
    mirror: {host: reviews}
    mirror_percent: 30
";

#[test]
fn unsupported_istio_fields_are_warnings() {
    let loaded = load_str("w.yaml", VS).unwrap_or_else(|e| panic!("{e}"));
    let w: Vec<String> = loaded.warnings.iter().map(ToString::to_string).collect();
    assert_eq!(
        w,
        [
            "w.yaml:10:5: warning: spec.http[0].corsPolicy: `corsPolicy` is not supported by augur; ignored",
            "w.yaml:13:5: warning: spec.http[0].mirror_percent: mirror_percent is deprecated; use mirrorPercentage: {value: N}",
        ]
    );
    assert!(loaded
        .warnings
        .iter()
        .all(|d| d.severity == Severity::Warning));
    let route = &loaded.set.virtual_services[0].http[0];
    assert_eq!(
        route.route[0].weight, 100,
        "a lone destination gets all traffic"
    );
    assert_eq!(route.mirrors[0].percentage.value(), 30.0);
}

/// A field Istio does not define is an error, as `istioctl validate` makes it: a misspelt
/// `weight` would otherwise be ignored and the route's split silently changed. Every one is
/// reported, each with the field it most likely meant.
#[test]
fn unknown_istio_fields_are_errors_that_name_the_likely_field() {
    let y = "apiVersion: networking.istio.io/v1
kind: VirtualService
metadata:
  name: ab
  resourceVersion: \"42\"
spec:
  hosts: [ab]
  http:
  - name: split
    route:
    - destination: {host: ab, subset: v1}
      wieght: 50
    - destination: {host: ab, subset: v2, subst: x}
      weight: 50
    frobnicate: 1
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: ab}
spec:
  host: ab
  trafficPolicy:
    loadBalancer: {simpel: ROUND_ROBIN}
  subsets:
  - {name: v1, labels: {version: v1}}
  - {name: v2, labels: {version: v2}}
";
    let err = load_str("u.yaml", y).expect_err("unknown fields are errors");
    let lines: Vec<String> = err.diagnostics.iter().map(ToString::to_string).collect();
    assert_eq!(
        lines,
        [
            "u.yaml:5:3: warning: metadata.resourceVersion: `resourceVersion` is Kubernetes metadata that augur does not use; ignored",
            "u.yaml:12:7: spec.http[0].route[0].wieght: unknown field `wieght`; did you mean `weight`?",
            "u.yaml:13:43: spec.http[0].route[1].destination.subst: unknown field `subst`; did you mean `subset`?",
            "u.yaml:15:5: spec.http[0].frobnicate: unknown field `frobnicate`",
            "u.yaml:23:20: spec.trafficPolicy.loadBalancer.simpel: unknown field `simpel`; did you mean `simple`?",
        ]
    );
    // Allowed (for documents written for a newer Istio), they are warnings and the rest loads.
    let options = LoadOptions {
        allow_unknown_istio_fields: true,
    };
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let file = dir.path().join("u.yaml");
    std::fs::write(&file, y).unwrap_or_else(|e| panic!("{e}"));
    let loaded = load_paths_with(&[&file], options).unwrap_or_else(|e| panic!("{e}"));
    let warnings: Vec<String> = loaded.warnings.iter().map(|w| w.message.clone()).collect();
    assert!(
        warnings.contains(
            &"unknown field `wieght`; did you mean `weight`?; ignored (unknown fields are allowed)"
                .to_owned()
        ),
        "{warnings:?}"
    );
    assert_eq!(loaded.set.virtual_services[0].http[0].route.len(), 2);
}

#[test]
fn defaults_follow_istio() {
    let y = "apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: r}
spec:
  host: r
  trafficPolicy:
    outlierDetection: {}
  subsets:
  - name: v1
    labels: {version: v1}
    trafficPolicy:
      loadBalancer: {simple: ROUND_ROBIN}
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: r}
spec:
  hosts: [r]
  http:
  - route:
    - destination: {host: r}
    mirror: {host: r}
";
    let loaded = load_str("d.yaml", y).unwrap_or_else(|e| panic!("{e}"));
    let dr = &loaded.set.destination_rules[0];
    assert_eq!(dr.metadata.namespace, "default");
    assert_eq!(
        dr.traffic_policy.load_balancer,
        LoadBalancer::Simple(LbPolicy::LeastRequest)
    );
    let od = dr
        .traffic_policy
        .outlier_detection
        .as_ref()
        .unwrap_or_else(|| panic!("outlier"));
    assert_eq!(od.consecutive_5xx_errors, 5);
    assert_eq!(od.interval, Duration::from_secs(10));
    assert_eq!(od.base_ejection_time, Duration::from_secs(30));
    assert_eq!(od.max_ejection_percent.value(), 10.0);
    assert_eq!(
        dr.traffic_policy.connection_pool.connect_timeout,
        Duration::from_secs(10)
    );
    // The subset's policy overrides the load balancer and keeps the rule's outlier detection.
    let sub = dr.policy_for(Some("v1"));
    assert_eq!(
        sub.load_balancer,
        LoadBalancer::Simple(LbPolicy::RoundRobin)
    );
    assert!(sub.outlier_detection.is_some());
    let route = &loaded.set.virtual_services[0].http[0];
    assert_eq!(
        route.mirrors[0].percentage.value(),
        100.0,
        "absent mirrorPercentage = 100"
    );
    assert_eq!(route.timeout, None, "timeout disabled by default");
    assert!(loaded
        .set
        .destination_rule_for("r.default.svc.cluster.local", "other")
        .is_some());
}

#[test]
fn multi_document_and_directories() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let nested = dir.path().join("nested");
    std::fs::create_dir(&nested).unwrap_or_else(|e| panic!("{e}"));
    std::fs::write(nested.join("b.yml"), VS).unwrap_or_else(|e| panic!("{e}"));
    std::fs::write(dir.path().join("a.yaml"), "---\n---\n").unwrap_or_else(|e| panic!("{e}"));
    std::fs::write(dir.path().join("notes.txt"), "kind: [").unwrap_or_else(|e| panic!("{e}"));
    let loaded = load_paths(&[dir.path()]).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        loaded.sources,
        [dir.path().join("a.yaml"), nested.join("b.yml")]
    );
    assert_eq!(loaded.set.virtual_services.len(), 1);
    let again = load_paths(&[dir.path()]).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(loaded.hash, again.hash);
}

/// A ConfigMap mounted as a directory, as the kubelet lays it out: the files in a
/// `..<timestamp>` directory, `..data` linking to it, and a link per file beside them.
#[test]
fn a_configmap_directory_loads_each_file_once() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let stamped = dir.path().join("..2026_12_07_03_00_00.123456789");
    std::fs::create_dir(&stamped).unwrap_or_else(|e| panic!("{e}"));
    std::fs::write(stamped.join("policy.yaml"), VS).unwrap_or_else(|e| panic!("{e}"));
    std::os::unix::fs::symlink(&stamped, dir.path().join("..data"))
        .unwrap_or_else(|e| panic!("{e}"));
    std::os::unix::fs::symlink("..data/policy.yaml", dir.path().join("policy.yaml"))
        .unwrap_or_else(|e| panic!("{e}"));
    std::fs::write(dir.path().join(".policy.yaml.swp"), "kind: [")
        .unwrap_or_else(|e| panic!("{e}"));
    let loaded = load_paths(&[dir.path()]).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(loaded.sources, [dir.path().join("policy.yaml")]);
    assert_eq!(loaded.set.virtual_services.len(), 1);
}

#[test]
fn missing_file_is_an_error() {
    let e = load_paths(&["/nonexistent/policy.yaml"])
        .err()
        .unwrap_or_else(|| panic!("should fail"));
    assert!(
        e.to_string()
            .starts_with("/nonexistent/policy.yaml:1:1: cannot read file"),
        "{e}"
    );
}

#[test]
fn service_entry_addresses_are_typed_and_questionable_ones_warned() {
    let y = "apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: db}
spec:
  hosts: [db.internal, db2.internal]
  addresses: [240.0.0.1, 10.1.0.0/16]
  ports: [{number: 5432, name: tcp, protocol: TCP}, {number: 6379, name: redis, protocol: RESP3}]
  resolution: NONE
";
    let loaded = load_str("se.yaml", y).unwrap_or_else(|e| panic!("{e}"));
    let w: Vec<String> = loaded.warnings.iter().map(ToString::to_string).collect();
    assert_eq!(
        w,
        [
            "se.yaml:6:3: warning: spec.addresses: several hosts share these addresses: connections to them are routed as db.internal",
            "se.yaml:7:81: warning: spec.ports[1].protocol: unknown protocol \"RESP3\": treated as unset, so captured connections to this port are sniffed",
        ]
    );
    let addresses = &loaded.set.service_entries[0].addresses;
    assert_eq!(addresses.len(), 2);
    assert!(addresses[0].contains("240.0.0.1".parse().unwrap()));
    assert!(!addresses[0].contains("240.0.0.2".parse().unwrap()));
    assert!(addresses[1].contains("10.1.200.3".parse().unwrap()));
    assert!(!addresses[1].contains("10.2.0.1".parse().unwrap()));
    assert!(!addresses[1].contains("::1".parse().unwrap()));
    assert_eq!(addresses[1].to_string(), "10.1.0.0/16");
}

/// A file that does not parse is the cause of the errors it leads to in other files: its error is
/// listed first, although the other file comes first in load order.
#[test]
fn the_cause_is_listed_before_its_follow_on_errors() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    std::fs::write(
        dir.path().join("a-policy.yaml"),
        "apiVersion: augur.dev/v1alpha1
kind: CanaryPolicy
metadata: {name: m}
spec:
  trafficRouting:
    virtualService: {name: m, routes: [primary]}
  stable: {host: m, subset: v1}
  canary: {host: m, subset: v2}
  steps:
  - setWeight: 100
",
    )
    .unwrap_or_else(|e| panic!("{e}"));
    std::fs::write(
        dir.path().join("b-routes.yaml"),
        "apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: m}
spec:
  hosts: [m
  http: []
",
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let err = load_paths(&[dir.path()]).expect_err("invalid");
    let files: Vec<String> = err
        .diagnostics
        .iter()
        .map(|d| {
            let name = d.file.file_name().unwrap_or_default().to_string_lossy();
            format!("{name}: {}", d.message)
        })
        .collect();
    assert_eq!(files.len(), 2, "{files:?}");
    assert!(
        files[0].starts_with("b-routes.yaml: YAML syntax error"),
        "{files:?}"
    );
    assert!(
        files[1].starts_with("a-policy.yaml: ") && files[1].contains("VirtualService"),
        "{files:?}"
    );
}
