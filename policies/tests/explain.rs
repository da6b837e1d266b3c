//! `explain` on the canary example: shares, endpoints, steps, triggers.

use augur_policies::explain::explain;
use augur_policies::load_paths;

fn canary_explanation() -> augur_policies::explain::Explanation {
    let file = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/examples/canary-pneumonia.yaml"
    );
    let loaded = load_paths(&[file]).unwrap_or_else(|e| panic!("{e}"));
    explain(&loaded.set)
}

#[test]
fn table_shows_shares_endpoints_and_steps() {
    let table = canary_explanation().render_table();
    println!("{table}");
    let row = |needle: &str| {
        table
            .lines()
            .find(|l| l.contains(needle))
            .unwrap_or_else(|| panic!("no line with {needle:?}:\n{table}"))
            .to_owned()
    };
    let v1 = row("pneumonia/v1");
    assert!(
        v1.contains("primary")
            && v1.contains("version=v1")
            && v1.contains("100%")
            && v1.contains("127.0.0.1:8501"),
        "{v1}"
    );
    assert!(v1.contains("5s") && v1.contains("2x per try 2s"), "{v1}");
    let v2 = row("pneumonia/v2");
    assert!(
        v2.contains("version=v2") && v2.contains(" 0% ") && v2.contains("127.0.0.1:8502"),
        "{v2}"
    );
    let steps: Vec<(String, String)> = table
        .lines()
        .skip_while(|l| !l.starts_with("STEP"))
        .skip(1)
        .take_while(|l| !l.is_empty())
        .map(|l| {
            let cols: Vec<&str> = l
                .split("  ")
                .map(str::trim)
                .filter(|c| !c.is_empty())
                .collect();
            (cols[1].to_owned(), cols[2].to_owned())
        })
        .collect();
    let gate =
        "analysis every 1m0s (min 200 samples, sequential, alpha 0.05, waits at most 4h0m0s for evidence)";
    let expected = [
        ("setWeight 10", "10%"),
        (gate, "10%"),
        ("setWeight 20", "20%"),
        (gate, "20%"),
        ("setWeight 50", "50%"),
        (gate, "50%"),
        ("setWeight 100", "100%"),
    ];
    let expected: Vec<(String, String)> = expected
        .iter()
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .collect();
    assert_eq!(steps, expected, "{table}");
    let trig = row("error-rate-above-10");
    assert!(
        trig.contains("errorRate")
            && trig.contains("> 10%")
            && trig.contains("2m0s")
            && trig.contains("immediate"),
        "{trig}"
    );
    assert!(row("accuracy-drop").contains("drops by 5 points below stable"));
    let lat = row("p95-latency-increase");
    assert!(
        lat.contains("increases by 500ms") && lat.contains("3m0s") && lat.contains("canaryOnly"),
        "{lat}"
    );
}

#[test]
fn json_has_shares_and_steps() {
    let json = serde_json::to_value(canary_explanation()).unwrap_or_default();
    let dests = &json["routes"][0]["destinations"];
    assert_eq!(json["routes"][0]["route"], "primary");
    assert_eq!(dests[0]["share_percent"], 100.0);
    assert_eq!(dests[1]["share_percent"], 0.0);
    assert_eq!(dests[1]["labels"]["version"], "v2");
    assert_eq!(dests[1]["endpoints"][0], "127.0.0.1:8502");
    let weights: Vec<u64> = json["rollouts"][0]["steps"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|s| s["canary_weight"].as_u64())
        .collect();
    assert_eq!(weights, [10, 10, 20, 20, 50, 50, 100]);
    assert_eq!(
        json["rollouts"][0]["triggers"].as_array().map(Vec::len),
        Some(3)
    );
    assert_eq!(json["rollouts"][0]["metrics"][0]["kind"], "latency p95");
}

#[test]
fn traffic_shifting_shares_are_weight_over_sum() {
    let file = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/examples/traffic-shifting-80-20.yaml"
    );
    let loaded = load_paths(&[file]).unwrap_or_else(|e| panic!("{e}"));
    let e = explain(&loaded.set);
    let shares: Vec<f64> = e.routes[0]
        .destinations
        .iter()
        .map(|d| d.share_percent)
        .collect();
    assert_eq!(shares, [80.0, 20.0]);
    assert_eq!(e.routes[0].destinations[1].endpoints, ["127.0.0.1:9082"]);
}

/// augur's consistentHash picks the version as well as the endpoint, which Istio's does not:
/// `explain` says so for every route it applies to, and `check` warns about a split route under
/// one unless the DestinationRule says it is meant.
#[test]
fn consistent_hash_is_shown_and_warned_about_where_it_picks_the_version() {
    let text = include_str!("../examples/header-ab.yaml");
    let loaded = augur_policies::load_str("ab.yaml", text).unwrap_or_else(|e| panic!("{e}"));
    assert!(loaded.warnings.is_empty(), "{:?}", loaded.warnings);
    let e = explain(&loaded.set);
    let keys: Vec<(&str, Option<&str>)> = e
        .routes
        .iter()
        .map(|r| (r.route.as_str(), r.hash_key.as_deref()))
        .collect();
    assert_eq!(
        keys,
        [
            ("v2-by-header", Some("header x-user-id")),
            ("split", Some("header x-user-id"))
        ]
    );
    let table = e.render_table();
    let sticky: Vec<&str> = table
        .lines()
        .skip_while(|l| !l.starts_with("STICKY ROUTES"))
        .skip(2)
        .take_while(|l| !l.is_empty())
        .collect();
    assert_eq!(sticky.len(), 2, "{table}");
    assert!(
        sticky[1].contains("split")
            && sticky[1].contains("header x-user-id")
            && sticky[1].contains("one destination (version)"),
        "{table}"
    );
    // Without the annotation, the split route draws the warning.
    let unannotated = text.replace("    augur.dev/sticky-version: \"true\"", "    team: ml");
    let loaded =
        augur_policies::load_str("ab.yaml", &unannotated).unwrap_or_else(|e| panic!("{e}"));
    let warnings: Vec<String> = loaded.warnings.iter().map(ToString::to_string).collect();
    let line = text
        .lines()
        .position(|l| l.contains("- name: split"))
        .map_or(0, |i| i + 2);
    assert_eq!(
        warnings,
        [format!(
            "ab.yaml:{line}:7: warning: spec.http[1].route: DestinationRule default/pneumonia-ab hashes on header x-user-id: in augur that keeps each key on one of these 2 destinations (the version) as well as one endpoint, while Istio's consistentHash picks only the endpoint; annotate the DestinationRule augur.dev/sticky-version: \"true\" if that is meant"
        )]
    );
}

/// `explain` shows everything that is live: the ApiProtection (where the keys are read, never the
/// keys; the limit; the routes), the shadow model with its share and input, and each analysis
/// gate with its step's overrides applied (blue-green's too).
#[test]
fn protections_shadow_and_per_step_analysis_are_shown() {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/examples");
    let loaded = load_paths(&[dir]).unwrap_or_else(|e| panic!("{e}"));
    let e = explain(&loaded.set);
    let json = serde_json::to_value(&e).unwrap_or_default();
    let p = &json["protections"][0];
    assert_eq!(p["protection"], "default/pneumonia-api");
    assert_eq!(p["routes"], serde_json::json!(["primary"]));
    assert_eq!(p["api_key"], "header x-api-key from env PNEUMONIA_API_KEYS");
    assert_eq!(
        p["rate_limit"],
        "100 requests per 1m0s per client IP (burst 100)"
    );
    assert_eq!(p["max_request_body_bytes"], 33_554_432);
    let canary = e
        .rollouts
        .iter()
        .find(|r| r.policy == "default/pneumonia")
        .expect("the canary rollout");
    let shadow = canary.shadow.as_ref().expect("a shadow model");
    assert_eq!(shadow.model, "models/pneumonia-v3.onnx");
    assert_eq!(shadow.mirror_percentage, 10.0);
    assert_eq!(shadow.input, "1x224x224 NCHW, bilinear, range [0, 1]");
    let table = e.render_table();
    assert!(
        table.contains("SHADOW models/pneumonia-v3.onnx: 10% of requests"),
        "{table}"
    );
    assert!(table.contains("API PROTECTION"), "{table}");
    // A step's overrides are what its gate shows.
    let yaml = std::fs::read_to_string(format!("{dir}/canary-pneumonia.yaml"))
        .unwrap_or_default()
        .replacen(
            "    - analysis: {}",
            "    - analysis: {minSamples: 50, alpha: 0.01}",
            1,
        );
    let loaded = augur_policies::load_str("c.yaml", &yaml).unwrap_or_else(|e| panic!("{e}"));
    let steps = &explain(&loaded.set).rollouts[0].steps;
    assert_eq!(
        steps[1].action,
        "analysis every 1m0s (min 50 samples, sequential, alpha 0.01, waits at most 4h0m0s for evidence)"
    );
    assert!(steps[3]
        .action
        .contains("min 200 samples, sequential, alpha 0.05"));
    let bg = e
        .rollouts
        .iter()
        .find(|r| r.strategy == "blueGreen")
        .expect("the blue-green rollout");
    assert!(
        bg.steps
            .iter()
            .any(|s| s.action.starts_with("post-promotion analysis every 30s")),
        "{:?}",
        bg.steps
    );
}

/// `explain` says how each rollout starts: on `augur rollout start` by default (the example
/// writes the default out), at once with `startOn: immediately`.
#[test]
fn explain_says_how_the_rollout_starts() {
    let explained = canary_explanation();
    assert_eq!(explained.rollouts[0].start_on, "command");
    let table = explained.render_table();
    assert!(
        table
            .contains("Starts: on `augur rollout start pneumonia` (startOn: command, the default)"),
        "{table}"
    );
    let text = include_str!("../examples/canary-pneumonia.yaml");
    let unset = text.replace("  startOn: command\n", "");
    assert_ne!(unset, text);
    let loaded = augur_policies::load_str("p.yaml", &unset).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        loaded.set.canary_policies[0].start_on,
        augur_policies::StartOn::Command,
        "the default"
    );
    let now = text.replace("startOn: command", "startOn: immediately");
    let loaded = augur_policies::load_str("p.yaml", &now).unwrap_or_else(|e| panic!("{e}"));
    let table = explain(&loaded.set).render_table();
    assert!(
        table.contains("Starts: as soon as the policy is loaded (startOn: immediately)"),
        "{table}"
    );
    let bad = text.replace("startOn: command", "startOn: now");
    let e = augur_policies::load_str("p.yaml", &bad).expect_err("not a choice");
    assert!(e.to_string().contains("startOn"), "{e}");
}
