//! Plain-text rendering of an [`Explanation`]: aligned columns, no colour.

use super::{DestinationShare, Explanation};

/// Render rows as left-aligned columns separated by two spaces.
fn table(header: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (i, cell) in row.iter().enumerate() {
            widths[i] = widths[i].max(cell.chars().count());
        }
    }
    let mut out = String::new();
    let line = |cells: Vec<&str>, out: &mut String| {
        let mut s = String::new();
        for (i, c) in cells.iter().enumerate() {
            if i + 1 == cells.len() {
                s.push_str(c);
            } else {
                s.push_str(&format!("{c:<w$}  ", w = widths[i]));
            }
        }
        out.push_str(s.trim_end());
        out.push('\n');
    };
    line(header.to_vec(), &mut out);
    for row in rows {
        line(row.iter().map(String::as_str).collect(), &mut out);
    }
    out
}

fn percent(p: f64) -> String {
    if (p - p.round()).abs() < 1e-9 {
        format!("{}%", p.round())
    } else {
        format!("{p:.2}%")
    }
}

fn dest(d: &DestinationShare) -> String {
    match &d.subset {
        Some(s) => format!("{}/{s}", d.host),
        None => d.host.clone(),
    }
}

fn labels(d: &DestinationShare) -> String {
    let l: Vec<String> = d.labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
    if l.is_empty() {
        "-".to_owned()
    } else {
        l.join(",")
    }
}

fn endpoints(d: &DestinationShare) -> String {
    if d.endpoints.is_empty() {
        "-".to_owned()
    } else {
        d.endpoints.join(",")
    }
}

impl Explanation {
    /// Readable plain-text tables: routes, then each rollout plan.
    pub fn render_table(&self) -> String {
        let mut rows = Vec::new();
        for r in &self.routes {
            let mut first = vec![
                r.virtual_service.clone(),
                r.hosts.join(","),
                r.route.clone(),
                r.matches.clone(),
            ];
            let blank = || vec![String::new(); 4];
            let mut lines: Vec<Vec<String>> = Vec::new();
            for d in &r.destinations {
                lines.push(vec![
                    "route".into(),
                    dest(d),
                    labels(d),
                    percent(d.share_percent),
                    endpoints(d),
                ]);
            }
            for m in &r.mirrors {
                lines.push(vec![
                    "mirror".into(),
                    dest(m),
                    labels(m),
                    percent(m.share_percent),
                    endpoints(m),
                ]);
            }
            if let Some(a) = &r.action {
                lines.push(vec![
                    a.clone(),
                    "-".into(),
                    "-".into(),
                    "-".into(),
                    "-".into(),
                ]);
            }
            for (i, l) in lines.into_iter().enumerate() {
                let mut row = if i == 0 {
                    std::mem::take(&mut first)
                } else {
                    blank()
                };
                row.extend(l);
                if i == 0 {
                    row.extend([r.timeout.clone(), r.retries.clone()]);
                } else {
                    row.extend([String::new(), String::new()]);
                }
                rows.push(row);
            }
        }
        let mut out = String::from("ROUTES\n");
        out.push_str(&table(
            &[
                "VIRTUALSERVICE",
                "HOSTS",
                "ROUTE",
                "MATCH",
                "KIND",
                "DESTINATION",
                "LABELS",
                "SHARE",
                "ENDPOINTS",
                "TIMEOUT",
                "RETRIES",
            ],
            &rows,
        ));
        let sticky: Vec<Vec<String>> = self
            .routes
            .iter()
            .filter_map(|r| {
                let key = r.hash_key.clone()?;
                let what = if r.destinations.len() > 1 {
                    "each key stays on one destination (version) and one endpoint"
                } else {
                    "each key stays on one endpoint"
                };
                Some(vec![
                    r.virtual_service.clone(),
                    r.route.clone(),
                    key,
                    what.to_owned(),
                ])
            })
            .collect();
        if !sticky.is_empty() {
            out.push_str(
                "\nSTICKY ROUTES (DestinationRule consistentHash; unlike Istio's, augur's also picks the destination)\n",
            );
            out.push_str(&table(
                &["VIRTUALSERVICE", "ROUTE", "HASH KEY", "EFFECT"],
                &sticky,
            ));
        }
        for ro in &self.rollouts {
            if ro.strategy == "shadowOnly" {
                out.push_str(&shadow_only(ro));
                continue;
            }
            out.push_str(&format!(
                "\nROLLOUT {} ({}): VirtualService {} routes {}; stable {}, canary {}\n",
                ro.policy,
                ro.strategy,
                ro.virtual_service,
                ro.routes.join(","),
                ro.stable,
                ro.canary.as_deref().unwrap_or("none")
            ));
            out.push_str(&if ro.strategy == "shadowOnly" {
                // Nothing to start: it scores in the shadow from the moment it is loaded.
                String::new()
            } else if ro.start_on == "immediately" {
                "Starts: as soon as the policy is loaded (startOn: immediately)\n".to_owned()
            } else {
                format!(
                    "Starts: on `augur rollout start {}` (startOn: command, the default); until then the routes keep their VirtualService weights\n",
                    ro.policy.rsplit('/').next().unwrap_or(&ro.policy)
                )
            });
            let steps: Vec<Vec<String>> = ro
                .steps
                .iter()
                .map(|s| {
                    vec![
                        s.step.to_string(),
                        s.action.clone(),
                        format!("{}%", s.canary_weight),
                        format!("{}%", s.stable_weight),
                    ]
                })
                .collect();
            out.push_str(&table(&["STEP", "ACTION", "CANARY", "STABLE"], &steps));
            if !ro.metrics.is_empty() {
                out.push('\n');
                let m: Vec<Vec<String>> = ro
                    .metrics
                    .iter()
                    .map(|m| {
                        vec![
                            m.name.clone(),
                            m.kind.clone(),
                            m.bad_direction.clone(),
                            m.allowed_change.clone(),
                            m.critical.to_string(),
                        ]
                    })
                    .collect();
                out.push_str(&table(
                    &["METRIC", "KIND", "BAD", "ALLOWED", "CRITICAL"],
                    &m,
                ));
            }
            if let Some(sh) = &ro.shadow {
                out.push_str(&shadow_line(sh));
            }
            if !ro.triggers.is_empty() {
                out.push('\n');
                let t: Vec<Vec<String>> = ro
                    .triggers
                    .iter()
                    .map(|t| {
                        vec![
                            t.name.clone(),
                            t.metric.clone(),
                            t.condition.clone(),
                            t.window.clone(),
                            t.action.clone(),
                        ]
                    })
                    .collect();
                out.push_str(&table(
                    &["TRIGGER", "METRIC", "CONDITION", "WINDOW", "ACTION"],
                    &t,
                ));
            }
        }
        if !self.protections.is_empty() {
            out.push_str("\nAPI PROTECTION\n");
            let rows: Vec<Vec<String>> = self
                .protections
                .iter()
                .map(|p| {
                    vec![
                        p.protection.clone(),
                        p.virtual_service.clone(),
                        p.routes.join(","),
                        p.api_key.clone(),
                        p.rate_limit.clone(),
                        p.max_request_body_bytes
                            .map_or_else(|| "-".to_owned(), |b| format!("{b} bytes")),
                    ]
                })
                .collect();
            out.push_str(&table(
                &[
                    "PROTECTION",
                    "VIRTUALSERVICE",
                    "ROUTES",
                    "API KEY",
                    "RATE LIMIT",
                    "MAX BODY",
                ],
                &rows,
            ));
        }
        out
    }
}

/// `SHADOW model: 10% of requests, input ..., runtime`.
fn shadow_line(sh: &super::ShadowExplanation) -> String {
    format!(
        "\nSHADOW {}: {} of requests, input {}, {}\n",
        sh.model,
        percent(sh.mirror_percentage),
        sh.input,
        sh.runtime
    )
}

/// A shadow-only policy, for what it is: stable serves everything, a share is scored in the
/// shadow, and no weight, step or promotion exists.
fn shadow_only(ro: &super::RolloutExplanation) -> String {
    let share = ro
        .shadow
        .as_ref()
        .map_or_else(|| "0%".to_owned(), |sh| percent(sh.mirror_percentage));
    let mut out = format!(
        "\nSHADOW-ONLY {}: VirtualService {} routes {}; stable {} serves every request, {share} are also scored by the shadow model; no canary, no steps, no weight changes, nothing to promote\n",
        ro.policy,
        ro.virtual_service,
        ro.routes.join(","),
        ro.stable,
    );
    if let Some(sh) = &ro.shadow {
        out.push_str(&shadow_line(sh));
    }
    out
}
