//! The pure planner: [`CaptureOptions`] in, the nat rules out, in istio-iptables' order.
//!
//! The order follows `tools/istio-iptables/pkg/capture/run.go` (see
//! `shared/reference/istio-envoy.md` §2): chains, the tunnel-port RETURN, the two REDIRECT
//! chains, inbound capture from PREROUTING, then ISTIO_OUTPUT with the port exclusions first,
//! the 127.0.0.6 passthrough, the uid/gid loop avoidance, localhost, CIDR exclusions, port
//! inclusions and finally the CIDR (or catch-all) redirect. Rules are appended only, so the
//! rendered text can be fed to `iptables-restore --noflush` and diffed against goldens.
//!
//! Three deliberate differences from istio-iptables: `-k` and `-c` rules are appended to the
//! built-in chains before the ISTIO_INBOUND jump (Istio inserts them at position 1, which has
//! the same effect); the `RETURN` rules they put in PREROUTING and OUTPUT carry the comment
//! [`OWNER_COMMENT`], so that `augur init --cleanup` finds them whatever flags it is given (the
//! other rules there jump to an `ISTIO_` chain, which identifies them); and only IPv4
//! (`iptables`) rules are planned.

use std::fmt::Write as _;
use std::net::Ipv4Addr;

use super::options::{CaptureOptions, CidrSelection, PortSelection};

/// Chain receiving inbound traffic from PREROUTING.
pub const ISTIO_INBOUND: &str = "ISTIO_INBOUND";
/// Chain that redirects outbound traffic to the proxy port.
pub const ISTIO_REDIRECT: &str = "ISTIO_REDIRECT";
/// Chain that redirects inbound traffic to the inbound capture port.
pub const ISTIO_IN_REDIRECT: &str = "ISTIO_IN_REDIRECT";
/// Chain receiving locally generated traffic from OUTPUT.
pub const ISTIO_OUTPUT: &str = "ISTIO_OUTPUT";
/// The chains augur creates, in creation order.
pub const CHAINS: [&str; 4] = [
    ISTIO_INBOUND,
    ISTIO_REDIRECT,
    ISTIO_IN_REDIRECT,
    ISTIO_OUTPUT,
];

/// The comment on augur's rules in built-in chains that do not jump to an `ISTIO_` chain.
pub const OWNER_COMMENT: &str = "augur-init";

/// The address the proxy binds when it forwards inbound traffic to the app.
pub const INBOUND_PASSTHROUGH_SOURCE: &str = "127.0.0.6/32";
const LOCALHOST: &str = "127.0.0.1/32";

/// One rule appended to a chain of the nat table: `-A <chain> <args...>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule {
    /// The chain the rule is appended to.
    pub chain: String,
    /// The match and target arguments, as iptables takes them.
    pub args: Vec<String>,
}

impl Rule {
    fn new(chain: &str, args: &[&str]) -> Self {
        Self {
            chain: chain.to_string(),
            args: args.iter().map(|a| (*a).to_string()).collect(),
        }
    }

    /// True when the rule sits in a built-in chain (PREROUTING, OUTPUT), i.e. outside the
    /// chains that cleanup flushes and deletes.
    pub fn in_builtin_chain(&self) -> bool {
        !CHAINS.contains(&self.chain.as_str())
    }

    /// The rule as an `iptables-restore` line.
    pub fn to_line(&self) -> String {
        format!("-A {} {}", self.chain, self.args.join(" "))
    }
}

/// The nat table augur wants: chains to create and rules to append, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    /// User-defined chains to create (and flush).
    pub chains: Vec<String>,
    /// Rules, in application order.
    pub rules: Vec<Rule>,
}

impl Plan {
    /// The `iptables-restore --noflush` input for this plan.
    pub fn render(&self) -> String {
        let mut out = String::from("*nat\n");
        for chain in &self.chains {
            let _ = writeln!(out, ":{chain} - [0:0]");
        }
        for rule in &self.rules {
            out.push_str(&rule.to_line());
            out.push('\n');
        }
        out.push_str("COMMIT\n");
        out
    }

    /// The `iptables -t nat ...` argument lists that undo this plan: delete the jumps and
    /// exclusions in the built-in chains, then flush and delete augur's chains. Each command
    /// may fail when its rule or chain is already gone; callers ignore those failures.
    pub fn cleanup_commands(&self) -> Vec<Vec<String>> {
        let mut commands = Vec::new();
        for rule in self.rules.iter().filter(|r| r.in_builtin_chain()) {
            let mut args = vec!["-t".into(), "nat".into(), "-D".into(), rule.chain.clone()];
            args.extend(rule.args.iter().cloned());
            commands.push(args);
        }
        for flag in ["-F", "-X"] {
            for chain in &self.chains {
                commands.push(vec!["-t".into(), "nat".into(), flag.into(), chain.clone()]);
            }
        }
        commands
    }
}

/// Plans the nat rules for `opts`.
pub fn plan(opts: &CaptureOptions) -> Plan {
    let mut rules = Vec::new();
    let proxy_port = opts.proxy_port.to_string();
    let inbound_port = opts.inbound_capture_port.to_string();
    let tunnel_port = opts.inbound_tunnel_port.to_string();

    for iface in &opts.exclude_interfaces {
        rules.push(owned_return("PREROUTING", "-i", iface));
        rules.push(owned_return("OUTPUT", "-o", iface));
    }
    plan_reroute_interfaces(opts, &mut rules);

    rules.push(Rule::new(
        ISTIO_INBOUND,
        &["-p", "tcp", "--dport", &tunnel_port, "-j", "RETURN"],
    ));
    rules.push(Rule::new(
        ISTIO_REDIRECT,
        &["-p", "tcp", "-j", "REDIRECT", "--to-ports", &proxy_port],
    ));
    rules.push(Rule::new(
        ISTIO_IN_REDIRECT,
        &["-p", "tcp", "-j", "REDIRECT", "--to-ports", &inbound_port],
    ));
    plan_inbound(opts, &mut rules);
    rules.push(Rule::new("OUTPUT", &["-j", ISTIO_OUTPUT]));
    plan_outbound(opts, &tunnel_port, &mut rules);

    Plan {
        chains: CHAINS.iter().map(|c| (*c).to_string()).collect(),
        rules,
    }
}

/// `-A <chain> <-i|-o> <iface> -j RETURN`, marked as augur's for cleanup.
fn owned_return(chain: &str, direction: &str, iface: &str) -> Rule {
    Rule::new(
        chain,
        &[
            direction,
            iface,
            "-m",
            "comment",
            "--comment",
            OWNER_COMMENT,
            "-j",
            "RETURN",
        ],
    )
}

/// `-k`: traffic arriving on these interfaces is outbound traffic of a VM inside the pod.
fn plan_reroute_interfaces(opts: &CaptureOptions, rules: &mut Vec<Rule>) {
    for iface in &opts.reroute_interfaces {
        match &opts.outbound_ranges {
            CidrSelection::All => {
                rules.push(Rule::new(
                    "PREROUTING",
                    &["-i", iface, "-j", ISTIO_REDIRECT],
                ));
            }
            CidrSelection::List(cidrs) => {
                for cidr in cidrs {
                    let cidr = cidr.to_string();
                    rules.push(Rule::new(
                        "PREROUTING",
                        &["-i", iface, "-d", &cidr, "-j", ISTIO_REDIRECT],
                    ));
                }
                rules.push(owned_return("PREROUTING", "-i", iface));
            }
        }
    }
}

/// `-b`/`-d`: which inbound TCP ports go to the inbound capture port.
fn plan_inbound(opts: &CaptureOptions, rules: &mut Vec<Rule>) {
    if opts.inbound_ports.is_empty() {
        return;
    }
    rules.push(Rule::new("PREROUTING", &["-p", "tcp", "-j", ISTIO_INBOUND]));
    match &opts.inbound_ports {
        PortSelection::All => {
            for port in dedup(&opts.exclude_inbound_ports) {
                let port = port.to_string();
                rules.push(Rule::new(
                    ISTIO_INBOUND,
                    &["-p", "tcp", "--dport", &port, "-j", "RETURN"],
                ));
            }
            rules.push(Rule::new(
                ISTIO_INBOUND,
                &["-p", "tcp", "-j", ISTIO_IN_REDIRECT],
            ));
        }
        PortSelection::List(ports) => {
            for port in dedup(ports) {
                let port = port.to_string();
                rules.push(Rule::new(
                    ISTIO_INBOUND,
                    &["-p", "tcp", "--dport", &port, "-j", ISTIO_IN_REDIRECT],
                ));
            }
        }
    }
}

/// ISTIO_OUTPUT: exclusions first, loop avoidance, then what is captured.
fn plan_outbound(opts: &CaptureOptions, tunnel_port: &str, rules: &mut Vec<Rule>) {
    for port in dedup(&opts.exclude_outbound_ports) {
        let port = port.to_string();
        rules.push(Rule::new(
            ISTIO_OUTPUT,
            &["-p", "tcp", "--dport", &port, "-j", "RETURN"],
        ));
    }
    rules.push(Rule::new(
        ISTIO_OUTPUT,
        &["-o", "lo", "-s", INBOUND_PASSTHROUGH_SOURCE, "-j", "RETURN"],
    ));
    // When loopback itself is an included range, app->app traffic over lo is captured too.
    let includes_loopback = match &opts.outbound_ranges {
        CidrSelection::All => false,
        CidrSelection::List(cidrs) => cidrs.iter().any(|c| c.contains(Ipv4Addr::LOCALHOST)),
    };
    let owners = dedup(&opts.proxy_uids)
        .into_iter()
        .map(|id| ("--uid-owner", id))
        .chain(
            dedup(&opts.proxy_gids)
                .into_iter()
                .map(|id| ("--gid-owner", id)),
        );
    for (owner_flag, id) in owners {
        let id = id.to_string();
        // The proxy calling its own pod's address (app -> own VIP -> proxy out -> proxy in).
        rules.push(Rule::new(
            ISTIO_OUTPUT,
            &[
                "-o",
                "lo",
                "!",
                "-d",
                LOCALHOST,
                "-p",
                "tcp",
                "!",
                "--dport",
                tunnel_port,
                "-m",
                "owner",
                owner_flag,
                &id,
                "-j",
                ISTIO_IN_REDIRECT,
            ],
        ));
        if !includes_loopback {
            // App to app over lo is left alone.
            rules.push(Rule::new(
                ISTIO_OUTPUT,
                &[
                    "-o", "lo", "-m", "owner", "!", owner_flag, &id, "-j", "RETURN",
                ],
            ));
        }
        // Loop avoidance: the proxy's own traffic is never captured again.
        rules.push(Rule::new(
            ISTIO_OUTPUT,
            &["-m", "owner", owner_flag, &id, "-j", "RETURN"],
        ));
    }
    rules.push(Rule::new(ISTIO_OUTPUT, &["-d", LOCALHOST, "-j", "RETURN"]));
    for cidr in &opts.exclude_outbound_ranges {
        let cidr = cidr.to_string();
        rules.push(Rule::new(ISTIO_OUTPUT, &["-d", &cidr, "-j", "RETURN"]));
    }
    for port in dedup(&opts.include_outbound_ports) {
        let port = port.to_string();
        rules.push(Rule::new(
            ISTIO_OUTPUT,
            &["-p", "tcp", "--dport", &port, "-j", ISTIO_REDIRECT],
        ));
    }
    match &opts.outbound_ranges {
        CidrSelection::All => rules.push(Rule::new(ISTIO_OUTPUT, &["-j", ISTIO_REDIRECT])),
        CidrSelection::List(cidrs) => {
            for cidr in cidrs {
                let cidr = cidr.to_string();
                rules.push(Rule::new(
                    ISTIO_OUTPUT,
                    &["-d", &cidr, "-j", ISTIO_REDIRECT],
                ));
            }
        }
    }
}

/// Keeps the first occurrence of each item, in order.
fn dedup<T: PartialEq + Copy>(items: &[T]) -> Vec<T> {
    let mut out: Vec<T> = Vec::with_capacity(items.len());
    for item in items {
        if !out.contains(item) {
            out.push(*item);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_plan_captures_everything_but_the_proxy() {
        let text = plan(&CaptureOptions::default()).render();
        assert!(text.starts_with("*nat\n:ISTIO_INBOUND - [0:0]\n"));
        assert!(text.contains("-A PREROUTING -p tcp -j ISTIO_INBOUND\n"));
        assert!(text.contains("-A ISTIO_INBOUND -p tcp --dport 15021 -j RETURN\n"));
        assert!(text.contains("-A ISTIO_OUTPUT -m owner --uid-owner 1337 -j RETURN\n"));
        assert!(text.contains("-A ISTIO_OUTPUT -m owner --gid-owner 1337 -j RETURN\n"));
        assert!(text.ends_with("-A ISTIO_OUTPUT -j ISTIO_REDIRECT\nCOMMIT\n"));
    }

    #[test]
    fn cleanup_deletes_jumps_then_chains() {
        let commands = plan(&CaptureOptions::default()).cleanup_commands();
        let joined: Vec<String> = commands.iter().map(|c| c.join(" ")).collect();
        assert_eq!(joined[0], "-t nat -D PREROUTING -p tcp -j ISTIO_INBOUND");
        assert_eq!(joined[1], "-t nat -D OUTPUT -j ISTIO_OUTPUT");
        assert_eq!(
            joined.last().map(String::as_str),
            Some("-t nat -X ISTIO_OUTPUT")
        );
        assert_eq!(joined.len(), 2 + 8);
    }
}
