//! Classifies proxy failures the way Envoy reports them: status, response flag and body.

use pingora::{Error, ErrorSource, ErrorType};

use crate::local_reply::{
    LocalReply, CONNECTION_TERMINATION, CONNECT_FAILURE, OVERFLOW, REMOTE_RESET, UPSTREAM_TIMEOUT,
};

/// A circuit breaker of the cluster refused the request (answered 503 UO).
pub const CIRCUIT_OPEN: ErrorType = ErrorType::new("augur: circuit breaker overflow");

/// pingora's error for a malformed chunked body (`pingora-core` `v1::body::INVALID_CHUNK`).
const INVALID_CHUNK: ErrorType = ErrorType::new("InvalidChunk");

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
        // A request body pingora cannot frame (bad chunk syntax): Envoy's `400`.
        (ErrorSource::Downstream, t) if *t == INVALID_CHUNK || *t == InvalidHTTPHeader => {
            Failure::Reply(crate::limits::BAD_REQUEST)
        }
        (ErrorSource::Downstream, _) => Failure::DownstreamGone,
        (_, t) if *t == CIRCUIT_OPEN => Failure::Reply(OVERFLOW),
        (_, t) if *t == crate::limits::BODY_TOO_LARGE => {
            Failure::Reply(crate::limits::PAYLOAD_TOO_LARGE)
        }
        (_, H2Error) if remote_reset(e) => Failure::Reply(REMOTE_RESET),
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

/// Whether the upstream reset the HTTP/2 stream (RST_STREAM), which Envoy reports as UR.
fn remote_reset(e: &Error) -> bool {
    e.root_cause()
        .downcast_ref::<h2::Error>()
        .is_some_and(|h2| h2.is_reset() && h2.is_remote())
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
