//! The capture rules against the real kernel: two network namespaces joined by a veth pair,
//! augur's planned rules applied in the "pod" namespace through the same adapter `augur init`
//! uses, tiny TCP servers that answer with the name of the port that accepted, and clients
//! (`bash`'s `/dev/tcp`) run in either namespace, as root or as uid 1337.
//!
//! Needs root and `ip netns`; when `ip netns add` fails the test prints why and passes.
//! Nothing outside the two namespaces it creates is touched or contacted.

use std::fs::File;
use std::io::Write as _;
use std::net::TcpListener;
use std::process::Command;
use std::sync::mpsc;

use augur_k8s::iptables::{plan, CaptureOptions, Iptables};

const POD_IP: &str = "10.213.0.1";
const PEER_IP: &str = "10.213.0.2";

/// A network namespace deleted on drop.
struct Netns(String);

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.0]).status();
    }
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
    if let Err(e) = run(&["ip", "netns", "add", &pod]) {
        println!("SKIPPED: cannot create a network namespace (needs root and iproute2): {e}");
        return;
    }
    let pod_ns = Netns(pod.clone());
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

    iptables.cleanup(&planned);
    let after = iptables.save_nat().expect("iptables-save");
    assert!(!after.contains("ISTIO_"), "cleanup left rules:\n{after}");
    drop((pod_ns, peer_ns));
    assert!(
        failures.is_empty(),
        "{}\nrules:\n{nat}",
        failures.join("\n")
    );
}
