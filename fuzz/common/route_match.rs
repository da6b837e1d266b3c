//! The `route_match` fuzz target's input and checks, shared by the target
//! (`fuzz/fuzz_targets/route_match.rs`) and its replay under `cargo test`
//! (`proxy/tests/fuzz_corpus.rs`), which both include this file with `#[path]`.
//!
//! Route matching on untrusted requests against a fuzzed VirtualService.
//!
//! The input is structured ([`arbitrary`]): a VirtualService (hosts, http routes with match
//! blocks and weighted destinations) and one request (method, path, query, authority, scheme,
//! port, headers). The VirtualService goes through the real loader (`load_str`, so only sets
//! the validator accepts reach the router, as in the proxy), is compiled into a
//! `RouteTable`, and the request is looked up with `RouteTable::find`; a forwarding route then
//! picks a destination with a fuzzed roll.
//!
//! Checked beyond "no panic": every declared exact host, written as a `Host` header, finds its
//! virtual host; the route found belongs to the request's virtual host; a pick never lands on a
//! zero weight and only fails when every weight is zero.

use arbitrary::Arbitrary;
use augur_proxy::route::{Action, RequestView, RouteTable};
use serde_json::{json, Map, Value};

/// One `StringMatch`.
#[derive(Arbitrary, Debug)]
enum Str {
    Exact(String),
    Prefix(String),
    Regex(String),
    /// `{}`: present (headers only; elsewhere the validator rejects it).
    Present,
}

/// One `HTTPMatchRequest`.
#[derive(Arbitrary, Debug)]
struct Match {
    uri: Option<Str>,
    ignore_uri_case: Option<bool>,
    method: Option<Str>,
    authority: Option<Str>,
    scheme: Option<Str>,
    port: Option<u32>,
    headers: Vec<(String, Str)>,
    without_headers: Vec<(String, Str)>,
    query_params: Vec<(String, Str)>,
}

/// One http route.
#[derive(Arbitrary, Debug)]
struct Route {
    name: Option<String>,
    matches: Vec<Match>,
    /// Destination subsets and weights.
    destinations: Vec<(Option<String>, Option<u8>)>,
}

/// The request to route.
#[derive(Arbitrary, Debug)]
struct Request {
    method: String,
    path: String,
    query: Option<String>,
    authority: String,
    scheme: String,
    port: u16,
    headers: Vec<(String, String)>,
    roll: u64,
}

/// The whole input.
#[derive(Arbitrary, Debug)]
pub(crate) struct Input {
    namespace: String,
    hosts: Vec<String>,
    routes: Vec<Route>,
    request: Request,
}

fn string_match(m: &Str) -> Value {
    match m {
        Str::Exact(s) => json!({ "exact": s }),
        Str::Prefix(s) => json!({ "prefix": s }),
        Str::Regex(s) => json!({ "regex": s }),
        Str::Present => json!({}),
    }
}

fn string_map(list: &[(String, Str)]) -> Value {
    Value::Object(
        list.iter()
            .map(|(k, m)| (k.clone(), string_match(m)))
            .collect::<Map<_, _>>(),
    )
}

fn match_block(m: &Match) -> Value {
    let mut o = Map::new();
    let mut one = |key: &str, v: &Option<Str>| {
        if let Some(v) = v {
            o.insert(key.to_owned(), string_match(v));
        }
    };
    one("uri", &m.uri);
    one("method", &m.method);
    one("authority", &m.authority);
    one("scheme", &m.scheme);
    if let Some(ic) = m.ignore_uri_case {
        o.insert("ignoreUriCase".to_owned(), json!(ic));
    }
    if let Some(p) = m.port {
        o.insert("port".to_owned(), json!(p));
    }
    for (key, list) in [
        ("headers", &m.headers),
        ("withoutHeaders", &m.without_headers),
        ("queryParams", &m.query_params),
    ] {
        if !list.is_empty() {
            o.insert(key.to_owned(), string_map(list));
        }
    }
    Value::Object(o)
}

/// The VirtualService as JSON, which is YAML too.
fn virtual_service(input: &Input) -> String {
    let host = input.hosts.first().cloned().unwrap_or_default();
    let http: Vec<Value> = input
        .routes
        .iter()
        .map(|r| {
            let route: Vec<Value> = r
                .destinations
                .iter()
                .map(|(subset, weight)| {
                    let mut d = json!({ "destination": { "host": host } });
                    if let Some(s) = subset {
                        d["destination"]["subset"] = json!(s);
                    }
                    if let Some(w) = weight {
                        d["weight"] = json!(w);
                    }
                    d
                })
                .collect();
            let mut o = json!({ "route": route });
            if let Some(name) = &r.name {
                o["name"] = json!(name);
            }
            if !r.matches.is_empty() {
                o["match"] = Value::Array(r.matches.iter().map(match_block).collect());
            }
            o
        })
        .collect();
    json!({
        "apiVersion": "networking.istio.io/v1",
        "kind": "VirtualService",
        "metadata": { "name": "fuzz", "namespace": input.namespace },
        "spec": { "hosts": input.hosts, "http": http },
    })
    .to_string()
}

/// How far an input got: rejected by the loader or the route compiler, compiled, or routed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Reached {
    /// The VirtualService did not load or compile.
    Rejected,
    /// The table compiled; no route took the request.
    Compiled,
    /// A route took the request.
    Routed,
}

/// Loads and compiles the input's VirtualService, routes its request and checks the results.
pub(crate) fn check(input: &Input) -> Reached {
    let yaml = virtual_service(input);
    let Ok(loaded) = augur_policies::load_str("fuzz.yaml", &yaml) else {
        return Reached::Rejected;
    };
    let Ok(table) = RouteTable::compile(&loaded.set) else {
        return Reached::Rejected;
    };
    for h in loaded.set.virtual_services.iter().flat_map(|vs| &vs.hosts) {
        if !h.contains('*') {
            // As a client writes it in `Host`: IPv6 addresses in brackets.
            let authority = match h.parse::<std::net::Ipv6Addr>() {
                Ok(_) => format!("[{h}]"),
                Err(_) => h.clone(),
            };
            assert!(
                table.virtual_host(&authority).is_some(),
                "host {h:?} has no virtual host"
            );
        }
    }
    let req = &input.request;
    let header = |name: &str| {
        req.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    };
    let view = RequestView {
        method: &req.method,
        path: &req.path,
        query: req.query.as_deref(),
        authority: &req.authority,
        scheme: &req.scheme,
        port: req.port,
        header: &header,
    };
    let Some(route) = table.find(&view) else {
        return Reached::Compiled;
    };
    let vhost = table.virtual_host(&req.authority);
    assert!(
        vhost.is_some_and(|v| v.routes.iter().any(|r| std::ptr::eq(&**r, &**route))),
        "the route found is not one of the request's virtual host"
    );
    if let Action::Forward(split) = &route.action {
        let total: u64 = split
            .destinations()
            .iter()
            .map(|d| u64::from(d.weight))
            .sum();
        match split.pick(req.roll) {
            Some((_, d)) => assert!(d.weight > 0, "picked a zero-weight destination"),
            None => assert_eq!(total, 0, "no pick with a total weight of {total}"),
        }
    }
    Reached::Routed
}
