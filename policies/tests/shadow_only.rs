//! Shadow-only CanaryPolicies (scenario 5, `examples/shadow-scoring.yaml`): a `shadow` with no
//! `canary` and no `steps` loads without warnings, drives no weight, and is explained for what it
//! is; the combinations that contradict it are errors (or, for a missing `prediction`, a
//! warning) at the file, line and field.

use augur_policies::explain::explain;
use augur_policies::{load_str, Severity, Strategy};

const EXAMPLE: &str = include_str!("../examples/shadow-scoring.yaml");

/// Every diagnostic of `yaml` (errors or warnings), as printed.
fn diagnostics(yaml: &str, severity: Severity) -> Vec<String> {
    let list = match load_str("s.yaml", yaml) {
        Ok(loaded) => loaded.warnings,
        Err(e) => e.diagnostics,
    };
    list.iter()
        .filter(|d| d.severity == severity)
        .map(ToString::to_string)
        .collect()
}

/// Line (1-based) of the first line of `yaml` containing `needle`.
fn line_of(yaml: &str, needle: &str) -> usize {
    yaml.lines()
        .position(|l| l.contains(needle))
        .map(|i| i + 1)
        .unwrap_or_else(|| panic!("{needle}"))
}

/// The example with `extra` inserted before its `shadow:` block.
fn with_before_shadow(extra: &str) -> String {
    EXAMPLE.replace("  shadow:\n", &format!("{extra}  shadow:\n"))
}

#[test]
fn the_example_is_shadow_only_without_warnings_and_drives_no_weight() {
    let loaded = load_str("s.yaml", EXAMPLE).unwrap_or_else(|e| panic!("{e}"));
    assert!(loaded.warnings.is_empty(), "{:?}", loaded.warnings);
    let cp = &loaded.set.canary_policies[0];
    assert_eq!(cp.strategy, Strategy::ShadowOnly);
    assert!(cp.is_shadow_only());
    assert_eq!(cp.canary, None);
    assert!(cp.analysis.is_none() && cp.rollback_triggers.is_empty());
    let shadow = cp.shadow.as_ref().expect("shadow");
    assert_eq!(shadow.mirror_percentage.value(), 10.0);
    assert!(
        augur_policies::driven::routes_of(&loaded.set, cp).is_empty(),
        "a shadow-only policy rewrites no route's weights"
    );
}

#[test]
fn explain_shows_a_shadow_only_policy_for_what_it_is() {
    let loaded = load_str("s.yaml", EXAMPLE).unwrap_or_else(|e| panic!("{e}"));
    let e = explain(&loaded.set);
    let table = e.render_table();
    let line = table
        .lines()
        .find(|l| l.starts_with("SHADOW-ONLY default/pneumonia-shadow"))
        .unwrap_or_else(|| panic!("no SHADOW-ONLY line:\n{table}"));
    assert!(
        line.contains("stable pneumonia-shadow/v1 serves every request")
            && line.contains("10% are also scored by the shadow model")
            && line.contains("no weight changes"),
        "{line}"
    );
    assert!(
        !table.contains("ROLLOUT default/pneumonia-shadow") && !table.contains("STEP  ACTION"),
        "no steps or canary plan:\n{table}"
    );
    assert!(table.contains("SHADOW models/pneumonia-v3.onnx: 10% of requests"));
    let json = serde_json::to_value(&e).unwrap_or_default();
    let ro = &json["rollouts"][0];
    assert_eq!(ro["strategy"], "shadowOnly");
    assert_eq!(ro["canary"], serde_json::Value::Null);
    assert_eq!(ro["steps"], serde_json::json!([]));
    assert_eq!(ro["shadow"]["mirror_percentage"], 10.0);
}

#[test]
fn an_analysis_or_rollback_triggers_contradict_shadow_only() {
    let y = with_before_shadow(
        "  analysis:\n    metrics:\n    - {name: agreement, kind: shadowAgreement, allowedChange: {absolute: 5}}\n",
    );
    let line = line_of(&y, "  analysis:");
    let e = diagnostics(&y, Severity::Error);
    assert_eq!(e.len(), 1, "{e:?}");
    assert!(
        e[0].starts_with(&format!("s.yaml:{line}:3: spec.analysis: a shadow-only policy (spec.shadow without canary and steps) has no canary to compare stable with")),
        "{e:?}"
    );
    let y = with_before_shadow(
        "  rollback:\n    triggers:\n    - {name: e, metric: errorRate, condition: {above: 10}, window: 1m, action: immediate}\n",
    );
    let line = line_of(&y, "  rollback:");
    let e = diagnostics(&y, Severity::Error);
    assert_eq!(
        e,
        [format!("s.yaml:{line}:3: spec.rollback: a shadow-only policy (spec.shadow without canary and steps) has no canary to roll back; remove rollback, or add canary and steps")]
    );
}

#[test]
fn steps_without_a_canary_or_a_canary_without_steps_say_how_to_get_shadow_only() {
    let y = with_before_shadow("  steps:\n  - setWeight: 100\n");
    let e = diagnostics(&y, Severity::Error);
    assert_eq!(e.len(), 1, "{e:?}");
    assert!(
        e[0].contains(": spec.canary: is required: steps move traffic to a canary; for shadow-only scoring (no canary traffic) remove steps and keep spec.shadow"),
        "{e:?}"
    );
    let y = with_before_shadow("  canary: {host: pneumonia-shadow, subset: v2}\n");
    let e = diagnostics(&y, Severity::Error);
    assert!(
        e.iter().any(|e| e.contains(": spec: exactly one of steps or blueGreen is required; for shadow-only scoring (no canary traffic) remove spec.canary and keep spec.shadow")),
        "{e:?}"
    );
}

#[test]
fn shadow_only_without_prediction_is_warned_about() {
    let start = EXAMPLE.find("  prediction:\n").expect("prediction");
    let end = EXAMPLE.find("  shadow:\n").expect("shadow");
    let y = format!("{}{}", &EXAMPLE[..start], &EXAMPLE[end..]);
    assert!(diagnostics(&y, Severity::Error).is_empty());
    let line = line_of(&y, "  shadow:");
    assert_eq!(
        diagnostics(&y, Severity::Warning),
        [format!("s.yaml:{line}:3: warning: spec.shadow: without spec.prediction stable's answers are not read, so the shadow scores requests but its agreement with stable cannot be measured")]
    );
}

#[test]
fn shadow_only_scoring_nothing_is_warned_about() {
    let y = EXAMPLE.replace("mirrorPercentage: 10", "mirrorPercentage: 0");
    let line = line_of(&y, "mirrorPercentage: 0");
    assert_eq!(
        diagnostics(&y, Severity::Warning),
        [format!("s.yaml:{line}:5: warning: spec.shadow.mirrorPercentage: 0 scores no request: a shadow-only policy with it does nothing")]
    );
}
