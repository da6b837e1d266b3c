//! `augur policy explain`: what the loaded policies do, resolved — each
//! route's destinations with their share of traffic, labels and endpoints,
//! mirrors, timeouts and retries, and each CanaryPolicy's rollout plan.
//! Serializable (JSON) and renderable as plain-text tables.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::canary::spelling;
use crate::duration::format_duration;
use crate::{
    AllowedChange, Amount, CanaryPolicy, Destination, HttpRoute, MetricKind, PolicySet,
    RolloutStep, Strategy, TriggerCondition, VirtualService,
};

/// Everything `explain` resolves.
#[derive(Debug, Clone, Serialize)]
pub struct Explanation {
    /// One entry per HTTP route of every VirtualService.
    pub routes: Vec<RouteExplanation>,
    /// One entry per CanaryPolicy.
    pub rollouts: Vec<RolloutExplanation>,
    /// One entry per ApiProtection.
    pub protections: Vec<ProtectionExplanation>,
}

/// An ApiProtection: what it protects and how. Never the keys, only where they are read.
#[derive(Debug, Clone, Serialize)]
pub struct ProtectionExplanation {
    /// `namespace/name`.
    pub protection: String,
    /// `namespace/name` of the VirtualService.
    pub virtual_service: String,
    /// Protected routes (`*` = every route).
    pub routes: Vec<String>,
    /// `key in header x-api-key from env PNEUMONIA_API_KEYS (hidden upstream)`, or `-`.
    pub api_key: String,
    /// `100 requests per 1m0s per sourceIP (burst 100)`, or `-`.
    pub rate_limit: String,
    /// The largest request body accepted, in bytes.
    pub max_request_body_bytes: Option<u64>,
}

/// A CanaryPolicy's in-process shadow model.
#[derive(Debug, Clone, Serialize)]
pub struct ShadowExplanation {
    /// ONNX file (its metadata is the `.json` beside it).
    pub model: String,
    /// Percent of the driven routes' requests scored by it.
    pub mirror_percentage: f64,
    /// `1x224x224 NCHW, bilinear, range [0, 1]`.
    pub input: String,
    /// `1 worker(s), queue 64, batches up to 8 within 2ms`.
    pub runtime: String,
}

/// A resolved HTTP route.
#[derive(Debug, Clone, Serialize)]
pub struct RouteExplanation {
    /// `namespace/name` of the VirtualService.
    pub virtual_service: String,
    /// Its hosts.
    pub hosts: Vec<String>,
    /// Route name, or `#index`.
    pub route: String,
    /// Match summary (`*` = every request).
    pub matches: String,
    /// Weighted destinations.
    pub destinations: Vec<DestinationShare>,
    /// Mirrors.
    pub mirrors: Vec<DestinationShare>,
    /// Redirect or direct response, when the route does not forward.
    pub action: Option<String>,
    /// Timeout (`none` when disabled).
    pub timeout: String,
    /// Retry summary.
    pub retries: String,
    /// What a DestinationRule `consistentHash` keys this route on (`header x-user`), when one
    /// applies: in augur the key picks the destination (version) as well as the endpoint.
    pub hash_key: Option<String>,
}

/// A destination (or mirror) with its share of requests.
#[derive(Debug, Clone, Serialize)]
pub struct DestinationShare {
    /// Host as written.
    pub host: String,
    /// Subset.
    pub subset: Option<String>,
    /// The subset's labels, from its DestinationRule.
    pub labels: BTreeMap<String, String>,
    /// Percent of the route's requests (weight / sum for destinations; the mirror percentage for mirrors).
    pub share_percent: f64,
    /// `address:port` from the ServiceEntry, when known.
    pub endpoints: Vec<String>,
}

/// A CanaryPolicy's plan.
#[derive(Debug, Clone, Serialize)]
pub struct RolloutExplanation {
    /// `namespace/name`.
    pub policy: String,
    /// Driven VirtualService.
    pub virtual_service: String,
    /// Driven routes.
    pub routes: Vec<String>,
    /// `host/subset`.
    pub stable: String,
    /// `host/subset`; `None` for a shadow-only policy.
    pub canary: Option<String>,
    /// How the rollout starts: `command` (on `augur rollout start`) or `immediately`.
    pub start_on: String,
    /// `steps`, `blueGreen` or `shadowOnly`.
    pub strategy: String,
    /// Steps, with the canary weight after each.
    pub steps: Vec<StepExplanation>,
    /// Analysis metrics.
    pub metrics: Vec<MetricExplanation>,
    /// Rollback triggers.
    pub triggers: Vec<TriggerExplanation>,
    /// The in-process shadow model, if any.
    pub shadow: Option<ShadowExplanation>,
}

/// One step of the plan.
#[derive(Debug, Clone, Serialize)]
pub struct StepExplanation {
    /// 1-based.
    pub step: usize,
    /// What the step does.
    pub action: String,
    /// Canary weight (percent) after the step.
    pub canary_weight: u32,
    /// Stable weight (percent) after the step.
    pub stable_weight: u32,
}

/// An analysis metric.
#[derive(Debug, Clone, Serialize)]
pub struct MetricExplanation {
    /// Name.
    pub name: String,
    /// Kind (with quantile).
    pub kind: String,
    /// Which change is bad.
    pub bad_direction: String,
    /// Tolerated change.
    pub allowed_change: String,
    /// Critical.
    pub critical: bool,
}

/// A rollback trigger.
#[derive(Debug, Clone, Serialize)]
pub struct TriggerExplanation {
    /// Name.
    pub name: String,
    /// Metric.
    pub metric: String,
    /// Condition.
    pub condition: String,
    /// Window.
    pub window: String,
    /// Action.
    pub action: String,
}

/// Resolve a policy set for display.
pub fn explain(set: &PolicySet) -> Explanation {
    let routes = set
        .virtual_services
        .iter()
        .flat_map(|vs| {
            vs.http
                .iter()
                .enumerate()
                .map(move |(i, r)| route(set, vs, i, r))
        })
        .collect();
    Explanation {
        routes,
        rollouts: set.canary_policies.iter().map(rollout).collect(),
        protections: set.api_protections.iter().map(protection).collect(),
    }
}

fn protection(p: &crate::ApiProtection) -> ProtectionExplanation {
    let api_key = p.api_key.as_ref().map_or_else(
        || "-".to_owned(),
        |k| {
            let from = match &k.keys_from {
                crate::KeysFrom::File(f) => format!("file {f}"),
                crate::KeysFrom::Env(v) => format!("env {v}"),
            };
            let hidden = if k.hide_credentials {
                " (removed before forwarding)"
            } else {
                ""
            };
            format!("header {} from {from}{hidden}", k.header)
        },
    );
    let rate_limit = p.rate_limit.as_ref().map_or_else(
        || "-".to_owned(),
        |r| {
            let key = match &r.key {
                crate::RateLimitKey::SourceIp => "client IP".to_owned(),
                crate::RateLimitKey::ApiKey => "API key".to_owned(),
                crate::RateLimitKey::Header(h) => format!("header {h}"),
            };
            format!(
                "{} requests per {} per {key} (burst {})",
                r.tokens_per_fill,
                format_duration(r.fill_interval),
                r.max_tokens
            )
        },
    );
    ProtectionExplanation {
        protection: format!("{}/{}", p.metadata.namespace, p.metadata.name),
        virtual_service: format!("{}/{}", p.metadata.namespace, p.virtual_service),
        routes: if p.routes.is_empty() {
            vec!["*".to_owned()]
        } else {
            p.routes.clone()
        },
        api_key,
        rate_limit,
        max_request_body_bytes: p.max_request_body_bytes,
    }
}

fn shadow(s: &crate::Shadow) -> ShadowExplanation {
    let p = &s.preprocessing;
    let crop = p
        .crop
        .map(|(w, h)| format!(", crop {w}x{h}"))
        .unwrap_or_default();
    let normalization = match &p.normalization {
        crate::Normalization::None => String::new(),
        crate::Normalization::Range { min, max } => format!(", range [{min}, {max}]"),
        crate::Normalization::MeanStd { mean, std } => format!(", mean {mean:?} std {std:?}"),
    };
    let r = &s.runtime;
    ShadowExplanation {
        model: s.model.clone(),
        mirror_percentage: s.mirror_percentage.value(),
        input: format!(
            "{}x{}x{} {}, {}{crop}{normalization}",
            p.channels,
            p.height,
            p.width,
            match p.layout {
                crate::Layout::Nchw => "NCHW",
                crate::Layout::Nhwc => "NHWC",
            },
            match p.resize {
                crate::Resize::Nearest => "nearest",
                crate::Resize::Bilinear => "bilinear",
            }
        ),
        runtime: format!(
            "{} worker(s), queue {}, batches up to {} within {}",
            r.workers,
            r.queue_capacity,
            r.max_batch,
            format_duration(r.max_batch_wait)
        ),
    }
}

fn share(set: &PolicySet, ns: &str, d: &Destination, share_percent: f64) -> DestinationShare {
    let labels = d
        .subset
        .as_deref()
        .and_then(|s| {
            set.destination_rule_for(&d.host, ns)
                .and_then(|dr| dr.subset(s))
        })
        .map(|s| s.labels.clone())
        .unwrap_or_default();
    let endpoints = set
        .endpoints_for(&d.host, d.subset.as_deref(), ns)
        .into_iter()
        .map(|(a, p)| format!("{a}:{p}"))
        .collect();
    DestinationShare {
        host: d.host.clone(),
        subset: d.subset.clone(),
        labels,
        share_percent,
        endpoints,
    }
}

fn route(set: &PolicySet, vs: &VirtualService, i: usize, r: &HttpRoute) -> RouteExplanation {
    let ns = &vs.metadata.namespace;
    let total = f64::from(r.total_weight());
    let destinations = r
        .route
        .iter()
        .map(|d| {
            share(
                set,
                ns,
                &d.destination,
                if total > 0.0 {
                    f64::from(d.weight) * 100.0 / total
                } else {
                    0.0
                },
            )
        })
        .collect();
    let mirrors = r
        .mirrors
        .iter()
        .map(|m| share(set, ns, &m.destination, m.percentage.value()))
        .collect();
    let matches = if r.matches.is_empty() {
        "*".to_owned()
    } else {
        r.matches
            .iter()
            .map(|m| m.summary())
            .collect::<Vec<_>>()
            .join(" | ")
    };
    let action = r
        .redirect
        .as_ref()
        .map(|rd| {
            format!(
                "redirect {} {}",
                rd.redirect_code,
                rd.uri.as_deref().unwrap_or("")
            )
        })
        .or_else(|| {
            r.direct_response
                .as_ref()
                .map(|d| format!("respond {}", d.status))
        });
    let retries = match &r.retries {
        None => format!(
            "default ({}x on {})",
            crate::defaults::RETRY_ATTEMPTS,
            crate::defaults::RETRY_ON
        ),
        Some(rt) if rt.attempts == 0 => "off".to_owned(),
        Some(rt) => {
            let per_try = rt
                .per_try_timeout
                .map(|d| format!(" per try {}", format_duration(d)))
                .unwrap_or_default();
            format!("{}x{per_try} on {}", rt.attempts, rt.retry_on.join(","))
        }
    };
    RouteExplanation {
        virtual_service: format!("{ns}/{}", vs.metadata.name),
        hosts: vs.hosts.clone(),
        route: r.name.clone().unwrap_or_else(|| format!("#{i}")),
        matches,
        destinations,
        mirrors,
        action,
        timeout: r.timeout.map_or_else(|| "none".to_owned(), format_duration),
        retries,
        hash_key: set.hash_policy_for(r, ns).map(|(_, h)| h.key()),
    }
}

fn dest_ref(d: &crate::DestinationRef) -> String {
    match &d.subset {
        Some(s) => format!("{}/{s}", d.host),
        None => d.host.clone(),
    }
}

fn rollout(cp: &CanaryPolicy) -> RolloutExplanation {
    let mut steps = Vec::new();
    let (strategy, raw_steps): (&str, Vec<String>) = match &cp.strategy {
        Strategy::Steps(s) => ("steps", s.iter().map(step_action).collect()),
        Strategy::BlueGreen(bg) => {
            let mut v = Vec::new();
            if let Some(p) = &bg.preview_route {
                v.push(format!("preview via route {p}"));
            }
            if let Some(a) = &bg.pre_promotion_analysis {
                v.push(format!("pre-promotion {}", analysis(a)));
            }
            v.push(
                if bg.auto_promote {
                    "promote (automatic)"
                } else {
                    "promote (operator)"
                }
                .to_owned(),
            );
            if let Some(a) = &bg.post_promotion_analysis {
                v.push(match bg.post_promotion_duration {
                    Some(d) => format!(
                        "post-promotion {}, watching {} after the switch",
                        analysis(a),
                        format_duration(d)
                    ),
                    None => format!("post-promotion {}", analysis(a)),
                });
            }
            ("blueGreen", v)
        }
        Strategy::ShadowOnly => ("shadowOnly", Vec::new()),
    };
    let bg_promote_at = raw_steps.iter().position(|s| s.starts_with("promote"));
    for (i, action) in raw_steps.into_iter().enumerate() {
        let canary_weight = match (&cp.strategy, bg_promote_at) {
            (Strategy::Steps(s), _) => weight_after(&s[..=i]),
            (Strategy::BlueGreen(_), Some(p)) if i >= p => 100,
            _ => 0,
        };
        steps.push(StepExplanation {
            step: i + 1,
            action,
            canary_weight,
            stable_weight: 100 - canary_weight,
        });
    }
    let metrics = cp
        .analysis
        .iter()
        .flat_map(|a| a.metrics.iter())
        .map(|m| MetricExplanation {
            name: m.name.clone(),
            kind: match m.kind {
                MetricKind::Latency { quantile } => format!("latency p{}", quantile * 100.0),
                other => spelling::kind_name(other).to_owned(),
            },
            bad_direction: format!("{:?}", m.direction).to_lowercase(),
            allowed_change: match m.allowed_change {
                None => "any significant".to_owned(),
                Some(AllowedChange::Absolute(a)) => match m.kind {
                    MetricKind::ErrorRate | MetricKind::Accuracy | MetricKind::ShadowAgreement => {
                        points(a)
                    }
                    MetricKind::Latency { .. } | MetricKind::LatencyShift => format!(
                        "±{}",
                        format_duration(std::time::Duration::from_secs_f64(a / 1000.0))
                    ),
                    _ => format!("±{a} absolute"),
                },
                Some(AllowedChange::Relative(r)) => format!("±{}% relative", r * 100.0),
            },
            critical: m.critical,
        });
    let triggers = cp.rollback_triggers.iter().map(|t| TriggerExplanation {
        name: t.name.clone(),
        metric: spelling::trigger_metric_name(t.metric).to_owned(),
        condition: match t.condition {
            // `above` is a level (10%); `dropBy`/`increaseBy` are differences from stable, in
            // percentage points for rates ("5 points", not "5%", which would read as relative).
            TriggerCondition::Above(a) => format!("> {}", amount(a)),
            TriggerCondition::DropBy(a) => format!("drops by {} below stable", change(a)),
            TriggerCondition::IncreaseBy(a) => format!("increases by {} above stable", change(a)),
        },
        window: format_duration(t.window),
        action: enum_name(t.action),
    });
    RolloutExplanation {
        policy: format!("{}/{}", cp.metadata.namespace, cp.metadata.name),
        virtual_service: format!(
            "{}/{}",
            cp.metadata.namespace, cp.traffic_routing.virtual_service
        ),
        routes: cp.traffic_routing.routes.clone(),
        stable: dest_ref(&cp.stable),
        canary: cp.canary.as_ref().map(dest_ref),
        start_on: enum_name(cp.start_on),
        strategy: strategy.to_owned(),
        steps,
        metrics: metrics.collect(),
        triggers: triggers.collect(),
        shadow: cp.shadow.as_ref().map(shadow),
    }
}

fn enum_name<T: Serialize>(v: T) -> String {
    serde_json::to_value(v)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_default()
}

fn amount(a: Amount) -> String {
    match a {
        Amount::Percent(p) => format!("{p}%"),
        Amount::Latency(d) => format_duration(d),
    }
}

/// A difference of rates: `5 points` (`1 point`).
fn points(p: f64) -> String {
    if p == 1.0 {
        "±1 point".to_owned()
    } else {
        format!("±{p} points")
    }
}

/// A trigger's difference from stable: points for rates, a duration for latency.
fn change(a: Amount) -> String {
    match a {
        Amount::Percent(p) => points(p).trim_start_matches('±').to_owned(),
        Amount::Latency(d) => format_duration(d),
    }
}

fn weight_after(steps: &[RolloutStep]) -> u32 {
    steps
        .iter()
        .rev()
        .find_map(|s| {
            if let RolloutStep::SetWeight(w) = s {
                Some(*w)
            } else {
                None
            }
        })
        .unwrap_or(0)
}

/// An analysis gate with the settings in force at it (the step's overrides applied).
fn analysis(a: &crate::Analysis) -> String {
    format!(
        "analysis every {} (min {} samples, {}, alpha {}, waits {})",
        format_duration(a.interval),
        a.min_samples,
        enum_name(a.method),
        a.alpha,
        a.max_duration
            .filter(|d| !d.is_zero())
            .map_or("without bound".to_owned(), |d| format!(
                "at most {} for evidence",
                format_duration(d)
            ))
    )
}

fn step_action(s: &RolloutStep) -> String {
    match s {
        RolloutStep::SetWeight(w) => format!("setWeight {w}"),
        RolloutStep::Pause { duration: Some(d) } => format!("pause {}", format_duration(*d)),
        RolloutStep::Pause { duration: None } => "pause (until promoted)".to_owned(),
        RolloutStep::Analysis(a) => analysis(a),
        RolloutStep::SetHeaderRoute(h) if h.matches.is_empty() => {
            format!("remove header route {}", h.name)
        }
        RolloutStep::SetHeaderRoute(h) => format!("header route {}", h.name),
        RolloutStep::SetMirrorRoute(m) => {
            format!("mirror route {} {}%", m.name, m.percentage.value())
        }
    }
}

mod table;
