//! Agreement with scipy: reads `tests/vectors/*.json` (written by `tests/vectors/generate.py`)
//! and checks statistics and p-values to a relative error of 1e-9. scipy is not needed here.
//! The mSPRT and Hodges-Lehmann vectors are the library's formulas retyped in numpy (scipy has
//! neither); `definitions.rs` checks those two against their definitions.

use augur_analyzer::stats::fisher::fisher_exact;
use augur_analyzer::stats::hodges_lehmann::{hodges_lehmann, CiMethod};
use augur_analyzer::stats::mann_whitney::{mann_whitney_u, MwuMethod, MwuOptions};
use augur_analyzer::stats::msprt::MixtureSprt;
use augur_analyzer::stats::proportions::{two_proportion_z_test, wilson_interval};
use augur_analyzer::stats::quantile::quantile_ci;
use augur_analyzer::stats::srm::sample_ratio_mismatch;
use augur_analyzer::stats::welch::welch_t_test;
use augur_analyzer::stats::Alternative;
use serde_json::Value;

const REL: f64 = 1e-9;

fn load(name: &str) -> Vec<Value> {
    let path = format!("{}/tests/vectors/{name}.json", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(&path).expect("vector file");
    let doc: Value = serde_json::from_str(&text).expect("json");
    let vectors = doc["vectors"].as_array().expect("vectors").clone();
    assert!(!vectors.is_empty(), "{name} has no vectors");
    vectors
}

fn close(got: f64, want: f64, what: &str, v: &Value) {
    let ok = if want.is_infinite() || got.is_infinite() {
        got == want
    } else {
        (got - want).abs() <= REL * want.abs().max(got.abs()) || got == want
    };
    assert!(
        ok,
        "{what}: got {got:e}, scipy {want:e} (rel {:e}) in {v}",
        ((got - want) / want).abs()
    );
}

fn f(v: &Value, key: &str) -> f64 {
    match &v[key] {
        Value::String(s) if s == "inf" => f64::INFINITY,
        other => other.as_f64().expect("number"),
    }
}

fn u(v: &Value, key: &str) -> u64 {
    v[key].as_u64().expect("count")
}

fn floats(v: &Value, key: &str) -> Vec<f64> {
    v[key]
        .as_array()
        .expect("array")
        .iter()
        .map(|x| x.as_f64().expect("float"))
        .collect()
}

fn alt(v: &Value) -> Alternative {
    match v["alternative"].as_str() {
        Some("less") => Alternative::Less,
        Some("greater") => Alternative::Greater,
        _ => Alternative::TwoSided,
    }
}

#[test]
fn mann_whitney_matches_scipy() {
    for v in load("mannwhitneyu") {
        let method = match v["method"].as_str() {
            Some("exact") => MwuMethod::Exact,
            Some("asymptotic") => MwuMethod::Asymptotic,
            _ => MwuMethod::Auto,
        };
        let options = MwuOptions {
            alternative: alt(&v),
            method,
            continuity: v["use_continuity"].as_bool().unwrap_or(true),
        };
        let r = mann_whitney_u(&floats(&v, "x"), &floats(&v, "y"), options).expect("valid");
        close(r.u1, f(&v, "statistic"), "U1", &v);
        close(r.p_value, f(&v, "pvalue"), "p", &v);
    }
}

#[test]
fn hodges_lehmann_matches_numpy_reference() {
    for v in load("hodges_lehmann") {
        let r = hodges_lehmann(
            &floats(&v, "control"),
            &floats(&v, "experiment"),
            f(&v, "confidence"),
        )
        .expect("valid");
        let method = if v["method"] == "exact" {
            CiMethod::Exact
        } else {
            CiMethod::Asymptotic
        };
        assert_eq!(r.method, method, "{v}");
        assert_eq!(r.k, u(&v, "k"), "{v}");
        close(r.estimate, f(&v, "estimate"), "estimate", &v);
        close(r.lower, f(&v, "lower"), "lower", &v);
        close(r.upper, f(&v, "upper"), "upper", &v);
    }
}

#[test]
fn welch_matches_scipy() {
    for v in load("ttest_welch") {
        let r = welch_t_test(&floats(&v, "x"), &floats(&v, "y"), alt(&v)).expect("valid");
        close(r.statistic, f(&v, "statistic"), "t", &v);
        close(r.df, f(&v, "df"), "df", &v);
        close(r.p_value, f(&v, "pvalue"), "p", &v);
    }
}

#[test]
fn fisher_matches_scipy() {
    for v in load("fisher_exact") {
        let t = &v["table"];
        let cell = |i: usize, j: usize| t[i][j].as_u64().expect("cell");
        let table = [[cell(0, 0), cell(0, 1)], [cell(1, 0), cell(1, 1)]];
        let r = fisher_exact(table, alt(&v)).expect("valid");
        close(r.statistic, f(&v, "statistic"), "odds ratio", &v);
        close(r.p_value, f(&v, "pvalue"), "p", &v);
    }
}

#[test]
fn two_proportion_z_matches_scipy() {
    for v in load("proportions_z") {
        let r = two_proportion_z_test(u(&v, "x1"), u(&v, "n1"), u(&v, "x2"), u(&v, "n2"), alt(&v))
            .expect("valid");
        close(r.statistic, f(&v, "statistic"), "z", &v);
        close(r.p_value, f(&v, "pvalue"), "p", &v);
    }
}

#[test]
fn wilson_matches_scipy() {
    for v in load("wilson") {
        let r = wilson_interval(u(&v, "k"), u(&v, "n"), f(&v, "confidence")).expect("valid");
        close(r.lower.expect("lower"), f(&v, "low"), "low", &v);
        close(r.upper.expect("upper"), f(&v, "high"), "high", &v);
    }
}

#[test]
fn quantile_intervals_match_scipy() {
    for v in load("quantile") {
        let r = quantile_ci(&floats(&v, "x"), f(&v, "p"), f(&v, "confidence")).expect("valid");
        close(r.estimate, f(&v, "estimate"), "estimate", &v);
        assert_eq!(r.lower, v["low"].as_f64(), "low in {v}");
        assert_eq!(r.upper, v["high"].as_f64(), "high in {v}");
    }
}

#[test]
fn srm_matches_scipy() {
    for v in load("chisquare_srm") {
        let observed: Vec<u64> = v["observed"]
            .as_array()
            .expect("obs")
            .iter()
            .filter_map(Value::as_u64)
            .collect();
        let r = sample_ratio_mismatch(&observed, &floats(&v, "weights")).expect("valid");
        close(r.statistic, f(&v, "statistic"), "chi2", &v);
        close(r.p_value, f(&v, "pvalue"), "p", &v);
    }
}

#[test]
fn msprt_matches_the_paper_formula() {
    for v in load("msprt") {
        let test = MixtureSprt::new(f(&v, "tau2"), f(&v, "theta0")).expect("valid");
        let n = f(&v, "n");
        let lr = test
            .likelihood_ratio(f(&v, "difference"), 2.0 * f(&v, "sigma2") / n)
            .expect("valid");
        close(lr, f(&v, "likelihood_ratio"), "Lambda", &v);
    }
}
