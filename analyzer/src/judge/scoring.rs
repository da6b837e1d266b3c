//! Kayenta-compatible scoring: groups, weights, and pass/marginal thresholds.
//!
//! Contract (NetflixACAJudge's `WeightedSumScorer` and `ThresholdScoreClassifier`, see
//! `reference/canary-analysis.md` §1 step 10–11): group score = `100·pass/(pass + fail)`, NoData
//! and Inconclusive not counted; a group with nothing counted scores 100; groups without a
//! configured weight share `100 − Σweights` equally; summary = `Σ score·w/100`. Overrides: a
//! critical metric that is not Pass, or ≥ 50% of metrics NoData, sets the score to 0. Then
//! `score ≥ pass` is Pass, `≥ marginal` is Inconclusive (Kayenta's Marginal), otherwise Fail.

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
    let mut groups: BTreeMap<String, (u64, u64)> = BTreeMap::new();
    for v in verdicts {
        let entry = groups.entry(group_of(&v.metric)).or_default();
        match v.outcome {
            Outcome::Pass => entry.0 += 1,
            Outcome::Fail { .. } => entry.1 += 1,
            Outcome::Inconclusive | Outcome::NoData => {}
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
    let no_data = verdicts
        .iter()
        .filter(|v| v.outcome == Outcome::NoData)
        .count();
    let critical_bad = verdicts
        .iter()
        .any(|v| v.critical && v.outcome != Outcome::Pass);
    let mut why = String::new();
    if critical_bad {
        score = 0.0;
        why = "; a critical metric did not pass".to_owned();
    } else if !verdicts.is_empty() && 2 * no_data >= verdicts.len() {
        score = 0.0;
        why = format!("; {no_data} of {} metrics have no data", verdicts.len());
    }
    score = (score * 100.0).round() / 100.0;
    let outcome = if score >= scoring.pass {
        Outcome::Pass
    } else if score >= scoring.marginal {
        Outcome::Inconclusive
    } else {
        Outcome::Fail { side: Side::Low }
    };
    let mut v = Verdict::new(
        "score",
        outcome,
        TestUsed::KayentaScore,
        format!(
            "Kayenta score {score:.2} (pass ≥ {}, marginal ≥ {}){why}",
            scoring.pass, scoring.marginal
        ),
    );
    v.statistic = Some(score);
    v
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
        assert_eq!(kayenta_score(&spec, &scoring, &vs).statistic, Some(0.0));
        let vs = [
            verdict("a", Outcome::Pass),
            verdict("b", Outcome::Pass),
            verdict("c", Outcome::NoData),
        ];
        assert_eq!(kayenta_score(&spec, &scoring, &vs).outcome, Outcome::Pass);
    }
}
