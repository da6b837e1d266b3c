//! `augur proxy`'s flags as the proxy's validated configuration ([`ProxyConfig`]).

use augur_proxy::access_log;
use augur_proxy::app::config::{controller_authority, ControllerLink, Listeners, TlsListeners};
use augur_proxy::app::{ConfigErrors, ProxyConfig};
use augur_proxy::mirror::MirrorConfig;

use crate::args::{LogFormat, ProxyArgs};

/// The configuration the flags describe, checked: every problem is reported at once.
pub fn proxy_config(args: &ProxyArgs) -> Result<ProxyConfig, ConfigErrors> {
    let mut listen = args.listen.clone();
    if listen.is_empty()
        && args.tls_listen.is_empty()
        && args.outbound_capture.is_none()
        && args.inbound_capture.is_none()
    {
        listen.push(augur_proxy::app::config::DEFAULT_LISTEN);
    }
    let tls = match (&args.tls_cert, &args.tls_key) {
        (Some(cert), Some(key)) if !args.tls_listen.is_empty() => Some(TlsListeners {
            addrs: args.tls_listen.clone(),
            cert: cert.clone(),
            key: key.clone(),
            client_ca: args.tls_client_ca.clone(),
        }),
        _ => None,
    };
    let format = match args.access_log_format {
        LogFormat::Text => access_log::Format::Text,
        LogFormat::Json => access_log::Format::Json,
    };
    let config = ProxyConfig {
        policies: args.policies.clone(),
        load: args.load.options(),
        listeners: Listeners {
            listen,
            tls,
            outbound_capture: args.outbound_capture,
            inbound_capture: args.inbound_capture,
            admin: args.admin,
            status: args.status,
            prometheus: args.prometheus,
        },
        protocol_detection_timeout: Some(args.protocol_detection_timeout).filter(|t| !t.is_zero()),
        admin_token: args.admin_token.clone(),
        address_file: args.address_file.clone(),
        concurrency: args.concurrency,
        state_dir: args.state_dir.clone(),
        audit_log: args
            .audit_log
            .clone()
            .unwrap_or_else(|| args.state_dir.join("audit.jsonl")),
        record_samples: args.record_samples.clone(),
        mirror: MirrorConfig {
            max_body: args.mirror_max_body,
            queue: args.mirror_queue,
            host_suffix: args.mirror_host_suffix.clone(),
        },
        access_log: args.access_log.clone().map(|p| (p, format)),
        drain_duration: args.drain_duration,
        path_normalization: args.path_normalization,
        retry_buffer_limit: args.retry_buffer_limit,
        limits: args.limits.to_limits(),
        controller: args.controller.as_deref().map(|address| ControllerLink {
            authority: controller_authority(address),
            token: args.controller_token.clone(),
            sync_timeout: args.controller_sync_timeout,
            node: args.node.clone(),
        }),
    };
    config.validate()?;
    Ok(config)
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use clap::Parser;

    use super::*;

    fn args(extra: &[&str]) -> ProxyArgs {
        let mut argv = vec!["augur", "proxy", "--policy", "p.yaml"];
        argv.extend_from_slice(extra);
        match crate::args::Cli::parse_from(argv).command {
            crate::args::Command::Proxy(args) => *args,
            _ => unreachable!("parsed as proxy"),
        }
    }

    #[test]
    fn defaults_give_the_sidecar_layout() {
        let c = proxy_config(&args(&[])).expect("valid");
        assert_eq!(
            c.listeners.listen,
            [augur_proxy::app::config::DEFAULT_LISTEN]
        );
        assert_eq!(c.audit_log, PathBuf::from("/var/lib/augur/audit.jsonl"));
        assert!(c.controller.is_none());
        let captured = proxy_config(&args(&["--inbound-capture", "0.0.0.0:15006"])).expect("valid");
        assert!(
            captured.listeners.listen.is_empty(),
            "no default listener beside capture"
        );
    }

    #[test]
    fn every_problem_is_reported_at_once() {
        let e = proxy_config(&args(&[
            "--listen",
            "127.0.0.1:15000",
            "--controller",
            "no-port",
            "--concurrency",
            "0",
            "--tls-listen",
            "127.0.0.1:8443",
            "--tls-cert",
            "/nonexistent/cert.pem",
            "--tls-key",
            "/nonexistent/key.pem",
        ]))
        .expect_err("invalid");
        let text = e.to_string();
        for expected in [
            "--tls-cert /nonexistent/cert.pem",
            "--tls-key /nonexistent/key.pem",
            "127.0.0.1:15000 is given to both --listen and --admin",
            "--concurrency must be at least 1",
            "--controller \"no-port\"",
        ] {
            assert!(
                text.contains(expected),
                "{expected:?} missing from:\n{text}"
            );
        }
        assert_eq!(e.0.len(), 5);
    }

    #[test]
    fn the_controller_address_takes_an_optional_scheme() {
        let c = proxy_config(&args(&["--controller", "http://ctl.ns.svc:15010/"])).expect("valid");
        assert_eq!(
            c.controller.map(|l| l.authority),
            Some("ctl.ns.svc:15010".to_owned())
        );
    }
}
