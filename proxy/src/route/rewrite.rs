//! Istio's `rewrite` and `redirect`, as Istio programs Envoy's routes (checked against the real
//! Envoy 1.40 in `tests/tests/envoy_parity.rs`).
//!
//! `rewrite.uri` is Envoy's `prefix_rewrite`: it replaces the part of the path the route's uri
//! match matched (the prefix of a `prefix` match, the whole path of an `exact` or `regex`
//! match, the leading `/` when the block had no uri match, since Istio's catch-all is
//! `prefix: /`). `uriRegexRewrite` replaces every match of its expression in the path. The
//! query string is kept in both cases.
//!
//! A redirect keeps what it does not replace: the request's scheme (`https` on a TLS
//! listener), host, port and query string.

use augur_policies::{HttpRedirect, HttpRewrite, RedirectPort};
use regex::Regex;

use super::matcher::Matcher;

/// A compiled `rewrite`.
#[derive(Debug, Clone)]
pub struct Rewrite {
    /// Replacement of the matched prefix.
    uri: Option<String>,
    /// `uriRegexRewrite`, with the replacement in the `regex` crate's syntax.
    regex: Option<(Regex, String)>,
    /// Replacement authority (`Host`).
    pub authority: Option<String>,
}

impl Rewrite {
    /// Compiles a route's `rewrite` (its expression was checked by the policy validator).
    pub fn compile(r: &HttpRewrite) -> Result<Self, regex::Error> {
        let regex = r
            .uri_regex_rewrite
            .as_ref()
            .map(|rr| Ok::<_, regex::Error>((Regex::new(&rr.pattern)?, substitution(&rr.rewrite))))
            .transpose()?;
        Ok(Self {
            uri: r.uri.clone(),
            regex,
            authority: r.authority.clone(),
        })
    }

    /// Whether the path is rewritten at all.
    pub fn rewrites_path(&self) -> bool {
        self.uri.is_some() || self.regex.is_some()
    }

    /// The path and query to forward, or `None` when this rewrite leaves the path alone.
    /// `matched` is the uri condition of the match block that selected the route.
    pub fn path(
        &self,
        matched: Option<&Matcher>,
        path: &str,
        query: Option<&str>,
    ) -> Option<String> {
        let new_path = if let Some(uri) = &self.uri {
            let keep_from = match matched {
                Some(Matcher::Prefix(p)) => p.len().min(path.len()),
                Some(Matcher::Exact(_) | Matcher::Regex(_) | Matcher::Present) => path.len(),
                // Istio's catch-all route is `prefix: /`.
                None => usize::from(path.starts_with('/')),
            };
            let rest = path.get(keep_from..).unwrap_or("");
            format!("{uri}{rest}")
        } else {
            let (re, with) = self.regex.as_ref()?;
            re.replace_all(path, with.as_str()).into_owned()
        };
        Some(match query {
            Some(q) => format!("{new_path}?{q}"),
            None => new_path,
        })
    }
}

/// RE2's replacement syntax (`\1`, `\\`) in the `regex` crate's (`${1}`, `$$` for a `$`).
fn substitution(re2: &str) -> String {
    let mut out = String::with_capacity(re2.len() + 4);
    let mut chars = re2.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\\' => match chars.peek() {
                Some(d) if d.is_ascii_digit() => {
                    out.push_str("${");
                    out.push(*d);
                    out.push('}');
                    chars.next();
                }
                Some('\\') => {
                    out.push('\\');
                    chars.next();
                }
                _ => out.push('\\'),
            },
            '$' => out.push_str("$$"),
            c => out.push(c),
        }
    }
    out
}

/// What a redirect reads from the request.
#[derive(Debug, Clone, Copy)]
pub struct RedirectFrom<'a> {
    /// `http` or `https`, as the request came in.
    pub scheme: &'a str,
    /// The `Host` (or `:authority`), with its port if it had one.
    pub authority: &'a str,
    /// The port the request came in on (for `derivePort: FROM_REQUEST_PORT`).
    pub port: u16,
    /// The path.
    pub path: &'a str,
    /// The query string, without `?`.
    pub query: Option<&'a str>,
}

/// The `location` of a redirect, as Envoy builds it from Istio's `redirect`.
pub fn location(r: &HttpRedirect, from: &RedirectFrom<'_>) -> String {
    let scheme = r.scheme.as_deref().unwrap_or(from.scheme);
    let (request_host, request_port) = split_port(from.authority);
    let (host, mut port) = match &r.authority {
        // A new authority brings its own port, or none.
        Some(authority) => split_port(authority),
        None => (request_host, request_port),
    };
    if r.authority.is_none() && scheme != from.scheme && port == Some(default_port(from.scheme)) {
        // A scheme change drops the old scheme's default port (`http://m:80` → `https://m`).
        port = None;
    }
    let port_text;
    let port = match r.port {
        Some(RedirectPort::Fixed(p)) => {
            port_text = p.to_string();
            Some(port_text.as_str())
        }
        Some(RedirectPort::FromRequest) => {
            port_text = from.port.to_string();
            Some(port_text.as_str())
        }
        None => port,
    };
    let (path, query) = match r.uri.as_deref() {
        // A query in the new path replaces the request's.
        Some(uri) => match uri.split_once('?') {
            Some((p, q)) => (p, Some(q)),
            None => (uri, from.query),
        },
        None => (from.path, from.query),
    };
    let mut out = format!("{scheme}://{host}");
    if let Some(port) = port {
        out.push(':');
        out.push_str(port);
    }
    out.push_str(path);
    if let Some(q) = query {
        out.push('?');
        out.push_str(q);
    }
    out
}

fn default_port(scheme: &str) -> &'static str {
    if scheme == "https" {
        "443"
    } else {
        "80"
    }
}

/// `host:port` into its parts (IPv6 literals keep their brackets).
fn split_port(authority: &str) -> (&str, Option<&str>) {
    match authority.rsplit_once(':') {
        Some((host, port))
            if !port.is_empty()
                && port.bytes().all(|b| b.is_ascii_digit())
                && (!host.starts_with('[') || host.ends_with(']')) =>
        {
            (host, Some(port))
        }
        _ => (authority, None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use augur_policies::RegexRewrite;

    fn rewrite(uri: Option<&str>, regex: Option<(&str, &str)>) -> Rewrite {
        Rewrite::compile(&HttpRewrite {
            uri: uri.map(str::to_owned),
            authority: None,
            uri_regex_rewrite: regex.map(|(p, r)| RegexRewrite {
                pattern: p.to_owned(),
                rewrite: r.to_owned(),
            }),
        })
        .expect("compiles")
    }

    /// What Envoy 1.40 forwarded for each (route match, rewrite, request), read off the real
    /// Envoy on 2026-12-07.
    #[test]
    fn uri_rewrite_replaces_the_matched_part_as_envoy_does() {
        let v2 = rewrite(Some("/v2"), None);
        let prefix = Matcher::Prefix("/api/v1".into());
        assert_eq!(
            v2.path(Some(&prefix), "/api/v1/items", Some("q=1"))
                .as_deref(),
            Some("/v2/items?q=1")
        );
        assert_eq!(
            v2.path(Some(&prefix), "/api/v1", None).as_deref(),
            Some("/v2")
        );
        assert_eq!(
            v2.path(Some(&prefix), "/api/v1x", None).as_deref(),
            Some("/v2x")
        );
        let replaced = rewrite(Some("/replaced"), None);
        let exact = Matcher::Exact("/exact".into());
        assert_eq!(
            replaced.path(Some(&exact), "/exact", Some("y")).as_deref(),
            Some("/replaced?y")
        );
        let re = Matcher::Regex(Regex::new("^(?:/rx/[0-9]+)$").expect("re"));
        let from_regex = rewrite(Some("/fromregex"), None);
        assert_eq!(
            from_regex.path(Some(&re), "/rx/123", None).as_deref(),
            Some("/fromregex")
        );
        let root = rewrite(Some("/root"), None);
        assert_eq!(
            root.path(None, "/items", None).as_deref(),
            Some("/rootitems")
        );
        assert_eq!(root.path(None, "/", None).as_deref(), Some("/root"));
    }

    #[test]
    fn regex_rewrite_takes_re2_groups() {
        let r = rewrite(None, Some(("^/svc/([^/]+)(/.*)$", "\\2/instance/\\1")));
        assert_eq!(
            r.path(None, "/svc/abc/d/e", Some("q")).as_deref(),
            Some("/d/e/instance/abc?q")
        );
        assert_eq!(substitution("$1\\\\x"), "$$1\\x");
        let none = rewrite(None, None);
        assert!(none.path(None, "/a", None).is_none());
    }

    fn redirect(
        uri: Option<&str>,
        authority: Option<&str>,
        scheme: Option<&str>,
        port: Option<RedirectPort>,
    ) -> HttpRedirect {
        HttpRedirect {
            uri: uri.map(str::to_owned),
            authority: authority.map(str::to_owned),
            redirect_code: 301,
            scheme: scheme.map(str::to_owned),
            port,
        }
    }

    fn from<'a>(authority: &'a str, path: &'a str, query: Option<&'a str>) -> RedirectFrom<'a> {
        RedirectFrom {
            scheme: "http",
            authority,
            port: 80,
            path,
            query,
        }
    }

    /// Envoy 1.40's `location` for the same redirects, read off the real Envoy on 2026-12-07.
    #[test]
    fn redirect_location_keeps_what_it_does_not_replace() {
        let fixed = Some(RedirectPort::Fixed(9443));
        let cases = [
            (
                redirect(Some("/new"), None, None, None),
                from("m", "/r/x", Some("q=1")),
                "http://m/new?q=1",
            ),
            (
                redirect(Some("/new"), None, None, None),
                from("m:8080", "/r/x", Some("q=1")),
                "http://m:8080/new?q=1",
            ),
            (
                redirect(None, Some("other.example"), None, None),
                from("m:8080", "/r/x", Some("q=1")),
                "http://other.example/r/x?q=1",
            ),
            (
                redirect(None, Some("other.example"), None, fixed),
                from("m", "/r/x", None),
                "http://other.example:9443/r/x",
            ),
            (
                redirect(None, None, Some("https"), None),
                from("m", "/r/x", Some("q=1")),
                "https://m/r/x?q=1",
            ),
            (
                redirect(None, None, Some("https"), None),
                from("m:8080", "/r/x", None),
                "https://m:8080/r/x",
            ),
            (
                redirect(None, None, Some("https"), None),
                from("m:80", "/r/x", None),
                "https://m/r/x",
            ),
            (
                redirect(None, Some("secure.example"), Some("https"), None),
                from("m:8080", "/r/x", Some("q")),
                "https://secure.example/r/x?q",
            ),
            (
                redirect(None, None, None, fixed),
                from("m:8080", "/r/x", None),
                "http://m:9443/r/x",
            ),
            (
                redirect(None, None, Some("https"), Some(RedirectPort::Fixed(443))),
                from("m", "/r/x", None),
                "https://m:443/r/x",
            ),
            (
                redirect(Some("/new?a=b"), None, None, None),
                from("m", "/r/q", Some("z=1")),
                "http://m/new?a=b",
            ),
        ];
        for (r, f, want) in cases {
            assert_eq!(location(&r, &f), want, "{r:?} from {f:?}");
        }
    }

    #[test]
    fn redirect_keeps_the_tls_scheme_and_derives_the_request_port() {
        let r = redirect(Some("/new"), None, None, Some(RedirectPort::FromRequest));
        let f = RedirectFrom {
            scheme: "https",
            authority: "m",
            port: 8443,
            path: "/old",
            query: None,
        };
        assert_eq!(location(&r, &f), "https://m:8443/new");
    }
}
