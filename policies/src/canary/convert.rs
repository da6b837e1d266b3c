//! Raw CanaryPolicy → validated [`CanaryPolicy`]. Checks inside one
//! document; references to VirtualServices are checked in `validate`.

use super::raw::*;
use super::*;
use crate::context::Ctx;
use crate::defaults;
use crate::yaml::join;

fn required<'a, T>(cx: &mut Ctx<'_>, path: &str, v: &'a Option<T>) -> Option<&'a T> {
    if v.is_none() {
        cx.error(path, "is required");
    }
    v.as_ref()
}

fn fraction_at(cx: &mut Ctx<'_>, path: &str, v: f64, what: &str) -> Option<f64> {
    if v > 0.0 && v < 1.0 {
        Some(v)
    } else {
        cx.error(path, format!("{what} must be in (0, 1), got {v}"));
        None
    }
}

impl RawCanarySpec {
    pub(crate) fn validate(&self, metadata: ObjectMeta, cx: &mut Ctx<'_>) -> CanaryPolicy {
        let traffic_routing = self.traffic_routing(cx);
        let stable = self.dest(cx, "spec.stable", &self.stable);
        let shadow_only = self.is_shadow_only();
        let canary = if shadow_only {
            None
        } else if self.canary.is_none() && self.shadow.is_some() {
            let what = if self.steps.is_some() {
                "steps"
            } else {
                "blueGreen"
            };
            cx.error(
                "spec.canary",
                format!("is required: {what} move traffic to a canary; for shadow-only scoring (no canary traffic) remove {what} and keep spec.shadow"),
            );
            Some(DestinationRef {
                host: String::new(),
                subset: None,
            })
        } else {
            Some(self.dest(cx, "spec.canary", &self.canary))
        };
        if canary.as_ref() == Some(&stable) && !stable.host.is_empty() {
            cx.error("spec.canary", "canary must differ from stable");
        }
        let analysis = self
            .analysis
            .as_ref()
            .map(|a| a.validate(cx, "spec.analysis"));
        if shadow_only {
            self.shadow_only_checks(cx);
        }
        let strategy = match (&self.steps, &self.blue_green) {
            (None, None) if shadow_only => Strategy::ShadowOnly,
            (None, None) if self.canary.is_some() && self.shadow.is_some() => {
                cx.error(
                    "spec",
                    "exactly one of steps or blueGreen is required; for shadow-only scoring (no canary traffic) remove spec.canary and keep spec.shadow",
                );
                Strategy::Steps(Vec::new())
            }
            (Some(_), Some(_)) => {
                cx.error("spec", "exactly one of steps or blueGreen is required");
                Strategy::Steps(Vec::new())
            }
            (None, None) => {
                cx.error(
                    "spec",
                    "exactly one of steps or blueGreen is required (or, for shadow-only scoring, spec.shadow without canary and steps)",
                );
                Strategy::Steps(Vec::new())
            }
            (Some(steps), None) => Strategy::Steps(steps_validate(cx, steps, analysis.as_ref())),
            (None, Some(bg)) => {
                let p = "spec.blueGreen";
                let mut over = |field: &str, o: &Option<RawAnalysisOverride>| {
                    o.as_ref()
                        .and_then(|o| o.apply(cx, &join(p, field), analysis.as_ref()))
                };
                let pre = over("prePromotionAnalysis", &bg.pre_promotion_analysis);
                let post = over("postPromotionAnalysis", &bg.post_promotion_analysis);
                let post_path = join(p, "postPromotionAnalysis.duration");
                let duration = bg
                    .post_promotion_analysis
                    .as_ref()
                    .and_then(|o| cx.duration(&post_path, &o.duration));
                if duration.is_some_and(|d| d.is_zero()) {
                    cx.error(&post_path, "must be longer than 0s (leave it out to complete at the first passing look)");
                }
                Strategy::BlueGreen(Box::new(BlueGreen {
                    preview_route: bg.preview_route.clone(),
                    auto_promote: bg.auto_promote.unwrap_or(false),
                    pre_promotion_analysis: pre,
                    post_promotion_analysis: post,
                    post_promotion_duration: duration.filter(|d| !d.is_zero()),
                }))
            }
        };
        let mut rollback_triggers: Vec<RollbackTrigger> = Vec::new();
        for (i, t) in self
            .rollback
            .iter()
            .flat_map(|r| r.triggers.iter().flatten())
            .enumerate()
        {
            let path = format!("spec.rollback.triggers[{i}]");
            if let Some(t) = t.validate(cx, &path) {
                // Audit lines, status and the staged-rollback bookkeeping name triggers: two
                // with one name could not be told apart.
                if rollback_triggers.iter().any(|o| o.name == t.name) {
                    cx.error(
                        &join(&path, "name"),
                        format!("duplicate trigger name {:?}", t.name),
                    );
                }
                rollback_triggers.push(t);
            }
        }
        CanaryPolicy {
            metadata,
            traffic_routing,
            stable,
            canary,
            start_on: match self.start_on {
                Some(RawStartOn::Command) => StartOn::Command,
                Some(RawStartOn::Immediately) => StartOn::Immediately,
                None => defaults::START_ON,
            },
            strategy,
            analysis,
            rollback_triggers,
            prediction: self.prediction.as_ref().and_then(|p| p.validate(cx)),
            shadow: self.shadow.as_ref().and_then(|s| s.validate(cx)),
            labels: self.labels(cx),
        }
    }

    /// A policy with `shadow` and none of `canary`, `steps` and `blueGreen` only scores
    /// mirrored requests in the shadow model (scenario 5: "score 10% in the shadow, change
    /// nothing else").
    fn is_shadow_only(&self) -> bool {
        self.shadow.is_some()
            && self.canary.is_none()
            && self.steps.is_none()
            && self.blue_green.is_none()
    }

    /// What contradicts a shadow-only policy: fields that need a canary are errors (they
    /// would silently do nothing); a missing `prediction` is a warning, since without it the
    /// shadow scores but nothing is compared.
    fn shadow_only_checks(&self, cx: &mut Ctx<'_>) {
        const WHY: &str =
            "a shadow-only policy (spec.shadow without canary and steps) has no canary";
        if self.analysis.is_some() {
            cx.error(
                "spec.analysis",
                format!("{WHY} to compare stable with; stable's agreement with the shadow is reported without an analysis (`augur rollout status`). Remove analysis, or add canary and steps"),
            );
        }
        if self.rollback.is_some() {
            cx.error(
                "spec.rollback",
                format!("{WHY} to roll back; remove rollback, or add canary and steps"),
            );
        }
        if self
            .shadow
            .as_ref()
            .and_then(|s| s.mirror_percentage)
            .is_some_and(|p| p == 0.0)
        {
            cx.warn(
                "spec.shadow.mirrorPercentage",
                "0 scores no request: a shadow-only policy with it does nothing",
            );
        }
        if self.prediction.is_none() {
            cx.warn(
                "spec.shadow",
                "without spec.prediction stable's answers are not read, so the shadow scores requests but its agreement with stable cannot be measured",
            );
        }
    }

    fn traffic_routing(&self, cx: &mut Ctx<'_>) -> TrafficRouting {
        let p = "spec.trafficRouting.virtualService";
        let vs = self
            .traffic_routing
            .as_ref()
            .and_then(|t| t.virtual_service.as_ref());
        let Some(vs) = vs else {
            cx.error(p, "is required");
            return TrafficRouting {
                virtual_service: String::new(),
                routes: Vec::new(),
                sidecar: Sidecar::default(),
            };
        };
        let name = required(cx, &join(p, "name"), &vs.name)
            .cloned()
            .unwrap_or_default();
        let routes = vs.routes.clone().unwrap_or_default();
        if routes.is_empty() {
            cx.error(&join(p, "routes"), "at least one route name is required");
        }
        let sidecar = match self.traffic_routing.as_ref().and_then(|t| t.sidecar) {
            Some(RawSidecar::Inbound) => Sidecar::Inbound,
            Some(RawSidecar::Outbound) | None => Sidecar::Outbound,
        };
        TrafficRouting {
            virtual_service: name,
            routes,
            sidecar,
        }
    }

    fn dest(&self, cx: &mut Ctx<'_>, path: &str, r: &Option<RawRef>) -> DestinationRef {
        let Some(r) = required(cx, path, r) else {
            return DestinationRef {
                host: String::new(),
                subset: None,
            };
        };
        let host = required(cx, &join(path, "host"), &r.host)
            .cloned()
            .unwrap_or_default();
        DestinationRef {
            host,
            subset: r.subset.clone(),
        }
    }

    fn labels(&self, cx: &mut Ctx<'_>) -> Labels {
        let raw = self.labels.as_ref();
        let ttl = raw
            .and_then(|l| cx.duration("spec.labels.ttl", &l.ttl))
            .unwrap_or(defaults::LABEL_TTL);
        let rate = raw.and_then(|l| l.min_label_rate).unwrap_or(0.0);
        let min_label_rate =
            Percent::check(cx, "spec.labels.minLabelRate", rate).unwrap_or(Percent::FULL);
        Labels {
            ttl,
            min_label_rate,
        }
    }
}

fn steps_validate(
    cx: &mut Ctx<'_>,
    steps: &[RawStep],
    analysis: Option<&Analysis>,
) -> Vec<RolloutStep> {
    if steps.is_empty() {
        cx.error("spec.steps", "at least one step is required");
    }
    let mut out = Vec::new();
    let mut last_weight: Option<i64> = None;
    let mut any_weight = false;
    for (i, s) in steps.iter().enumerate() {
        let p = format!("spec.steps[{i}]");
        let set = [
            s.set_weight.is_some(),
            s.pause.is_some(),
            s.analysis.is_some(),
            s.set_header_route.is_some(),
            s.set_mirror_route.is_some(),
        ];
        if set.iter().filter(|b| **b).count() != 1 {
            cx.error(&p, "a step needs exactly one of setWeight, pause, analysis, setHeaderRoute or setMirrorRoute");
            continue;
        }
        if let Some(w) = s.set_weight {
            any_weight = true;
            if !(0..=100).contains(&w) {
                cx.error(
                    &join(&p, "setWeight"),
                    format!("must be in 0..=100, got {w}"),
                );
                continue;
            }
            if last_weight.is_some_and(|l| w < l) {
                cx.warn(
                    &join(&p, "setWeight"),
                    format!("weight goes down from {} to {w}", last_weight.unwrap_or(0)),
                );
            }
            last_weight = Some(w);
            out.push(RolloutStep::SetWeight(u32::try_from(w).unwrap_or(0)));
        } else if let Some(pause) = &s.pause {
            out.push(RolloutStep::Pause {
                duration: cx.duration(&join(&join(&p, "pause"), "duration"), &pause.duration),
            });
        } else if let Some(a) = &s.analysis {
            if let Some(a) = a.apply(cx, &join(&p, "analysis"), analysis) {
                out.push(RolloutStep::Analysis(a));
            }
        } else if let Some(h) = &s.set_header_route {
            let hp = join(&p, "setHeaderRoute");
            let name = required(cx, &join(&hp, "name"), &h.name)
                .cloned()
                .unwrap_or_default();
            let mut matches = Vec::new();
            for (j, m) in h.matches.iter().flatten().enumerate() {
                let mp = format!("{hp}.match[{j}]");
                let header = required(cx, &join(&mp, "headerName"), &m.header_name)
                    .map(|h| h.to_ascii_lowercase());
                let value = required(cx, &join(&mp, "headerValue"), &m.header_value)
                    .and_then(|v| v.validate(cx, &join(&mp, "headerValue"), false));
                if let (Some(h), Some(v)) = (header, value) {
                    matches.push((h, v));
                }
            }
            // Without `match`, the step removes the route (as in Argo Rollouts).
            let set_before = out.iter().any(
                |s| matches!(s, RolloutStep::SetHeaderRoute(r) if r.name == name && !r.matches.is_empty()),
            );
            if h.matches.as_ref().is_none_or(Vec::is_empty) && !set_before {
                cx.warn(
                    &hp,
                    format!("setHeaderRoute {name:?} without match removes the route, but no earlier step sets it"),
                );
            }
            out.push(RolloutStep::SetHeaderRoute(HeaderRoute { name, matches }));
        } else if let Some(m) = &s.set_mirror_route {
            let mp = join(&p, "setMirrorRoute");
            let name = required(cx, &join(&mp, "name"), &m.name)
                .cloned()
                .unwrap_or_default();
            let pct = m.percentage.unwrap_or(defaults::MIRROR_PERCENTAGE);
            if let Some(percentage) = Percent::check(cx, &join(&mp, "percentage"), pct) {
                out.push(RolloutStep::SetMirrorRoute(MirrorRoute {
                    name,
                    percentage,
                }));
            }
        }
    }
    if !any_weight && !steps.is_empty() {
        cx.error("spec.steps", "steps must contain at least one setWeight");
    } else if last_weight.is_some_and(|w| w != 100) {
        cx.warn(
            "spec.steps",
            "the last setWeight is not 100; the canary is promoted to 100% when the steps complete",
        );
    }
    if steps
        .last()
        .and_then(|s| s.pause.as_ref())
        .is_some_and(|p| p.duration.is_none())
    {
        cx.warn(
            &format!("spec.steps[{}]", steps.len() - 1),
            "steps end with an indefinite pause; promotion needs an operator",
        );
    }
    out
}

impl RawAnalysisOverride {
    fn apply(&self, cx: &mut Ctx<'_>, path: &str, base: Option<&Analysis>) -> Option<Analysis> {
        if self.duration.is_some() && !path.ends_with("postPromotionAnalysis") {
            cx.error(
                &join(path, "duration"),
                "applies to blueGreen.postPromotionAnalysis only (this analysis opens on evidence; maxDuration bounds its wait)",
            );
        }
        let Some(base) = base else {
            cx.error(path, "an analysis step needs spec.analysis (with metrics)");
            return None;
        };
        let mut a = base.clone();
        if let Some(d) = cx.duration(&join(path, "interval"), &self.interval) {
            a.interval = d;
        }
        a.min_samples = self.min_samples.unwrap_or(a.min_samples);
        if let Some(alpha) = self.alpha {
            a.alpha = fraction_at(cx, &join(path, "alpha"), alpha, "alpha").unwrap_or(a.alpha);
        }
        a.method = self.method.map(method).unwrap_or(a.method);
        if let Some(d) = cx.duration(&join(path, "maxDuration"), &self.max_duration) {
            a.max_duration = Some(d);
        }
        Some(a)
    }
}

fn method(m: RawMethod) -> Method {
    match m {
        RawMethod::Sequential => Method::Sequential,
        RawMethod::MannWhitney => Method::MannWhitney,
        RawMethod::Threshold => Method::Threshold,
    }
}

fn outcome(a: Option<RawOutcomeAction>) -> OutcomeAction {
    match a {
        None | Some(RawOutcomeAction::Hold) => OutcomeAction::Hold,
        Some(RawOutcomeAction::Rollback) => OutcomeAction::Rollback,
        Some(RawOutcomeAction::Continue) => OutcomeAction::Continue,
    }
}

impl RawAnalysis {
    fn validate(&self, cx: &mut Ctx<'_>, path: &str) -> Analysis {
        let alpha = self.alpha.map_or(defaults::ANALYSIS_ALPHA, |a| {
            fraction_at(cx, &join(path, "alpha"), a, "alpha").unwrap_or(defaults::ANALYSIS_ALPHA)
        });
        let source = match &self.source {
            None | Some(RawSource::Embedded) => MetricSource::Embedded,
            Some(RawSource::Prometheus(p)) => {
                let at = join(path, "source.prometheus");
                let address = required(cx, &join(&at, "address"), &p.address)
                    .cloned()
                    .unwrap_or_default();
                if p.address.is_some() {
                    if let Err(why) = PrometheusAddress::parse(&address) {
                        cx.error(&join(&at, "address"), why);
                    }
                }
                MetricSource::Prometheus {
                    address,
                    query: p.query.clone(),
                    scrape_lag: cx
                        .duration(&join(&at, "scrapeLag"), &p.scrape_lag)
                        .unwrap_or(defaults::PROMETHEUS_SCRAPE_LAG),
                }
            }
        };
        let metrics_raw = self.metrics.as_deref().unwrap_or_default();
        if metrics_raw.is_empty() {
            cx.error(&join(path, "metrics"), "at least one metric is required");
        }
        let mut metrics: Vec<Metric> = Vec::new();
        for (i, m) in metrics_raw.iter().enumerate() {
            if let Some(m) = m.validate(cx, &format!("{path}.metrics[{i}]")) {
                if metrics.iter().any(|o| o.name == m.name) {
                    cx.error(
                        &format!("{path}.metrics[{i}].name"),
                        format!("duplicate metric name {:?}", m.name),
                    );
                }
                metrics.push(m);
            }
        }
        Analysis {
            interval: cx
                .duration(&join(path, "interval"), &self.interval)
                .unwrap_or(defaults::ANALYSIS_INTERVAL),
            min_samples: self.min_samples.unwrap_or(defaults::ANALYSIS_MIN_SAMPLES),
            alpha,
            method: self.method.map_or(Method::Sequential, method),
            failure_limit: self.failure_limit.unwrap_or(defaults::FAILURE_LIMIT),
            max_duration: Some(
                cx.duration(&join(path, "maxDuration"), &self.max_duration)
                    .unwrap_or(defaults::ANALYSIS_MAX_DURATION),
            ),
            burst_window: cx
                .duration(&join(path, "burstWindow"), &self.burst_window)
                .unwrap_or(defaults::ANALYSIS_BURST_WINDOW),
            inconclusive_limit: self
                .inconclusive_limit
                .unwrap_or(defaults::INCONCLUSIVE_LIMIT),
            consecutive_error_limit: self
                .consecutive_error_limit
                .unwrap_or(defaults::CONSECUTIVE_ERROR_LIMIT),
            on_no_data: outcome(self.on_no_data),
            on_inconclusive: outcome(self.on_inconclusive),
            scoring: self
                .scoring
                .as_ref()
                .map(|sc| scoring(sc, &metrics, cx, &join(path, "scoring"))),
            source,
            metrics,
        }
    }
}

/// Validates Kayenta scoring: thresholds in 0..=100 with marginal <= pass, non-negative group
/// weights, and every metric's group declared.
fn scoring(raw: &RawScoring, metrics: &[Metric], cx: &mut Ctx<'_>, path: &str) -> Scoring {
    let pass = raw.pass.unwrap_or(95.0);
    let marginal = raw.marginal.unwrap_or(75.0);
    for (field, v) in [("pass", pass), ("marginal", marginal)] {
        if !(0.0..=100.0).contains(&v) {
            cx.error(
                &join(path, field),
                format!("must be a score in 0..=100, got {v}"),
            );
        }
    }
    if marginal > pass {
        cx.error(
            &join(path, "marginal"),
            format!("must not exceed pass ({pass}), got {marginal}"),
        );
    }
    let groups: Vec<(String, f64)> = raw
        .groups
        .as_ref()
        .map(|g| g.iter().map(|(k, v)| (k.clone(), *v)).collect())
        .unwrap_or_default();
    for (name, weight) in &groups {
        if !weight.is_finite() || *weight < 0.0 {
            cx.error(
                &format!("{path}.groups.{name}"),
                format!("weight must be >= 0, got {weight}"),
            );
        }
    }
    for (i, m) in metrics.iter().enumerate() {
        if let Some(g) = &m.group {
            if !groups.iter().any(|(name, _)| name == g) {
                cx.error(
                    &format!("{}.metrics[{i}].group", path.trim_end_matches(".scoring")),
                    format!("group {g:?} is not declared in scoring.groups"),
                );
            }
        }
    }
    Scoring {
        groups,
        pass,
        marginal,
    }
}

/// `allowedChange`: exactly one of `absolute` (points for rates, a duration for latency) and
/// `relative` (a fraction), not negative; a `relative` above 1 is warned about, since it reads
/// like a percentage (`relative: 20` allows +2000%).
fn allowed_change(
    cx: &mut Ctx<'_>,
    path: &str,
    raw: &RawAllowedChange,
    kind: MetricKind,
) -> Option<AllowedChange> {
    let latency = matches!(kind, MetricKind::Latency { .. } | MetricKind::LatencyShift);
    let change = match (&raw.absolute, raw.relative) {
        (Some(a), None) => {
            let ap = join(path, "absolute");
            let value = match (latency, a) {
                (true, RawAmount::Duration(s)) => match crate::duration::parse_duration(s) {
                    Ok(d) => d.as_secs_f64() * 1000.0,
                    Err(e) => {
                        cx.error(&ap, e.to_string());
                        return None;
                    }
                },
                (true, RawAmount::Number(n)) => {
                    cx.error(
                        &ap,
                        format!(
                            "latency allowances are durations, as in triggers (e.g. 50ms), got {n}"
                        ),
                    );
                    return None;
                }
                (false, RawAmount::Number(n)) => *n,
                (false, RawAmount::Duration(s)) => {
                    cx.error(
                        &ap,
                        format!("only latency allowances are durations; this metric's is a number, got {s:?}"),
                    );
                    return None;
                }
            };
            AllowedChange::Absolute(value)
        }
        (None, Some(r)) => {
            if r > 1.0 {
                cx.warn(
                    &join(path, "relative"),
                    format!(
                        "relative is a fraction of stable's value: {r} allows a change of {}%; for {r}% write relative: {}",
                        r * 100.0,
                        r / 100.0
                    ),
                );
            }
            AllowedChange::Relative(r)
        }
        _ => {
            cx.error(path, "exactly one of absolute or relative is required");
            return None;
        }
    };
    match change {
        AllowedChange::Absolute(v) | AllowedChange::Relative(v) if v < 0.0 || !v.is_finite() => {
            cx.error(path, "must not be negative");
            None
        }
        c => Some(c),
    }
}

impl RawMetric {
    fn validate(&self, cx: &mut Ctx<'_>, path: &str) -> Option<Metric> {
        let name = required(cx, &join(path, "name"), &self.name).cloned();
        let kind = match required(cx, &join(path, "kind"), &self.kind)? {
            RawMetricKind::Latency => {
                let q = required(cx, &join(path, "quantile"), &self.quantile)?;
                MetricKind::Latency {
                    quantile: fraction_at(cx, &join(path, "quantile"), *q, "quantile")?,
                }
            }
            other => {
                if self.quantile.is_some() {
                    cx.error(
                        &join(path, "quantile"),
                        "only latency metrics take a quantile",
                    );
                }
                match other {
                    RawMetricKind::LatencyShift => MetricKind::LatencyShift,
                    RawMetricKind::ErrorRate => MetricKind::ErrorRate,
                    RawMetricKind::Accuracy => MetricKind::Accuracy,
                    RawMetricKind::ShadowAgreement => MetricKind::ShadowAgreement,
                    RawMetricKind::PredictionDrift => MetricKind::PredictionDrift,
                    _ => MetricKind::Calibration,
                }
            }
        };
        let allowed_change = self
            .allowed_change
            .as_ref()
            .and_then(|c| allowed_change(cx, &join(path, "allowedChange"), c, kind));
        match allowed_change {
            None => cx.warn(
                &join(path, "allowedChange"),
                "no allowedChange: the allowance is 0, and no amount of data shows a canary exactly as good as stable, so a gate with this metric cannot pass",
            ),
            Some(AllowedChange::Absolute(v) | AllowedChange::Relative(v)) if v == 0.0 => cx.warn(
                &join(path, "allowedChange"),
                "an allowance of 0 can never be shown (no amount of data shows a canary exactly as good as stable), so a gate with this metric cannot pass",
            ),
            _ => {}
        }
        let direction = match self.direction {
            None => kind.default_direction(),
            Some(RawDirection::Increase) => Direction::Increase,
            Some(RawDirection::Decrease) => Direction::Decrease,
        };
        Some(Metric {
            name: name?,
            kind,
            direction,
            allowed_change,
            critical: self.critical.unwrap_or(false),
            group: self.group.clone(),
        })
    }
}
