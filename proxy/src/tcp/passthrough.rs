//! Opaque TCP passthrough: bytes copied both ways between the client and the address it was
//! going to, with Istio's TCP metrics (Envoy's `tcp_proxy` to `PassthroughCluster`).

use std::net::{IpAddr, Ipv6Addr, SocketAddr};
use std::time::Duration;

use pingora::protocols::Stream;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

use crate::metrics::istio::{Destination, Reporter, TcpRecord};
use crate::metrics::Metrics;

/// Copy buffer per direction.
const BUFFER: usize = 16 * 1024;

/// Inbound forwarding's IPv6 source, as Istio binds it (`InboundPassthroughBindIpv6`).
const INBOUND_PASSTHROUGH_BIND_V6: IpAddr = IpAddr::V6(Ipv6Addr::new(0, 0, 0, 0, 0, 0, 0, 6));

/// Where one opaque connection goes and how it is reported.
pub(super) struct Passthrough {
    /// The original destination.
    pub(super) to: SocketAddr,
    /// Inbound: forwarded to the local app from 127.0.0.6 (or `::6`) so it is not captured
    /// again.
    pub(super) inbound: bool,
    /// TCP connect timeout.
    pub(super) connect_timeout: Duration,
}

impl Passthrough {
    /// Connects to the original destination and copies until both sides have closed.
    pub(super) async fn run(self, client: Stream, metrics: &Metrics) {
        let record = |flags| TcpRecord {
            reporter: if self.inbound {
                Reporter::Destination
            } else {
                Reporter::Source
            },
            destination: if self.inbound {
                Destination::Local
            } else {
                Destination::Passthrough
            },
            flags,
        };
        let upstream = match self.connect().await {
            Ok(upstream) => upstream,
            Err(e) => {
                tracing::debug!(to = %self.to, error = %e, "opaque TCP: upstream connect failed");
                let failed = record("UF");
                metrics.istio.tcp_opened(&failed);
                metrics.istio.tcp_closed(&failed, 0, 0);
                return;
            }
        };
        let ok = record("-");
        metrics.istio.tcp_opened(&ok);
        let (mut client_read, mut client_write) = tokio::io::split(client);
        let (mut upstream_read, mut upstream_write) = upstream.into_split();
        let (received, sent) = tokio::join!(
            pump(&mut client_read, &mut upstream_write),
            pump(&mut upstream_read, &mut client_write),
        );
        metrics.istio.tcp_closed(&ok, received, sent);
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
