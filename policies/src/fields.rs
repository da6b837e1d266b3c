//! Unknown fields: which fields a kind knows at a path, read from the JSON Schema of its raw
//! serde types, and the known field a misspelt one most likely meant (`wieght` → `weight`).
//!
//! The schema is the single source: a field added to a raw type becomes a suggestion without a
//! second list to keep in step.

use std::sync::OnceLock;

use serde_json::Value;

use crate::canary::raw::RawCanarySpec;
use crate::istio::destination_rule::raw::RawDestinationRuleSpec;
use crate::istio::service_entry::RawServiceEntrySpec;
use crate::istio::virtual_service::raw::RawVirtualServiceSpec;
use crate::load::RawDocument;
use crate::protection::raw::RawProtectionSpec;

/// The document kinds whose fields are known.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    VirtualService,
    DestinationRule,
    ServiceEntry,
    CanaryPolicy,
    ApiProtection,
}

impl Kind {
    /// The JSON Schema of the whole document (`apiVersion`, `kind`, `metadata`, `spec`).
    fn schema(self) -> &'static Value {
        static SCHEMAS: [OnceLock<Value>; 5] = [const { OnceLock::new() }; 5];
        let make: fn() -> Value = match self {
            Kind::VirtualService => || schema_of::<RawDocument<RawVirtualServiceSpec>>(),
            Kind::DestinationRule => || schema_of::<RawDocument<RawDestinationRuleSpec>>(),
            Kind::ServiceEntry => || schema_of::<RawDocument<RawServiceEntrySpec>>(),
            Kind::CanaryPolicy => || schema_of::<RawDocument<RawCanarySpec>>(),
            Kind::ApiProtection => || schema_of::<RawDocument<RawProtectionSpec>>(),
        };
        SCHEMAS[self as usize].get_or_init(make)
    }
}

fn schema_of<T: schemars::JsonSchema>() -> Value {
    schemars::schema_for!(T).to_value()
}

/// The fields known beside the field at `path` (`spec.http[0].route[1].wieght` → the fields of
/// a route destination), sorted and deduplicated.
pub(crate) fn known_beside(kind: Kind, path: &str) -> Vec<String> {
    let root = kind.schema();
    let segments = segments(path);
    let parent = &segments[..segments.len().saturating_sub(1)];
    let mut nodes = vec![root];
    for seg in parent {
        let mut next = Vec::new();
        for node in nodes {
            for s in alternatives(root, node) {
                match seg {
                    Segment::Key(k) => {
                        if let Some(p) = s.get("properties").and_then(|p| p.get(*k)) {
                            next.push(p);
                        } else if let Some(a) =
                            s.get("additionalProperties").filter(|a| a.is_object())
                        {
                            next.push(a);
                        }
                    }
                    Segment::Index => {
                        if let Some(items) = s.get("items") {
                            next.push(items);
                        }
                    }
                }
            }
        }
        nodes = next;
    }
    let mut out: Vec<String> = nodes
        .into_iter()
        .flat_map(|n| alternatives(root, n))
        .filter_map(|s| s.get("properties").and_then(Value::as_object))
        .flat_map(|p| p.keys().cloned())
        .collect();
    out.sort();
    out.dedup();
    out
}

/// The known field that `field` most likely meant: the same name in another case or with
/// underscores (`mirror_percentage`), or one within a small edit distance (`wieght`).
pub(crate) fn did_you_mean<'a>(field: &str, known: &'a [String]) -> Option<&'a str> {
    let fold = |s: &str| s.replace(['_', '-'], "").to_ascii_lowercase();
    if let Some(k) = known.iter().find(|k| fold(k) == fold(field)) {
        return Some(k);
    }
    let limit = (field.chars().count() / 3).max(1);
    known
        .iter()
        .map(|k| (strsim::damerau_levenshtein(field, k), k))
        .filter(|(d, _)| *d <= limit)
        .min_by_key(|(d, _)| *d)
        .map(|(_, k)| k.as_str())
}

/// The message for an unknown field at `path` of a `kind` document: its name and, when one is
/// close, the known field it most likely meant.
pub(crate) fn unknown_field_message(kind: Kind, path: &str) -> String {
    let field = field_name(path);
    let known = known_beside(kind, path);
    match did_you_mean(field, &known) {
        Some(k) => format!("unknown field `{field}`; did you mean `{k}`?"),
        None => format!("unknown field `{field}`"),
    }
}

/// The name of the field at the end of `path` (`a.b[0].c` → `c`, `a.b[0]` → `b`).
pub(crate) fn field_name(path: &str) -> &str {
    let last = crate::context::last_segment(path);
    last.split('[').next().unwrap_or(last)
}

/// One step of a field path.
#[derive(Debug, PartialEq)]
enum Segment<'a> {
    Key(&'a str),
    Index,
}

fn segments(path: &str) -> Vec<Segment<'_>> {
    let mut out = Vec::new();
    for part in path.split('.').filter(|p| !p.is_empty()) {
        let mut pieces = part.split('[');
        if let Some(key) = pieces.next().filter(|k| !k.is_empty()) {
            out.push(Segment::Key(key));
        }
        out.extend(pieces.map(|_| Segment::Index));
    }
    out
}

/// `node` with its `$ref` followed, and the alternatives of its `anyOf`/`oneOf`/`allOf` (an
/// `Option<T>` is `anyOf: [T, null]`; an externally tagged enum is a `oneOf`).
fn alternatives<'a>(root: &'a Value, node: &'a Value) -> Vec<&'a Value> {
    let mut out = Vec::new();
    let mut stack = vec![node];
    let mut budget = 64; // a self-referencing schema cannot loop
    while let Some(n) = stack.pop() {
        budget -= 1;
        if budget == 0 {
            break;
        }
        if let Some(target) = n
            .get("$ref")
            .and_then(Value::as_str)
            .and_then(|r| resolve(root, r))
        {
            stack.push(target);
            continue;
        }
        for key in ["anyOf", "oneOf", "allOf"] {
            if let Some(list) = n.get(key).and_then(Value::as_array) {
                stack.extend(list.iter());
            }
        }
        out.push(n);
    }
    out
}

fn resolve<'a>(root: &'a Value, reference: &str) -> Option<&'a Value> {
    root.pointer(reference.strip_prefix('#')?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_beside_a_route_destination_weight() {
        let known = known_beside(Kind::VirtualService, "spec.http[0].route[1].wieght");
        assert_eq!(known, ["destination", "headers", "weight"]);
    }

    #[test]
    fn fields_inside_a_map_value_and_an_enum_variant() {
        let known = known_beside(
            Kind::VirtualService,
            "spec.http[0].match[0].headers.x-v.exct",
        );
        assert_eq!(known, ["exact", "prefix", "regex"]);
        let known = known_beside(Kind::CanaryPolicy, "spec.analysis.source.prometheus.adress");
        assert_eq!(known, ["address", "query", "scrapeLag"]);
    }

    #[test]
    fn suggestions() {
        let known: Vec<String> = ["destination", "headers", "weight"]
            .map(String::from)
            .into();
        assert_eq!(did_you_mean("wieght", &known), Some("weight"));
        assert_eq!(did_you_mean("Weight", &known), Some("weight"));
        assert_eq!(did_you_mean("destinaton", &known), Some("destination"));
        assert_eq!(did_you_mean("timeout", &known), None);
        let known: Vec<String> = ["mirrorPercentage"].map(String::from).into();
        assert_eq!(
            did_you_mean("mirror_percentage", &known),
            Some("mirrorPercentage")
        );
    }
}
