//! The proxy's runtime configuration, validated: what `augur proxy`'s flags mean once checked,
//! with every problem reported at once (as the policy loader reports every policy error).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use crate::access_log;
use crate::limits::Limits;
use crate::mirror::MirrorConfig;
use crate::route::path::PathNormalization;

/// The HTTP listener used when no listener of any kind is given.
pub const DEFAULT_LISTEN: SocketAddr = SocketAddr::new(
    std::net::IpAddr::V4(std::net::Ipv4Addr::new(127, 0, 0, 1)),
    15001,
);

/// Where the proxy listens (port 0: a free port, reported in the address file).
#[derive(Debug, Clone, PartialEq)]
pub struct Listeners {
    /// Cleartext HTTP/1.1 and h2c listeners, routed by `Host`.
    pub listen: Vec<SocketAddr>,
    /// HTTPS listeners and their certificate.
    pub tls: Option<TlsListeners>,
    /// The outbound capture listener (`iptables` REDIRECT target, 15001).
    pub outbound_capture: Option<SocketAddr>,
    /// The inbound capture listener (15006).
    pub inbound_capture: Option<SocketAddr>,
    /// The Envoy-style admin.
    pub admin: SocketAddr,
    /// The status port (`/healthz/ready`).
    pub status: SocketAddr,
    /// The Prometheus port.
    pub prometheus: SocketAddr,
}

/// HTTPS listeners.
#[derive(Debug, Clone, PartialEq)]
pub struct TlsListeners {
    /// Their addresses.
    pub addrs: Vec<SocketAddr>,
    /// PEM certificate chain.
    pub cert: PathBuf,
    /// PEM private key.
    pub key: PathBuf,
    /// CA bundle clients must present a certificate from (mutual TLS), if any.
    pub client_ca: Option<PathBuf>,
}

/// The controller a sidecar follows (`--controller`).
#[derive(Debug, Clone, PartialEq)]
pub struct ControllerLink {
    /// `host:port`.
    pub authority: String,
    /// The bearer token to present.
    pub token: Option<String>,
    /// How long to wait for its state before the listeners open.
    pub sync_timeout: Duration,
    /// This sidecar's name.
    pub node: String,
}

/// The validated configuration `App::build` starts from.
#[derive(Debug, Clone)]
pub struct ProxyConfig {
    /// Policy files or directories.
    pub policies: Vec<PathBuf>,
    /// How they are read (`--allow-unknown-fields`).
    pub load: augur_policies::LoadOptions,
    /// Listeners.
    pub listeners: Listeners,
    /// How long a silent client on an inspected capture port is waited for (`None`: forever).
    pub protocol_detection_timeout: Option<Duration>,
    /// The token that admits admin mutations from beyond loopback.
    pub admin_token: Option<String>,
    /// Where to write the bound addresses.
    pub address_file: Option<PathBuf>,
    /// Worker threads.
    pub concurrency: usize,
    /// Rollout state and audit logs.
    pub state_dir: PathBuf,
    /// The audit log of admin mutations and policy loads.
    pub audit_log: PathBuf,
    /// Where to record every rollout event, if anywhere.
    pub record_samples: Option<PathBuf>,
    /// Mirroring.
    pub mirror: MirrorConfig,
    /// The access log and its format, if on.
    pub access_log: Option<(PathBuf, access_log::Format)>,
    /// How long in-flight requests get after SIGTERM.
    pub drain_duration: Duration,
    /// Path normalization before routing.
    pub path_normalization: PathNormalization,
    /// Request body bytes kept for retries.
    pub retry_buffer_limit: u64,
    /// Limits on clients.
    pub limits: Limits,
    /// The controller to follow, if any.
    pub controller: Option<ControllerLink>,
}

/// One problem with the flags.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum ConfigError {
    /// A file a flag names cannot be read.
    #[error("--{flag} {path}: cannot read it: {reason}")]
    Unreadable {
        /// The flag.
        flag: &'static str,
        /// The file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// Two listeners on one address (port 0 excepted).
    #[error("{addr} is given to both --{first} and --{second}")]
    SameAddress {
        /// The address.
        addr: SocketAddr,
        /// One flag.
        first: &'static str,
        /// The other.
        second: &'static str,
    },
    /// `--controller` is not `host:port`.
    #[error("--controller {0:?}: expected host:port (http:// optional), e.g. augur-controller.augur-system.svc:15010")]
    ControllerAddress(String),
    /// A value that must be positive is 0.
    #[error("--{0} must be at least 1")]
    Zero(&'static str),
}

/// Every problem found, one per line.
#[derive(Debug, thiserror::Error, PartialEq)]
#[error("{}", .0.iter().map(ToString::to_string).collect::<Vec<_>>().join("\n"))]
pub struct ConfigErrors(pub Vec<ConfigError>);

impl ProxyConfig {
    /// Checks what the flags cannot check alone: files that must be readable, listeners that
    /// must not share an address, counts that must be positive, a controller that must be
    /// `host:port`. Every problem is reported at once.
    pub fn validate(&self) -> Result<(), ConfigErrors> {
        let mut errors = Vec::new();
        if let Some(tls) = &self.listeners.tls {
            readable("tls-cert", &tls.cert, &mut errors);
            readable("tls-key", &tls.key, &mut errors);
            if let Some(ca) = &tls.client_ca {
                readable("tls-client-ca", ca, &mut errors);
            }
        }
        same_addresses(&self.listeners, &mut errors);
        if self.concurrency == 0 {
            errors.push(ConfigError::Zero("concurrency"));
        }
        if self.mirror.queue == 0 {
            errors.push(ConfigError::Zero("mirror-queue"));
        }
        if let Some(link) = &self.controller {
            let valid = link
                .authority
                .rsplit_once(':')
                .is_some_and(|(host, port)| !host.is_empty() && port.parse::<u16>().is_ok());
            if !valid {
                errors.push(ConfigError::ControllerAddress(link.authority.clone()));
            }
        }
        if errors.is_empty() {
            Ok(())
        } else {
            Err(ConfigErrors(errors))
        }
    }
}

/// `--controller`'s value as an authority: `http://` and a trailing `/` dropped.
pub fn controller_authority(address: &str) -> String {
    address
        .trim_start_matches("http://")
        .trim_end_matches('/')
        .to_owned()
}

fn readable(flag: &'static str, path: &std::path::Path, errors: &mut Vec<ConfigError>) {
    if let Err(e) = std::fs::File::open(path) {
        errors.push(ConfigError::Unreadable {
            flag,
            path: path.to_owned(),
            reason: e.to_string(),
        });
    }
}

/// Two listeners may not share an address (a port-0 address picks its own port).
fn same_addresses(l: &Listeners, errors: &mut Vec<ConfigError>) {
    let mut all: Vec<(&'static str, SocketAddr)> = Vec::new();
    all.extend(l.listen.iter().map(|a| ("listen", *a)));
    if let Some(tls) = &l.tls {
        all.extend(tls.addrs.iter().map(|a| ("tls-listen", *a)));
    }
    all.extend(l.outbound_capture.map(|a| ("outbound-capture", a)));
    all.extend(l.inbound_capture.map(|a| ("inbound-capture", a)));
    all.extend([
        ("admin", l.admin),
        ("status", l.status),
        ("prometheus", l.prometheus),
    ]);
    for (i, (first, a)) in all.iter().enumerate() {
        if a.port() == 0 {
            continue;
        }
        if let Some((second, _)) = all[i + 1..].iter().find(|(_, b)| b == a) {
            errors.push(ConfigError::SameAddress {
                addr: *a,
                first,
                second,
            });
        }
    }
}
