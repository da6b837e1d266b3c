//! Classifies proxy failures the way Envoy reports them: status, response flag and body.

use pingora::{Error, ErrorSource, ErrorType};

use crate::local_reply::LocalReply;

/// The upstream refused or never completed the connection (flag UF).
pub const CONNECT_FAILURE: LocalReply = LocalReply {
    status: 503,
    flag: "UF",
    body: "upstream connect error or disconnect/reset before headers. reset reason: remote connection failure",
};

/// Every attempt failed to connect and the retries are spent (Envoy's `URX,UF`).
pub const RETRIED_CONNECT_FAILURE: LocalReply = LocalReply {
    status: 503,
    flag: "URX,UF",
    body: "upstream connect error or disconnect/reset before headers. retried and the latest reset reason: remote connection failure",
};

/// The upstream closed or reset the connection before sending response headers (flag UC).
pub const CONNECTION_TERMINATION: LocalReply = LocalReply {
    status: 503,
    flag: "UC",
    body: "upstream connect error or disconnect/reset before headers. reset reason: connection termination",
};

/// No response headers within the route or per-try timeout (flag UT).
pub const UPSTREAM_TIMEOUT: LocalReply = LocalReply {
    status: 504,
    flag: "UT",
    body: "upstream request timeout",
};

/// How a failed request ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    /// Answer the client with this local reply.
    Reply(LocalReply),
    /// The client went away (flag DC): nothing to answer.
    DownstreamGone,
    /// The failure happened after the response started: the connection is cut.
    Internal,
}

/// Maps a pingora error to Envoy's outcome.
pub fn classify(e: &Error) -> Failure {
    use ErrorType::*;
    match (e.esource(), e.etype()) {
        (ErrorSource::Downstream, _) => Failure::DownstreamGone,
        (_, ConnectTimedout | ConnectRefused | ConnectNoRoute | ConnectError | SocketError) => {
            Failure::Reply(CONNECT_FAILURE)
        }
        (_, TLSHandshakeFailure | TLSHandshakeTimedout | InvalidCert | HandshakeError) => {
            Failure::Reply(CONNECT_FAILURE)
        }
        (_, ReadTimedout | WriteTimedout) => Failure::Reply(UPSTREAM_TIMEOUT),
        (_, ConnectionClosed | ReadError | WriteError | H1Error | H2Error | InvalidHTTPHeader) => {
            Failure::Reply(CONNECTION_TERMINATION)
        }
        _ => Failure::Internal,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connect_errors_are_uf_and_timeouts_ut() {
        let refused = Error::new(ErrorType::ConnectRefused).into_up();
        assert_eq!(classify(&refused), Failure::Reply(CONNECT_FAILURE));
        let timeout = Error::new(ErrorType::ReadTimedout).into_up();
        assert_eq!(classify(&timeout), Failure::Reply(UPSTREAM_TIMEOUT));
        let closed = Error::new(ErrorType::ConnectionClosed).into_up();
        assert_eq!(
            classify(&closed).clone(),
            Failure::Reply(CONNECTION_TERMINATION)
        );
        let client = Error::new(ErrorType::ReadError).into_down();
        assert_eq!(classify(&client), Failure::DownstreamGone);
    }
}
