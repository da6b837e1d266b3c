//! Kayenta-compatible scoring: groups, weights, and pass/marginal thresholds.
//!
//! Contract (NetflixACAJudge's `WeightedSumScorer` and `ThresholdScoreClassifier`, see
//! `reference/canary-analysis.md` §1 step 10–11): group score = `100·pass/(pass + fail)`, NoData
//! not counted; a group with nothing counted scores 100; groups without a configured weight
//! share `100 − Σweights` equally; summary = `Σ score·w/100`; a critical metric that is not Pass
//! sets the score to 0. Then `score ≥ pass` is Pass, `≥ marginal` is Inconclusive (Kayenta's
//! Marginal), otherwise Fail.
//!
//! Evidence-based gates change two things. An Inconclusive metric (not shown either way yet)
//! is neither a pass nor a failure, so the score is computed twice: **worst** with every
//! Inconclusive metric counted as failing, **best** with each counted as passing. The aggregate
//! is Pass when the worst case reaches `pass`, Fail when even the best case is below
//! `marginal`, and Inconclusive otherwise. And where Kayenta scores 0 when ≥ 50% of metrics (or
//! a critical one) have no data, the aggregate is NoData instead: too few samples yet is a
//! reason to wait, never a failure.

use std::collections::BTreeMap;

use crate::spec::{AnalysisSpec, ScoringSpec};
use crate::verdict::{Outcome, Side, TestUsed, Verdict};

/// The aggregate verdict named `score` over the metric verdicts.
pub fn kayenta_score(spec: &AnalysisSpec, scoring: &ScoringSpec, verdicts: &[Verdict]) -> Verdict {
    let group_of = |name: &str| {
        spec.metrics
            .iter()
            .find(|m| m.name == name)
            .and_then(|m| m.group.clone())
            .unwrap_or_else(|| name.to_owned())
    };
    let no_data = verdicts
        .iter()
        .filter(|v| v.outcome == Outcome::NoData)
        .count();
    if verdicts
        .iter()
        .any(|v| v.critical && v.outcome == Outcome::NoData)
        || (!verdicts.is_empty() && 2 * no_data >= verdicts.len())
    {
        let mut v = Verdict::new(
            "score",
            Outcome::NoData,
            TestUsed::KayentaScore,
            format!(
                "Kayenta score not computed: {no_data} of {} metrics (or a critical one) have no data yet",
                verdicts.len()
            ),
        );
        v.allowance = Some(scoring.pass);
        return v;
    }
    let worst = score(scoring, verdicts, false, &group_of);
    let best = score(scoring, verdicts, true, &group_of);
    let outcome = if worst >= scoring.pass {
        Outcome::Pass
    } else if best < scoring.marginal {
        Outcome::Fail { side: Side::Low }
    } else {
        Outcome::Inconclusive
    };
    let critical_bad = verdicts
        .iter()
        .any(|v| v.critical && v.outcome != Outcome::Pass);
    let why = if critical_bad {
        "; a critical metric has not passed"
    } else {
        ""
    };
    let mut v = Verdict::new(
        "score",
        outcome,
        TestUsed::KayentaScore,
        format!(
            "Kayenta score {worst:.2} counting undecided metrics as failing, {best:.2} as passing (pass ≥ {}, marginal ≥ {}){why}",
            scoring.pass, scoring.marginal
        ),
    );
    v.statistic = Some(worst);
    v.bound = Some(worst);
    v.allowance = Some(scoring.pass);
    v.interval = Some((worst, best));
    v.measure = Some("Kayenta score (undecided metrics counted as failing)".to_owned());
    v
}

/// The weighted score with Inconclusive metrics counted as passing (`optimistic`) or failing.
fn score(
    scoring: &ScoringSpec,
    verdicts: &[Verdict],
    optimistic: bool,
    group_of: &dyn Fn(&str) -> String,
) -> f64 {
    let mut groups: BTreeMap<String, (u64, u64)> = BTreeMap::new();
    for v in verdicts {
        let entry = groups.entry(group_of(&v.metric)).or_default();
        match v.outcome {
            Outcome::Pass => entry.0 += 1,
            Outcome::Inconclusive if optimistic => entry.0 += 1,
            Outcome::Fail { .. } | Outcome::Inconclusive => entry.1 += 1,
            Outcome::NoData => {}
        }
    }
    let configured: f64 = scoring
        .group_weights
        .iter()
        .filter(|(g, _)| groups.contains_key(g))
        .map(|(_, w)| w)
        .sum();
    let unweighted = groups
        .keys()
        .filter(|g| !scoring.group_weights.iter().any(|(n, _)| n == *g))
        .count();
    let share = if unweighted > 0 {
        ((100.0 - configured) / unweighted as f64).max(0.0)
    } else {
        0.0
    };
    let mut score: f64 = groups
        .iter()
        .map(|(g, &(pass, fail))| {
            let weight = scoring
                .group_weights
                .iter()
                .find(|(n, _)| n == g)
                .map_or(share, |(_, w)| *w);
            let group_score = if pass + fail == 0 {
                100.0
            } else {
                100.0 * pass as f64 / (pass + fail) as f64
            };
            group_score * weight / 100.0
        })
        .sum();
    let critical_bad = verdicts.iter().any(|v| {
        v.critical
            && match v.outcome {
                Outcome::Pass => false,
                Outcome::Inconclusive => !optimistic,
                _ => true,
            }
    });
    if critical_bad {
        score = 0.0;
    }
    (score * 100.0).round() / 100.0
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::{MetricKind, MetricSpec};

    fn verdict(name: &str, outcome: Outcome) -> Verdict {
        Verdict::new(name, outcome, TestUsed::None, String::new())
    }

    #[test]
    fn weighted_groups_and_overrides() {
        let mut spec = AnalysisSpec {
            metrics: vec![
                MetricSpec::new("a", MetricKind::ErrorRate),
                MetricSpec::new("b", MetricKind::ErrorRate),
                MetricSpec::new("c", MetricKind::Accuracy),
            ],
            ..AnalysisSpec::default()
        };
        spec.metrics[0].group = Some("svc".to_owned());
        spec.metrics[1].group = Some("svc".to_owned());
        let scoring = ScoringSpec {
            group_weights: vec![("svc".to_owned(), 60.0)],
            pass: 90.0,
            marginal: 75.0,
        };
        let fail = Outcome::Fail { side: Side::High };
        let vs = [
            verdict("a", Outcome::Pass),
            verdict("b", fail),
            verdict("c", Outcome::Pass),
        ];
        let s = kayenta_score(&spec, &scoring, &vs);
        assert_eq!(s.statistic, Some(70.0));
        assert!(s.is_fail());
        let vs = [
            verdict("a", Outcome::Pass),
            verdict("b", Outcome::Pass),
            verdict("c", fail),
        ];
        assert_eq!(
            kayenta_score(&spec, &scoring, &vs).outcome,
            Outcome::Fail { side: Side::Low }
        );
        let vs = [
            verdict("a", Outcome::Pass),
            verdict("b", Outcome::NoData),
            verdict("c", Outcome::NoData),
        ];
        assert_eq!(kayenta_score(&spec, &scoring, &vs).outcome, Outcome::NoData);
        let vs = [
            verdict("a", Outcome::Pass),
            verdict("b", Outcome::Pass),
            verdict("c", Outcome::NoData),
        ];
        assert_eq!(kayenta_score(&spec, &scoring, &vs).outcome, Outcome::Pass);
        // undecided metrics: neither a pass nor a failure until shown
        let vs = [
            verdict("a", Outcome::Pass),
            verdict("b", Outcome::Inconclusive),
            verdict("c", Outcome::Pass),
        ];
        let s = kayenta_score(&spec, &scoring, &vs);
        assert_eq!(
            (s.outcome, s.interval),
            (Outcome::Inconclusive, Some((70.0, 100.0)))
        );
    }
}
