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
