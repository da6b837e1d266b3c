//! What the built manifests (`kubectl kustomize k8s/base`) mean for the fleet (issue 16 §1 and
//! §6), checked on the objects themselves: who the Services select, what the injector gives the
//! stable and canary pods (with the shipped injector configuration), where the controller keeps
//! its state, and what its NetworkPolicy lets through. Needs kubectl from `k8s/setup.sh`;
//! without it these tests FAIL (they never skip).

use std::collections::BTreeMap;
use std::process::Command;

use augur_k8s::inject::{inject, yaml, InjectConfig};
use serde_json::{json, Value};

/// Every object of the base kustomization.
fn built() -> Vec<Value> {
    let dir = env!("CARGO_MANIFEST_DIR");
    let kubectl = format!("{dir}/.venv/bin/kubectl");
    let out = Command::new(&kubectl)
        .args(["kustomize", &format!("{dir}/base")])
        .output()
        .unwrap_or_else(|e| panic!("{kubectl}: {e} (run k8s/setup.sh)"));
    assert!(
        out.status.success(),
        "kubectl kustomize: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    yaml::parse_documents(&String::from_utf8_lossy(&out.stdout)).expect("built YAML")
}

fn find<'a>(objects: &'a [Value], kind: &str, namespace: &str, name: &str) -> &'a Value {
    objects
        .iter()
        .find(|o| {
            o["kind"] == kind && o["metadata"]["name"] == name && {
                let ns = o["metadata"]["namespace"].as_str().unwrap_or_default();
                ns == namespace
            }
        })
        .unwrap_or_else(|| panic!("no {kind} {namespace}/{name} in the build"))
}

/// Whether a `matchLabels`-style map (or a Service selector) selects `labels`.
fn selects(selector: &Value, labels: &Value) -> bool {
    let Some(selector) = selector.as_object() else {
        return false;
    };
    !selector.is_empty() && selector.iter().all(|(k, v)| labels.get(k) == Some(v))
}

/// `metadata.name` of the Deployments in `namespace` whose pods `selector` selects.
fn selected_deployments(objects: &[Value], namespace: &str, selector: &Value) -> Vec<String> {
    objects
        .iter()
        .filter(|o| o["kind"] == "Deployment" && o["metadata"]["namespace"] == namespace)
        .filter(|d| selects(selector, &d["spec"]["template"]["metadata"]["labels"]))
        .map(|d| {
            d["metadata"]["name"]
                .as_str()
                .unwrap_or_default()
                .to_string()
        })
        .collect()
}

/// The value after `name` in a container's args.
fn flag<'a>(container: &'a Value, name: &str) -> Option<&'a str> {
    let args = container["args"].as_array()?;
    let at = args.iter().position(|a| a == name)?;
    args.get(at + 1)?.as_str()
}

/// The one policy file of a ConfigMap, parsed.
fn policy_documents(config_map: &Value) -> Vec<Value> {
    let data = config_map["data"].as_object().expect("ConfigMap data");
    assert_eq!(data.len(), 1, "one policy file");
    let text = data.values().next().and_then(Value::as_str).expect("text");
    yaml::parse_documents(text).expect("policy YAML")
}

fn canary_policy(documents: &[Value]) -> &Value {
    documents
        .iter()
        .find(|d| d["kind"] == "CanaryPolicy")
        .expect("a CanaryPolicy")
}

fn proxy_of(template: &Value) -> &Value {
    ["initContainers", "containers"]
        .iter()
        .filter_map(|list| template["spec"][list].as_array())
        .flatten()
        .find(|c| c["name"] == "istio-proxy")
        .expect("an istio-proxy container")
}

#[test]
fn the_model_service_selects_only_the_stable_pods_and_the_canary_has_its_own() {
    let objects = built();
    let selector =
        |name: &str| find(&objects, "Service", "models", name)["spec"]["selector"].clone();
    assert_eq!(
        selected_deployments(&objects, "models", &selector("pneumonia")),
        vec!["pneumonia-stable"]
    );
    assert_eq!(
        selected_deployments(&objects, "models", &selector("pneumonia-canary")),
        vec!["pneumonia-canary"]
    );

    // The policy splits inbound, from the Service clients call to the canary's Service, on
    // the port that Service serves.
    let documents = policy_documents(find(&objects, "ConfigMap", "models", "pneumonia-policy"));
    let spec = &canary_policy(&documents)["spec"];
    assert_eq!(spec["trafficRouting"]["sidecar"], "inbound");
    assert_eq!(spec["stable"]["host"], "pneumonia");
    assert_eq!(spec["canary"]["host"], "pneumonia-canary");
    let canary_port =
        &find(&objects, "Service", "models", "pneumonia-canary")["spec"]["ports"][0]["port"];
    let vs = documents
        .iter()
        .find(|d| d["kind"] == "VirtualService")
        .expect("VirtualService");
    let to_canary = vs["spec"]["http"][0]["route"]
        .as_array()
        .and_then(|r| {
            r.iter()
                .find(|d| d["destination"]["host"] == "pneumonia-canary")
        })
        .expect("a canary destination");
    assert_eq!(&to_canary["destination"]["port"]["number"], canary_port);
    for doc in &documents {
        assert_eq!(doc["metadata"]["namespace"], "models", "{doc}");
    }
}

#[test]
fn only_the_stable_sidecars_get_the_policy_and_the_shadow_model_and_follow_the_controller() {
    let objects = built();
    let injector = find(&objects, "ConfigMap", "augur-system", "augur-injector");
    let cfg: InjectConfig =
        serde_yaml_ng::from_str(injector["data"]["config.yaml"].as_str().expect("config"))
            .expect("the shipped injector configuration");
    let service = find(&objects, "Service", "augur-system", "augur-controller");
    let port = service["spec"]["ports"]
        .as_array()
        .and_then(|ps| ps.iter().find(|p| p["name"] == "http-controller"))
        .expect("the controller port")["port"]
        .clone();
    let controller_deployment = find(&objects, "Deployment", "augur-system", "augur-controller");
    let token_ref = &controller_deployment["spec"]["template"]["spec"]["containers"][0]["env"]
        .as_array()
        .and_then(|e| e.iter().find(|e| e["name"] == "AUGUR_CONTROLLER_TOKEN"))
        .expect("the controller's token")["valueFrom"];

    let injected = |name: &str| {
        let deployment = find(&objects, "Deployment", "models", name);
        inject(deployment, &cfg).expect("inject").object["spec"]["template"].clone()
    };
    let policy_volume = |template: &Value| {
        template["spec"]["volumes"]
            .as_array()
            .and_then(|vs| vs.iter().find(|v| v["name"] == "augur-policy"))
            .cloned()
            .expect("the policy volume")
    };
    let token_env = |proxy: &Value| {
        proxy["env"]
            .as_array()
            .and_then(|e| e.iter().find(|e| e["name"] == "AUGUR_CONTROLLER_TOKEN"))
            .map(|e| e["valueFrom"].clone())
    };

    let stable = injected("pneumonia-stable");
    let proxy = proxy_of(&stable);
    assert_eq!(
        flag(proxy, "--controller"),
        Some(format!("http://augur-controller.augur-system.svc:{port}").as_str())
    );
    assert_eq!(
        token_env(proxy).as_ref(),
        Some(token_ref),
        "the controller's Secret"
    );
    let map = policy_volume(&stable)["configMap"]["name"].clone();
    let documents = policy_documents(find(
        &objects,
        "ConfigMap",
        "models",
        map.as_str().expect("name"),
    ));
    // The shadow model file the policy names lies under a mount of a volume the pod declares.
    let model = canary_policy(&documents)["spec"]["shadow"]["model"]
        .as_str()
        .expect("shadow.model")
        .to_string();
    let declared: Vec<&Value> = stable["spec"]["volumes"]
        .as_array()
        .expect("volumes")
        .iter()
        .map(|v| &v["name"])
        .collect();
    assert!(
        proxy["volumeMounts"]
            .as_array()
            .expect("mounts")
            .iter()
            .any(|m| {
                let dir = m["mountPath"].as_str().unwrap_or_default();
                model.starts_with(&format!("{dir}/")) && declared.contains(&&m["name"])
            }),
        "{model} is not under a mounted volume: {}",
        proxy["volumeMounts"]
    );

    let canary = injected("pneumonia-canary");
    let proxy = proxy_of(&canary);
    assert_eq!(
        policy_volume(&canary),
        json!({"name": "augur-policy", "emptyDir": {}})
    );
    assert_eq!(flag(proxy, "--controller"), None);
    assert_eq!(token_env(proxy), None);
    assert!(!proxy["volumeMounts"].to_string().contains("shadow"));
}

#[test]
fn the_controller_keeps_its_state_on_one_read_write_once_claim() {
    let objects = built();
    let deployment = find(&objects, "Deployment", "augur-system", "augur-controller");
    assert_eq!(deployment["spec"]["replicas"], 1);
    assert_eq!(deployment["spec"]["strategy"]["type"], "Recreate");
    let pod = &deployment["spec"]["template"];
    let container = &pod["spec"]["containers"][0];
    let args: Vec<&str> = container["args"]
        .as_array()
        .expect("args")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert_eq!(
        args,
        [
            "controller",
            "--policy",
            "/etc/augur/policy",
            "--state-dir",
            "/var/lib/augur",
            "--listen",
            "0.0.0.0:15010",
            "--admin",
            "127.0.0.1:15000",
            "--prometheus",
            "0.0.0.0:15014"
        ]
    );
    let volume_at = |path: &str| -> Value {
        let mount = container["volumeMounts"]
            .as_array()
            .and_then(|ms| ms.iter().find(|m| m["mountPath"] == path))
            .unwrap_or_else(|| panic!("nothing mounted at {path}"));
        pod["spec"]["volumes"]
            .as_array()
            .and_then(|vs| vs.iter().find(|v| v["name"] == mount["name"]))
            .cloned()
            .expect("the mounted volume")
    };
    let state = volume_at(flag(container, "--state-dir").expect("--state-dir"));
    let claim = state["persistentVolumeClaim"]["claimName"]
        .as_str()
        .expect("a PersistentVolumeClaim");
    let pvc = find(&objects, "PersistentVolumeClaim", "augur-system", claim);
    assert_eq!(pvc["spec"]["accessModes"], json!(["ReadWriteOnce"]));

    // The policy it runs is the one the stable sidecars split with.
    let policy = volume_at(flag(container, "--policy").expect("--policy"));
    let map = find(
        &objects,
        "ConfigMap",
        "augur-system",
        policy["configMap"]["name"].as_str().expect("a ConfigMap"),
    );
    assert_eq!(
        map["data"],
        find(&objects, "ConfigMap", "models", "pneumonia-policy")["data"]
    );

    // Ready when its state is loaded, on its listener.
    let listen_port: u16 = flag(container, "--listen")
        .and_then(|l| l.rsplit(':').next()?.parse().ok())
        .expect("--listen port");
    assert_eq!(
        container["readinessProbe"]["httpGet"],
        json!({"path": "/ready", "port": listen_port})
    );
    // Hardened like the injector.
    assert_eq!(pod["spec"]["securityContext"]["runAsNonRoot"], true);
    assert_eq!(pod["spec"]["automountServiceAccountToken"], false);
    let sc = &container["securityContext"];
    assert_eq!(sc["readOnlyRootFilesystem"], true);
    assert_eq!(sc["allowPrivilegeEscalation"], false);
    assert_eq!(sc["capabilities"]["drop"], json!(["ALL"]));
    // Never injected: it serves no traffic.
    assert_eq!(pod["metadata"]["annotations"]["augur.dev/inject"], "false");

    let pdb = find(
        &objects,
        "PodDisruptionBudget",
        "augur-system",
        "augur-controller",
    );
    assert!(selects(
        &pdb["spec"]["selector"]["matchLabels"],
        &pod["metadata"]["labels"]
    ));
}

/// A peer of a NetworkPolicy rule: namespace labels and pod labels.
struct Peer {
    namespace: Value,
    pod: Value,
}

fn peer_matches(rule_peer: &Value, policy_namespace: &str, peer: &Peer) -> bool {
    let ns_ok = match rule_peer.get("namespaceSelector") {
        Some(sel) => selects(&sel["matchLabels"], &peer.namespace),
        None => peer.namespace["kubernetes.io/metadata.name"] == policy_namespace,
    };
    let pod_ok = match rule_peer.get("podSelector") {
        Some(sel) => selects(&sel["matchLabels"], &peer.pod),
        None => rule_peer.get("namespaceSelector").is_some(),
    };
    ns_ok && pod_ok
}

/// Whether a NetworkPolicy's `ingress` or `egress` rules let `peer` through on `port`.
fn allows(policy: &Value, direction: &str, peer: &Peer, protocol: &str, port: u16) -> bool {
    let namespace = policy["metadata"]["namespace"].as_str().unwrap_or_default();
    let key = if direction == "ingress" { "from" } else { "to" };
    policy["spec"][direction]
        .as_array()
        .into_iter()
        .flatten()
        .any(|rule| {
            let peers_ok = rule[key]
                .as_array()
                .is_none_or(|ps| ps.iter().any(|p| peer_matches(p, namespace, peer)));
            let ports_ok = rule["ports"].as_array().is_none_or(|ps| {
                ps.iter().any(|p| {
                    p["port"] == port && p["protocol"].as_str().unwrap_or("TCP") == protocol
                })
            });
            peers_ok && ports_ok
        })
}

/// A namespace's labels as the API server sets them (it adds kubernetes.io/metadata.name).
fn namespace_labels(objects: &[Value], name: &str) -> Value {
    let mut labels: BTreeMap<String, Value> = objects
        .iter()
        .find(|o| o["kind"] == "Namespace" && o["metadata"]["name"] == name)
        .and_then(|n| n["metadata"]["labels"].as_object())
        .map(|m| m.clone().into_iter().collect())
        .unwrap_or_default();
    labels.insert("kubernetes.io/metadata.name".into(), json!(name));
    json!(labels)
}

#[test]
fn the_controller_admits_the_sidecars_and_monitoring_and_reaches_only_dns_and_prometheus() {
    let objects = built();
    let policy = find(
        &objects,
        "NetworkPolicy",
        "augur-system",
        "augur-controller",
    );
    let controller = find(&objects, "Deployment", "augur-system", "augur-controller");
    assert!(selects(
        &policy["spec"]["podSelector"]["matchLabels"],
        &controller["spec"]["template"]["metadata"]["labels"]
    ));
    let sidecar = Peer {
        namespace: namespace_labels(&objects, "models"),
        pod: find(&objects, "Deployment", "models", "pneumonia-stable")["spec"]["template"]
            ["metadata"]["labels"]
            .clone(),
    };
    let prometheus = Peer {
        namespace: namespace_labels(&objects, "monitoring"),
        pod: json!({"app.kubernetes.io/name": "prometheus"}),
    };
    let stranger = Peer {
        namespace: namespace_labels(&objects, "default"),
        pod: json!({"app": "curl"}),
    };
    let dns = Peer {
        namespace: namespace_labels(&objects, "kube-system"),
        pod: json!({"k8s-app": "kube-dns"}),
    };

    assert!(allows(policy, "ingress", &sidecar, "TCP", 15010));
    assert!(!allows(policy, "ingress", &sidecar, "TCP", 15014));
    assert!(allows(policy, "ingress", &prometheus, "TCP", 15014));
    assert!(!allows(policy, "ingress", &prometheus, "TCP", 15010));
    for port in [15010, 15014, 15000] {
        assert!(!allows(policy, "ingress", &stranger, "TCP", port), "{port}");
    }
    assert!(
        !allows(policy, "ingress", &sidecar, "TCP", 15000),
        "admin is loopback"
    );

    assert!(allows(policy, "egress", &dns, "UDP", 53));
    assert!(allows(policy, "egress", &dns, "TCP", 53));
    assert!(allows(policy, "egress", &prometheus, "TCP", 9090));
    assert!(!allows(policy, "egress", &sidecar, "TCP", 8501));
    assert!(!allows(policy, "egress", &stranger, "TCP", 443));
}

#[test]
fn prometheus_scrapes_the_controllers_metrics_port() {
    let objects = built();
    let monitor = find(
        &objects,
        "ServiceMonitor",
        "augur-system",
        "augur-controller",
    );
    let service = find(&objects, "Service", "augur-system", "augur-controller");
    assert!(selects(
        &monitor["spec"]["selector"]["matchLabels"],
        &service["metadata"]["labels"]
    ));
    let port_name = &monitor["spec"]["endpoints"][0]["port"];
    let port = service["spec"]["ports"]
        .as_array()
        .and_then(|ps| ps.iter().find(|p| &p["name"] == port_name))
        .expect("the scraped port on the Service");
    let controller = &find(&objects, "Deployment", "augur-system", "augur-controller")["spec"]
        ["template"]["spec"]["containers"][0];
    let metrics_port: u16 = flag(controller, "--prometheus")
        .and_then(|l| l.rsplit(':').next()?.parse().ok())
        .expect("--prometheus port");
    assert_eq!(port["targetPort"], metrics_port);
}
