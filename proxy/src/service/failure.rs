//! When an attempt fails: whether to try again (Envoy's retry policy, with the body at hand),
//! and the answer the client gets when no attempt is left, classified the way Envoy reports
//! failures (status, response flag and body).

use pingora::proxy::{FailToProxy, Session};
use pingora::{Error, ErrorSource, ErrorType};

use super::ctx::RequestCtx;
use super::replay::BodyCopy;
use super::AugurProxy;
use crate::local_reply::{
    self, LocalReply, CONNECTION_TERMINATION, CONNECT_FAILURE, OVERFLOW, REMOTE_RESET,
    UPSTREAM_TIMEOUT,
};
use crate::response_flag::ResponseFlag;
use crate::route::outlier::Outcome;
use crate::route::RetryPolicy;

/// A circuit breaker of the cluster refused the request (answered 503 UO).
pub const CIRCUIT_OPEN: ErrorType = ErrorType::new("augur: circuit breaker overflow");

/// A response status the route's retry policy retries; raised from the response filter so
/// that the request is sent again.
pub const RETRIABLE_STATUS: ErrorType = ErrorType::new("augur: retriable upstream status");

impl AugurProxy {
    /// A connection attempt failed: retried when the route retries connect failures.
    pub(super) fn on_connect_failure(&self, ctx: &mut RequestCtx, mut e: Box<Error>) -> Box<Error> {
        self.report_outlier(ctx, Outcome::Failure);
        let retry = ctx
            .retry()
            .is_some_and(RetryPolicy::retries_connect_failure);
        e.set_retry(retry && ctx.retries_left());
        e
    }

    /// An attempt failed after connecting (or its status is retried): pingora retries it when
    /// it still holds the whole body; augur does ([`super::replay`]) when only its own copy
    /// does. Never once the response has started.
    pub(super) fn on_proxy_error(
        &self,
        session: &Session,
        ctx: &mut RequestCtx,
        mut e: Box<Error>,
    ) -> Box<Error> {
        let due = session.response_written().is_none() && ctx.retries_left();
        let wanted = if e.etype() == &RETRIABLE_STATUS {
            true
        } else {
            let answered = matches!(classify(&e), Failure::Reply(_));
            if answered {
                self.report_outlier(ctx, Outcome::Failure);
            }
            answered && ctx.retry().is_some_and(RetryPolicy::retries_reset)
        };
        let pingora_can_resend = !session.as_ref().retry_buffer_truncated();
        e.set_retry(due && wanted && pingora_can_resend);
        ctx.replay = due
            && wanted
            && !pingora_can_resend
            && ctx.body_copy.as_ref().is_some_and(BodyCopy::replayable);
        e
    }

    /// No attempt is left: the retry augur sends itself if one is due, else Envoy's local
    /// reply for the failure (nothing when the client is gone or the response had started).
    pub(super) async fn answer_failure(
        &self,
        session: &mut Session,
        e: &Error,
        ctx: &mut RequestCtx,
    ) -> FailToProxy {
        let replay_error;
        let e = match self.send_again(session, ctx).await {
            Some(Ok(status)) => {
                return FailToProxy {
                    error_code: status,
                    can_reuse_downstream: false,
                }
            }
            Some(Err(failed)) => {
                replay_error = failed;
                &*replay_error
            }
            None => e,
        };
        let code = match classify(e) {
            Failure::Reply(reply) if session.response_written().is_none() => {
                let reply = if ctx.attempts > 1 && reply == CONNECT_FAILURE {
                    local_reply::RETRIED_CONNECT_FAILURE
                } else {
                    reply
                };
                ctx.flag = reply.flag;
                if let Err(write) = reply.send(session).await {
                    tracing::debug!(error = %write, "could not send the local reply");
                }
                reply.status
            }
            Failure::DownstreamGone => {
                ctx.flag = ResponseFlag::DownstreamConnectionTermination;
                0
            }
            _ => {
                if !ctx.flag.is_set() {
                    ctx.flag = ResponseFlag::UpstreamConnectionTermination;
                }
                0
            }
        };
        FailToProxy {
            error_code: code,
            can_reuse_downstream: false,
        }
    }
}

/// Whether a failure is one the proxy answers and records itself (an upstream's failure, a
/// client that went away, a body over a limit, a circuit breaker's overflow, a retried status),
/// so that pingora's own error line would only repeat it.
pub(super) fn expected(error: &Error) -> bool {
    matches!(
        error.esource(),
        ErrorSource::Upstream | ErrorSource::Downstream
    ) || [
        &crate::limits::BODY_TOO_LARGE,
        &CIRCUIT_OPEN,
        &RETRIABLE_STATUS,
    ]
    .contains(&error.etype())
}

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
