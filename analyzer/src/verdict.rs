//! The judge's answer for one metric at one look: outcome, measured values, test and reason.
//!
//! Contract: a [`Verdict`] always carries what was measured (per-arm values and counts), the test
//! that decided and its statistic and p-value or e-value, and a human reason, so the audit log
//! and `rollout status` can show *why* (a top complaint about Argo and Flagger, see
//! `reference/canary-analysis.md` §6). `NoData` is its own outcome, never folded into Pass or
//! Fail; the spec's `on_no_data` decides what it does. Non-finite numbers are stored as `None`,
//! so a verdict always round-trips through JSON.

use serde::{Deserialize, Serialize};

/// Which side a failing metric moved to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Side {
    /// The canary is higher than allowed.
    High,
    /// The canary is lower than allowed.
    Low,
}

/// The outcome of one metric at one look.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// Shown within its allowed change: the anytime-valid bound of canary − stable lies inside
    /// the allowance (for the fixed-horizon methods, the interval of this look does).
    Pass,
    /// Shown beyond its allowed change: the bound on the other side lies beyond the allowance.
    Fail {
        /// Which way the canary moved.
        side: Side,
    },
    /// Neither shown yet: keep collecting (or a degenerate test, or a marginal Kayenta score).
    Inconclusive,
    /// Too few samples (or no labels) to judge.
    NoData,
}

impl Outcome {
    /// `pass`, `fail (high)`, `fail (low)`, `inconclusive`, `no_data`: as the JSON and the
    /// status table name it.
    pub fn name(&self) -> &'static str {
        match self {
            Outcome::Pass => "pass",
            Outcome::Fail { side: Side::High } => "fail (high)",
            Outcome::Fail { side: Side::Low } => "fail (low)",
            Outcome::Inconclusive => "inconclusive",
            Outcome::NoData => "no_data",
        }
    }
}

/// Which test produced a verdict.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TestUsed {
    /// mSPRT on the mean of `ln(latency)` (audit logs written before confidence sequences).
    MsprtLogLatency,
    /// mSPRT on a difference of rates (audit logs written before confidence sequences).
    MsprtRate,
    /// Confidence sequence of the difference of the arms' mean `ln(latency)`.
    CsLogLatency,
    /// Confidence sequence of a difference of rates (or of mean Brier scores).
    CsRate,
    /// Confidence sequence of the share of canary requests beyond stable's quantile.
    CsQuantileShare,
    /// Newcombe's interval of a difference of rates (fixed horizon, Kayenta-style method).
    Newcombe,
    /// Mann-Whitney U with a Hodges-Lehmann 98% interval.
    MannWhitney,
    /// Pooled two-proportion z-test.
    TwoProportionZ,
    /// Fisher's exact test (small counts).
    FisherExact,
    /// A point comparison of quantiles against the allowed difference.
    QuantileThreshold,
    /// A point comparison of rates against the allowed difference.
    RateThreshold,
    /// Population stability index against a threshold.
    Psi,
    /// Brier score difference against a threshold.
    Brier,
    /// Kayenta-style weighted score of metric verdicts.
    KayentaScore,
    /// Chi-square goodness of fit of the arms' request counts to the configured weights.
    SampleRatio,
    /// None: the metric had no data.
    None,
}

/// One metric's verdict with its evidence.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Verdict {
    /// The metric's name.
    pub metric: String,
    /// Pass, Fail, Inconclusive or NoData.
    pub outcome: Outcome,
    /// Whether the metric is critical.
    pub critical: bool,
    /// The stable arm's measured value (rate, ms, PSI reference, Brier score).
    pub stable: Option<f64>,
    /// The canary's measured value.
    pub canary: Option<f64>,
    /// Stable samples used.
    pub n_stable: u64,
    /// Canary samples used.
    pub n_canary: u64,
    /// The test that decided.
    pub test: TestUsed,
    /// The estimated difference or effect (canary − stable, or the test's estimate).
    pub estimate: Option<f64>,
    /// The test statistic (z, U, odds ratio, PSI, score).
    pub statistic: Option<f64>,
    /// The p-value (always-valid for sequential tests).
    pub p_value: Option<f64>,
    /// The e-value (likelihood ratio) of a sequential test.
    pub e_value: Option<f64>,
    /// The interval `(lower, upper)` of the tested quantity at this look: an anytime-valid
    /// confidence sequence for the sequential method, the look's interval otherwise.
    pub interval: Option<(f64, f64)>,
    /// The bound that must lie inside the allowance for a Pass (the upper end when an increase
    /// is bad, the lower end when a decrease is bad), in the unit of `measure`.
    #[serde(default)]
    pub bound: Option<f64>,
    /// The allowance the bound is compared with, in the unit of `measure`.
    #[serde(default)]
    pub allowance: Option<f64>,
    /// What the bound and the allowance measure, e.g. `canary − stable error rate`.
    #[serde(default)]
    pub measure: Option<String>,
    /// Why, in words.
    pub reason: String,
    /// For a NoData verdict: the samples needed per arm before it is judged (with `n_stable`
    /// and `n_canary`, the progress `augur rollout status` shows: `186 of 200`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub needed: Option<u64>,
}

/// Maps a non-finite number to `None`.
pub fn finite(value: f64) -> Option<f64> {
    value.is_finite().then_some(value)
}

impl Verdict {
    /// A verdict with no test evidence yet (fill the fields that apply).
    pub fn new(metric: &str, outcome: Outcome, test: TestUsed, reason: String) -> Self {
        Verdict {
            metric: metric.to_owned(),
            outcome,
            critical: false,
            stable: None,
            canary: None,
            n_stable: 0,
            n_canary: 0,
            test,
            estimate: None,
            statistic: None,
            p_value: None,
            e_value: None,
            interval: None,
            bound: None,
            allowance: None,
            measure: None,
            reason,
            needed: None,
        }
    }

    /// A NoData verdict with the counts seen.
    pub fn no_data(metric: &str, n_stable: u64, n_canary: u64, needed: u64) -> Self {
        let mut v = Verdict::new(
            metric,
            Outcome::NoData,
            TestUsed::None,
            format!(
                "no data: {n_stable} stable and {n_canary} canary samples, {needed} needed per arm"
            ),
        );
        v.n_stable = n_stable;
        v.n_canary = n_canary;
        v.needed = Some(needed);
        v
    }

    /// Sets the measured per-arm values and counts (non-finite values become `None`).
    pub fn measured(mut self, stable: f64, canary: f64, n_stable: u64, n_canary: u64) -> Self {
        self.stable = finite(stable);
        self.canary = finite(canary);
        self.n_stable = n_stable;
        self.n_canary = n_canary;
        self
    }

    /// Whether the outcome is a failure.
    pub fn is_fail(&self) -> bool {
        matches!(self.outcome, Outcome::Fail { .. })
    }
}
