//! `augur demo`, both scenarios end to end through the built binary: two `augur model-server`
//! processes, `augur proxy` with the demo's CanaryPolicy, the 16 real X-rays as traffic and
//! delayed labels. The proxy's analyzer decides; the demo exits 0 only when its decision is the
//! scenario's expected one. The models are the real Xception model when
//! `scripts/fetch-model.sh` has fetched it, else the fixtures (the bad canary is then the slow
//! one), so CI without the real model runs the fixture path.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::Mutex;
use std::time::Instant;

use augur_tests::augur;

/// The demos load the machine: run them one at a time.
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .canonicalize()
        .expect("repo")
}

fn demo(args: &[&str]) -> (Output, String) {
    let _one = ONE_AT_A_TIME
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    let started = Instant::now();
    let mut cmd = Command::new(augur::bin());
    cmd.arg("demo").args(args).current_dir(repo());
    if std::env::var_os("ORT_DYLIB_PATH").is_none() {
        cmd.env(
            "ORT_DYLIB_PATH",
            repo().join(".cache/onnxruntime/libonnxruntime.so.1.32.0"),
        );
    }
    let output = cmd.output().expect("run augur demo");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    eprintln!(
        "augur demo {} took {:.0} s:\n{text}",
        args.join(" "),
        started.elapsed().as_secs_f64()
    );
    (output, text)
}

fn real_model_present() -> bool {
    repo()
        .join(".cache/models/pneumonia_xception_degraded.onnx")
        .is_file()
}

/// The decision lines the demo printed at the end (after "Decisions:").
fn decisions(text: &str) -> Vec<&str> {
    text.split("\nDecisions:\n")
        .nth(1)
        .unwrap_or("")
        .lines()
        .take_while(|l| l.starts_with("  ["))
        .collect()
}

#[test]
fn the_good_canary_is_promoted_through_every_analysis_gate() {
    let (output, text) = demo(&["--scenario", "good-canary", "--timeout", "420"]);
    assert!(output.status.success(), "exit status {}", output.status);
    assert!(text.contains("a demonstration, not an evaluation"));
    assert!(
        text.contains("Outcome after")
            && text.contains("Promoted: the canary (v2) now takes all traffic"),
        "{text}"
    );
    let d = decisions(&text);
    for weight in ["canary 20%", "canary 50%", "canary 80%", "canary 100%"] {
        assert!(
            d.iter().any(|l| l.contains(weight)),
            "the rollout went through {weight}: {d:?}"
        );
    }
    assert_eq!(
        d.iter().filter(|l| l.contains("analysis passed")).count(),
        3,
        "each of the three gates passed on the analysis: {d:?}"
    );
    assert!(!text.contains("rolled_back"), "no rollback on the way");
    // Gates open on evidence, and the screen says so and shows it.
    assert!(
        text.contains("each opens when every metric's anytime-valid bound"),
        "{text}"
    );
    assert!(
        d.iter()
            .filter(|l| l.contains("analysis passed"))
            .all(|l| l.contains("every metric shown within its allowance")
                && l.contains("vs allowed")),
        "{d:?}"
    );
    assert!(
        text.contains(if real_model_present() {
            "the real Xception pneumonia model"
        } else {
            "FIXTURES"
        }),
        "the models in use are named on screen"
    );
}

#[test]
fn the_bad_canary_is_rolled_back_and_the_cause_is_named() {
    let (output, text) = demo(&["--scenario", "bad-canary", "--timeout", "420"]);
    assert!(output.status.success(), "exit status {}", output.status);
    let outcome = text
        .lines()
        .find(|l| l.starts_with("Outcome after"))
        .expect("an outcome line");
    assert!(outcome.contains("RolledBack by"), "{outcome}");
    let d = decisions(&text);
    assert!(
        d.last()
            .is_some_and(|l| l.contains("→ rolled_back (canary 0%)")),
        "all traffic back on stable: {d:?}"
    );
    assert!(!d.iter().any(|l| l.contains("→ promoted")), "{d:?}");
    if real_model_present() {
        // The degraded model is wrong far more often: the accuracy trigger (or the accuracy
        // analysis) rolls it back.
        assert!(outcome.contains("accuracy"), "{outcome}");
    } else {
        // The fixture canary answers 800 ms slower: the latency analysis (or trigger) catches it.
        assert!(outcome.contains("latency"), "{outcome}");
    }
}

#[test]
fn a_run_without_the_expected_outcome_fails() {
    // Three seconds are too few for any decision: no outcome, exit status 1.
    let (output, text) = demo(&["--scenario", "good-canary", "--timeout", "3", "--plain"]);
    assert_eq!(output.status.code(), Some(1), "{text}");
    assert!(text.contains("no outcome in time"), "{text}");
    assert!(
        text.contains("NOT the expected outcome for good-canary"),
        "{text}"
    );
}

/// `augur demo --fleet`: the same rollout decided once by `augur controller` for three
/// sidecars, from the evidence a local Prometheus scrapes from them; the view shows each
/// sidecar's weight, and every sidecar ends at the promoted weight.
#[test]
fn the_fleet_demo_promotes_the_good_canary_on_every_sidecar() {
    let (output, text) = demo(&[
        "--fleet",
        "--models",
        "fixtures",
        "--scenario",
        "good-canary",
        "--timeout",
        "420",
    ]);
    assert!(output.status.success(), "exit status {}", output.status);
    assert!(
        text.contains("fleet: 3 sidecars follow augur controller"),
        "{text}"
    );
    assert!(
        text.contains("Promoted: the canary (v2) now takes all traffic"),
        "{text}"
    );
    assert!(
        text.lines()
            .any(|l| l.contains("| sidecars sidecar-0 20% sidecar-1 20% sidecar-2 20%")),
        "the view shows every sidecar's weight: {text}"
    );
    assert!(
        text.contains(
            "Sidecars (canary weight applied): sidecar-0 100%, sidecar-1 100%, sidecar-2 100%"
        ),
        "every sidecar ends at 100%: {text}"
    );
    assert_eq!(
        decisions(&text)
            .iter()
            .filter(|l| l.contains("analysis passed"))
            .count(),
        3,
        "the controller's three gates passed on the fleet's evidence"
    );
}
