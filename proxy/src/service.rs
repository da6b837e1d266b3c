//! The proxy itself: where a request enters, is routed to a weighted destination, and leaves.

use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use pingora::prelude::HttpPeer;
use pingora::proxy::{ProxyHttp, Session};
use pingora::{Error, ErrorType, Result};

use crate::local_reply::{self, LocalReply, NO_HEALTHY_UPSTREAM, NO_ROUTE};
use crate::policy_store::{PolicyStore, Snapshot};
use crate::route::{Action, Cluster, RequestView};

/// The pingora proxy application.
pub struct AugurProxy {
    store: Arc<PolicyStore>,
}

impl AugurProxy {
    /// A proxy that routes by the store's serving policy.
    pub fn new(store: Arc<PolicyStore>) -> Self {
        Self { store }
    }
}

/// Per-request state.
#[derive(Default)]
pub struct RequestCtx {
    /// The snapshot this request was routed with (kept so a reload mid-request changes nothing).
    snapshot: Option<Arc<Snapshot>>,
    /// The chosen cluster and endpoint.
    upstream: Option<(Arc<Cluster>, std::net::SocketAddr)>,
    /// Envoy response flag for the access log (`-` when none).
    pub flag: Option<&'static str>,
}

enum Decision {
    Reply(LocalReply),
    Direct(u16, Bytes),
    Upstream(Arc<Cluster>, std::net::SocketAddr),
}

fn decide(snapshot: &Snapshot, session: &Session) -> Decision {
    let req = session.req_header();
    let headers = &req.headers;
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    let authority = req
        .uri
        .authority()
        .map(|a| a.as_str())
        .or_else(|| header("host"))
        .unwrap_or("");
    let port = session
        .server_addr()
        .and_then(|a| a.as_inet())
        .map(|a| a.port())
        .unwrap_or(0);
    let view = RequestView {
        method: req.method.as_str(),
        path: req.uri.path(),
        query: req.uri.query(),
        authority,
        scheme: "http",
        port,
        header: &header,
    };
    let Some(route) = snapshot.routes.find(&view) else {
        return Decision::Reply(NO_ROUTE);
    };
    match &route.action {
        Action::DirectResponse { status, body } => Decision::Direct(*status, body.clone()),
        Action::Forward(split) => {
            let Some(cluster) = split.pick(rand::random::<u64>()) else {
                return Decision::Reply(NO_HEALTHY_UPSTREAM);
            };
            match cluster.pick() {
                Some(addr) => Decision::Upstream(Arc::clone(cluster), addr),
                None => Decision::Reply(NO_HEALTHY_UPSTREAM),
            }
        }
    }
}

#[async_trait]
impl ProxyHttp for AugurProxy {
    type CTX = RequestCtx;

    fn new_ctx(&self) -> Self::CTX {
        RequestCtx::default()
    }

    async fn request_filter(&self, session: &mut Session, ctx: &mut Self::CTX) -> Result<bool> {
        let snapshot = self.store.snapshot();
        let decision = decide(&snapshot, session);
        ctx.snapshot = Some(snapshot);
        match decision {
            Decision::Reply(reply) => {
                ctx.flag = Some(reply.flag);
                reply.send(session).await?;
                Ok(true)
            }
            Decision::Direct(status, body) => {
                local_reply::send(session, status, body, "text/plain").await?;
                Ok(true)
            }
            Decision::Upstream(cluster, addr) => {
                ctx.upstream = Some((cluster, addr));
                Ok(false)
            }
        }
    }

    async fn upstream_peer(
        &self,
        _session: &mut Session,
        ctx: &mut Self::CTX,
    ) -> Result<Box<HttpPeer>> {
        let Some((_, addr)) = &ctx.upstream else {
            return Error::e_explain(ErrorType::InternalError, "no upstream chosen for request");
        };
        Ok(Box::new(HttpPeer::new(*addr, false, String::new())))
    }
}
