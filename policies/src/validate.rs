//! Checks across all loaded documents: duplicate names, subsets that no
//! DestinationRule defines, CanaryPolicy references to VirtualService
//! routes and destinations.

use std::path::PathBuf;
use std::sync::Arc;

use crate::context::Ctx;
use crate::diagnostic::Diagnostics;
use crate::hosts::same_host;
use crate::istio::common::{Destination, ObjectMeta};
use crate::yaml::{join, PathIndex};
use crate::{PolicySet, Strategy, VirtualService};

/// Where a loaded document came from, to place diagnostics.
#[derive(Debug, Clone)]
pub(crate) struct Origin {
    pub(crate) file: PathBuf,
    pub(crate) index: Arc<PathIndex>,
}

/// Origins of the set's entries, in the same order as the set's vectors.
#[derive(Debug, Default)]
pub(crate) struct Origins {
    pub(crate) virtual_services: Vec<Origin>,
    pub(crate) destination_rules: Vec<Origin>,
    pub(crate) service_entries: Vec<Origin>,
    pub(crate) canary_policies: Vec<Origin>,
    pub(crate) api_protections: Vec<Origin>,
}

fn ctx<'a>(o: &'a Origin, diags: &'a mut Diagnostics) -> Ctx<'a> {
    Ctx {
        file: &o.file,
        index: &o.index,
        diags,
    }
}

/// Run every cross-document check.
pub(crate) fn validate(set: &PolicySet, origins: &Origins, diags: &mut Diagnostics) {
    duplicates(
        "VirtualService",
        set.virtual_services.iter().map(|v| &v.metadata),
        &origins.virtual_services,
        diags,
    );
    duplicates(
        "DestinationRule",
        set.destination_rules.iter().map(|v| &v.metadata),
        &origins.destination_rules,
        diags,
    );
    duplicates(
        "ServiceEntry",
        set.service_entries.iter().map(|v| &v.metadata),
        &origins.service_entries,
        diags,
    );
    duplicates(
        "CanaryPolicy",
        set.canary_policies.iter().map(|v| &v.metadata),
        &origins.canary_policies,
        diags,
    );
    for (vs, o) in set.virtual_services.iter().zip(&origins.virtual_services) {
        virtual_service(set, vs, &mut ctx(o, diags));
    }
    for (i, o) in origins.canary_policies.iter().enumerate() {
        canary(set, i, &mut ctx(o, diags));
    }
    duplicates(
        "ApiProtection",
        set.api_protections.iter().map(|v| &v.metadata),
        &origins.api_protections,
        diags,
    );
    for (i, o) in origins.api_protections.iter().enumerate() {
        protection(set, i, &mut ctx(o, diags));
    }
}

/// An ApiProtection's VirtualService and routes exist, and no route is protected twice.
fn protection(set: &PolicySet, i: usize, cx: &mut Ctx<'_>) {
    let ap = &set.api_protections[i];
    let ns = &ap.metadata.namespace;
    let vp = "spec.virtualService";
    if ap.virtual_service.is_empty() {
        return;
    }
    let Some(vs) = set.virtual_service(&ap.virtual_service, ns) else {
        cx.error(
            &join(vp, "name"),
            format!("VirtualService {ns}/{} does not exist", ap.virtual_service),
        );
        return;
    };
    for (k, name) in ap.routes.iter().enumerate() {
        if !vs
            .http
            .iter()
            .any(|r| r.name.as_deref() == Some(name.as_str()))
        {
            cx.error(
                &format!("{vp}.routes[{k}]"),
                format!(
                    "VirtualService {ns}/{} has no http route named {name:?}",
                    vs.metadata.name
                ),
            );
        }
    }
    let overlaps = |a: &[String], b: &[String]| {
        a.is_empty() || b.is_empty() || a.iter().any(|r| b.contains(r))
    };
    if let Some(other) = set.api_protections[..i].iter().find(|o| {
        o.metadata.namespace == *ns
            && o.virtual_service == ap.virtual_service
            && overlaps(&o.routes, &ap.routes)
    }) {
        cx.error(
            &join(vp, "name"),
            format!(
                "a route of VirtualService {ns}/{} is already protected by ApiProtection {ns}/{}",
                ap.virtual_service, other.metadata.name
            ),
        );
    }
}

fn duplicates<'a>(
    kind: &str,
    metas: impl Iterator<Item = &'a ObjectMeta>,
    origins: &[Origin],
    diags: &mut Diagnostics,
) {
    let metas: Vec<&ObjectMeta> = metas.collect();
    for (i, m) in metas.iter().enumerate() {
        if m.name.is_empty() {
            continue;
        }
        if let Some(first) = metas[..i]
            .iter()
            .position(|o| o.name == m.name && o.namespace == m.namespace)
        {
            let f = &origins[first];
            let pos = f.index.lookup("metadata.name");
            ctx(&origins[i], diags).error(
                "metadata.name",
                format!(
                    "duplicate {kind} {}/{} (first defined at {}:{}:{})",
                    m.namespace,
                    m.name,
                    f.file.display(),
                    pos.line,
                    pos.column
                ),
            );
        }
    }
}

fn virtual_service(set: &PolicySet, vs: &VirtualService, cx: &mut Ctx<'_>) {
    let ns = &vs.metadata.namespace;
    for (i, route) in vs.http.iter().enumerate() {
        let rp = format!("spec.http[{i}]");
        if let Some(name) = &route.name {
            if vs.http[..i].iter().any(|r| r.name.as_ref() == Some(name)) {
                cx.error(&join(&rp, "name"), format!("duplicate route name {name:?}"));
            }
        }
        sticky_version(set, route, ns, &rp, cx);
        for (j, d) in route.route.iter().enumerate() {
            subset_defined(
                set,
                &d.destination,
                ns,
                cx,
                &format!("{rp}.route[{j}].destination.subset"),
            );
        }
        for (k, m) in route.mirrors.iter().enumerate() {
            // `mirror` (single) is normalised to mirrors[0].
            let mirror_path = join(&rp, "mirror");
            let path = if k == 0 && cx.index.contains(&mirror_path) {
                join(&mirror_path, "subset")
            } else {
                let k = if cx.index.contains(&mirror_path) {
                    k - 1
                } else {
                    k
                };
                format!("{rp}.mirrors[{k}].destination.subset")
            };
            subset_defined(set, &m.destination, ns, cx, &path);
        }
    }
}

/// A split route under a consistentHash: augur keeps each key on one destination (version),
/// which Istio's consistentHash does not do (it hashes among the endpoints of the destination
/// its weights picked). Warned, unless the DestinationRule says it is meant.
fn sticky_version(set: &PolicySet, route: &crate::HttpRoute, ns: &str, rp: &str, cx: &mut Ctx<'_>) {
    if route.route.len() < 2 {
        return;
    }
    let Some((dr, hash)) = set.hash_policy_for(route, ns) else {
        return;
    };
    let annotation = crate::STICKY_VERSION_ANNOTATION;
    if dr.metadata.annotations.get(annotation).map(String::as_str) == Some("true") {
        return;
    }
    cx.warn(
        &join(rp, "route"),
        format!(
            "DestinationRule {}/{} hashes on {}: in augur that keeps each key on one of these {} destinations (the version) as well as one endpoint, while Istio's consistentHash picks only the endpoint; annotate the DestinationRule {annotation}: \"true\" if that is meant",
            dr.metadata.namespace,
            dr.metadata.name,
            hash.key(),
            route.route.len()
        ),
    );
}

fn subset_defined(set: &PolicySet, d: &Destination, ns: &str, cx: &mut Ctx<'_>, path: &str) {
    let Some(subset) = &d.subset else { return };
    match set.destination_rule_for(&d.host, ns) {
        None => cx.error(
            path,
            format!(
                "subset {subset:?} is not defined: no DestinationRule for host {:?}",
                d.host
            ),
        ),
        Some(dr) if dr.subset(subset).is_none() => cx.error(
            path,
            format!(
                "subset {subset:?} is not defined by DestinationRule {}/{} for host {:?}",
                dr.metadata.namespace, dr.metadata.name, d.host
            ),
        ),
        Some(_) => {}
    }
}

fn canary(set: &PolicySet, i: usize, cx: &mut Ctx<'_>) {
    let cp = &set.canary_policies[i];
    let ns = &cp.metadata.namespace;
    let tr = &cp.traffic_routing;
    let vp = "spec.trafficRouting.virtualService";
    if tr.virtual_service.is_empty() {
        return;
    }
    let Some(vs) = set
        .virtual_services
        .iter()
        .find(|v| v.metadata.name == tr.virtual_service && &v.metadata.namespace == ns)
    else {
        cx.error(
            &join(vp, "name"),
            format!("VirtualService {ns}/{} does not exist", tr.virtual_service),
        );
        return;
    };
    for (k, name) in tr.routes.iter().enumerate() {
        let path = format!("{vp}.routes[{k}]");
        let Some(route) = vs
            .http
            .iter()
            .find(|r| r.name.as_deref() == Some(name.as_str()))
        else {
            cx.error(
                &path,
                format!(
                    "VirtualService {ns}/{} has no http route named {name:?}",
                    vs.metadata.name
                ),
            );
            continue;
        };
        let sides = std::iter::once(("stable", &cp.stable))
            .chain(cp.canary.as_ref().map(|c| ("canary", c)));
        for (which, d) in sides {
            if d.host.is_empty() {
                continue;
            }
            let found = route.route.iter().any(|r| {
                same_host(&r.destination.host, &vs.metadata.namespace, &d.host, ns)
                    && r.destination.subset == d.subset
            });
            if !found {
                cx.error(
                    &format!("spec.{which}"),
                    format!(
                        "route {name:?} of VirtualService {ns}/{} has no destination {}{}",
                        vs.metadata.name,
                        d.host,
                        d.subset
                            .as_ref()
                            .map(|s| format!(" subset {s}"))
                            .unwrap_or_default()
                    ),
                );
            }
        }
        for (j, other) in set.canary_policies[..i].iter().enumerate() {
            if other.metadata.namespace == *ns
                && other.traffic_routing.virtual_service == tr.virtual_service
                && other.traffic_routing.routes.contains(name)
            {
                cx.error(
                    &path,
                    format!(
                        "route {name:?} is already driven by CanaryPolicy {}/{} (#{j})",
                        ns, other.metadata.name
                    ),
                );
            }
        }
    }
    if let Strategy::BlueGreen(bg) = &cp.strategy {
        if let Some(preview) = &bg.preview_route {
            if !vs.http.iter().any(|r| r.name.as_ref() == Some(preview)) {
                cx.error(
                    "spec.blueGreen.previewRoute",
                    format!(
                        "VirtualService {ns}/{} has no http route named {preview:?}",
                        vs.metadata.name
                    ),
                );
            }
        }
    }
}
