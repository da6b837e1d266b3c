//! Responses augur makes itself, with Envoy's status codes, bodies and response flags.

use bytes::Bytes;
use pingora::http::ResponseHeader;
use pingora::proxy::Session;

use crate::response_flag::ResponseFlag;

/// A local reply: status, Envoy response flag and body text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LocalReply {
    /// HTTP status.
    pub status: u16,
    /// Envoy's `%RESPONSE_FLAGS%` value.
    pub flag: ResponseFlag,
    /// Body text, as Envoy writes it.
    pub body: &'static str,
}

/// No route matched: Envoy answers 404 with an empty body (flag NR).
pub const NO_ROUTE: LocalReply = LocalReply {
    status: 404,
    flag: ResponseFlag::NoRoute,
    body: "",
};

/// The chosen cluster has no endpoint (flag UH).
pub const NO_HEALTHY_UPSTREAM: LocalReply = LocalReply {
    status: 503,
    flag: ResponseFlag::NoHealthyUpstream,
    body: "no healthy upstream",
};

/// The upstream refused or never completed the connection (flag UF).
pub const CONNECT_FAILURE: LocalReply = LocalReply {
    status: 503,
    flag: ResponseFlag::UpstreamConnectionFailure,
    body: "upstream connect error or disconnect/reset before headers. reset reason: remote connection failure",
};

/// Every attempt failed to connect and the retries are spent (Envoy's `URX,UF`).
pub const RETRIED_CONNECT_FAILURE: LocalReply = LocalReply {
    status: 503,
    flag: ResponseFlag::RetriedConnectionFailure,
    body: "upstream connect error or disconnect/reset before headers. retried and the latest reset reason: remote connection failure",
};

/// The upstream closed or reset the connection before sending response headers (flag UC).
pub const CONNECTION_TERMINATION: LocalReply = LocalReply {
    status: 503,
    flag: ResponseFlag::UpstreamConnectionTermination,
    body: "upstream connect error or disconnect/reset before headers. reset reason: connection termination",
};

/// The upstream reset the HTTP/2 stream before sending response headers (flag UR).
pub const REMOTE_RESET: LocalReply = LocalReply {
    status: 503,
    flag: ResponseFlag::UpstreamRemoteReset,
    body: "upstream connect error or disconnect/reset before headers. reset reason: remote reset",
};

/// A circuit breaker of the cluster (DestinationRule `connectionPool`) is open (flag UO).
pub const OVERFLOW: LocalReply = LocalReply {
    status: 503,
    flag: ResponseFlag::UpstreamOverflow,
    body: "upstream connect error or disconnect/reset before headers. reset reason: overflow",
};

/// No response headers within the route or per-try timeout (flag UT).
pub const UPSTREAM_TIMEOUT: LocalReply = LocalReply {
    status: 504,
    flag: ResponseFlag::UpstreamRequestTimeout,
    body: "upstream request timeout",
};

impl LocalReply {
    /// Writes the reply to the client, with `server: envoy` as Envoy's own replies carry.
    pub async fn send(&self, session: &mut Session) -> pingora::Result<()> {
        let body = Bytes::from_static(self.body.as_bytes());
        // Envoy marks a shed request so that clients and meshes can back off.
        let overloaded = matches!(
            self.flag,
            ResponseFlag::UpstreamOverflow | ResponseFlag::OverloadManager
        )
        .then_some(("x-envoy-overloaded", "true"));
        // Envoy's local rate limit marks its 429 so that routers do not retry it.
        let limited = self.flag == ResponseFlag::RateLimited;
        let extra = overloaded.or(limited.then_some(("x-envoy-ratelimited", "true")));
        write(session, self.status, body, "text/plain", None, extra).await
    }

    /// Writes the reply and closes the connection after it (`connection: close`), as Envoy
    /// does when it rejects a request whose body it will not read.
    pub async fn send_and_close(&self, session: &mut Session) -> pingora::Result<()> {
        let body = Bytes::from_static(self.body.as_bytes());
        let overloaded =
            (self.flag == ResponseFlag::OverloadManager).then_some(("x-envoy-overloaded", "true"));
        let header = build(self.status, &body, "text/plain", None, overloaded)?;
        session.set_keepalive(None);
        write_header_and_body(session, header, body).await
    }
}

/// Writes a complete locally generated response.
pub async fn send(
    session: &mut Session,
    status: u16,
    body: Bytes,
    content_type: &str,
) -> pingora::Result<()> {
    write(session, status, body, content_type, None, None).await
}

/// Writes a local response with an optional `location` (redirects).
pub async fn send_with_location(
    session: &mut Session,
    status: u16,
    body: Bytes,
    location: Option<&str>,
) -> pingora::Result<()> {
    write(session, status, body, "text/plain", location, None).await
}

async fn write(
    session: &mut Session,
    status: u16,
    body: Bytes,
    content_type: &str,
    location: Option<&str>,
    extra: Option<(&'static str, &'static str)>,
) -> pingora::Result<()> {
    let header = build(status, &body, content_type, location, extra)?;
    session.set_keepalive(Some(60));
    write_header_and_body(session, header, body).await
}

fn build(
    status: u16,
    body: &Bytes,
    content_type: &str,
    location: Option<&str>,
    extra: Option<(&'static str, &'static str)>,
) -> pingora::Result<ResponseHeader> {
    let mut header = ResponseHeader::build(status, Some(5))?;
    header.insert_header("server", "envoy")?;
    header.insert_header("content-length", body.len().to_string())?;
    if !body.is_empty() {
        header.insert_header("content-type", content_type)?;
    }
    if let Some(location) = location {
        header.insert_header("location", location)?;
    }
    if let Some((name, value)) = extra {
        header.insert_header(name, value)?;
    }
    Ok(header)
}

async fn write_header_and_body(
    session: &mut Session,
    header: ResponseHeader,
    body: Bytes,
) -> pingora::Result<()> {
    session
        .write_response_header(Box::new(header), body.is_empty())
        .await?;
    if !body.is_empty() {
        session.write_response_body(Some(body), true).await?;
    }
    Ok(())
}
