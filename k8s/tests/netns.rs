//! The capture rules against the real kernel: two network namespaces joined by a veth pair,
//! augur's planned rules applied in the "pod" namespace through the same adapter `augur init`
//! uses, tiny TCP servers that answer with the name of the port that accepted, and clients
//! (`bash`'s `/dev/tcp`) run in either namespace, as root or as uid 1337.
//!
//! A second test installs rules through `augur init`'s own entry point with one set of flags and
//! removes them with `augur init --cleanup` given none, or different ones.
//!
//! Needs root and `ip netns`. When `ip netns add` fails, a test prints why and passes, except
//! in CI (the environment variable `CI` set, as `scripts/test.sh` does): CI runs as root, so
//! there the test fails instead of passing without testing anything. Nothing outside the
//! namespaces it creates is touched or contacted.

mod common;

use std::fs::File;
use std::io::Write as _;
use std::net::TcpListener;
use std::process::Command;
use std::sync::mpsc;

use augur_k8s::iptables::{plan, run_init, CaptureOptions, InitArgs, Iptables};
use clap::Parser;

const POD_IP: &str = "10.213.0.1";
const PEER_IP: &str = "10.213.0.2";

/// A network namespace deleted on drop.
struct Netns(String);

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.0]).status();
    }
}

/// Creates the network namespace `name`, or says why it cannot and returns `None` (the caller
/// skips its test); in CI that is a failure.
fn netns_or_skip(name: &str) -> Option<Netns> {
    match run(&["ip", "netns", "add", name]) {
        Ok(_) => Some(Netns(name.to_owned())),
        Err(e) if in_ci() => {
            panic!("cannot create a network namespace, and CI must run this test as root: {e}")
        }
        Err(e) => {
            println!("SKIPPED: cannot create a network namespace (needs root and iproute2): {e}");
            None
        }
    }
}

/// Whether this is a CI run: `CI` set to anything but empty, `0` or `false`.
fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| !matches!(v.trim(), "" | "0" | "false"))
}

fn run(args: &[&str]) -> Result<String, String> {
    let out = Command::new(args[0])
        .args(&args[1..])
        .output()
        .map_err(|e| format!("{args:?}: {e}"))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(format!(
            "{args:?}: {}: {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

fn must(args: &[&str]) -> String {
    run(args).unwrap_or_else(|e| panic!("{e}"))
}

/// Serves `label` on `port` inside namespace `ns`, from a thread that joined it.
fn serve(ns: &str, port: u16, label: String) {
    let (ready_tx, ready_rx) = mpsc::channel();
    let path = format!("/run/netns/{ns}");
    std::thread::spawn(move || {
        let joined = File::open(&path).map_err(|e| e.to_string()).and_then(|f| {
            nix::sched::setns(&f, nix::sched::CloneFlags::CLONE_NEWNET).map_err(|e| e.to_string())
        });
        let listener =
            joined.and_then(|()| TcpListener::bind(("0.0.0.0", port)).map_err(|e| e.to_string()));
        let listener = match listener {
            Ok(l) => {
                let _ = ready_tx.send(Ok(()));
                l
            }
            Err(e) => {
                let _ = ready_tx.send(Err(e));
                return;
            }
        };
        for mut stream in listener.incoming().flatten() {
            let _ = stream.write_all(label.as_bytes());
        }
    });
    ready_rx
        .recv()
        .expect("server thread")
        .unwrap_or_else(|e| panic!("serve {port} in {ns}: {e}"));
}

/// Connects from namespace `ns` (as `uid` when given) and returns what the server said.
fn connect(ns: &str, uid: Option<u32>, ip: &str, port: u16) -> String {
    let script = format!("cat < /dev/tcp/{ip}/{port}");
    let mut argv: Vec<String> = ["ip", "netns", "exec", ns].map(String::from).to_vec();
    if let Some(uid) = uid {
        argv.extend([
            "setpriv".into(),
            format!("--reuid={uid}"),
            format!("--regid={uid}"),
            "--clear-groups".into(),
        ]);
    }
    argv.extend(["timeout", "5", "bash", "-c", &script].map(String::from));
    let refs: Vec<&str> = argv.iter().map(String::as_str).collect();
    run(&refs).unwrap_or_else(|e| format!("<{e}>"))
}

#[test]
fn planned_rules_capture_and_spare_the_right_traffic() {
    let pid = std::process::id();
    let (pod, peer) = (format!("augur-{pid}-pod"), format!("augur-{pid}-peer"));
    let Some(pod_ns) = netns_or_skip(&pod) else {
        return;
    };
    must(&["ip", "netns", "add", &peer]);
    let peer_ns = Netns(peer.clone());
    must(&[
        "ip", "-n", &pod, "link", "add", "va", "type", "veth", "peer", "name", "vb", "netns", &peer,
    ]);
    for (ns, dev, ip) in [(&pod, "va", POD_IP), (&peer, "vb", PEER_IP)] {
        must(&[
            "ip",
            "-n",
            ns,
            "addr",
            "add",
            &format!("{ip}/24"),
            "dev",
            dev,
        ]);
        must(&["ip", "-n", ns, "link", "set", dev, "up"]);
        must(&["ip", "-n", ns, "link", "set", "lo", "up"]);
    }

    // The injected sidecar's capture, plus one excluded inbound and one excluded outbound port.
    let mut options = CaptureOptions::default();
    options.exclude_inbound_ports.push(8081);
    options.exclude_outbound_ports.push(9000);
    let planned = plan(&options);
    let prefix = ["ip", "netns", "exec", &pod].map(String::from).to_vec();
    let iptables = Iptables::new(None, prefix).expect("iptables backend");
    iptables.apply(&planned).expect("apply rules");
    iptables.apply(&planned).expect("apply rules again");
    let nat = iptables.save_nat().expect("iptables-save");
    assert_eq!(
        nat.matches("-A PREROUTING -p tcp -j ISTIO_INBOUND").count(),
        1,
        "applying twice must not duplicate the jumps:\n{nat}"
    );

    for port in [15001, 15006, 8080, 8081, 15021] {
        serve(&pod, port, format!("pod:{port}"));
    }
    for port in [8080, 9000] {
        serve(&peer, port, format!("peer:{port}"));
    }

    let cases = [
        (
            "inbound to the app port",
            &peer,
            None,
            POD_IP,
            8080,
            "pod:15006",
        ),
        (
            "inbound to an excluded port",
            &peer,
            None,
            POD_IP,
            8081,
            "pod:8081",
        ),
        (
            "inbound to the status port",
            &peer,
            None,
            POD_IP,
            15021,
            "pod:15021",
        ),
        (
            "outbound from the app",
            &pod,
            None,
            PEER_IP,
            8080,
            "pod:15001",
        ),
        (
            "outbound to an excluded port",
            &pod,
            None,
            PEER_IP,
            9000,
            "peer:9000",
        ),
        (
            "outbound from uid 1337",
            &pod,
            Some(1337),
            PEER_IP,
            8080,
            "peer:8080",
        ),
        (
            "app to localhost",
            &pod,
            None,
            "127.0.0.1",
            8080,
            "pod:8080",
        ),
    ];
    let mut failures = Vec::new();
    for (what, ns, uid, ip, port, want) in cases {
        let got = connect(ns, uid, ip, port);
        if got != want {
            failures.push(format!(
                "{what}: {ip}:{port} answered {got:?}, want {want:?}"
            ));
        }
    }

    iptables.cleanup(Some(&planned)).expect("cleanup");
    let after = iptables.save_nat().expect("iptables-save");
    assert!(!after.contains("ISTIO_"), "cleanup left rules:\n{after}");
    drop((pod_ns, peer_ns));
    assert!(
        failures.is_empty(),
        "{}\nrules:\n{nat}",
        failures.join("\n")
    );
}

#[derive(Parser)]
struct Init {
    #[command(flatten)]
    args: InitArgs,
}

/// Runs `augur init <flags>` (its real entry point, [`run_init`]) inside namespace `ns`: from a
/// thread that joined it, so the iptables processes it starts run there too.
fn init_in(ns: &str, flags: &[&str]) -> Result<(), String> {
    let mut argv = vec!["init".to_string()];
    argv.extend(flags.iter().map(|f| (*f).to_string()));
    let path = format!("/run/netns/{ns}");
    std::thread::spawn(move || {
        let netns = File::open(&path).map_err(|e| e.to_string())?;
        nix::sched::setns(&netns, nix::sched::CloneFlags::CLONE_NEWNET)
            .map_err(|e| e.to_string())?;
        let init = Init::try_parse_from(&argv).map_err(|e| e.to_string())?;
        run_init(init.args).map_err(|e| format!("{argv:?}: {e:#}"))
    })
    .join()
    .map_err(|_| "init thread panicked".to_string())?
}

/// istio-iptables' rules in the mangle (TPROXY) and raw (DNS conntrack zones) tables, as an
/// earlier istio-init of the pod may have left them; cleanup removes those too.
const ISTIO_TPROXY_AND_DNS: &str = "*mangle
:ISTIO_DIVERT - [0:0]
:ISTIO_TPROXY - [0:0]
:ISTIO_INBOUND - [0:0]
-A PREROUTING -p tcp -j ISTIO_INBOUND
-A ISTIO_DIVERT -j MARK --set-xmark 0x539/0xffffffff
-A ISTIO_INBOUND -p tcp -m conntrack --ctstate RELATED,ESTABLISHED -j ISTIO_DIVERT
-A ISTIO_INBOUND -p tcp -j ISTIO_TPROXY
COMMIT
*raw
:ISTIO_OUTPUT_DNS - [0:0]
-A OUTPUT -j ISTIO_OUTPUT_DNS
-A ISTIO_OUTPUT_DNS -p udp --dport 53 -j CT --zone 1
COMMIT
";

/// Rules that are not augur's and must survive its cleanup.
const FOREIGN: &str = "*nat
:KUBE-SERVICES - [0:0]
-A PREROUTING -j KUBE-SERVICES
-A OUTPUT -o eth7 -j RETURN
COMMIT
";

#[test]
fn cleanup_removes_an_install_whatever_the_flags() {
    let ns = format!("augur-{}-cleanup", std::process::id());
    let Some(_ns) = netns_or_skip(&ns) else {
        return;
    };
    let restore = |text: &str| {
        let mut child = Command::new("ip")
            .args(["netns", "exec", &ns, "iptables-restore", "--noflush"])
            .stdin(std::process::Stdio::piped())
            .spawn()
            .expect("iptables-restore");
        child
            .stdin
            .take()
            .expect("stdin")
            .write_all(text.as_bytes())
            .expect("write rules");
        assert!(child.wait().expect("wait").success(), "restore:\n{text}");
    };
    let save = || must(&["ip", "netns", "exec", &ns, "iptables-save"]);
    restore(FOREIGN);

    // (install flags, cleanup flags, istio-iptables' mangle/raw leftovers too)
    let cases = [
        // The injected sidecar with every kind of rule in a built-in chain: interface
        // exclusions (-c), a VM interface with CIDRs (-k), port lists; cleaned up with no flags.
        (
            "-i 10.0.0.0/8 -x 10.96.0.0/12 -b '*' -d 15090,15021,15020 -c eth9 -k net1 \
             -q 8443 -o 3306 -g 1337,1338",
            "",
            false,
        ),
        (
            "-i '*' -b 8080,9090 -z 16006 -p 16001",
            "-b '' -i 10.0.0.0/8 -c eth1",
            false,
        ),
        // Flags cleanup cannot even validate.
        ("-i '*' -b '*' -k net2", "-m TPROXY", true),
        ("", "-b '*' -i '*'", true),
    ];
    for (install, cleanup_flags, istio_leftovers) in cases {
        let install = common::split_args(install);
        let install: Vec<&str> = install.iter().map(String::as_str).collect();
        init_in(&ns, &install).expect("install");
        if istio_leftovers {
            restore(ISTIO_TPROXY_AND_DNS);
        }
        let installed = save();
        if !install.is_empty() {
            assert!(
                installed.contains("-j ISTIO_INBOUND") || installed.contains("-j ISTIO_OUTPUT"),
                "{install:?} installed no jump:\n{installed}"
            );
        }
        if install.contains(&"-c") {
            assert!(installed.contains("augur-init"), "{installed}");
        }

        let mut flags = vec!["--cleanup".to_string()];
        flags.extend(common::split_args(cleanup_flags));
        let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
        init_in(&ns, &flags).expect("cleanup");

        let after = save();
        let left: Vec<&str> = after
            .lines()
            .filter(|l| l.contains("ISTIO_") || l.contains("augur-init"))
            .collect();
        assert!(
            left.is_empty(),
            "installed with {install:?}, cleaned up with {flags:?}, left:\n{}\n\nbefore:\n{installed}",
            left.join("\n")
        );
        for foreign in FOREIGN.lines().filter(|l| l.starts_with('-')) {
            assert!(
                after.contains(foreign),
                "cleanup removed {foreign:?}:\n{after}"
            );
        }
    }
}
