//! Types shared by the Istio kinds (and CanaryPolicy): object metadata,
//! percentages, string matches, destinations and header operations, each as
//! a raw serde shape and a validated domain type.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::context::Ctx;
use crate::yaml::join;

/// Kubernetes object metadata, as far as augur uses it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ObjectMeta {
    /// `metadata.name`.
    pub name: String,
    /// `metadata.namespace`, `"default"` when absent.
    pub namespace: String,
    /// `metadata.annotations` with string values (augur reads its own, `augur.dev/...`).
    pub annotations: BTreeMap<String, String>,
}

/// Raw `metadata`.
#[derive(Debug, Default, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(deny_unknown_fields)]
pub(crate) struct RawMeta {
    /// Object name, unique per kind and namespace.
    pub(crate) name: Option<String>,
    /// Namespace (default `default`); short host names are qualified with it.
    pub(crate) namespace: Option<String>,
    /// Kubernetes labels (kept for tooling, unused by augur).
    #[allow(dead_code)] // accepted so that it is not reported as unknown
    pub(crate) labels: Option<BTreeMap<String, String>>,
    /// Kubernetes annotations; augur reads `augur.dev/sticky-version: "true"` on a DestinationRule (its consistentHash is meant to pick the version).
    pub(crate) annotations: Option<BTreeMap<String, Value>>,
}

impl RawMeta {
    pub(crate) fn validate(&self, cx: &mut Ctx<'_>) -> ObjectMeta {
        let name = match &self.name {
            Some(n) if !n.is_empty() => n.clone(),
            _ => {
                cx.error("metadata.name", "is required");
                String::new()
            }
        };
        let namespace = self
            .namespace
            .clone()
            .unwrap_or_else(|| "default".to_owned());
        let annotations = self
            .annotations
            .iter()
            .flatten()
            .filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_owned())))
            .collect();
        ObjectMeta {
            name,
            namespace,
            annotations,
        }
    }
}

/// A percentage in `0..=100`.
#[derive(Debug, Clone, Copy, PartialEq, PartialOrd, Serialize)]
pub struct Percent(f64);

impl Percent {
    /// 100%.
    pub const FULL: Percent = Percent(100.0);

    /// `value` if it is within `0..=100`.
    pub fn new(value: f64) -> Option<Percent> {
        (0.0..=100.0).contains(&value).then_some(Percent(value))
    }

    /// The percentage, `0..=100`.
    pub fn value(self) -> f64 {
        self.0
    }

    /// The fraction, `0..=1`.
    pub fn fraction(self) -> f64 {
        self.0 / 100.0
    }

    /// Check a raw value, reporting an error at `path` when out of range.
    pub(crate) fn check(cx: &mut Ctx<'_>, path: &str, value: f64) -> Option<Percent> {
        let p = Percent::new(value);
        if p.is_none() {
            cx.error(
                path,
                format!("must be a percentage in 0..=100, got {value}"),
            );
        }
        p
    }
}

/// Istio `Percent` message: `{value: 12.5}`.
#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[schemars(deny_unknown_fields)]
pub(crate) struct RawPercentage {
    /// Percentage in 0..=100 (fractions allowed).
    pub(crate) value: Option<f64>,
}

/// How a string (URI, header, query parameter...) is matched.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum StringMatch {
    /// The whole string equals this.
    Exact(String),
    /// The string starts with this.
    Prefix(String),
    /// The whole string matches this RE2-style regular expression.
    Regex(String),
    /// Header present, any value (`{}` in YAML).
    Present,
}

impl StringMatch {
    /// Short human form: `exact:"v2"`, `prefix:"/api"`, `regex:"..."`, `present`.
    pub fn summary(&self) -> String {
        match self {
            StringMatch::Exact(s) => format!("exact:{s:?}"),
            StringMatch::Prefix(s) => format!("prefix:{s:?}"),
            StringMatch::Regex(s) => format!("regex:{s:?}"),
            StringMatch::Present => "present".to_owned(),
        }
    }
}

/// Raw `StringMatch`: exactly one of `exact`, `prefix`, `regex`.
#[derive(Debug, Default, Deserialize, schemars::JsonSchema)]
#[schemars(deny_unknown_fields)]
pub(crate) struct RawStringMatch {
    /// Exact string match.
    pub(crate) exact: Option<String>,
    /// Prefix match.
    pub(crate) prefix: Option<String>,
    /// Regular expression (RE2 syntax), anchored to the whole value.
    pub(crate) regex: Option<String>,
}

impl RawStringMatch {
    /// Validate; `allow_present` lets `{}` mean "present" (headers).
    pub(crate) fn validate(
        &self,
        cx: &mut Ctx<'_>,
        path: &str,
        allow_present: bool,
    ) -> Option<StringMatch> {
        let set = [
            self.exact.is_some(),
            self.prefix.is_some(),
            self.regex.is_some(),
        ];
        match set.iter().filter(|b| **b).count() {
            0 if allow_present => Some(StringMatch::Present),
            0 => {
                cx.error(path, "needs one of exact, prefix or regex");
                None
            }
            1 => {
                if let Some(s) = &self.exact {
                    Some(StringMatch::Exact(s.clone()))
                } else if let Some(s) = &self.prefix {
                    Some(StringMatch::Prefix(s.clone()))
                } else {
                    let re = self.regex.clone().unwrap_or_default();
                    // The expression must parse on its own before it is anchored as the
                    // router anchors it: `a)|(b` would otherwise pass as `^(?:a)|(b)$`, two
                    // half-anchored alternatives that match far more than was written (RE2,
                    // and so Envoy, rejects it).
                    let checked = regex::Regex::new(&re)
                        .and_then(|_| regex::Regex::new(&format!("^(?:{re})$")));
                    if let Err(e) = checked {
                        let text = e.to_string();
                        let last = text.lines().last().unwrap_or_default().trim();
                        let first = last.strip_prefix("error: ").unwrap_or(last).to_owned();
                        cx.error(
                            &join(path, "regex"),
                            format!("invalid regex {re:?}: {first}"),
                        );
                        return None;
                    }
                    Some(StringMatch::Regex(re))
                }
            }
            _ => {
                cx.error(path, "exactly one of exact, prefix or regex is allowed");
                None
            }
        }
    }
}

/// Where traffic goes: a host, optionally a subset and a port.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Destination {
    /// Service host as written (short name or FQDN).
    pub host: String,
    /// DestinationRule subset name.
    pub subset: Option<String>,
    /// Port number.
    pub port: Option<u32>,
}

/// Raw `Destination`.
#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[schemars(deny_unknown_fields)]
pub(crate) struct RawDestination {
    /// Service host (short name, FQDN, or ServiceEntry host).
    pub(crate) host: Option<String>,
    /// Subset defined by a DestinationRule for this host.
    pub(crate) subset: Option<String>,
    /// Port on the host.
    pub(crate) port: Option<RawPortSelector>,
}

/// Raw `PortSelector`: `{number: 8080}`.
#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[schemars(deny_unknown_fields)]
pub(crate) struct RawPortSelector {
    /// Port number.
    pub(crate) number: Option<u32>,
}

impl RawDestination {
    pub(crate) fn validate(&self, cx: &mut Ctx<'_>, path: &str) -> Option<Destination> {
        let host = match &self.host {
            Some(h) if !h.is_empty() => h.clone(),
            _ => {
                cx.error(&join(path, "host"), "is required");
                return None;
            }
        };
        if matches!(&self.subset, Some(s) if s.is_empty()) {
            cx.error(&join(path, "subset"), "must not be empty");
        }
        Some(Destination {
            host,
            subset: self.subset.clone(),
            port: self.port.as_ref().and_then(|p| p.number),
        })
    }
}

/// Header edits applied to requests or responses.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct HeaderOperations {
    /// Overwrite these headers.
    pub set: Vec<(String, String)>,
    /// Append these headers.
    pub add: Vec<(String, String)>,
    /// Remove these headers.
    pub remove: Vec<String>,
}

/// Header edits for the request and the response.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Headers {
    /// Applied to the request before forwarding.
    pub request: HeaderOperations,
    /// Applied to the response before returning it.
    pub response: HeaderOperations,
}

/// Raw `Headers`.
#[derive(Debug, Default, Deserialize, schemars::JsonSchema)]
pub(crate) struct RawHeaders {
    pub(crate) request: Option<RawHeaderOperations>,
    pub(crate) response: Option<RawHeaderOperations>,
}

/// Raw `HeaderOperations`.
#[derive(Debug, Default, Deserialize, schemars::JsonSchema)]
pub(crate) struct RawHeaderOperations {
    pub(crate) set: Option<BTreeMap<String, String>>,
    pub(crate) add: Option<BTreeMap<String, String>>,
    pub(crate) remove: Option<Vec<String>>,
}

impl RawHeaders {
    pub(crate) fn validate(&self) -> Headers {
        let ops = |o: &Option<RawHeaderOperations>| {
            let Some(o) = o else {
                return HeaderOperations::default();
            };
            let pairs = |m: &Option<BTreeMap<String, String>>| {
                m.iter()
                    .flatten()
                    .map(|(k, v)| (k.to_ascii_lowercase(), v.clone()))
                    .collect()
            };
            HeaderOperations {
                set: pairs(&o.set),
                add: pairs(&o.add),
                remove: o
                    .remove
                    .iter()
                    .flatten()
                    .map(|h| h.to_ascii_lowercase())
                    .collect(),
            }
        };
        Headers {
            request: ops(&self.request),
            response: ops(&self.response),
        }
    }
}
