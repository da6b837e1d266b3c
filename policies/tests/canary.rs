//! CanaryPolicy: unknown fields are errors, references are checked, and
//! every error in a file is reported at once.

use augur_policies::{load_str, RolloutStep, Severity, Strategy};

const BASE: &str = include_str!("../examples/canary-pneumonia.yaml");

fn errors(yaml: &str) -> Vec<String> {
    match load_str("c.yaml", yaml) {
        Ok(_) => panic!("expected errors"),
        Err(e) => e
            .diagnostics
            .iter()
            .filter(|d| d.severity == Severity::Error)
            .map(ToString::to_string)
            .collect(),
    }
}

/// Line (1-based) of the first line containing `needle` in BASE.
fn line_of(needle: &str) -> usize {
    BASE.lines()
        .position(|l| l.contains(needle))
        .map(|i| i + 1)
        .unwrap_or_else(|| panic!("{needle}"))
}

#[test]
fn example_loads_with_seed_plan() {
    let loaded = load_str("c.yaml", BASE).unwrap_or_else(|e| panic!("{e}"));
    let cp = &loaded.set.canary_policies[0];
    let Strategy::Steps(steps) = &cp.strategy else {
        panic!("steps")
    };
    let weights: Vec<u32> = steps
        .iter()
        .filter_map(|s| {
            if let RolloutStep::SetWeight(w) = s {
                Some(*w)
            } else {
                None
            }
        })
        .collect();
    assert_eq!(weights, [10, 20, 50, 100]);
    let analysis = cp.analysis.as_ref().expect("analysis");
    assert_eq!(
        analysis.max_duration,
        Some(std::time::Duration::from_secs(4 * 3600))
    );
    assert_eq!(analysis.inconclusive_limit, 0);
    assert!(cp.rollback_triggers.iter().all(|t| t.alpha == 0.01));
    assert!(
        loaded.warnings.is_empty(),
        "the example is clean: {:?}",
        loaded.warnings
    );
    assert_eq!(cp.rollback_triggers.len(), 3);
    assert_eq!(
        cp.prediction.as_ref().map(|p| p.positive_label.as_str()),
        Some("PNEUMONIA")
    );
    assert_eq!(
        cp.shadow.as_ref().map(|s| s.mirror_percentage.value()),
        Some(10.0)
    );
}

#[test]
fn unknown_field_is_an_error() {
    let y = BASE.replace(
        "    minSamples: 200",
        "    minSamples: 200\n    minSample: 5",
    );
    let line = line_of("minSamples: 200") + 1;
    assert_eq!(
        errors(&y),
        [format!(
            "c.yaml:{line}:5: spec.analysis.minSample: unknown field `minSample`; did you mean `minSamples`?"
        )]
    );
}

#[test]
fn route_name_that_does_not_exist() {
    let y = BASE.replace("routes: [primary]", "routes: [primary, secondary]");
    let line = line_of("routes: [primary]");
    assert_eq!(
        errors(&y),
        [format!("c.yaml:{line}:25: spec.trafficRouting.virtualService.routes[1]: VirtualService default/pneumonia has no http route named \"secondary\"")]
    );
}

#[test]
fn virtual_service_that_does_not_exist() {
    let y = BASE.replace(
        "      name: pneumonia\n      routes",
        "      name: pneumonia-x\n      routes",
    );
    let line = line_of("routes: [primary]") - 1;
    assert_eq!(errors(&y), [format!("c.yaml:{line}:7: spec.trafficRouting.virtualService.name: VirtualService default/pneumonia-x does not exist")]);
}

#[test]
fn many_errors_are_all_reported() {
    let y = BASE
        .replace("    - setWeight: 20", "    - setWeight: 120")
        .replace("    alpha: 0.05", "    alpha: 1.5")
        .replace(
            "canary: {host: pneumonia, subset: v2}",
            "canary: {host: pneumonia, subset: v3}",
        )
        .replace(
            "    scorePointer: /confidence",
            "    scorePointer: confidence",
        )
        .replace("        window: 2m", "        window: 2 minutes")
        .replace(
            "    source: embedded",
            "    source: embedded\n    colour: red",
        );
    let e = errors(&y);
    let line_in_y = |needle: &str| {
        y.lines()
            .position(|l| l.contains(needle))
            .map_or(0, |i| i + 1)
    };
    let at = |needle: &str, col: usize, rest: &str| {
        format!("c.yaml:{}:{col}: {rest}", line_in_y(needle))
    };
    let expected = [
        at("canary: {host", 3, "spec.canary: route \"primary\" of VirtualService default/pneumonia has no destination pneumonia subset v3"),
        at("- setWeight: 120", 7, "spec.steps[2].setWeight: must be in 0..=100, got 120"),
        at("alpha: 1.5", 5, "spec.analysis.alpha: alpha must be in (0, 1), got 1.5"),
        at("colour: red", 5, "spec.analysis.colour: unknown field `colour`"),
        at("window: 2 minutes", 9, "spec.rollback.triggers[0].window: unknown unit \" minutes\" in duration \"2 minutes\" (use ns, us, ms, s, m or h)"),
        at("scorePointer", 5, "spec.prediction.scorePointer: JSON pointer must start with '/', got \"confidence\""),
    ];
    assert_eq!(e, expected);
}

#[test]
fn steps_and_blue_green_are_exclusive() {
    let y = BASE.replace(
        "  analysis:\n    interval",
        "  blueGreen: {autoPromote: true}\n  analysis:\n    interval",
    );
    let e = errors(&y);
    assert_eq!(e.len(), 1, "{e:?}");
    assert!(
        e[0].ends_with("spec: exactly one of steps or blueGreen is required"),
        "{e:?}"
    );
}

#[test]
fn latency_trigger_needs_a_duration() {
    let y = BASE.replace(
        "condition: {increaseBy: 500ms}",
        "condition: {increaseBy: 500}",
    );
    let e = errors(&y);
    assert_eq!(e.len(), 1);
    assert!(
        e[0].contains(
            "spec.rollback.triggers[2].condition.increaseBy: latency thresholds are durations"
        ),
        "{e:?}"
    );
}

#[test]
fn kayenta_scoring_groups_and_thresholds() {
    let yaml = BASE
        .replace(
            "        critical: true\n",
            "        critical: true\n        group: errors\n",
        )
        .replace(
            "    metrics:\n      - name: p95-latency",
            "    scoring:\n      groups: {errors: 60, latency: 40}\n      pass: 90\n      marginal: 70\n    metrics:\n      - name: p95-latency",
        );
    let loaded = load_str("c.yaml", &yaml).unwrap_or_else(|e| panic!("{e}"));
    let analysis = loaded.set.canary_policies[0].analysis.as_ref().unwrap();
    let scoring = analysis.scoring.as_ref().expect("scoring");
    assert_eq!((scoring.pass, scoring.marginal), (90.0, 70.0));
    assert_eq!(
        scoring.groups,
        vec![("errors".into(), 60.0), ("latency".into(), 40.0)]
    );
    let error_rate = analysis
        .metrics
        .iter()
        .find(|m| m.name == "error-rate")
        .unwrap();
    assert_eq!(error_rate.group.as_deref(), Some("errors"));

    let bad = yaml
        .replace("group: errors", "group: erors")
        .replace("marginal: 70", "marginal: 95");
    let errs = errors(&bad);
    assert!(
        errs.iter()
            .any(|e| e.contains("group \"erors\" is not declared")),
        "{errs:?}"
    );
    assert!(
        errs.iter()
            .any(|e| e.contains("scoring.marginal: must not exceed pass")),
        "{errs:?}"
    );
}

#[test]
fn shadow_runtime_is_read_and_bounded() {
    let loaded = load_str("c.yaml", BASE).unwrap_or_else(|e| panic!("{e}"));
    let shadow = loaded.set.canary_policies[0]
        .shadow
        .as_ref()
        .expect("shadow");
    assert_eq!(
        (shadow.runtime.workers, shadow.runtime.queue_capacity),
        (1, 64)
    );
    assert_eq!(
        shadow.runtime.max_batch_wait,
        std::time::Duration::from_millis(2)
    );
    let y = BASE
        .replace("      workers: 1", "      workers: 0")
        .replace("      maxBatchWait: 2ms", "      maxBatchWait: soon");
    let errs = errors(&y);
    let line = line_of("      workers: 1");
    assert!(
        errs.iter()
            .any(|e| e.starts_with(&format!("c.yaml:{line}:"))
                && e.contains("spec.shadow.runtime.workers")
                && e.contains("between 1 and 64")),
        "{errs:?}"
    );
    assert!(
        errs.iter()
            .any(|e| e.contains("spec.shadow.runtime.maxBatchWait")),
        "{errs:?}"
    );
}

#[test]
fn gate_time_bounds_trigger_budgets_and_the_latency_shift_kind() {
    let y = BASE
        .replace("    maxDuration: 4h ", "    maxDuration: 90m")
        .replace(
            "        action: immediate                  # all traffic back to v1 now",
            "        action: immediate\n        alpha: 0.001",
        )
        .replace(
            "      - name: p95-latency\n        kind: latency\n        quantile: 0.95",
            "      - name: p95-latency\n        kind: latencyShift",
        )
        .replace(
            "    - analysis: {}\n    - setWeight: 20",
            "    - analysis: {maxDuration: 2h}\n    - setWeight: 20",
        );
    let loaded = load_str("c.yaml", &y).unwrap_or_else(|e| panic!("{e}"));
    let cp = &loaded.set.canary_policies[0];
    let analysis = cp.analysis.as_ref().expect("analysis");
    assert_eq!(
        analysis.max_duration,
        Some(std::time::Duration::from_secs(5400))
    );
    assert_eq!(
        analysis.metrics[0].kind,
        augur_policies::MetricKind::LatencyShift
    );
    assert_eq!(cp.rollback_triggers[0].alpha, 0.001);
    let Strategy::Steps(steps) = &cp.strategy else {
        panic!("steps")
    };
    let RolloutStep::Analysis(first_gate) = &steps[1] else {
        panic!("a gate")
    };
    assert_eq!(
        first_gate.max_duration,
        Some(std::time::Duration::from_secs(7200))
    );
    let bad = BASE.replace(
        "        action: immediate                  # all traffic back to v1 now",
        "        action: immediate\n        alpha: 1.5",
    );
    let line = BASE
        .lines()
        .position(|l| l.contains("action: immediate"))
        .map(|i| i + 2)
        .unwrap_or(0);
    assert_eq!(
        errors(&bad),
        [format!(
            "c.yaml:{line}:9: spec.rollback.triggers[0].alpha: alpha must be in (0, 1), got 1.5"
        )]
    );
}

#[test]
fn an_allowance_of_zero_is_a_gate_that_cannot_pass() {
    let y = BASE.replace(
        "allowedChange: {absolute: 1}       # +1 percentage point",
        "allowedChange: {absolute: 0}",
    );
    let loaded = load_str("c.yaml", &y).unwrap_or_else(|e| panic!("{e}"));
    let warnings: Vec<String> = loaded.warnings.iter().map(ToString::to_string).collect();
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    assert!(
        warnings[0].contains(
            "spec.analysis.metrics[1].allowedChange: an allowance of 0 can never be shown"
        ),
        "{warnings:?}"
    );
    let y = BASE.replace(
        "        allowedChange: {absolute: 2}       # -2 points\n",
        "",
    );
    let loaded = load_str("c.yaml", &y).unwrap_or_else(|e| panic!("{e}"));
    assert!(loaded.warnings.iter().any(|w| w
        .to_string()
        .contains("metrics[2].allowedChange: no allowedChange")));
}

#[test]
fn an_unusable_prometheus_address_is_an_error_at_its_line() {
    for (address, why) in [
        ("https://prometheus:9090", "https is not supported"),
        ("http://", "no host"),
        ("http://prometheus:9090/a b", "must not contain ' '"),
        ("prometheus:9090", "expected http://host:port[/prefix]"),
    ] {
        let y = BASE.replace(
            "    source: embedded",
            &format!("    source:\n      prometheus:\n        address: \"{address}\"\n        scrapeLag: 5s"),
        );
        let line = y
            .lines()
            .position(|l| l.contains("address: \""))
            .map_or(0, |i| i + 1);
        let e = errors(&y);
        assert_eq!(e.len(), 1, "{e:?}");
        assert!(
            e[0].starts_with(&format!(
                "c.yaml:{line}:9: spec.analysis.source.prometheus.address: "
            )) && e[0].contains(why),
            "{address}: {e:?}"
        );
    }
    let y = BASE.replace(
        "    source: embedded",
        "    source:\n      prometheus: {address: \"http://prometheus:9090\", scrapeLag: 5 s}",
    );
    let e = errors(&y);
    assert!(
        e[0].contains("spec.analysis.source.prometheus.scrapeLag"),
        "{e:?}"
    );
    let y = BASE.replace(
        "    source: embedded",
        "    source:\n      prometheus: {address: \"http://prometheus:9090/prom\", scrapeLag: 5s}",
    );
    let loaded = load_str("c.yaml", &y).unwrap_or_else(|e| panic!("{e}"));
    let a = loaded.set.canary_policies[0]
        .analysis
        .as_ref()
        .expect("analysis");
    assert_eq!(
        a.source,
        augur_policies::MetricSource::Prometheus {
            address: "http://prometheus:9090/prom".into(),
            query: None,
            scrape_lag: std::time::Duration::from_secs(5),
        }
    );
}

/// Triggers are named in audit lines, status and staged-rollback bookkeeping: two with one name
/// are an error at the second.
#[test]
fn duplicate_trigger_names_are_an_error() {
    let y = BASE.replace("- name: accuracy-drop", "- name: error-rate-above-10");
    let line = line_of("- name: accuracy-drop");
    assert_eq!(
        errors(&y),
        [format!(
            "c.yaml:{line}:9: spec.rollback.triggers[1].name: duplicate trigger name \"error-rate-above-10\""
        )]
    );
}

fn warnings(yaml: &str) -> Vec<String> {
    let loaded = load_str("c.yaml", yaml).unwrap_or_else(|e| panic!("{e}"));
    loaded.warnings.iter().map(ToString::to_string).collect()
}

/// Units that cannot be what was meant load, with a warning naming the likely intent: a rate
/// condition below 1 (percent, not a fraction) and a relative allowance above 1 (a fraction, not
/// percent).
#[test]
fn units_that_read_like_the_other_unit_are_warned_about() {
    let y = BASE.replace("condition: {above: 10}", "condition: {above: 0.1}");
    let line = line_of("condition: {above: 10}");
    assert_eq!(
        warnings(&y),
        [format!(
            "c.yaml:{line}:21: warning: spec.rollback.triggers[0].condition.above: rates are percentages: above: 0.1 means 0.1%; for 10% write above: 10"
        )]
    );
    let y = BASE.replace("condition: {dropBy: 5}", "condition: {dropBy: 0.05}");
    assert_eq!(warnings(&y).len(), 1);
    assert!(warnings(&y)[0].contains("dropBy: 0.05 means 0.05%; for 5% write dropBy: 5"));
    let y = BASE.replace(
        "allowedChange: {relative: 0.2}",
        "allowedChange: {relative: 20}",
    );
    let line = line_of("allowedChange: {relative: 0.2}");
    assert_eq!(
        warnings(&y),
        [format!(
            "c.yaml:{line}:25: warning: spec.analysis.metrics[0].allowedChange.relative: relative is a fraction of stable's value: 20 allows a change of 2000%; for 20% write relative: 0.2"
        )]
    );
    // The example's own units draw nothing.
    assert_eq!(warnings(BASE), Vec::<String>::new());
}

/// Latency allowances are durations, as latency trigger conditions are; rates are points.
#[test]
fn latency_allowances_are_durations() {
    let y = BASE.replace(
        "allowedChange: {relative: 0.2}",
        "allowedChange: {absolute: 50ms}",
    );
    let loaded = load_str("c.yaml", &y).unwrap_or_else(|e| panic!("{e}"));
    let metric = &loaded.set.canary_policies[0]
        .analysis
        .as_ref()
        .expect("analysis")
        .metrics[0];
    assert_eq!(
        metric.allowed_change,
        Some(augur_policies::AllowedChange::Absolute(50.0)),
        "kept in milliseconds"
    );
    let y = BASE.replace(
        "allowedChange: {relative: 0.2}",
        "allowedChange: {absolute: 50}",
    );
    let e = errors(&y);
    assert_eq!(e.len(), 1, "{e:?}");
    assert!(
        e[0].ends_with(
            "spec.analysis.metrics[0].allowedChange.absolute: latency allowances are durations, as in triggers (e.g. 50ms), got 50"
        ),
        "{e:?}"
    );
    let y = BASE.replace(
        "allowedChange: {absolute: 1}       # +1 percentage point",
        "allowedChange: {absolute: 1s}",
    );
    let e = errors(&y);
    assert!(
        e[0].ends_with("spec.analysis.metrics[1].allowedChange.absolute: only latency allowances are durations; this metric's is a number, got \"1s\""),
        "{e:?}"
    );
}

/// `duration` belongs to a blue-green post-promotion analysis (how long to watch after the
/// switch); elsewhere, and at 0s, it is an error naming the field.
#[test]
fn post_promotion_duration_is_read_and_only_allowed_there() {
    let bg = include_str!("../examples/blue-green.yaml");
    let loaded = load_str("bg.yaml", bg).unwrap_or_else(|e| panic!("{e}"));
    let Strategy::BlueGreen(b) = &loaded.set.canary_policies[0].strategy else {
        panic!("blue-green");
    };
    assert_eq!(
        b.post_promotion_duration,
        Some(std::time::Duration::from_secs(300))
    );
    let table = augur_policies::explain::explain(&loaded.set).render_table();
    assert!(
        table.contains("watching 5m0s after the switch")
            || table.contains("watching 5m after the switch"),
        "{table}"
    );
    let zero = bg.replace("duration: 5m ", "duration: 0s ");
    assert_ne!(zero, bg);
    let e = errors(&zero);
    assert!(
        e.iter().any(
            |e| e.contains("spec.blueGreen.postPromotionAnalysis.duration")
                && e.contains("longer than 0s")
        ),
        "{e:?}"
    );
    let pre = bg.replace(
        "prePromotionAnalysis: {}",
        "prePromotionAnalysis: {duration: 5m}",
    );
    assert_ne!(pre, bg);
    let e = errors(&pre);
    assert!(
        e.iter().any(
            |e| e.contains("spec.blueGreen.prePromotionAnalysis.duration")
                && e.contains("applies to blueGreen.postPromotionAnalysis only")
        ),
        "{e:?}"
    );
    let step = BASE.replacen("    - analysis: {}", "    - analysis: {duration: 5m}", 1);
    let e = errors(&step);
    assert!(
        e.iter()
            .any(|e| e.contains("spec.steps[1].analysis.duration")),
        "{e:?}"
    );
}

/// `setHeaderRoute` without `match` removes the named route, as in Argo Rollouts; one that
/// removes a route no earlier step sets loads with a warning that says so.
#[test]
fn a_header_route_without_match_removes_it() {
    let set = "    - setHeaderRoute:\n        name: beta\n        match:\n        - headerName: x-beta\n          headerValue: {exact: \"true\"}\n";
    let remove = "    - setHeaderRoute: {name: beta}\n";
    let y = BASE.replace(
        "    - setWeight: 10\n",
        &format!("    - setWeight: 10\n{set}    - pause: {{}}\n{remove}"),
    );
    let loaded = load_str("c.yaml", &y).unwrap_or_else(|e| panic!("{e}"));
    assert!(loaded.warnings.is_empty(), "{:?}", loaded.warnings);
    let policy = &loaded.set.canary_policies[0];
    let Strategy::Steps(steps) = &policy.strategy else {
        panic!("steps")
    };
    let routes: Vec<(&str, usize)> = steps
        .iter()
        .filter_map(|s| match s {
            RolloutStep::SetHeaderRoute(h) => Some((h.name.as_str(), h.matches.len())),
            _ => None,
        })
        .collect();
    assert_eq!(routes, [("beta", 1), ("beta", 0)]);
    // Removing a route nothing set: a warning at the step.
    let y = BASE.replace(
        "    - setWeight: 10\n",
        &format!("    - setWeight: 10\n{remove}"),
    );
    let w = warnings(&y);
    assert_eq!(w.len(), 1, "{w:?}");
    assert!(
        w[0].contains(
            "setHeaderRoute \"beta\" without match removes the route, but no earlier step sets it"
        ),
        "{w:?}"
    );
}
