//! `/stats` in Envoy's text form and `/clusters`.

use std::fmt::Write as _;
use std::sync::atomic::Ordering;

use super::AdminState;

/// `/stats`: `name: value` lines, with the gauges Istio's pilot-agent reads for readiness
/// (`server.state` 0 = LIVE, `listener_manager.workers_started` 1 once workers run).
/// `filter=REGEX` keeps matching names; `usedonly` drops zero values.
pub(super) fn envoy_stats(s: &AdminState, query: Option<&str>) -> String {
    let live = s.healthy.load(Ordering::Relaxed);
    let mut out = String::new();
    let _ = writeln!(out, "server.state: {}", if live { 0 } else { 1 });
    let _ = writeln!(out, "listener_manager.workers_started: 1");
    let _ = writeln!(out, "server.concurrency: {}", s.concurrency);
    out.push_str(&s.metrics.render_envoy_stats());
    let params = query.unwrap_or("");
    let used_only = params.split('&').any(|p| p == "usedonly");
    let filter = params
        .split('&')
        .find_map(|p| p.strip_prefix("filter="))
        .and_then(|f| regex::Regex::new(f).ok());
    out.lines()
        .filter(|line| {
            let (name, value) = line.split_once(": ").unwrap_or((line, ""));
            filter.as_ref().is_none_or(|f| f.is_match(name)) && !(used_only && value == "0")
        })
        .fold(String::new(), |mut acc, line| {
            acc.push_str(line);
            acc.push('\n');
            acc
        })
}

/// `/clusters`: one line per cluster endpoint, `cluster::address::field::value`, as Envoy.
pub(super) fn clusters(s: &AdminState) -> String {
    let snapshot = s.store.snapshot();
    let mut out = String::new();
    for c in snapshot.routes.clusters() {
        let _ = writeln!(
            out,
            "{}::default_priority::max_connections::4294967295",
            c.name
        );
        for ep in &c.endpoints {
            let _ = writeln!(out, "{}::{ep}::health_flags::healthy", c.name);
        }
    }
    out
}
