//! A Kubernetes cluster simulated honestly on one machine: network namespaces as pods, routed
//! through a "node" namespace as a CNI like Calico routes them (a /32 per pod, the node as
//! every pod's gateway), and Services as kube-proxy programs them in iptables mode (a DNAT per
//! endpoint, chosen with `-m statistic --mode random`). Pods run real processes; sidecars run
//! under the real capture rules of `augur init`.

use std::net::Ipv4Addr;
use std::path::Path;
use std::time::Duration;

use crate::netns::{as_1337, curl, must, must_in, spawn_logged, Netns, Running};
use crate::wait_for;

/// The pods' gateway: the node's address on every pod link.
pub const GATEWAY: Ipv4Addr = Ipv4Addr::new(10, 88, 0, 1);

/// A simulated node: the namespace that routes between pods and holds kube-proxy's rules.
pub struct Cluster {
    tag: String,
    node: Netns,
    next_host: u8,
}

/// A pod: a namespace with one address, its default route through the node.
pub struct Pod {
    /// The pod's name (for messages).
    pub name: String,
    /// Its address.
    pub ip: Ipv4Addr,
    ns: Netns,
    /// The node's end of its link, and the node's namespace.
    link: (String, String),
}

impl Pod {
    /// The pod's network namespace, for `ip netns exec`.
    pub fn ns(&self) -> &str {
        self.ns.name()
    }

    /// Cuts the pod off the node (its link down, as a partition would) or joins it again.
    pub fn set_link(&self, up: bool) {
        let (outside, node) = &self.link;
        let state = if up { "up" } else { "down" };
        must(&["ip", "-n", node, "link", "set", outside, state]);
        if up {
            // Bringing a link up drops its routes: the pod's /32 goes back.
            let cidr = format!("{}/32", self.ip);
            must(&["ip", "-n", node, "route", "replace", &cidr, "dev", outside]);
        }
    }
}

impl Cluster {
    /// A node with no pods. `tag` keeps the names of clusters of tests running side by side
    /// apart.
    pub fn new(tag: &str) -> Self {
        let tag = format!("{}{tag}", std::process::id());
        let node = Netns::create(&format!("augnode{tag}"));
        must_in(node.name(), &["sysctl", "-qw", "net.ipv4.ip_forward=1"]);
        // kube-proxy's entry chain, for forwarded pod traffic and the node's own.
        must_in(
            node.name(),
            &["iptables", "-t", "nat", "-N", "KUBE-SERVICES"],
        );
        for hook in ["PREROUTING", "OUTPUT"] {
            must_in(
                node.name(),
                &["iptables", "-t", "nat", "-A", hook, "-j", "KUBE-SERVICES"],
            );
        }
        Self {
            tag,
            node,
            next_host: 2,
        }
    }

    /// The node's namespace (where Prometheus runs and every pod is reachable).
    pub fn node(&self) -> &str {
        self.node.name()
    }

    /// A new pod, reachable from every other pod and from the node.
    pub fn pod(&mut self, name: &str) -> Pod {
        let host = self.next_host;
        self.next_host = self.next_host.checked_add(1).expect("at most 253 pods");
        let ip = Ipv4Addr::new(10, 88, 0, host);
        let ns = Netns::create(&format!("aug{host}{}", self.tag));
        let (outside, inside) = (
            format!("vn{host}{}", self.tag),
            format!("vp{host}{}", self.tag),
        );
        must(&[
            "ip", "link", "add", &outside, "type", "veth", "peer", "name", &inside,
        ]);
        must(&["ip", "link", "set", &outside, "netns", self.node.name()]);
        must(&["ip", "link", "set", &inside, "netns", ns.name()]);
        let node = self.node.name();
        let (pod_cidr, gateway) = (format!("{ip}/32"), GATEWAY.to_string());
        must(&[
            "ip",
            "-n",
            ns.name(),
            "link",
            "set",
            &inside,
            "name",
            "eth0",
        ]);
        must(&[
            "ip",
            "-n",
            ns.name(),
            "addr",
            "add",
            &pod_cidr,
            "dev",
            "eth0",
        ]);
        must(&["ip", "-n", ns.name(), "link", "set", "eth0", "up"]);
        must(&[
            "ip",
            "-n",
            ns.name(),
            "route",
            "add",
            &gateway,
            "dev",
            "eth0",
        ]);
        must(&[
            "ip",
            "-n",
            ns.name(),
            "route",
            "add",
            "default",
            "via",
            &gateway,
            "dev",
            "eth0",
        ]);
        must(&[
            "ip",
            "-n",
            node,
            "addr",
            "add",
            &format!("{gateway}/32"),
            "dev",
            &outside,
        ]);
        must(&["ip", "-n", node, "link", "set", &outside, "up"]);
        must(&["ip", "-n", node, "route", "add", &pod_cidr, "dev", &outside]);
        Pod {
            name: name.to_owned(),
            ip,
            ns,
            link: (outside, node.to_owned()),
        }
    }

    /// Programs Service `name` as kube-proxy does: connections to `vip:port` go to one of
    /// `endpoints` (pod address and target port), each with equal probability. Calling it
    /// again replaces the endpoints.
    pub fn service(&self, name: &str, vip: Ipv4Addr, port: u16, endpoints: &[(Ipv4Addr, u16)]) {
        let node = self.node.name();
        let chain = format!("KUBE-SVC-{}", name.to_ascii_uppercase());
        let exists = std::process::Command::new("ip")
            .args(["netns", "exec", node, "iptables", "-t", "nat", "-L", &chain])
            .output()
            .is_ok_and(|o| o.status.success());
        if exists {
            must_in(node, &["iptables", "-t", "nat", "-F", &chain]);
        } else {
            must_in(node, &["iptables", "-t", "nat", "-N", &chain]);
            let (dst, dport) = (format!("{vip}/32"), port.to_string());
            must_in(
                node,
                &[
                    "iptables",
                    "-t",
                    "nat",
                    "-A",
                    "KUBE-SERVICES",
                    "-d",
                    &dst,
                    "-p",
                    "tcp",
                    "--dport",
                    &dport,
                    "-j",
                    &chain,
                ],
            );
        }
        let n = endpoints.len();
        for (i, (ip, target)) in endpoints.iter().enumerate() {
            let to = format!("{ip}:{target}");
            let mut rule = vec!["iptables", "-t", "nat", "-A", &chain];
            // kube-proxy's pattern: the i-th of n endpoints is taken with probability
            // 1/(n-i), the last one always, which makes every endpoint equally likely.
            let probability = format!("{:.5}", 1.0 / (n - i) as f64);
            if i + 1 < n {
                rule.extend([
                    "-m",
                    "statistic",
                    "--mode",
                    "random",
                    "--probability",
                    &probability,
                ]);
            }
            rule.extend(["-p", "tcp", "-j", "DNAT", "--to-destination", &to]);
            must_in(node, &rule);
        }
    }
}

/// The ports `augur init` leaves uncaptured in a pod: the sidecar's Prometheus, status and
/// health ports, as Istio's injector excludes them.
const EXCLUDED_INBOUND: &str = "15090,15021,15020";

impl Pod {
    /// Injects a sidecar as Kubernetes would: the capture rules of `augur init` (all outbound
    /// and inbound TCP, uid 1337 exempt), then `augur proxy` as uid 1337 with its capture
    /// listeners, admin on 127.0.0.1:15000, Prometheus on :15090, its state and logs under
    /// `dir` (made world-writable for uid 1337), and `extra` arguments. Returns once it is
    /// ready.
    pub fn sidecar(&self, dir: &Path, extra: &[&str]) -> Running {
        let augur = crate::augur::bin();
        let augur = augur.to_str().expect("utf-8");
        must_in(
            self.ns(),
            &[
                augur,
                "init",
                "-p",
                "15001",
                "-z",
                "15006",
                "-u",
                "1337",
                "-g",
                "1337",
                "-m",
                "REDIRECT",
                "-i",
                "*",
                "-b",
                "*",
                "-d",
                EXCLUDED_INBOUND,
            ],
        );
        let state = dir.join(format!("{}-state", self.name));
        std::fs::create_dir_all(&state).expect("state dir");
        must(&["chmod", "-R", "0777", dir.to_str().expect("utf-8")]);
        let state = state.to_str().expect("utf-8").to_owned();
        let mut args = vec![
            augur,
            "proxy",
            "--outbound-capture",
            "0.0.0.0:15001",
            "--inbound-capture",
            "0.0.0.0:15006",
            "--admin",
            "127.0.0.1:15000",
            "--status",
            "0.0.0.0:15021",
            "--prometheus",
            "0.0.0.0:15090",
            "--state-dir",
            &state,
        ];
        args.extend_from_slice(extra);
        let log = dir.join(format!("{}-augur.log", self.name));
        let running = spawn_logged(self.ns(), &as_1337(&args), Some(&log));
        wait_for(
            &format!("the sidecar of {} (log: {})", self.name, log.display()),
            Duration::from_secs(20),
            || curl(self.ns(), "http://127.0.0.1:15021/healthz/ready", None),
        );
        running
    }

    /// The pod's sidecar metrics (Prometheus text), empty when it does not answer.
    pub fn sidecar_metrics(&self) -> String {
        curl(self.ns(), "http://127.0.0.1:15090/stats/prometheus", None).unwrap_or_default()
    }
}
