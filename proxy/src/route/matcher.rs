//! Compiled `HTTPMatchRequest`s: conditions in one block are ANDed, blocks are ORed.

use augur_policies::{HttpMatchRequest, StringMatch};
use regex::Regex;

/// What a match reads from a request, borrowed from its header (no copies).
pub struct RequestView<'a> {
    /// The method, e.g. `POST`.
    pub method: &'a str,
    /// The path without the query string.
    pub path: &'a str,
    /// The query string without `?`, when present.
    pub query: Option<&'a str>,
    /// The Host/:authority value.
    pub authority: &'a str,
    /// The scheme (`http` or `https`).
    pub scheme: &'a str,
    /// The port the request arrived on.
    pub port: u16,
    /// Looks a header up by lowercase name.
    pub header: &'a dyn Fn(&str) -> Option<&'a str>,
}

/// One compiled string condition.
#[derive(Debug, Clone)]
pub enum Matcher {
    /// Equal to the string.
    Exact(String),
    /// Starts with the string.
    Prefix(String),
    /// The whole value matches the RE2-style expression (Envoy's `safe_regex` is a full match).
    Regex(Regex),
    /// The value is present, whatever it is (`{}` in Istio header matches).
    Present,
}

impl Matcher {
    /// Compiles a policy `StringMatch`; `ignore_case` applies to exact and prefix as in Istio.
    pub fn compile(m: &StringMatch, ignore_case: bool) -> Result<Self, regex::Error> {
        let fold = |s: &str| {
            if ignore_case {
                s.to_ascii_lowercase()
            } else {
                s.to_owned()
            }
        };
        Ok(match m {
            StringMatch::Exact(s) => Matcher::Exact(fold(s)),
            StringMatch::Prefix(s) => Matcher::Prefix(fold(s)),
            StringMatch::Regex(r) => Matcher::Regex(Regex::new(&format!("^(?:{r})$"))?),
            StringMatch::Present => Matcher::Present,
        })
    }

    /// Whether `value` satisfies the condition (`None` means absent).
    pub fn matches(&self, value: Option<&str>, ignore_case: bool) -> bool {
        let Some(value) = value else { return false };
        match self {
            Matcher::Exact(s) if ignore_case => value.eq_ignore_ascii_case(s),
            Matcher::Exact(s) => value == s,
            Matcher::Prefix(p) if ignore_case => value
                .get(..p.len())
                .is_some_and(|head| head.eq_ignore_ascii_case(p)),
            Matcher::Prefix(p) => value.starts_with(p.as_str()),
            Matcher::Regex(r) => r.is_match(value),
            Matcher::Present => true,
        }
    }
}

/// One compiled match block.
#[derive(Debug, Clone, Default)]
pub struct MatchBlock {
    uri: Option<Matcher>,
    ignore_uri_case: bool,
    method: Option<Matcher>,
    authority: Option<Matcher>,
    scheme: Option<Matcher>,
    port: Option<u16>,
    headers: Vec<(String, Matcher)>,
    without_headers: Vec<(String, Matcher)>,
    query_params: Vec<(String, Matcher)>,
}

impl MatchBlock {
    /// Compiles one `HTTPMatchRequest`.
    pub fn compile(m: &HttpMatchRequest) -> Result<Self, regex::Error> {
        let one = |s: &Option<StringMatch>, ic: bool| {
            s.as_ref().map(|s| Matcher::compile(s, ic)).transpose()
        };
        let many = |list: &[(String, StringMatch)]| {
            list.iter()
                .map(|(k, v)| Ok((k.to_ascii_lowercase(), Matcher::compile(v, false)?)))
                .collect::<Result<Vec<_>, regex::Error>>()
        };
        Ok(Self {
            uri: one(&m.uri, m.ignore_uri_case)?,
            ignore_uri_case: m.ignore_uri_case,
            method: one(&m.method, false)?,
            authority: one(&m.authority, false)?,
            scheme: one(&m.scheme, false)?,
            port: m.port.and_then(|p| u16::try_from(p).ok()),
            headers: many(&m.headers)?,
            without_headers: many(&m.without_headers)?,
            query_params: many(&m.query_params)?,
        })
    }

    /// The block's uri condition, if any (a `rewrite.uri` replaces what it matched).
    pub fn uri(&self) -> Option<&Matcher> {
        self.uri.as_ref()
    }

    /// Whether every condition of the block holds for the request.
    pub fn matches(&self, req: &RequestView<'_>) -> bool {
        let check = |m: &Option<Matcher>, v: &str, ic: bool| {
            m.as_ref().is_none_or(|m| m.matches(Some(v), ic))
        };
        check(&self.uri, req.path, self.ignore_uri_case)
            && check(&self.method, req.method, false)
            && check(&self.authority, req.authority, false)
            && check(&self.scheme, req.scheme, false)
            && self.port.is_none_or(|p| p == req.port)
            && self
                .headers
                .iter()
                .all(|(k, m)| m.matches((req.header)(k), false))
            && self
                .without_headers
                .iter()
                .all(|(k, m)| !m.matches((req.header)(k), false))
            && self
                .query_params
                .iter()
                .all(|(k, m)| m.matches(query_param(req.query, k), false))
    }
}

/// The value of query parameter `key` (`Some("")` for a valueless key), not percent-decoded.
fn query_param<'a>(query: Option<&'a str>, key: &str) -> Option<&'a str> {
    query?.split('&').find_map(|pair| {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        (k == key).then_some(v)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn view<'a>(
        path: &'a str,
        query: Option<&'a str>,
        header: &'a dyn Fn(&str) -> Option<&'a str>,
    ) -> RequestView<'a> {
        RequestView {
            method: "POST",
            path,
            query,
            authority: "pneumonia",
            scheme: "http",
            port: 80,
            header,
        }
    }

    #[test]
    fn string_matchers() {
        let exact = Matcher::compile(&StringMatch::Exact("/Predict".into()), true).unwrap();
        assert!(exact.matches(Some("/predict"), true));
        let prefix = Matcher::compile(&StringMatch::Prefix("/v1".into()), false).unwrap();
        assert!(prefix.matches(Some("/v1/predict"), false));
        assert!(!prefix.matches(Some("/v2"), false));
        assert!(!prefix.matches(None, false));
        let regex = Matcher::compile(&StringMatch::Regex("/v[0-9]+".into()), false).unwrap();
        assert!(regex.matches(Some("/v12"), false));
        assert!(
            !regex.matches(Some("/v12/x"), false),
            "regex is a full match, as Envoy's"
        );
        assert!(Matcher::Present.matches(Some(""), false));
    }

    #[test]
    fn block_conditions_are_anded() {
        let req = HttpMatchRequest {
            uri: Some(StringMatch::Prefix("/predict".into())),
            headers: vec![("x-model-version".into(), StringMatch::Exact("v2".into()))],
            query_params: vec![("debug".into(), StringMatch::Exact(String::new()))],
            ..Default::default()
        };
        let block = MatchBlock::compile(&req).unwrap();
        let v2 = |k: &str| (k == "x-model-version").then_some("v2");
        let none = |_: &str| None;
        assert!(block.matches(&view("/predict", Some("a=1&debug"), &v2)));
        assert!(!block.matches(&view("/predict", Some("a=1"), &v2)));
        assert!(!block.matches(&view("/predict", Some("debug"), &none)));
        assert!(!block.matches(&view("/health", Some("debug"), &v2)));
    }

    #[test]
    fn without_headers_excludes() {
        let req = HttpMatchRequest {
            without_headers: vec![("x-canary".into(), StringMatch::Present)],
            ..Default::default()
        };
        let block = MatchBlock::compile(&req).unwrap();
        let with = |k: &str| (k == "x-canary").then_some("1");
        let none = |_: &str| None;
        assert!(!block.matches(&view("/", None, &with)));
        assert!(block.matches(&view("/", None, &none)));
    }
}
