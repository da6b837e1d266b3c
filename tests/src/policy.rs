//! Builders for the policy files tests write: a service's DestinationRule subsets and its
//! ServiceEntry endpoints, so each test only spells out the VirtualService it is about.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

/// A DestinationRule with one subset per `(subset, port)` and a ServiceEntry with one STATIC
/// endpoint on 127.0.0.1 per subset (labelled `version: <subset>`), for host `host`.
pub fn service(host: &str, subsets: &[(&str, u16)]) -> String {
    let mut out = format!(
        "apiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {{name: {host}}}\n\
         spec:\n  host: {host}\n  subsets:\n"
    );
    for (name, _) in subsets {
        let _ = writeln!(out, "  - {{name: {name}, labels: {{version: {name}}}}}");
    }
    let _ = write!(
        out,
        "---\napiVersion: networking.istio.io/v1\nkind: ServiceEntry\nmetadata: {{name: {host}}}\n\
         spec:\n  hosts: [{host}]\n  ports: [{{number: 80, name: http, protocol: HTTP}}]\n  \
         resolution: STATIC\n  endpoints:\n"
    );
    for (name, port) in subsets {
        let _ = writeln!(
            out,
            "  - {{address: 127.0.0.1, ports: {{http: {port}}}, labels: {{version: {name}}}}}"
        );
    }
    out
}

/// A VirtualService for `host` whose `http:` list is `http` (YAML, indented by two spaces).
pub fn virtual_service(host: &str, http: &str) -> String {
    format!(
        "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {{name: {host}}}\n\
         spec:\n  hosts: [{host}]\n  http:\n{http}"
    )
}

/// Replaces the file's content in one rename, as editors and ConfigMap updates do.
pub fn write_atomically(path: &Path, content: impl AsRef<[u8]>) {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, content).expect("write policy");
    std::fs::rename(&tmp, path).expect("rename policy");
}

/// Writes the documents, joined by `---`, to `dir/policy.yaml` and returns the path.
pub fn write(dir: &Path, documents: &[&str]) -> PathBuf {
    let path = dir.join("policy.yaml");
    std::fs::write(&path, documents.join("\n---\n")).expect("write policy");
    path
}

/// The `http:` list of a VirtualService whose route `primary` sends everything to subset `v1`
/// (stable) and nothing to `v2` (canary): what a CanaryPolicy starts from.
pub fn primary_route(host: &str) -> String {
    format!(
        "  - name: primary\n    route:\n    - destination: {{host: {host}, subset: v1}}\n      weight: 100\n    \
         - destination: {{host: {host}, subset: v2}}\n      weight: 0\n"
    )
}

/// A CanaryPolicy named `host` driving route `primary` of VirtualService `host`, stable `v1`,
/// canary `v2`, started as soon as it is loaded (`startOn: immediately`); `rest` holds the
/// remaining `spec` fields (steps, analysis, ...), indented by two.
pub fn canary_policy(host: &str, rest: &str) -> String {
    format!(
        "apiVersion: augur.dev/v1alpha1\nkind: CanaryPolicy\nmetadata: {{name: {host}}}\nspec:\n  \
         startOn: immediately\n  trafficRouting:\n    virtualService: {{name: {host}, routes: [primary]}}\n  \
         stable: {{host: {host}, subset: v1}}\n  canary: {{host: {host}, subset: v2}}\n{rest}"
    )
}

/// `steps:` of a CanaryPolicy (for [`canary_policy`]) with Argo's managed routes: 20%, pause,
/// a header route `beta` (`x-beta: "true"`), pause, a 50% mirror route `copy`, pause, 100%.
pub const MANAGED_ROUTE_STEPS: &str = r#"  steps:
  - setWeight: 20
  - pause: {}
  - setHeaderRoute:
      name: beta
      match:
      - headerName: x-beta
        headerValue: {exact: "true"}
  - pause: {}
  - setMirrorRoute: {name: copy, percentage: 50}
  - pause: {}
  - setWeight: 100
"#;

/// The seeds' canary layout as one file: VirtualService `host` whose route `primary` splits
/// `w1`/`w2` between subsets `v1` and `v2`, with the DestinationRule and ServiceEntry that give
/// them the loopback ports `p1` and `p2`.
pub fn split(host: &str, (p1, p2): (u16, u16), (w1, w2): (u32, u32)) -> String {
    let http = format!(
        "  - name: primary\n    route:\n    - destination: {{host: {host}, subset: v1}}\n      weight: {w1}\n    \
         - destination: {{host: {host}, subset: v2}}\n      weight: {w2}\n"
    );
    format!(
        "{}---\n{}",
        virtual_service(host, &http),
        service(host, &[("v1", p1), ("v2", p2)])
    )
}
