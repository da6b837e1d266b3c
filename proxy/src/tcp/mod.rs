//! The capture listeners' front door: protocol detection, then HTTP to the proxy or opaque TCP
//! passed through to the original destination (Istio's ALLOW_ANY for TCP).
//!
//! iptables sends every TCP connection of the pod here, not only HTTP. Like Envoy's
//! `http_inspector`, augur reads the first bytes: a request line or the HTTP/2 preface goes to
//! [`crate::service::AugurProxy`] (with the bytes put back), anything else is copied as is.

pub mod detect;
mod passthrough;

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use pingora::apps::ServerApp;
use pingora::protocols::l4::stream::Stream as TcpStream;
use pingora::protocols::Stream;
use pingora::server::ShutdownWatch;
use tokio::io::AsyncReadExt;

use crate::metrics::Metrics;
use detect::Protocol;
use passthrough::Passthrough;

/// Serves the capture ports: detects the protocol of each connection, hands HTTP to `http`
/// and passes the rest through.
pub struct CaptureApp<A> {
    http: Arc<A>,
    inbound_port: Option<u16>,
    metrics: Arc<Metrics>,
    detection_timeout: Option<Duration>,
}

impl<A> CaptureApp<A> {
    /// Capture in front of the HTTP application `http`. Connections to `inbound_port` are
    /// inbound (forwarded to the local app from 127.0.0.6). A client that sends nothing within
    /// `detection_timeout` is treated as opaque (a server-first protocol); `None` waits for its
    /// first bytes, as Istio does by default.
    pub fn new(
        http: A,
        inbound_port: Option<u16>,
        metrics: Arc<Metrics>,
        detection_timeout: Option<Duration>,
    ) -> Self {
        Self {
            http: Arc::new(http),
            inbound_port,
            metrics,
            detection_timeout,
        }
    }
}

#[async_trait]
impl<A> ServerApp for CaptureApp<A>
where
    A: ServerApp + Send + Sync + 'static,
{
    async fn process_new(
        self: &Arc<Self>,
        stream: Stream,
        shutdown: &ShutdownWatch,
    ) -> Option<Stream> {
        let (stream, protocol) = match detect(stream, self.detection_timeout).await {
            Ok(Some(detected)) => detected,
            Ok(None) => return None,
            Err(e) => {
                tracing::debug!(error = %e, "capture: connection failed before its first bytes");
                return None;
            }
        };
        match protocol {
            Protocol::Http => {
                // Later requests on a kept-alive connection are HTTP too: no new detection.
                let mut next = self.http.process_new(stream, shutdown).await;
                while let Some(stream) = next {
                    next = self.http.process_new(stream, shutdown).await;
                }
            }
            Protocol::Opaque => self.pass_through(stream).await,
        }
        None
    }
}

impl<A> CaptureApp<A> {
    async fn pass_through(&self, stream: Stream) {
        let Some(digest) = stream.get_socket_digest() else {
            return;
        };
        let local = digest.local_addr().and_then(|a| a.as_inet()).copied();
        let original = digest.original_dst().and_then(|a| a.as_inet()).copied();
        // Not redirected (someone dialled the capture port itself): forwarding would loop.
        let Some(to) = original.filter(|dst| Some(*dst) != local) else {
            tracing::debug!("capture: opaque connection without an original destination");
            return;
        };
        let inbound = local.is_some_and(|l| Some(l.port()) == self.inbound_port);
        Passthrough {
            to,
            inbound,
            connect_timeout: augur_policies::defaults::CONNECT_TIMEOUT,
        }
        .run(stream, &self.metrics)
        .await;
    }
}

/// Reads the connection's first bytes, classifies them and puts them back. `Ok(None)` when the
/// client closed without sending anything.
async fn detect(
    stream: Stream,
    timeout: Option<Duration>,
) -> std::io::Result<Option<(Stream, Protocol)>> {
    // Only a plain TCP stream can be read ahead and rewound; anything else is HTTP's to handle.
    if !stream.as_any().is::<TcpStream>() {
        return Ok(Some((stream, Protocol::Http)));
    }
    let Ok(mut tcp) = stream.into_any().downcast::<TcpStream>() else {
        return Ok(None);
    };
    let mut buf = [0u8; detect::DECISIVE_BYTES];
    let mut received = 0;
    let deadline = timeout.map(|t| tokio::time::Instant::now() + t);
    let protocol = loop {
        let seen = buf.get(..received).unwrap_or_default();
        if let Some(p) = detect::classify(seen) {
            break p;
        }
        let Some(space) = buf.get_mut(received..) else {
            break Protocol::Opaque;
        };
        let read = tcp.read(space);
        let n = match deadline {
            None => read.await?,
            Some(at) => match tokio::time::timeout_at(at, read).await {
                Ok(n) => n?,
                // Nothing decisive in time: a server-first protocol, or not HTTP.
                Err(_) => break Protocol::Opaque,
            },
        };
        if n == 0 {
            if received == 0 {
                return Ok(None);
            }
            break Protocol::Opaque;
        }
        received += n;
    };
    tcp.rewind(buf.get(..received).unwrap_or_default());
    let stream: Stream = tcp;
    Ok(Some((stream, protocol)))
}
