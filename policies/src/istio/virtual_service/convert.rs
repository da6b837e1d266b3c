//! Raw VirtualService → validated [`VirtualService`], with Istio's
//! validation rules (`pkg/config/validation/virtualservice.go`).
//! Invalid parts are reported and dropped so that later checks still run.

use std::collections::BTreeMap;

use super::raw::*;
use super::*;
use crate::context::Ctx;
use crate::defaults;
use crate::istio::common::{RawHeaders, RawPercentage, RawStringMatch};
use crate::yaml::join;

impl RawVirtualServiceSpec {
    pub(crate) fn validate(&self, metadata: ObjectMeta, cx: &mut Ctx<'_>) -> VirtualService {
        let hosts = self.hosts.clone().unwrap_or_default();
        if hosts.is_empty() {
            cx.error("spec.hosts", "at least one host is required");
        }
        for (i, h) in hosts.iter().enumerate() {
            if let Err(message) = crate::hosts::check_host(h) {
                cx.error(&format!("spec.hosts[{i}]"), message);
            }
        }
        for (i, g) in self.gateways.iter().flatten().enumerate() {
            if g != "mesh" {
                cx.warn(
                    &format!("spec.gateways[{i}]"),
                    format!("gateway {g:?} is not supported by augur (only `mesh`); ignored"),
                );
            }
        }
        let http = self
            .http
            .iter()
            .flatten()
            .enumerate()
            .map(|(i, r)| r.validate(cx, &format!("spec.http[{i}]")))
            .collect();
        VirtualService {
            metadata,
            hosts,
            http,
        }
    }
}

fn percentage_at(cx: &mut Ctx<'_>, path: &str, p: &Option<RawPercentage>) -> Option<Percent> {
    let v = p.as_ref()?.value.unwrap_or(0.0);
    Percent::check(cx, &join(path, "value"), v)
}

impl RawHttpRoute {
    fn validate(&self, cx: &mut Ctx<'_>, path: &str) -> HttpRoute {
        let matches = self
            .matches
            .iter()
            .flatten()
            .enumerate()
            .filter_map(|(i, m)| m.validate(cx, &format!("{path}.match[{i}]")))
            .collect();
        let route = self.validate_destinations(cx, path);
        let redirect = self
            .redirect
            .as_ref()
            .map(|r| r.validate(cx, &join(path, "redirect")));
        let direct_response = self
            .direct_response
            .as_ref()
            .and_then(|d| d.validate(cx, &join(path, "directResponse")));
        let actions = [
            self.route.as_ref().is_some_and(|r| !r.is_empty()),
            self.redirect.is_some(),
            self.direct_response.is_some(),
        ];
        match actions.iter().filter(|a| **a).count() {
            0 => cx.error(
                path,
                "an HTTP route needs one of route, redirect or directResponse",
            ),
            1 => {}
            _ => cx.error(
                path,
                "only one of route, redirect or directResponse may be set",
            ),
        }
        let rewrite = self
            .rewrite
            .as_ref()
            .map(|r| r.validate(cx, &join(path, "rewrite")));
        if rewrite.is_some() && redirect.is_some() {
            cx.error(
                &join(path, "rewrite"),
                "rewrite cannot be used together with redirect",
            );
        }
        HttpRoute {
            name: self.name.clone(),
            matches,
            route,
            redirect,
            direct_response,
            rewrite,
            timeout: cx.duration(&join(path, "timeout"), &self.timeout),
            retries: self
                .retries
                .as_ref()
                .map(|r| r.validate(cx, &join(path, "retries"))),
            fault: self
                .fault
                .as_ref()
                .map(|f| f.validate(cx, &join(path, "fault"))),
            mirrors: self.validate_mirrors(cx, path),
            headers: self
                .headers
                .as_ref()
                .map(RawHeaders::validate)
                .unwrap_or_default(),
        }
    }

    fn validate_destinations(&self, cx: &mut Ctx<'_>, path: &str) -> Vec<HttpRouteDestination> {
        let raw = self.route.as_deref().unwrap_or_default();
        let single = raw.len() == 1;
        let mut total: i64 = 0;
        let mut out = Vec::new();
        for (i, d) in raw.iter().enumerate() {
            let p = format!("{path}.route[{i}]");
            let weight = d.weight.unwrap_or(0);
            if weight < 0 {
                cx.error(
                    &join(&p, "weight"),
                    format!("weight must be >= 0, got {weight}"),
                );
            } else if weight > i64::from(u32::MAX) {
                cx.error(
                    &join(&p, "weight"),
                    format!("weight is too large: {weight}"),
                );
            } else {
                total += weight;
            }
            let Some(dest) = d.destination.as_ref() else {
                cx.error(&p, "destination is required");
                continue;
            };
            let Some(destination) = dest.validate(cx, &join(&p, "destination")) else {
                continue;
            };
            let weight = if single {
                // "If there is only one destination in a rule, it will receive all traffic."
                defaults::SINGLE_DESTINATION_WEIGHT
            } else {
                u32::try_from(weight.max(0)).unwrap_or(0)
            };
            out.push(HttpRouteDestination {
                destination,
                weight,
                headers: d
                    .headers
                    .as_ref()
                    .map(RawHeaders::validate)
                    .unwrap_or_default(),
            });
        }
        if raw.len() > 1 && total == 0 {
            cx.error(&join(path, "route"), "total destination weight = 0");
        }
        out
    }

    fn validate_mirrors(&self, cx: &mut Ctx<'_>, path: &str) -> Vec<HttpMirrorPolicy> {
        let mut out = Vec::new();
        if self.mirror.is_some() && self.mirrors.is_some() {
            cx.error(
                &join(path, "mirrors"),
                "mirror and mirrors cannot be used together",
            );
        }
        let legacy_key = if cx.index.contains(&join(path, "mirror_percent")) {
            "mirror_percent"
        } else {
            "mirrorPercent"
        };
        if self.mirror_percent.is_some() {
            cx.warn(
                &join(path, legacy_key),
                format!("{legacy_key} is deprecated; use mirrorPercentage: {{value: N}}"),
            );
        }
        if self.mirror.is_none()
            && (self.mirror_percentage.is_some() || self.mirror_percent.is_some())
        {
            cx.warn(
                &join(path, "mirrorPercentage"),
                "has no effect without mirror",
            );
        }
        if let Some(m) = &self.mirror {
            let dest = m.validate(cx, &join(path, "mirror"));
            let pct = match (&self.mirror_percentage, self.mirror_percent) {
                (Some(_), _) => {
                    percentage_at(cx, &join(path, "mirrorPercentage"), &self.mirror_percentage)
                }
                (None, Some(legacy)) => {
                    Percent::check(cx, &join(path, legacy_key), f64::from(legacy))
                }
                (None, None) => Some(Percent::FULL),
            };
            if let (Some(destination), Some(percentage)) = (dest, pct) {
                out.push(HttpMirrorPolicy {
                    destination,
                    percentage,
                });
            }
        }
        for (i, m) in self.mirrors.iter().flatten().enumerate() {
            let p = format!("{path}.mirrors[{i}]");
            let Some(d) = &m.destination else {
                cx.error(&join(&p, "destination"), "is required");
                continue;
            };
            let dest = d.validate(cx, &join(&p, "destination"));
            let pct = if m.percentage.is_some() {
                percentage_at(cx, &join(&p, "percentage"), &m.percentage)
            } else {
                Some(Percent::FULL)
            };
            if let (Some(destination), Some(percentage)) = (dest, pct) {
                out.push(HttpMirrorPolicy {
                    destination,
                    percentage,
                });
            }
        }
        out
    }
}

fn string_matches(
    cx: &mut Ctx<'_>,
    path: &str,
    map: &Option<BTreeMap<String, RawStringMatch>>,
    allow_present: bool,
) -> Vec<(String, StringMatch)> {
    map.iter()
        .flatten()
        .filter_map(|(k, m)| {
            m.validate(cx, &join(path, k), allow_present)
                .map(|m| (k.to_ascii_lowercase(), m))
        })
        .collect()
}

impl RawHttpMatch {
    fn validate(&self, cx: &mut Ctx<'_>, path: &str) -> Option<HttpMatchRequest> {
        for (set, field, why) in [
            (
                self.source_labels.is_some(),
                "sourceLabels",
                "it selects client workloads, not requests",
            ),
            (
                self.source_namespace.is_some(),
                "sourceNamespace",
                "it selects client workloads, not requests",
            ),
            (
                self.gateways.is_some(),
                "gateways",
                "only the mesh gateway is supported",
            ),
            (
                self.stat_prefix.is_some(),
                "statPrefix",
                "stats are not prefixed per match",
            ),
        ] {
            if set {
                cx.warn(
                    &join(path, field),
                    format!("`{field}` is not supported by augur ({why}); ignored"),
                );
            }
        }
        let any_augur_field = self.name.is_some()
            || self.uri.is_some()
            || self.scheme.is_some()
            || self.method.is_some()
            || self.authority.is_some()
            || self.headers.is_some()
            || self.without_headers.is_some()
            || self.query_params.is_some()
            || self.port.is_some()
            || self.ignore_uri_case.is_some();
        let any_istio_field = self.source_labels.is_some()
            || self.source_namespace.is_some()
            || self.gateways.is_some()
            || self.stat_prefix.is_some();
        if !any_augur_field && !any_istio_field {
            cx.error(path, "empty match block (remove it to match every request)");
            return None;
        }
        let one = |cx: &mut Ctx<'_>, field: &str, m: &Option<RawStringMatch>| {
            m.as_ref()
                .and_then(|m| m.validate(cx, &join(path, field), false))
        };
        if let Some(p) = self.port {
            if !(1..=65535).contains(&p) {
                cx.error(
                    &join(path, "port"),
                    format!("port must be in 1..=65535, got {p}"),
                );
            }
        }
        Some(HttpMatchRequest {
            name: self.name.clone(),
            uri: one(cx, "uri", &self.uri),
            scheme: one(cx, "scheme", &self.scheme),
            method: one(cx, "method", &self.method),
            authority: one(cx, "authority", &self.authority),
            headers: string_matches(cx, &join(path, "headers"), &self.headers, true),
            without_headers: string_matches(
                cx,
                &join(path, "withoutHeaders"),
                &self.without_headers,
                true,
            ),
            query_params: string_matches(cx, &join(path, "queryParams"), &self.query_params, false),
            port: self.port,
            ignore_uri_case: self.ignore_uri_case.unwrap_or(false),
        })
    }
}

fn status_at(
    cx: &mut Ctx<'_>,
    path: &str,
    code: Option<u32>,
    range: std::ops::RangeInclusive<u32>,
) -> Option<u16> {
    let Some(code) = code else {
        cx.error(path, "is required");
        return None;
    };
    if !range.contains(&code) {
        cx.error(
            path,
            format!("must be in {}..={}, got {code}", range.start(), range.end()),
        );
        return None;
    }
    u16::try_from(code).ok()
}

/// The redirect codes Istio programs (`translateRedirect`); it drops a redirect with any other.
const REDIRECT_CODES: [u32; 5] = [301, 302, 303, 307, 308];

impl RawRedirect {
    fn validate(&self, cx: &mut Ctx<'_>, path: &str) -> HttpRedirect {
        let redirect_code = match self.redirect_code {
            None => defaults::REDIRECT_CODE,
            Some(c) if REDIRECT_CODES.contains(&c) => u16::try_from(c).unwrap_or(301),
            Some(c) => {
                cx.error(
                    &join(path, "redirectCode"),
                    format!("must be one of 301, 302, 303, 307 or 308 (Istio's), got {c}"),
                );
                defaults::REDIRECT_CODE
            }
        };
        if let Some(scheme) = &self.scheme {
            if !matches!(scheme.as_str(), "http" | "https") {
                cx.error(
                    &join(path, "scheme"),
                    format!("must be http or https, got {scheme:?}"),
                );
            }
        }
        let port = match (self.port, self.derive_port.as_deref()) {
            (Some(_), Some(_)) => {
                cx.error(path, "port and derivePort cannot both be set");
                None
            }
            (Some(p), None) => match u16::try_from(p) {
                Ok(p) if p > 0 => Some(RedirectPort::Fixed(p)),
                _ => {
                    cx.error(
                        &join(path, "port"),
                        format!("must be a port in 1..=65535, got {p}"),
                    );
                    None
                }
            },
            (None, Some("FROM_REQUEST_PORT")) => Some(RedirectPort::FromRequest),
            (None, Some("FROM_PROTOCOL_DEFAULT")) | (None, None) => None,
            (None, Some(other)) => {
                cx.error(
                    &join(path, "derivePort"),
                    format!("must be FROM_PROTOCOL_DEFAULT or FROM_REQUEST_PORT, got {other:?}"),
                );
                None
            }
        };
        HttpRedirect {
            uri: self.uri.clone(),
            authority: self.authority.clone(),
            redirect_code,
            scheme: self.scheme.clone(),
            port,
        }
    }
}

impl RawRewrite {
    fn validate(&self, cx: &mut Ctx<'_>, path: &str) -> HttpRewrite {
        let uri_regex_rewrite = self.uri_regex_rewrite.as_ref().and_then(|r| {
            let at = join(path, "uriRegexRewrite");
            let (Some(pattern), Some(rewrite)) = (&r.pattern, &r.rewrite) else {
                cx.error(&at, "needs both match and rewrite");
                return None;
            };
            if let Err(e) = regex::Regex::new(pattern) {
                cx.error(
                    &join(&at, "match"),
                    format!("invalid regular expression: {e}"),
                );
                return None;
            }
            Some(RegexRewrite {
                pattern: pattern.clone(),
                rewrite: rewrite.clone(),
            })
        });
        if self.uri.is_some() && uri_regex_rewrite.is_some() {
            cx.error(path, "uri and uriRegexRewrite cannot both be set");
        }
        HttpRewrite {
            uri: self.uri.clone(),
            authority: self.authority.clone(),
            uri_regex_rewrite,
        }
    }
}

impl RawDirectResponse {
    fn validate(&self, cx: &mut Ctx<'_>, path: &str) -> Option<HttpDirectResponse> {
        let status = status_at(cx, &join(path, "status"), self.status, 200..=599)?;
        let body = match &self.body {
            None => None,
            Some(RawBody {
                string: Some(s),
                bytes: None,
            }) => Some(DirectResponseBody::String(s.clone())),
            Some(RawBody {
                string: None,
                bytes: Some(b),
            }) => Some(DirectResponseBody::Bytes(b.clone())),
            Some(_) => {
                cx.error(
                    &join(path, "body"),
                    "exactly one of string or bytes is required",
                );
                None
            }
        };
        Some(HttpDirectResponse { status, body })
    }
}

impl RawRetry {
    fn validate(&self, cx: &mut Ctx<'_>, path: &str) -> HttpRetry {
        let attempts = self.attempts.unwrap_or(0);
        if attempts < 0 {
            cx.error(
                &join(path, "attempts"),
                format!("must be >= 0, got {attempts}"),
            );
        }
        HttpRetry {
            attempts: u32::try_from(attempts.max(0)).unwrap_or(u32::MAX),
            per_try_timeout: cx.duration(&join(path, "perTryTimeout"), &self.per_try_timeout),
            retry_on: self
                .retry_on
                .iter()
                .flat_map(|s| s.split(','))
                .map(|t| t.trim().to_owned())
                .filter(|t| !t.is_empty())
                .collect(),
            retry_remote_localities: self.retry_remote_localities.unwrap_or(false),
        }
    }
}

impl RawFault {
    fn validate(&self, cx: &mut Ctx<'_>, path: &str) -> HttpFaultInjection {
        if self.delay.is_none() && self.abort.is_none() {
            cx.error(path, "needs delay or abort");
        }
        let delay = self.delay.as_ref().and_then(|d| {
            let p = join(path, "delay");
            let fixed_delay = match &d.fixed_delay {
                Some(_) => cx.duration(&join(&p, "fixedDelay"), &d.fixed_delay)?,
                None => {
                    cx.error(&join(&p, "fixedDelay"), "is required");
                    return None;
                }
            };
            let percentage = match (&d.percentage, d.percent) {
                (Some(_), _) => percentage_at(cx, &join(&p, "percentage"), &d.percentage)?,
                (None, Some(legacy)) => {
                    Percent::check(cx, &join(&p, "percent"), f64::from(legacy))?
                }
                (None, None) => {
                    cx.warn(&p, "no percentage: no request will be delayed");
                    Percent::new(0.0)?
                }
            };
            Some(FaultDelay {
                fixed_delay,
                percentage,
            })
        });
        let abort = self.abort.as_ref().and_then(|a| {
            let p = join(path, "abort");
            let http_status = status_at(cx, &join(&p, "httpStatus"), a.http_status, 200..=599)?;
            let percentage = match &a.percentage {
                Some(_) => percentage_at(cx, &join(&p, "percentage"), &a.percentage)?,
                None => {
                    cx.warn(&p, "no percentage: no request will be aborted");
                    Percent::new(0.0)?
                }
            };
            Some(FaultAbort {
                http_status,
                percentage,
            })
        });
        HttpFaultInjection { delay, abort }
    }
}
