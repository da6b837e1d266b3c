//! `/app-health/<container>/<readyz|livez|startupz>` on the status port: the app's own probes,
//! rewritten by the injector, run by the proxy from 127.0.0.6 (which the capture rules let
//! through). The originals come from `AUGUR_APP_PROBERS` (path → `{"httpGet": {...}}` or
//! `{"tcpSocket": {...}}`, with `timeoutSeconds`), as Istio's `ISTIO_KUBE_APP_PROBERS`.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

use serde::Deserialize;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpSocket;

use crate::service::capture::INBOUND_PASSTHROUGH_BIND;

/// The environment variable the injector fills.
pub(super) const APP_PROBERS_ENV: &str = "AUGUR_APP_PROBERS";

/// One original probe.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct Prober {
    http_get: Option<HttpGet>,
    tcp_socket: Option<TcpCheck>,
    #[serde(default = "one_second")]
    timeout_seconds: u64,
}

#[derive(Debug, Clone, Deserialize)]
struct HttpGet {
    #[serde(default = "slash")]
    path: String,
    port: u16,
    #[serde(default)]
    host: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
struct TcpCheck {
    port: u16,
}

fn one_second() -> u64 {
    1
}

fn slash() -> String {
    "/".to_owned()
}

/// The app's probes by status-port path.
#[derive(Debug, Default)]
pub struct AppProbers(HashMap<String, Prober>);

impl AppProbers {
    /// Reads `AUGUR_APP_PROBERS`; unset or invalid gives none (and an invalid value is logged).
    pub fn from_env() -> Self {
        match std::env::var(APP_PROBERS_ENV) {
            Ok(json) => Self::parse(&json).unwrap_or_else(|e| {
                tracing::error!(error = %e, "{APP_PROBERS_ENV} is not valid; app probes answer 404");
                Self::default()
            }),
            Err(_) => Self::default(),
        }
    }

    /// Parses the JSON map.
    pub fn parse(json: &str) -> Result<Self, serde_json::Error> {
        serde_json::from_str(json).map(Self)
    }

    /// Runs the probe registered at `path`: `None` when there is none, else whether it passed.
    pub async fn check(&self, path: &str) -> Option<bool> {
        let prober = self.0.get(path)?;
        let timeout = Duration::from_secs(prober.timeout_seconds.max(1));
        let run = async {
            if let Some(h) = &prober.http_get {
                http_ok(h).await
            } else if let Some(t) = &prober.tcp_socket {
                connect(t.port).await.is_ok()
            } else {
                false
            }
        };
        Some(tokio::time::timeout(timeout, run).await.unwrap_or(false))
    }
}

async fn connect(port: u16) -> std::io::Result<tokio::net::TcpStream> {
    let socket = TcpSocket::new_v4()?;
    socket.bind(SocketAddr::new(INBOUND_PASSTHROUGH_BIND, 0))?;
    socket
        .connect(SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), port))
        .await
}

/// Kubernetes' rule: a status in 200..400 passes.
async fn http_ok(h: &HttpGet) -> bool {
    let Ok(mut stream) = connect(h.port).await else {
        return false;
    };
    let host = h.host.as_deref().unwrap_or("localhost");
    let request = format!(
        "GET {} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: kube-probe/augur\r\nConnection: close\r\n\r\n",
        h.path
    );
    if stream.write_all(request.as_bytes()).await.is_err() {
        return false;
    }
    let mut head = [0u8; 16];
    let mut read = 0;
    while read < 12 {
        match stream.read(&mut head[read..]).await {
            Ok(0) | Err(_) => break,
            Ok(n) => read += n,
        }
    }
    let status = std::str::from_utf8(&head[..read])
        .ok()
        .and_then(|l| l.split(' ').nth(1))
        .and_then(|c| c.get(..3))
        .and_then(|c| c.parse::<u16>().ok());
    status.is_some_and(|s| (200..400).contains(&s))
}
