//! The proxy built in-process from a `ProxyConfig` (issue 18: "in-process tests can then bind
//! port 0"): `App::build` loads the policies and gives every port-0 listener a port of its own,
//! held from then on, before anything runs.

use std::net::{SocketAddr, TcpListener};
use std::time::Duration;

use augur_proxy::app::config::Listeners;
use augur_proxy::app::{App, ProxyConfig};

const POLICY: &str = "apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: m}
spec:
  hosts: [m]
  http:
  - route: [{destination: {host: m}}]
";

fn any_port() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 0))
}

fn config(dir: &std::path::Path) -> ProxyConfig {
    let policy = dir.join("policy.yaml");
    std::fs::write(&policy, POLICY).expect("write the policy");
    ProxyConfig {
        policies: vec![policy],
        load: augur_policies::LoadOptions::default(),
        listeners: Listeners {
            listen: vec![any_port(), any_port()],
            tls: None,
            outbound_capture: None,
            inbound_capture: Some(any_port()),
            admin: any_port(),
            status: any_port(),
            prometheus: any_port(),
        },
        protocol_detection_timeout: None,
        admin_token: None,
        address_file: None,
        concurrency: 1,
        state_dir: dir.join("state"),
        audit_log: dir.join("state/audit.log"),
        record_samples: None,
        mirror: augur_proxy::mirror::MirrorConfig::default(),
        access_log: None,
        drain_duration: Duration::from_secs(1),
        path_normalization: augur_proxy::route::path::PathNormalization::default(),
        retry_buffer_limit: augur_proxy::service::replay::DEFAULT_RETRY_BUFFER_LIMIT,
        limits: augur_proxy::limits::Limits::default(),
        controller: None,
    }
}

#[test]
fn a_built_proxy_holds_a_port_of_its_own_for_every_port_zero_listener() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = config(dir.path());
    config.validate().expect("a valid config");
    let app = App::build(config).expect("the proxy builds in-process");
    let a = app.addresses();
    let mut all = a.listen.clone();
    all.extend(a.inbound_capture);
    all.extend([a.admin, a.status, a.prometheus]);
    assert_eq!(all.len(), 6, "{a:?}");
    let mut ports: Vec<u16> = all.iter().map(SocketAddr::port).collect();
    assert!(
        ports.iter().all(|&p| p != 0),
        "every listener got a port: {a:?}"
    );
    ports.sort_unstable();
    ports.dedup();
    assert_eq!(ports.len(), 6, "six listeners, six ports: {a:?}");
    for addr in &all {
        assert!(
            TcpListener::bind(addr).is_err(),
            "{addr} is held by the built proxy, so nothing else can take it before it runs"
        );
    }
    drop(app);
}
