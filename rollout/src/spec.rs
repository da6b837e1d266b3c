//! Maps a CanaryPolicy onto the analyzer's own spec types.
//!
//! Units change here: the policy writes rates in percent (`above: 10`, `allowedChange.absolute:
//! 1` = one point) and durations as durations; the analyzer takes rates as fractions, latency in
//! milliseconds and time in seconds.

use augur_analyzer::rollout::Rollout;
use augur_analyzer::spec::{
    Allowed, AnalysisSpec, GapAction, Method, MetricKind, MetricSpec, ScoringSpec, StepSpec,
    TriggerAction, TriggerCondition, TriggerSpec,
};
use augur_policies as p;

/// Samples a trigger window needs before it may fire.
const TRIGGER_MIN_SAMPLES: u64 = 20;

/// Everything the rollout state machine needs from one CanaryPolicy.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct RolloutSpec {
    /// The base analysis.
    pub analysis: AnalysisSpec,
    /// The steps in order.
    pub steps: Vec<StepSpec>,
    /// Rollback triggers.
    pub triggers: Vec<TriggerSpec>,
    /// The `Analysis` steps whose per-step override (`interval`, `minSamples`, `alpha`,
    /// `method`) makes their spec differ from `analysis`, by step index.
    pub gates: Vec<(usize, AnalysisSpec)>,
    /// The `Analysis` steps that watch for a fixed time (seconds) instead of opening at the
    /// first passing look: a blue-green post-promotion analysis with a `duration`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub watches: Vec<(usize, f64)>,
    /// Whether the rollout waits for `augur rollout start` (`startOn: command`) before its
    /// first step.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub start_on_command: bool,
}

impl RolloutSpec {
    /// A fresh rollout of this spec, with its gate steps' own analysis specs.
    pub fn rollout(self) -> Rollout {
        let mut rollout = Rollout::new(self.analysis, self.steps, self.triggers);
        for (step, spec) in self.gates {
            rollout = rollout.with_gate_analysis(step, spec);
        }
        for (step, seconds) in self.watches {
            rollout = rollout.with_gate_watch(step, seconds);
        }
        if self.start_on_command {
            rollout = rollout.awaiting_start();
        }
        rollout
    }
}

/// The managed routes of `policy` in force: the header routes named in `headers`, each with
/// the matches of the last `setHeaderRoute` step of that name at or before `step` (0-based;
/// past the steps or `None`: the last of that name), and the mirror routes as they are. A name
/// the policy does not define is left out (a policy of another version).
pub fn managed_routes(
    policy: &p::CanaryPolicy,
    step: Option<usize>,
    headers: &[&str],
    mirrors: &[(String, u8)],
) -> crate::sink::ManagedRoutes {
    let p::Strategy::Steps(steps) = &policy.strategy else {
        return crate::sink::ManagedRoutes {
            headers: Vec::new(),
            mirrors: mirrors.to_vec(),
        };
    };
    let upto = step.map_or(steps.len(), |s| (s + 1).min(steps.len()));
    let defined = |name: &str| {
        // The definition is the step that set the route (a step without matches removes it).
        let named = |s: &&p::RolloutStep| matches!(s, p::RolloutStep::SetHeaderRoute(h) if h.name == name && !h.matches.is_empty());
        steps[..upto]
            .iter()
            .rev()
            .find(named)
            .or_else(|| steps.iter().rev().find(named))
            .and_then(|s| match s {
                p::RolloutStep::SetHeaderRoute(h) => Some(h.clone()),
                _ => None,
            })
    };
    crate::sink::ManagedRoutes {
        headers: headers.iter().filter_map(|name| defined(name)).collect(),
        mirrors: mirrors.to_vec(),
    }
}

/// Builds the analyzer spec of a policy.
pub fn from_policy(policy: &p::CanaryPolicy) -> RolloutSpec {
    let complete = |mut analysis: AnalysisSpec| {
        if let Some(prediction) = &policy.prediction {
            analysis.positive_label = prediction.positive_label.clone();
        }
        analysis.label_ttl_s = policy.labels.ttl.as_secs_f64();
        analysis.min_label_rate = policy.labels.min_label_rate.fraction();
        analysis
    };
    let analysis = complete(
        policy
            .analysis
            .as_ref()
            .map(analysis_spec)
            .unwrap_or_default(),
    );
    let mut gates = Vec::new();
    let mut watches = Vec::new();
    let steps = match &policy.strategy {
        p::Strategy::Steps(steps) => {
            for (i, step) in steps.iter().enumerate() {
                if let p::RolloutStep::Analysis(a) = step {
                    let gate = complete(analysis_spec(a));
                    if gate != analysis {
                        gates.push((i, gate));
                    }
                }
            }
            steps.iter().map(step_spec).collect()
        }
        p::Strategy::BlueGreen(bg) => {
            let mut steps = Vec::new();
            // Each promotion analysis is a gate with its own settings (its overrides of
            // spec.analysis), as a canary's analysis steps are.
            let mut gate = |steps: &mut Vec<StepSpec>, a: &p::Analysis| {
                let spec = complete(analysis_spec(a));
                if spec != analysis {
                    gates.push((steps.len(), spec));
                }
                steps.push(StepSpec::Analysis);
            };
            if let Some(a) = &bg.pre_promotion_analysis {
                gate(&mut steps, a);
            }
            if !bg.auto_promote {
                steps.push(StepSpec::Pause { duration_s: None });
            }
            steps.push(StepSpec::SetWeight(100));
            if let Some(a) = &bg.post_promotion_analysis {
                if let Some(d) = bg.post_promotion_duration {
                    watches.push((steps.len(), d.as_secs_f64()));
                }
                gate(&mut steps, a);
            }
            steps
        }
        // A shadow-only policy has no rollout; `Rollouts` keeps it apart ([`crate::shadowing`]).
        p::Strategy::ShadowOnly => Vec::new(),
    };
    let triggers = policy.rollback_triggers.iter().map(trigger_spec).collect();
    RolloutSpec {
        analysis,
        steps,
        triggers,
        gates,
        watches,
        start_on_command: policy.start_on == p::StartOn::Command,
    }
}

fn analysis_spec(a: &p::Analysis) -> AnalysisSpec {
    AnalysisSpec {
        metrics: a.metrics.iter().map(metric_spec).collect(),
        method: match a.method {
            p::Method::Sequential => Method::Sequential,
            p::Method::MannWhitney => Method::MannWhitney,
            p::Method::Threshold => Method::Threshold,
        },
        alpha: a.alpha,
        min_samples: u64::from(a.min_samples),
        interval_s: a.interval.as_secs_f64(),
        transient_s: a.burst_window.as_secs_f64(),
        failure_limit: Some(u64::from(a.failure_limit)),
        max_duration_s: a.max_duration.map(|d| d.as_secs_f64()).filter(|d| *d > 0.0),
        inconclusive_limit: i64::from(a.inconclusive_limit),
        consecutive_error_limit: i64::from(a.consecutive_error_limit),
        on_no_data: gap(a.on_no_data),
        on_inconclusive: gap(a.on_inconclusive),
        scoring: a.scoring.as_ref().map(|sc| ScoringSpec {
            group_weights: sc.groups.clone(),
            pass: sc.pass,
            marginal: sc.marginal,
        }),
        ..AnalysisSpec::default()
    }
}

fn gap(a: p::OutcomeAction) -> GapAction {
    match a {
        p::OutcomeAction::Hold => GapAction::Hold,
        p::OutcomeAction::Rollback => GapAction::Rollback,
        p::OutcomeAction::Continue => GapAction::Continue,
    }
}

fn metric_spec(m: &p::Metric) -> MetricSpec {
    let kind = m.kind;
    let is_rate = matches!(
        kind,
        MetricKind::ErrorRate | MetricKind::Accuracy | MetricKind::ShadowAgreement
    );
    let mut spec = MetricSpec::new(&m.name, kind);
    spec.direction = m.direction;
    if let Some(change) = m.allowed_change {
        spec.allowed = match change {
            p::AllowedChange::Absolute(points) if is_rate => Allowed::Absolute(points / 100.0),
            p::AllowedChange::Absolute(v) => Allowed::Absolute(v),
            p::AllowedChange::Relative(r) => Allowed::Relative(r),
        };
    }
    spec.critical = m.critical;
    spec.group.clone_from(&m.group);
    spec
}

fn step_spec(s: &p::RolloutStep) -> StepSpec {
    match s {
        p::RolloutStep::SetWeight(w) => StepSpec::SetWeight((*w).min(100) as u8),
        p::RolloutStep::Pause { duration } => StepSpec::Pause {
            duration_s: duration.map(|d| d.as_secs_f64()),
        },
        p::RolloutStep::Analysis(_) => StepSpec::Analysis,
        // Argo's `setHeaderRoute` without `match` removes the route.
        p::RolloutStep::SetHeaderRoute(h) if h.matches.is_empty() => StepSpec::RemoveHeaderRoute {
            name: h.name.clone(),
        },
        p::RolloutStep::SetHeaderRoute(h) => StepSpec::SetHeaderRoute {
            name: h.name.clone(),
        },
        p::RolloutStep::SetMirrorRoute(m) => StepSpec::SetMirrorRoute {
            name: m.name.clone(),
            percent: m.percentage.value().round().clamp(0.0, 100.0) as u8,
        },
    }
}

fn trigger_spec(t: &p::RollbackTrigger) -> TriggerSpec {
    let amount = |a: p::Amount| match a {
        p::Amount::Percent(pct) => pct / 100.0,
        p::Amount::Latency(d) => d.as_secs_f64() * 1000.0,
    };
    TriggerSpec {
        name: t.name.clone(),
        metric: t.metric,
        condition: match t.condition {
            p::TriggerCondition::Above(a) => TriggerCondition::Above(amount(a)),
            p::TriggerCondition::DropBy(a) => TriggerCondition::DropBy(amount(a)),
            p::TriggerCondition::IncreaseBy(a) => TriggerCondition::IncreaseBy(amount(a)),
        },
        window_s: t.window.as_secs_f64(),
        action: match t.action {
            p::TriggerAction::Immediate => TriggerAction::Immediate,
            p::TriggerAction::Staged => TriggerAction::Staged,
            p::TriggerAction::CanaryOnly => TriggerAction::CanaryOnly,
        },
        min_samples: TRIGGER_MIN_SAMPLES,
        alpha: t.alpha,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_seed_policy_maps_with_unit_conversions() {
        let loaded = augur_policies::load_paths(&[concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../policies/examples/canary-pneumonia.yaml"
        )])
        .unwrap();
        let spec = from_policy(&loaded.set.canary_policies[0]);
        assert_eq!(spec.steps.first(), Some(&StepSpec::SetWeight(10)));
        assert_eq!(spec.steps.last(), Some(&StepSpec::SetWeight(100)));
        assert_eq!(spec.analysis.interval_s, 60.0);
        assert_eq!(spec.analysis.positive_label, "PNEUMONIA");
        assert_eq!(
            spec.analysis.min_label_rate, 0.05,
            "minLabelRate: 5 (percent)"
        );
        let error_rate = spec
            .analysis
            .metrics
            .iter()
            .find(|m| m.name == "error-rate")
            .unwrap();
        assert_eq!(
            error_rate.allowed,
            Allowed::Absolute(0.01),
            "1 point = 0.01"
        );
        assert!(error_rate.critical);
        let t = &spec.triggers;
        assert_eq!(t[0].condition, TriggerCondition::Above(0.10));
        assert_eq!(
            (t[0].window_s, t[0].action),
            (120.0, TriggerAction::Immediate)
        );
        assert_eq!(t[1].condition, TriggerCondition::DropBy(0.05));
        assert_eq!(t[2].condition, TriggerCondition::IncreaseBy(500.0));
        assert_eq!(t[2].action, TriggerAction::CanaryOnly);
    }

    /// The analyzer's closed-loop simulations run the example policy from
    /// `analyzer/tests/policies/canary-pneumonia.json` (the analyzer cannot read policies);
    /// this keeps that file equal to what the proxy makes of the YAML. Regenerate it with
    /// `AUGUR_BLESS=1 cargo test -p augur-rollout --lib example_policy_spec`.
    #[test]
    fn example_policy_spec_is_the_simulated_one() {
        let loaded = augur_policies::load_paths(&[concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../policies/examples/canary-pneumonia.yaml"
        )])
        .unwrap();
        let spec = from_policy(&loaded.set.canary_policies[0]);
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../analyzer/tests/policies/canary-pneumonia.json"
        );
        let fresh = serde_json::to_string_pretty(&spec).unwrap() + "\n";
        if std::env::var_os("AUGUR_BLESS").is_some() {
            std::fs::write(path, &fresh).unwrap();
            return;
        }
        let committed = std::fs::read_to_string(path).unwrap_or_default();
        assert!(
            committed == fresh,
            "{path} is stale: regenerate it with `AUGUR_BLESS=1 cargo test -p augur-rollout --lib example_policy_spec`"
        );
    }

    #[test]
    fn a_gate_steps_override_becomes_its_own_spec() {
        let base = include_str!("../../policies/examples/canary-pneumonia.yaml");
        let yaml = base.replacen(
            "    - setWeight: 20\n    - analysis: {}",
            "    - setWeight: 20\n    - analysis: {minSamples: 500, interval: 2m, alpha: 0.01}",
            1,
        );
        assert_ne!(yaml, base, "the example's second gate was found");
        let loaded = augur_policies::load_str("c.yaml", &yaml).unwrap();
        let spec = from_policy(&loaded.set.canary_policies[0]);
        assert_eq!(spec.gates.len(), 1, "only the overridden gate differs");
        let (step, gate) = &spec.gates[0];
        assert_eq!(spec.steps[*step], StepSpec::Analysis);
        assert_eq!(spec.steps[*step - 1], StepSpec::SetWeight(20));
        assert_eq!(
            (gate.min_samples, gate.interval_s, gate.alpha),
            (500, 120.0, 0.01)
        );
        assert_eq!(gate.positive_label, spec.analysis.positive_label);
        assert_eq!(gate.metrics, spec.analysis.metrics);
        let step = *step;
        let rollout = spec.rollout();
        assert_eq!(
            rollout.active_analysis().min_samples,
            200,
            "base until the gate"
        );
        assert_eq!(rollout.steps()[step], StepSpec::Analysis);
    }

    #[test]
    fn kayenta_scoring_and_groups_map_through() {
        let base = include_str!("../../policies/examples/canary-pneumonia.yaml");
        let yaml = base
            .replace("        critical: true\n", "        critical: true\n        group: errors\n")
            .replace(
                "    metrics:\n      - name: p95-latency",
                "    scoring:\n      groups: {errors: 100}\n      pass: 90\n      marginal: 70\n    metrics:\n      - name: p95-latency",
            );
        let loaded = augur_policies::load_str("c.yaml", &yaml).unwrap();
        let spec = from_policy(&loaded.set.canary_policies[0]);
        let scoring = spec.analysis.scoring.expect("scoring");
        assert_eq!(scoring.group_weights, vec![("errors".to_owned(), 100.0)]);
        assert_eq!((scoring.pass, scoring.marginal), (90.0, 70.0));
        let m = spec
            .analysis
            .metrics
            .iter()
            .find(|m| m.name == "error-rate")
            .unwrap();
        assert_eq!(m.group.as_deref(), Some("errors"));
    }
}
