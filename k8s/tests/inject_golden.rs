//! Golden tests of injection: `testdata/inject/<case>.yaml` → `<case>.yaml.injected`, with
//! an optional `<case>.config.yaml` (InjectConfig). `REFRESH_GOLDEN=1` rewrites the goldens.
//! Every case is also injected twice to prove idempotence.

mod common;

use augur_k8s::inject::args::inject_yaml;
use augur_k8s::inject::{inject, yaml, InjectConfig, InjectError, SkipReason};
use serde_json::json;

fn config_for(case: &std::path::Path) -> InjectConfig {
    let path = case.with_extension("config.yaml");
    match std::fs::read_to_string(&path) {
        Ok(text) => serde_yaml_ng::from_str(&text).expect("valid case config"),
        Err(_) => InjectConfig::default(),
    }
}

#[test]
fn injected_manifests_match_goldens_and_are_idempotent() {
    let dir = common::testdata("inject");
    let cases: Vec<_> = common::files_with_suffix(&dir, ".yaml")
        .into_iter()
        .filter(|p| !p.to_string_lossy().ends_with(".config.yaml"))
        .collect();
    assert!(
        cases.len() >= 6,
        "expected the golden cases in {}",
        dir.display()
    );
    let mut failures = Vec::new();
    for case in &cases {
        let cfg = config_for(case);
        let input = std::fs::read_to_string(case).expect("read case");
        let once =
            inject_yaml(&input, &cfg).unwrap_or_else(|e| panic!("{}: {e:#}", case.display()));
        let twice = inject_yaml(&once, &cfg).expect("re-inject");
        if once != twice {
            failures.push(format!(
                "{}: injecting twice changed the output",
                case.display()
            ));
        }
        let golden = case.with_file_name(format!(
            "{}.injected",
            case.file_name()
                .and_then(|n| n.to_str())
                .unwrap_or_default()
        ));
        failures.extend(common::check_golden(&golden, &once));
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

#[test]
fn skipped_objects_say_why() {
    let text =
        std::fs::read_to_string(common::testdata("inject").join("skipped.yaml")).expect("read");
    let docs = yaml::parse_documents(&text).expect("parse");
    let reasons: Vec<_> = docs
        .iter()
        .map(|d| inject(d, &InjectConfig::default()).expect("inject").skipped)
        .collect();
    assert_eq!(
        reasons,
        vec![
            Some(SkipReason::Disabled),
            Some(SkipReason::HostNetwork),
            Some(SkipReason::AlreadyInjected),
            Some(SkipReason::IstioSidecarPresent),
        ]
    );
    let service = json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "s"}});
    assert_eq!(
        inject(&service, &InjectConfig::default())
            .expect("inject")
            .skipped,
        Some(SkipReason::NotAWorkload)
    );
}

#[test]
fn bad_annotations_and_objects_are_errors() {
    let pod = |annotations: serde_json::Value| {
        json!({"apiVersion": "v1", "kind": "Pod",
               "metadata": {"name": "p", "annotations": annotations},
               "spec": {"containers": [{"name": "app", "image": "app"}]}})
    };
    let cfg = InjectConfig::default();
    let err =
        inject(&pod(json!({"sidecar.istio.io/proxyCPU": "lots"})), &cfg).expect_err("quantity");
    assert!(
        matches!(err, InjectError::InvalidAnnotation { ref name, .. } if name == "proxyCPU"),
        "{err}"
    );
    let err = inject(
        &pod(json!({"traffic.sidecar.istio.io/excludeInboundPorts": "http"})),
        &cfg,
    )
    .expect_err("ports");
    assert!(err.to_string().contains("excludeInboundPorts"), "{err}");
    let err = inject(
        &pod(json!({"sidecar.istio.io/interceptionMode": "TPROXY"})),
        &cfg,
    )
    .expect_err("mode");
    assert_eq!(
        err,
        InjectError::UnsupportedInterceptionMode("TPROXY".into())
    );
    assert_eq!(
        inject(&json!([1, 2]), &cfg).expect_err("array"),
        InjectError::NotAnObject
    );
    let deployment = json!({"kind": "Deployment", "metadata": {"name": "d"}, "spec": {}});
    assert!(matches!(
        inject(&deployment, &cfg),
        Err(InjectError::MissingPodTemplate { .. })
    ));
}

/// The proxy container of an injected pod template (native: among the init containers).
fn proxy_of(template: &serde_json::Value) -> &serde_json::Value {
    ["initContainers", "containers"]
        .iter()
        .filter_map(|list| template.pointer(&format!("/spec/{list}"))?.as_array())
        .flatten()
        .find(|c| c["name"] == "istio-proxy")
        .expect("an istio-proxy container")
}

fn flag<'a>(container: &'a serde_json::Value, name: &str) -> Option<&'a str> {
    let args = container["args"].as_array()?;
    let at = args.iter().position(|a| a == name)?;
    args.get(at + 1)?.as_str()
}

#[test]
fn sidecars_with_a_policy_follow_the_controller_and_the_others_pass_through() {
    let dir = common::testdata("inject");
    let cfg = config_for(&dir.join("fleet.yaml"));
    let text = std::fs::read_to_string(dir.join("fleet.yaml")).expect("read");
    let docs = yaml::parse_documents(&text).expect("parse");
    let injected: Vec<_> = docs
        .iter()
        .map(|d| inject(d, &cfg).expect("inject").object)
        .collect();
    let template = |i: usize| -> &serde_json::Value {
        injected[i]
            .get("spec")
            .and_then(|s| s.get("template"))
            .unwrap_or(&injected[i])
    };
    let policy_volume = |t: &serde_json::Value| {
        t["spec"]["volumes"]
            .as_array()
            .and_then(|vs| vs.iter().find(|v| v["name"] == "augur-policy"))
            .cloned()
            .expect("policy volume")
    };
    let token_env = |c: &serde_json::Value| {
        c["env"]
            .as_array()
            .and_then(|e| e.iter().find(|e| e["name"] == "AUGUR_CONTROLLER_TOKEN"))
            .cloned()
    };

    // Stable: its policy, the controller, the token from the Secret, the shadow model volume.
    let stable = proxy_of(template(0));
    assert_eq!(flag(stable, "--controller"), Some(cfg.controller.as_str()));
    assert_eq!(
        token_env(stable),
        Some(json!({"name": "AUGUR_CONTROLLER_TOKEN",
                    "valueFrom": {"secretKeyRef": {"name": "augur-controller-token", "key": "token"}}}))
    );
    assert_eq!(
        policy_volume(template(0))["configMap"]["name"],
        "pneumonia-policy"
    );
    assert!(stable["volumeMounts"].as_array().expect("mounts").contains(
        &json!({"name": "shadow-model", "mountPath": "/etc/augur/shadow", "readOnly": true})
    ));

    // Canary: no policy (an empty directory: it passes through), so nothing to follow.
    let canary = proxy_of(template(1));
    assert_eq!(flag(canary, "--controller"), None);
    assert_eq!(token_env(canary), None);
    assert_eq!(
        policy_volume(template(1)),
        json!({"name": "augur-policy", "emptyDir": {}})
    );
    assert_eq!(flag(canary, "--policy"), Some("/etc/augur/policy"));

    // Opted out with an empty augur.dev/controller: its own policy, decided alone.
    let standalone = proxy_of(template(2));
    assert_eq!(flag(standalone, "--controller"), None);
    assert_eq!(token_env(standalone), None);
}

#[test]
fn a_bad_controller_address_is_refused_at_injection() {
    let pod = json!({"apiVersion": "v1", "kind": "Pod",
                     "metadata": {"name": "p", "annotations": {"augur.dev/controller": "augur-controller:15010"}},
                     "spec": {"containers": [{"name": "app", "image": "app"}]}});
    let err = inject(&pod, &InjectConfig::default()).expect_err("not a URL");
    assert!(
        matches!(err, InjectError::InvalidAnnotation { ref name, .. } if name == "controller"),
        "{err}"
    );
}
