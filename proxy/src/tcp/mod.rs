//! The capture listeners' front door: which connections are inspected, protocol detection,
//! then HTTP to the proxy or opaque TCP passed through (Istio's ALLOW_ANY for TCP).
//!
//! iptables sends every TCP connection of the pod here, not only HTTP. As an Istio sidecar
//! does, augur inspects a connection's first bytes only where a service makes HTTP possible
//! (see [`crate::route::services`]): an outbound connection to a port no known service
//! declares, or declares as TCP, TLS, MySQL and the like, is passed through at once, so a
//! server-first protocol never waits. Where it inspects, it does as Envoy's `http_inspector`:
//! a request line or the HTTP/2 preface goes to [`crate::service::AugurProxy`] (with the bytes
//! put back), anything else is copied as is. A connection to a ServiceEntry VIP goes to that
//! entry's endpoints rather than to the VIP.

pub mod detect;
mod passthrough;

use crate::response_flag::ResponseFlag;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use async_trait::async_trait;
use pingora::apps::ServerApp;
use pingora::protocols::l4::stream::Stream as TcpStream;
use pingora::protocols::Stream;
use pingora::server::ShutdownWatch;
use tokio::io::AsyncReadExt;

use crate::access_log::{self, AccessLog};
use crate::metrics::istio::{Destination, Reporter, TcpRecord};
use crate::metrics::Metrics;
use crate::policy_store::PolicyStore;
use crate::route::services::Outbound;
use crate::route::Cluster;
use crate::service::capture::{inbound_cluster, PASSTHROUGH_CLUSTER};
use detect::Protocol;
use passthrough::{Finished, Passthrough};

/// Serves the capture ports: decides whether to inspect each connection, hands HTTP to `http`
/// and passes the rest through.
pub struct CaptureApp<A> {
    http: Arc<A>,
    inbound_port: Option<u16>,
    metrics: Arc<Metrics>,
    detection_timeout: Option<Duration>,
    store: Option<Arc<PolicyStore>>,
    access_log: Option<AccessLog>,
}

impl<A> CaptureApp<A> {
    /// Capture in front of the HTTP application `http`. Connections to `inbound_port` are
    /// inbound (forwarded to the local app from 127.0.0.6). A client that sends nothing within
    /// `detection_timeout` is treated as opaque (a server-first protocol); `None` waits for its
    /// first bytes, as Istio does by default. Without [`CaptureApp::with_policies`] every
    /// connection is inspected.
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
            store: None,
            access_log: None,
        }
    }

    /// Decides from the serving policies which connections are inspected and where a VIP's
    /// connections go.
    pub fn with_policies(mut self, store: Arc<PolicyStore>) -> Self {
        self.store = Some(store);
        self
    }

    /// Logs every opaque connection to `log` (HTTP requests are logged by `http`).
    pub fn with_access_log(mut self, log: Option<AccessLog>) -> Self {
        self.access_log = log;
        self
    }
}

/// Where a captured connection came from and was going.
#[derive(Debug, Clone, Copy)]
struct Addresses {
    /// The client.
    remote: Option<SocketAddr>,
    /// The original destination; `None` when the connection was not redirected (someone
    /// dialled the capture port itself, and forwarding there would loop).
    original: Option<SocketAddr>,
    /// It arrived on the inbound capture port.
    inbound: bool,
}

impl Addresses {
    fn of(stream: &Stream, inbound_port: Option<u16>) -> Self {
        let digest = stream.get_socket_digest();
        let inet = |a: Option<&pingora::protocols::l4::socket::SocketAddr>| a?.as_inet().copied();
        let local = digest.as_ref().and_then(|d| inet(d.local_addr()));
        let original = digest
            .as_ref()
            .and_then(|d| inet(d.original_dst()))
            .filter(|dst| Some(*dst) != local);
        Self {
            remote: digest.as_ref().and_then(|d| inet(d.peer_addr())),
            original,
            inbound: local.is_some_and(|l| Some(l.port()) == inbound_port),
        }
    }
}

/// What to do with a connection before reading from it.
struct Plan {
    /// Read its first bytes to tell HTTP from the rest.
    detect: bool,
    /// The ServiceEntry of the VIP it was going to, if any.
    vip: Option<VipTarget>,
}

/// Where opaque bytes to a ServiceEntry VIP go.
struct VipTarget {
    /// The entry's cluster on the port.
    cluster: Arc<Cluster>,
    /// Resolution NONE: to the original destination, under the cluster's name.
    original_destination: bool,
}

impl VipTarget {
    fn of(vip: &crate::route::services::Vip) -> Self {
        Self {
            cluster: Arc::clone(&vip.cluster),
            original_destination: vip.original_destination,
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
        let started = (SystemTime::now(), crate::clock::now());
        let addresses = Addresses::of(&stream, self.inbound_port);
        let plan = self.plan(&addresses);
        let (stream, protocol) = if plan.detect {
            match detect(stream, self.detection_timeout).await {
                Ok(Some(detected)) => detected,
                Ok(None) => return None,
                Err(e) => {
                    tracing::debug!(error = %e, "capture: connection failed before its first bytes");
                    return None;
                }
            }
        } else {
            (stream, Protocol::Opaque)
        };
        match protocol {
            Protocol::Http => {
                // Later requests on a kept-alive connection are HTTP too: no new detection.
                let mut next = self.http.process_new(stream, shutdown).await;
                while let Some(stream) = next {
                    next = self.http.process_new(stream, shutdown).await;
                }
            }
            Protocol::Opaque => {
                self.pass_through(stream, addresses, plan.vip, started)
                    .await;
            }
        }
        None
    }
}

impl<A> CaptureApp<A> {
    /// Istio's choice for the connection, from the serving policies: inbound, every port but
    /// one declared only as opaque is inspected; outbound, see [`Outbound`].
    fn plan(&self, addresses: &Addresses) -> Plan {
        let (Some(store), Some(dst)) = (&self.store, addresses.original) else {
            return Plan {
                detect: true,
                vip: None,
            };
        };
        let snapshot = store.snapshot();
        let services = snapshot.routes.services();
        if addresses.inbound {
            return Plan {
                detect: services.inbound_sniffed(dst.port()),
                vip: None,
            };
        }
        match services.outbound(dst) {
            Outbound::Detect(vip) => Plan {
                detect: true,
                vip: vip.map(VipTarget::of),
            },
            Outbound::Tcp(vip) => Plan {
                detect: false,
                vip: vip.map(VipTarget::of),
            },
        }
    }

    async fn pass_through(
        &self,
        stream: Stream,
        addresses: Addresses,
        vip: Option<VipTarget>,
        started: (SystemTime, Instant),
    ) {
        let Some(original) = addresses.original else {
            tracing::debug!("capture: opaque connection without an original destination");
            return;
        };
        let (to, cluster_name, _claim) = match &vip {
            Some(target) if target.original_destination => {
                (original, target.cluster.name.clone(), None)
            }
            Some(target) => match target.cluster.pick(None) {
                Some((endpoint, claim)) => (endpoint, target.cluster.name.clone(), Some(claim)),
                None => {
                    self.no_healthy_upstream(&target.cluster, addresses, original, started);
                    return;
                }
            },
            None if addresses.inbound => (original, inbound_cluster(original.port()), None),
            None => (original, PASSTHROUGH_CLUSTER.to_owned(), None),
        };
        let finished = Passthrough {
            to,
            inbound: addresses.inbound,
            cluster: vip.map(|target| target.cluster),
            connect_timeout: augur_policies::defaults::CONNECT_TIMEOUT,
        }
        .run(stream, &self.metrics)
        .await;
        self.log(
            &finished,
            Some(to),
            &cluster_name,
            addresses,
            original,
            started,
        );
    }

    /// A VIP whose service has no endpoint: closed at once, as Envoy's `tcp_proxy` does
    /// (flag UH).
    fn no_healthy_upstream(
        &self,
        cluster: &Cluster,
        addresses: Addresses,
        original: SocketAddr,
        started: (SystemTime, Instant),
    ) {
        tracing::debug!(cluster = %cluster.name, "opaque TCP: no endpoint for the VIP's service");
        let record = TcpRecord {
            reporter: Reporter::Source,
            destination: Destination::Service(cluster.metric_labels()),
            flags: ResponseFlag::NoHealthyUpstream,
        };
        self.metrics.istio.tcp_opened(&record);
        self.metrics.istio.tcp_closed(&record, 0, 0);
        let finished = Finished {
            flags: ResponseFlag::NoHealthyUpstream,
            upstream_local: None,
            failure: None,
            received: 0,
            sent: 0,
        };
        self.log(&finished, None, &cluster.name, addresses, original, started);
    }

    /// One access-log line for an opaque connection, as Envoy's `tcp_proxy` writes it.
    fn log(
        &self,
        finished: &Finished,
        upstream: Option<SocketAddr>,
        cluster: &str,
        addresses: Addresses,
        original: SocketAddr,
        started: (SystemTime, Instant),
    ) {
        let Some(log) = &self.access_log else { return };
        log.record(&access_log::Entry {
            start: started.0,
            method: access_log::TCP,
            path: access_log::TCP,
            protocol: access_log::TCP,
            status: 0,
            flags: finished.flags,
            bytes_received: finished.received,
            bytes_sent: finished.sent,
            duration_ms: started.1.elapsed().as_millis(),
            upstream_ms: None,
            forwarded_for: None,
            user_agent: None,
            request_id: None,
            authority: "-",
            upstream_host: upstream,
            upstream_cluster: Some(cluster),
            upstream_local: finished.upstream_local,
            upstream_failure: finished.failure.as_deref(),
            local: Some(original),
            remote: addresses.remote,
            route: None,
        });
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
    let mut buf = Vec::with_capacity(512);
    let deadline = timeout.map(|t| tokio::time::Instant::now() + t);
    let protocol = loop {
        if let Some(p) = detect::classify(&buf) {
            break p;
        }
        if buf.len() == buf.capacity() {
            buf.reserve(buf.len().min(detect::MAX_INSPECTED - buf.len()));
        }
        let read = tcp.read_buf(&mut buf);
        let n = match deadline {
            None => read.await?,
            Some(at) => match tokio::time::timeout_at(at, read).await {
                Ok(n) => n?,
                // Nothing decisive in time: a server-first protocol, or not HTTP.
                Err(_) => break Protocol::Opaque,
            },
        };
        if n == 0 {
            if buf.is_empty() {
                return Ok(None);
            }
            break Protocol::Opaque;
        }
    };
    tcp.rewind(&buf);
    let stream: Stream = tcp;
    Ok(Some((stream, protocol)))
}
