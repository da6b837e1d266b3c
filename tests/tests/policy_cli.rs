//! `augur policy check|explain` as an SRE runs them: exit codes and `file:line:column` errors.

use std::path::{Path, PathBuf};

use augur_tests::augur::run;

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("repo root")
        .to_path_buf()
}

/// A valid base: VirtualService `m` with a named route, its DestinationRule and a CanaryPolicy.
const BASE: &str = r#"apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: m}
spec:
  hosts: [m]
  http:
  - name: primary
    route:
    - destination: {host: m, subset: v1}
      weight: 100
    - destination: {host: m, subset: v2}
      weight: 0
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: m}
spec:
  host: m
  subsets:
  - {name: v1, labels: {version: v1}}
  - {name: v2, labels: {version: v2}}
---
apiVersion: augur.dev/v1alpha1
kind: CanaryPolicy
metadata: {name: m}
spec:
  trafficRouting:
    virtualService: {name: m, routes: [primary]}
  stable: {host: m, subset: v1}
  canary: {host: m, subset: v2}
  steps:
  - setWeight: 50
  - setWeight: 100
"#;

/// Runs `augur policy check` on `yaml` and returns (exit code, stdout, stderr).
fn check(yaml: &str) -> (Option<i32>, String, String) {
    check_with(yaml, &[])
}

/// [`check`] with more arguments after the file.
fn check_with(yaml: &str, args: &[&str]) -> (Option<i32>, String, String) {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("bad.yaml");
    std::fs::write(&file, yaml).expect("write policy");
    let mut argv = vec!["policy", "check", file.to_str().expect("utf-8 path")];
    argv.extend_from_slice(args);
    let out = run(&argv);
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Asserts exit 1 and an error line starting with `bad.yaml:line:column: ` that contains `needle`.
fn assert_rejected(yaml: &str, line: usize, column: usize, needle: &str) {
    let (code, _, stderr) = check(yaml);
    assert_eq!(code, Some(1), "stderr: {stderr}");
    let prefix = format!("bad.yaml:{line}:{column}: ");
    assert!(
        stderr
            .lines()
            .any(|l| l.contains(&prefix) && l.contains(needle)),
        "expected a line with {prefix:?} and {needle:?} in:\n{stderr}"
    );
}

#[test]
fn the_committed_policies_are_valid() {
    // The examples name an API-key environment variable and a shadow model that live where the
    // proxy runs, not here: --files-only checks the files alone (the runtime checks are
    // exercised by check_verifies_what_the_proxy_loads).
    let out = run(&[
        "policy",
        "check",
        "--files-only",
        repo_root().join("policies").to_str().expect("utf-8"),
    ]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.starts_with("ok: 8 file(s)") && stdout.contains("1 ApiProtection"),
        "{stdout}"
    );
}

#[test]
fn the_base_fixture_is_valid() {
    let (code, _, stderr) = check(BASE);
    assert_eq!(code, Some(0), "{stderr}");
}

#[test]
fn yaml_syntax_error() {
    let yaml = BASE.replace("hosts: [m]", "hosts: [m\n  oops: {");
    assert_rejected(&yaml, 6, 7, "YAML syntax error");
}

#[test]
fn unknown_field_in_canary_policy() {
    let yaml = BASE.replace("  steps:\n", "  stepz: []\n  steps:\n");
    assert_rejected(&yaml, 31, 3, "spec.stepz: unknown field");
}

/// A misspelt Istio field is an error naming the field it most likely meant (it would otherwise
/// turn a 50/50 split into 100/0); `--allow-unknown-fields` makes it a warning, for documents
/// written for a newer Istio.
#[test]
fn misspelt_istio_field_is_an_error_unless_allowed() {
    let yaml = BASE.replace("      weight: 0\n", "      wieght: 0\n");
    assert_rejected(
        &yaml,
        12,
        7,
        "spec.http[0].route[1].wieght: unknown field `wieght`; did you mean `weight`?",
    );
    let (code, stdout, stderr) = check_with(&yaml, &["--allow-unknown-fields"]);
    assert_eq!(code, Some(0), "{stderr}");
    assert!(
        stderr.contains("warning: spec.http[0].route[1].wieght: unknown field `wieght`"),
        "{stderr}"
    );
    assert!(stdout.contains("1 warning(s)"), "{stdout}");
}

#[test]
fn total_weight_zero_with_two_destinations() {
    let yaml = BASE.replace("weight: 100", "weight: 0");
    assert_rejected(&yaml, 8, 5, "total destination weight = 0");
}

#[test]
fn negative_mirror_percentage() {
    let yaml = BASE.replace(
        "      weight: 0\n---",
        "      weight: 0\n    mirror: {host: m, subset: v2}\n    mirrorPercentage: {value: -1}\n---",
    );
    assert_rejected(&yaml, 14, 24, "mirrorPercentage.value");
}

#[test]
fn subset_no_destination_rule_defines() {
    let yaml = BASE.replace(
        "{host: m, subset: v2}\n      weight: 0",
        "{host: m, subset: v3}\n      weight: 0",
    );
    assert_rejected(&yaml, 11, 30, "subset \"v3\"");
}

#[test]
fn canary_policy_route_that_does_not_exist() {
    let yaml = BASE.replace("routes: [primary]", "routes: [primery]");
    assert_rejected(&yaml, 28, 40, "no http route named \"primery\"");
}

#[test]
fn explain_prints_the_plan_as_table_and_json() {
    let file = repo_root().join("policies/examples/canary-pneumonia.yaml");
    let out = run(&["policy", "explain", file.to_str().expect("utf-8")]);
    assert_eq!(out.status.code(), Some(0));
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(
        table.contains("pneumonia/v1") && table.contains("100%"),
        "{table}"
    );
    assert!(table.contains("setWeight 20"), "{table}");

    let out = run(&[
        "policy",
        "explain",
        file.to_str().expect("utf-8"),
        "--output",
        "json",
    ]);
    assert_eq!(out.status.code(), Some(0));
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON output");
    assert!(json.is_object());
}

/// `policy explain --rate R` says what each gate needs before the rollout starts; `policy check
/// --rate R` warns about gates that cannot pass in practice (issue 19 §7).
#[test]
fn explain_and_check_estimate_what_evidence_costs() {
    let file = repo_root().join("policies/examples/canary-pneumonia.yaml");
    let path = file.to_str().expect("utf-8");
    let out = run(&["policy", "explain", path, "--rate", "20"]);
    assert_eq!(out.status.code(), Some(0));
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(
        table.contains("EVIDENCE default/pneumonia at 20 requests/s"),
        "{table}"
    );
    let gate = table
        .lines()
        .find(|l| l.starts_with("2 ") && l.contains("accuracy"))
        .unwrap_or_else(|| panic!("the first gate's row:\n{table}"));
    assert!(gate.contains("10%") && gate.contains("m0s"), "{gate}");

    let json_out = run(&["policy", "explain", path, "--rate", "100", "-o", "json"]);
    let json: serde_json::Value = serde_json::from_slice(&json_out.stdout).expect("JSON");
    let gates = &json["evidence"][0]["gates"];
    let fast = gates[0]["wait_s"].as_f64().expect("a wait");
    let slow_out = run(&["policy", "explain", path, "--rate", "20", "-o", "json"]);
    let slow: serde_json::Value = serde_json::from_slice(&slow_out.stdout).expect("JSON");
    let slow = slow["evidence"][0]["gates"][0]["wait_s"]
        .as_f64()
        .expect("a wait");
    assert!(
        slow > 4.0 * fast,
        "five times the traffic: {slow} s vs {fast} s"
    );
    assert_eq!(
        gates[0]["canary_requests"],
        slow_out_requests(&slow_out.stdout),
        "the same canary requests at any rate"
    );

    // A policy whose gate cannot pass: an allowance of 0, and a rate that needs days.
    let dir = tempfile::tempdir().expect("tempdir");
    let zero = std::fs::read_to_string(&file).expect("read").replace(
        "allowedChange: {absolute: 1}       # +1 percentage point",
        "allowedChange: {absolute: 0}",
    );
    let zero_file = dir.path().join("zero.yaml");
    std::fs::write(&zero_file, zero).expect("write");
    let out = run(&[
        "policy",
        "check",
        "--files-only", // the example's shadow model is not here
        zero_file.to_str().expect("utf-8"),
        "--rate",
        "20",
    ]);
    assert_eq!(out.status.code(), Some(0), "warnings are not errors");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("an allowance of 0 can never be shown"),
        "{err}"
    );
    assert!(
        err.contains(
            "the analysis gate at step 2 cannot pass: error-rate: never: an allowance of 0"
        ),
        "{err}"
    );
    let out = run(&["policy", "check", "--files-only", path, "--rate", "0.1"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("the analysis gate at step 2 needs about")
            && err.contains("h")
            && err.contains("m0s at 0.1 requests/s"),
        "{err}"
    );
    let out = run(&["policy", "check", "--files-only", path, "--rate", "20"]);
    assert!(
        out.stderr.is_empty(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn slow_out_requests(stdout: &[u8]) -> serde_json::Value {
    let v: serde_json::Value = serde_json::from_slice(stdout).expect("JSON");
    v["evidence"][0]["gates"][0]["canary_requests"].clone()
}

/// The ONNX Runtime library the shadow-model checks load (scripts/test.sh sets it).
fn ort_dylib() -> String {
    let ort = std::env::var("ORT_DYLIB_PATH").expect(
        "ORT_DYLIB_PATH must name libonnxruntime.so: run the tests through scripts/test.sh",
    );
    assert!(
        Path::new(&ort).exists(),
        "ORT_DYLIB_PATH={ort} does not exist"
    );
    ort
}

/// `augur policy check` in `dir` with `env`, returning (exit code, stdout, stderr).
fn check_in(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> (Option<i32>, String, String) {
    let mut cmd = std::process::Command::new(augur_tests::augur::bin());
    cmd.current_dir(dir).args(["policy", "check"]).args(args);
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().expect("run augur");
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// `check` verifies what the proxy loads beyond the files, each problem at the field that names
/// it: the API-key environment variable or file, and the shadow model with its `<model>.json`
/// metadata and input shape. `--files-only` skips them.
#[test]
fn check_verifies_what_the_proxy_loads() {
    let ort = ort_dylib();
    let dir = tempfile::tempdir().expect("tempdir");
    let models = dir.path().join("models");
    std::fs::create_dir(&models).expect("models dir");
    let fixtures = repo_root().join("inference/fixtures/models");
    let shadow = r#"  shadow:
    model: models/shadow.onnx
    mirrorPercentage: 10
    preprocessing: {channels: 1, width: 64, height: 64, range: [0, 1], layout: NCHW}
"#;
    let protection = r#"---
apiVersion: augur.dev/v1alpha1
kind: ApiProtection
metadata: {name: keys}
spec:
  virtualService: {name: m}
  apiKey:
    keysFrom: {env: AUGUR_TEST_CHECK_KEYS}
"#;
    let policy = format!("{BASE}{shadow}{protection}");
    std::fs::write(dir.path().join("p.yaml"), &policy).expect("write");
    let line = |needle: &str| {
        policy
            .lines()
            .position(|l| l.contains(needle))
            .map_or(0, |i| i + 1)
    };
    let ort_env = ("ORT_DYLIB_PATH", ort.as_str());

    // Nothing there: no model, no key variable.
    let (code, _, stderr) = check_in(dir.path(), &["p.yaml"], &[ort_env]);
    assert_eq!(code, Some(1), "{stderr}");
    let model_at = format!("p.yaml:{}:5: spec.shadow.model: shadow model models/shadow.onnx: cannot read model metadata models/shadow.json", line("model: models/shadow.onnx"));
    let keys_at = format!(
        "p.yaml:{}:16: spec.apiKey.keysFrom.env: environment variable AUGUR_TEST_CHECK_KEYS is not set",
        line("keysFrom:")
    );
    assert!(stderr.contains(&model_at), "{model_at}\n{stderr}");
    assert!(stderr.contains(&keys_at), "{keys_at}\n{stderr}");
    assert!(
        stderr.ends_with("2 error(s): policy rejected\n"),
        "{stderr}"
    );

    // --files-only: the files alone are valid.
    let (code, _, stderr) = check_in(dir.path(), &["--files-only", "p.yaml"], &[ort_env]);
    assert_eq!(code, Some(0), "{stderr}");

    // A model whose input is 64x64 against a policy that feeds it 224x224: the shape is checked.
    std::fs::copy(
        fixtures.join("nonmedical-tiny-a.onnx"),
        models.join("shadow.onnx"),
    )
    .expect("copy");
    std::fs::copy(
        fixtures.join("nonmedical-tiny-a.json"),
        models.join("shadow.json"),
    )
    .expect("copy");
    let keys = ("AUGUR_TEST_CHECK_KEYS", "k1,k2");
    std::fs::write(
        dir.path().join("p.yaml"),
        policy.replace("width: 64, height: 64", "width: 224, height: 224"),
    )
    .expect("write");
    let (code, _, stderr) = check_in(dir.path(), &["p.yaml"], &[ort_env, keys]);
    assert_eq!(code, Some(1), "{stderr}");
    assert!(
        stderr.contains(
            "spec.shadow.model: shadow model models/shadow.onnx: model does not match its metadata"
        ),
        "{stderr}"
    );

    // All there and consistent: valid, and -o json says so for CI.
    std::fs::write(dir.path().join("p.yaml"), &policy).expect("write");
    let (code, stdout, stderr) = check_in(dir.path(), &["p.yaml", "-o", "json"], &[ort_env, keys]);
    assert_eq!(code, Some(0), "{stderr}");
    let report: serde_json::Value = serde_json::from_str(&stdout).expect("JSON");
    assert_eq!(report["ok"], true, "{report}");
    assert_eq!(report["errors"], 0, "{report}");
    assert_eq!(report["documents"]["CanaryPolicy"], 1, "{report}");
    assert_eq!(report["documents"]["ApiProtection"], 1, "{report}");
}

/// A missing API-key *file* fails `check` as it would fail the proxy's load: exit 1, the error
/// placed at the field that names the file (`file:line:column`); with the file there, the same
/// policy passes.
#[test]
fn check_rejects_a_missing_api_key_file_at_its_line() {
    let dir = tempfile::tempdir().expect("tempdir");
    let protection = r#"---
apiVersion: augur.dev/v1alpha1
kind: ApiProtection
metadata: {name: keys}
spec:
  virtualService: {name: m}
  apiKey:
    keysFrom: {file: keys/api-keys}
"#;
    let policy = format!("{BASE}{protection}");
    std::fs::write(dir.path().join("p.yaml"), &policy).expect("write");
    let line = policy
        .lines()
        .position(|l| l.contains("keysFrom:"))
        .map_or(0, |i| i + 1);

    let (code, _, stderr) = check_in(dir.path(), &["p.yaml"], &[]);
    assert_eq!(code, Some(1), "{stderr}");
    let at = format!(
        "p.yaml:{line}:16: spec.apiKey.keysFrom.file: cannot read the key file keys/api-keys"
    );
    assert!(stderr.contains(&at), "{at}\n{stderr}");
    assert!(
        stderr.ends_with("1 error(s): policy rejected\n"),
        "{stderr}"
    );

    std::fs::create_dir(dir.path().join("keys")).expect("keys dir");
    std::fs::write(dir.path().join("keys/api-keys"), "k1\nk2\n").expect("write keys");
    let (code, _, stderr) = check_in(dir.path(), &["p.yaml"], &[]);
    assert_eq!(code, Some(0), "{stderr}");
}

/// `check -o json` lists every diagnostic with its place, and exits 1 on errors.
#[test]
fn check_json_lists_diagnostics_for_ci() {
    let yaml = BASE.replace("      weight: 0\n", "      wieght: 0\n");
    let (code, stdout, stderr) = check_with(&yaml, &["-o", "json", "--files-only"]);
    assert_eq!(code, Some(1), "{stderr}");
    let report: serde_json::Value = serde_json::from_str(&stdout).expect("JSON");
    assert_eq!(report["ok"], false);
    assert_eq!(report["errors"], 1);
    let d = &report["diagnostics"][0];
    assert_eq!(d["severity"], "error");
    assert_eq!(
        (d["line"].as_u64(), d["column"].as_u64()),
        (Some(12), Some(7))
    );
    assert_eq!(d["path"], "spec.http[0].route[1].wieght");
    assert_eq!(
        d["message"],
        "unknown field `wieght`; did you mean `weight`?"
    );
}
