//! Opaque TCP passthrough: bytes copied both ways between the client and its upstream, with
//! Istio's TCP metrics (Envoy's `tcp_proxy` to `PassthroughCluster`, `inbound|<port>||` or a
//! ServiceEntry's cluster).

use crate::response_flag::ResponseFlag;
use std::net::{IpAddr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use pingora::protocols::Stream;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

use crate::metrics::istio::{Destination, Reporter, TcpRecord};
use crate::metrics::Metrics;
use crate::route::Cluster;

/// Copy buffer per direction.
const BUFFER: usize = 16 * 1024;

/// Inbound forwarding's IPv6 source, as Istio binds it (`InboundPassthroughBindIpv6`).
const INBOUND_PASSTHROUGH_BIND_V6: IpAddr = IpAddr::V6(Ipv6Addr::new(0, 0, 0, 0, 0, 0, 0, 6));

/// Envoy's flags for a TCP upstream that could not be reached (`tcp_proxy` makes one connect
/// attempt, and reports the attempts as exhausted too).
pub(super) const CONNECT_FAILURE: ResponseFlag = ResponseFlag::TcpConnectionFailure;

/// Where one opaque connection goes and how it is reported.
pub(super) struct Passthrough {
    /// The upstream address: the original destination, or an endpoint of `cluster`.
    pub(super) to: SocketAddr,
    /// Inbound: forwarded to the local app from 127.0.0.6 (or `::6`) so it is not captured
    /// again.
    pub(super) inbound: bool,
    /// The ServiceEntry cluster of a VIP, when the connection went to one.
    pub(super) cluster: Option<Arc<Cluster>>,
    /// TCP connect timeout.
    pub(super) connect_timeout: Duration,
}

/// How a passed-through connection ended.
pub(super) struct Finished {
    /// Envoy response flags.
    pub(super) flags: ResponseFlag,
    /// The upstream connection's local address (none when it failed).
    pub(super) upstream_local: Option<SocketAddr>,
    /// Why the upstream connection failed, as Envoy words it.
    pub(super) failure: Option<String>,
    /// Bytes from the client to the upstream.
    pub(super) received: u64,
    /// Bytes from the upstream to the client.
    pub(super) sent: u64,
}

impl Passthrough {
    /// Connects to the upstream and copies until both sides have closed.
    pub(super) async fn run(self, client: Stream, metrics: &Metrics) -> Finished {
        let record = |flags| TcpRecord {
            reporter: if self.inbound {
                Reporter::Destination
            } else {
                Reporter::Source
            },
            destination: match (&self.cluster, self.inbound) {
                (Some(cluster), _) => Destination::Service(cluster.metric_labels()),
                (None, true) => Destination::Local,
                (None, false) => Destination::Passthrough,
            },
            flags,
        };
        let upstream = match self.connect().await {
            Ok(upstream) => upstream,
            Err(e) => {
                tracing::debug!(to = %self.to, error = %e, "opaque TCP: upstream connect failed");
                let failed = record(CONNECT_FAILURE);
                metrics.istio.tcp_opened(&failed);
                metrics.istio.tcp_closed(&failed, 0, 0);
                return Finished {
                    flags: CONNECT_FAILURE,
                    upstream_local: None,
                    failure: failure_reason(&e),
                    received: 0,
                    sent: 0,
                };
            }
        };
        let upstream_local = upstream.local_addr().ok();
        let ok = record(ResponseFlag::None);
        metrics.istio.tcp_opened(&ok);
        let (mut client_read, mut client_write) = tokio::io::split(client);
        let (mut upstream_read, mut upstream_write) = upstream.into_split();
        let (received, sent) = tokio::join!(
            pump(&mut client_read, &mut upstream_write),
            pump(&mut upstream_read, &mut client_write),
        );
        metrics.istio.tcp_closed(&ok, received, sent);
        Finished {
            flags: ResponseFlag::None,
            upstream_local,
            failure: None,
            received,
            sent,
        }
    }

    async fn connect(&self) -> std::io::Result<TcpStream> {
        let socket = match self.to {
            SocketAddr::V4(_) => TcpSocket::new_v4()?,
            SocketAddr::V6(_) => TcpSocket::new_v6()?,
        };
        if self.inbound {
            let from = match self.to {
                SocketAddr::V4(_) => crate::service::capture::INBOUND_PASSTHROUGH_BIND,
                SocketAddr::V6(_) => INBOUND_PASSTHROUGH_BIND_V6,
            };
            socket.bind(SocketAddr::new(from, 0))?;
        }
        tokio::time::timeout(self.connect_timeout, socket.connect(self.to))
            .await
            .map_err(|_| std::io::Error::from(std::io::ErrorKind::TimedOut))?
    }
}

/// `%UPSTREAM_TRANSPORT_FAILURE_REASON%` for a failed connect, as Envoy writes it for a
/// refused or unreachable upstream (`delayed_connect_error:_Connection_refused`); none for a
/// timeout.
fn failure_reason(e: &std::io::Error) -> Option<String> {
    e.raw_os_error()?;
    let text = e.to_string();
    // "Connection refused (os error 111)" → "Connection refused".
    let reason = text.split(" (os error").next().unwrap_or(&text);
    Some(format!(
        "delayed_connect_error:_{}",
        reason.replace(' ', "_")
    ))
}

/// Copies `from` into `to` until `from` ends or either side fails, then half-closes `to` so
/// the peer sees the end too. Returns the bytes copied (also when it stopped on an error,
/// which the metrics still count).
async fn pump<R, W>(from: &mut R, to: &mut W) -> u64
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let mut buf = vec![0u8; BUFFER];
    let mut total = 0u64;
    loop {
        let n = match from.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        let Some(chunk) = buf.get(..n) else { break };
        // pingora's client stream buffers writes: flush each chunk so a server-first greeting
        // or an interactive reply is not held back.
        if to.write_all(chunk).await.is_err() || to.flush().await.is_err() {
            break;
        }
        total += n as u64;
    }
    if let Err(e) = to.shutdown().await {
        tracing::debug!(error = %e, "opaque TCP: half-close failed");
    }
    total
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refused_connects_are_worded_as_envoy_does() {
        let refused = std::io::Error::from_raw_os_error(111);
        assert_eq!(
            failure_reason(&refused).as_deref(),
            Some("delayed_connect_error:_Connection_refused")
        );
        let timeout = std::io::Error::from(std::io::ErrorKind::TimedOut);
        assert_eq!(failure_reason(&timeout), None);
    }
}
