//! Malformed policies give exact `file:line:column: path: message` errors.

use augur_policies::{load_str, Diagnostic, Severity};

/// The error lines for `yaml` (loading must fail).
fn errors(yaml: &str) -> Vec<String> {
    match load_str("p.yaml", yaml) {
        Ok(_) => panic!("expected errors"),
        Err(e) => e
            .diagnostics
            .iter()
            .filter(|d| d.severity == Severity::Error)
            .map(Diagnostic::to_string)
            .collect(),
    }
}

const VS_HEAD: &str = "apiVersion: networking.istio.io/v1
kind: VirtualService
metadata:
  name: reviews
spec:
  hosts: [reviews]
  http:
";

const DR: &str = "---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata:
  name: reviews
spec:
  host: reviews
  subsets:
  - name: v1
    labels: {version: v1}
  - name: v2
    labels: {version: v2}
";

fn vs(http: &str) -> String {
    format!("{VS_HEAD}{http}{DR}")
}

#[test]
fn yaml_syntax_error() {
    let e = errors("apiVersion: v1\nkind: [a\nmetadata: {}\n");
    assert_eq!(e.len(), 1, "{e:?}");
    assert!(e[0].starts_with("p.yaml:3:9: YAML syntax error: "), "{e:?}");
}

#[test]
fn total_weight_zero_with_two_destinations() {
    let e = errors(&vs("  - route:
    - destination: {host: reviews, subset: v1}
      weight: 0
    - destination: {host: reviews, subset: v2}
"));
    assert_eq!(
        e,
        ["p.yaml:8:5: spec.http[0].route: total destination weight = 0"]
    );
}

#[test]
fn negative_weight() {
    let e = errors(&vs("  - route:
    - destination: {host: reviews, subset: v1}
      weight: -1
    - destination: {host: reviews, subset: v2}
      weight: 50
"));
    assert_eq!(
        e,
        ["p.yaml:10:7: spec.http[0].route[0].weight: weight must be >= 0, got -1"]
    );
}

#[test]
fn negative_mirror_percentage() {
    let e = errors(&vs("  - route:
    - destination: {host: reviews, subset: v1}
    mirror: {host: reviews, subset: v2}
    mirrorPercentage:
      value: -5
"));
    assert_eq!(e, ["p.yaml:12:7: spec.http[0].mirrorPercentage.value: must be a percentage in 0..=100, got -5"]);
}

#[test]
fn subset_not_defined() {
    let e = errors(&vs("  - route:
    - destination:
        host: reviews
        subset: v3
"));
    assert_eq!(
        e,
        ["p.yaml:11:9: spec.http[0].route[0].destination.subset: subset \"v3\" is not defined by DestinationRule default/reviews for host \"reviews\""]
    );
}

#[test]
fn subset_with_no_destination_rule() {
    let y = format!("{VS_HEAD}  - route:\n    - destination: {{host: ratings, subset: v1}}\n");
    let e = errors(&y);
    assert_eq!(e, ["p.yaml:9:36: spec.http[0].route[0].destination.subset: subset \"v1\" is not defined: no DestinationRule for host \"ratings\""]);
}

#[test]
fn mirror_and_mirrors() {
    let e = errors(&vs("  - route:
    - destination: {host: reviews, subset: v1}
    mirror: {host: reviews, subset: v2}
    mirrors:
    - destination: {host: reviews, subset: v2}
"));
    assert_eq!(
        e,
        ["p.yaml:11:5: spec.http[0].mirrors: mirror and mirrors cannot be used together"]
    );
}

#[test]
fn bad_regex() {
    let e = errors(&vs("  - match:
    - uri:
        regex: \"/api/(v1\"
    route:
    - destination: {host: reviews, subset: v1}
"));
    assert_eq!(e, ["p.yaml:10:9: spec.http[0].match[0].uri.regex: invalid regex \"/api/(v1\": unclosed group"]);
}

#[test]
fn regex_that_only_parses_once_anchored_is_rejected() {
    // `^(?:a)|(b)$` compiles, but `a)|(b` is not a regular expression: accepted, it would
    // match every path starting with `/a`.
    let e = errors(&vs("  - match:
    - uri:
        regex: \"/a)|(/b\"
    route:
    - destination: {host: reviews, subset: v1}
"));
    assert_eq!(e.len(), 1, "{e:?}");
    assert!(
        e[0].starts_with(
            "p.yaml:10:9: spec.http[0].match[0].uri.regex: invalid regex \"/a)|(/b\": "
        ),
        "{e:?}"
    );
}

/// Found by the `route_match` fuzz target (`fuzz/regressions/route_match/host-with-colon`): a
/// host with a port or other bytes no `Host` header can equal loaded, and its routes were
/// unreachable.
#[test]
fn fuzz_route_match_host_that_no_request_can_name_is_rejected() {
    for (host, shown) in [
        ("\"\\0(:\"", "\"\\0(:\""),
        ("reviews:9080", "\"reviews:9080\""),
    ] {
        let yaml = VS_HEAD.replace("hosts: [reviews]", &format!("hosts: [{host}]"))
            + "  - route:\n    - destination: {host: reviews, subset: v1}\n"
            + DR;
        let e = errors(&yaml);
        assert_eq!(
            e,
            [format!(
                "p.yaml:6:11: spec.hosts[0]: host {shown} is not a DNS name, a `*`-prefixed \
                 wildcard or an IP address"
            )],
            "{host}"
        );
    }
    for ok in [
        "reviews",
        "*.example.com",
        "*",
        "10.0.0.1",
        "::1",
        "api.example.com.",
    ] {
        let yaml = VS_HEAD.replace("hosts: [reviews]", &format!("hosts: [\"{ok}\"]"))
            + "  - route:\n    - destination: {host: reviews, subset: v1}\n"
            + DR;
        assert!(load_str("p.yaml", &yaml).is_ok(), "{ok}");
    }
}

#[test]
fn bad_duration() {
    let e = errors(&vs("  - route:
    - destination: {host: reviews, subset: v1}
    timeout: 10 seconds
"));
    assert_eq!(
        e,
        ["p.yaml:10:5: spec.http[0].timeout: unknown unit \" seconds\" in duration \"10 seconds\" (use ns, us, ms, s, m or h)"]
    );
}

#[test]
fn route_without_action_and_empty_match() {
    let e = errors(&vs("  - name: nothing
    match:
    - {}
"));
    assert_eq!(
        e,
        [
            "p.yaml:8:5: spec.http[0]: an HTTP route needs one of route, redirect or directResponse",
            "p.yaml:10:7: spec.http[0].match[0]: empty match block (remove it to match every request)",
        ]
    );
}

#[test]
fn redirect_with_route() {
    let e = errors(&vs("  - route:
    - destination: {host: reviews, subset: v1}
    redirect: {uri: /new}
"));
    assert_eq!(
        e,
        ["p.yaml:8:5: spec.http[0]: only one of route, redirect or directResponse may be set"]
    );
}

#[test]
fn redirect_fields_are_checked_as_istio_translates_them() {
    let e = errors(&vs(
        "  - redirect: {uri: /new, redirectCode: 305, scheme: ftp}
  - redirect: {port: 8443, derivePort: FROM_REQUEST_PORT}
  - redirect: {derivePort: SOMETIMES}
",
    ));
    assert_eq!(
        e,
        [
            "p.yaml:8:27: spec.http[0].redirect.redirectCode: must be one of 301, 302, 303, 307 or 308 (Istio's), got 305",
            "p.yaml:8:46: spec.http[0].redirect.scheme: must be http or https, got \"ftp\"",
            "p.yaml:9:5: spec.http[1].redirect: port and derivePort cannot both be set",
            "p.yaml:10:16: spec.http[2].redirect.derivePort: must be FROM_PROTOCOL_DEFAULT or FROM_REQUEST_PORT, got \"SOMETIMES\"",
        ]
    );
}

#[test]
fn uri_regex_rewrite_is_checked() {
    let e = errors(&vs(
        "  - rewrite: {uriRegexRewrite: {match: \"(unclosed\", rewrite: /x}}
    route: [{destination: {host: reviews, subset: v1}}]
  - rewrite: {uri: /a, uriRegexRewrite: {match: \"^/b\", rewrite: /c}}
    route: [{destination: {host: reviews, subset: v1}}]
",
    ));
    assert_eq!(e.len(), 2, "{e:?}");
    assert!(
        e[0].starts_with(
            "p.yaml:8:33: spec.http[0].rewrite.uriRegexRewrite.match: invalid regular expression"
        ),
        "{e:?}"
    );
    assert_eq!(
        e[1],
        "p.yaml:10:5: spec.http[1].rewrite: uri and uriRegexRewrite cannot both be set"
    );
}

#[test]
fn wrong_type_is_reported_with_its_path() {
    let e = errors(&vs("  - route:
    - destination: {host: reviews, subset: v1}
      weight: lots
"));
    assert_eq!(e.len(), 1, "{e:?}");
    assert!(
        e[0].starts_with(
            "p.yaml:10:7: spec.http[0].route[0].weight: invalid type: string \"lots\""
        ),
        "{e:?}"
    );
}

#[test]
fn duplicate_names() {
    let e = errors(&format!("{}{DR}", DR.trim_start_matches("---\n")));
    assert_eq!(e, ["p.yaml:16:3: metadata.name: duplicate DestinationRule default/reviews (first defined at p.yaml:4:3)"]);
}

#[test]
fn service_entry_port_name_and_static_without_endpoints() {
    let e = errors(
        "apiVersion: networking.istio.io/v1beta1
kind: ServiceEntry
metadata: {name: a}
spec:
  hosts: [a]
  ports: [{number: 80, name: http, protocol: HTTP}]
  resolution: STATIC
  endpoints:
  - address: 127.0.0.1
    ports: {grpc: 81}
---
apiVersion: networking.istio.io/v1alpha3
kind: ServiceEntry
metadata: {name: b}
spec:
  hosts: [b]
  resolution: STATIC
",
    );
    assert_eq!(
        e,
        [
            "p.yaml:10:13: spec.endpoints[0].ports.grpc: port name \"grpc\" is not declared in spec.ports",
            "p.yaml:17:3: spec.resolution: STATIC resolution needs at least one endpoint",
        ]
    );
}

#[test]
fn errors_in_one_document_do_not_hide_others() {
    let y = format!(
        "{}---\n{}",
        vs("  - route:\n    - destination: {host: reviews, subset: v1}\n    timeout: 1d\n"),
        vs("  - route:\n    - destination: {host: reviews, subset: v1}\n      weight: -2\n    - destination: {host: reviews, subset: v2}\n      weight: 10\n").replace("name: reviews\nspec:\n  hosts", "name: other\nspec:\n  hosts")
    );
    let e = errors(&y);
    assert!(
        e.iter()
            .any(|l| l.starts_with("p.yaml:10:5: spec.http[0].timeout: unknown unit \"d\"")),
        "{e:#?}"
    );
    assert!(
        e.iter().any(|l| l
            .starts_with("p.yaml:33:7: spec.http[0].route[0].weight: weight must be >= 0, got -2")),
        "{e:#?}"
    );
    // The DestinationRule appears twice: a duplicate.
    assert!(
        e.iter()
            .any(|l| l.contains("duplicate DestinationRule default/reviews")),
        "{e:#?}"
    );
}

#[test]
fn syntax_error_keeps_earlier_documents() {
    let y = format!(
        "{}---\nkind: [\n",
        vs("  - route:\n    - destination: {host: reviews, subset: v1}\n      weight: -3\n")
    );
    let e = errors(&y);
    assert!(
        e.iter().any(|l| l.contains("weight must be >= 0, got -3")),
        "{e:#?}"
    );
    assert!(e.iter().any(|l| l.contains("YAML syntax error")), "{e:#?}");
}

#[test]
fn file_over_4_mib_is_rejected() {
    let big = format!("# {}\n", "x".repeat(4 * 1024 * 1024));
    let e = errors(&big);
    assert_eq!(e.len(), 1);
    assert!(
        e[0].starts_with("p.yaml:1:1: file is ") && e[0].contains("limited to 4194304 bytes"),
        "{e:?}"
    );
}

#[test]
fn deep_nesting_is_rejected() {
    let y = format!("a: {}1{}\n", "[".repeat(70), "]".repeat(70));
    let e = errors(&y);
    assert!(
        e.iter()
            .any(|l| l.contains("YAML nesting deeper than 64 levels")),
        "{e:?}"
    );
}

#[test]
fn unknown_kind_is_an_error() {
    let e = errors("apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: x}\n");
    assert_eq!(e.len(), 1);
    assert!(
        e[0].starts_with("p.yaml:2:1: kind: unsupported kind Deployment in apps/v1"),
        "{e:?}"
    );
}

#[test]
fn service_entry_addresses_must_be_ips_or_cidrs() {
    let e = errors(
        "apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: db}
spec:
  hosts: [db.internal]
  addresses: [240.0.0.1, 10.1.0.0/16, 'fd00::/8', db.internal, 10.0.0.0/33]
  ports: [{number: 5432, name: tcp, protocol: TCP}]
  resolution: NONE
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: api}
spec:
  hosts: [api.example.com]
  addresses: [10.2.0.0/16]
  ports: [{number: 443, name: tls, protocol: TLS}]
  resolution: DNS
",
    );
    assert_eq!(
        e,
        [
            "p.yaml:6:51: spec.addresses[3]: \"db.internal\" is not an IP address or CIDR range",
            "p.yaml:6:64: spec.addresses[4]: \"10.0.0.0/33\": the prefix length must be 0..=32",
            "p.yaml:15:15: spec.addresses[0]: CIDR ranges are allowed only with resolution NONE or STATIC",
        ]
    );
}
