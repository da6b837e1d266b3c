//! Retries of request bodies larger than pingora's own retry buffer.
//!
//! pingora replays a body on retry only from a fixed 64 KiB buffer of its own, so a retried
//! chest X-ray (100 KiB to a few MiB) could not be sent again. Envoy buffers request bodies up
//! to `per_connection_buffer_limit_bytes` (1 MiB by default) for its retries and does not retry
//! larger ones. augur does the same with `--retry-buffer-limit`:
//! - [`BodyCopy`] keeps the body chunks as they stream to the first attempt (the `Bytes` that
//!   pingora hands the body filter, so keeping them copies nothing), up to the limit;
//! - when a retry is due and pingora cannot replay the body, the next attempt runs as a pingora
//!   subrequest whose body augur supplies from the copy ([`send_again`]): it goes through the
//!   same filters, endpoint choice, connection pools, TLS and HTTP/2 as the first attempt, and
//!   its answer is piped to the client. A subrequest that needs yet another attempt does the
//!   same in turn, so every attempt past the first is one subrequest;
//! - a body over the limit is never retried: the upstream's answer is returned as it is, or
//!   Envoy's local reply for a failure, and the client always gets a response.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use augur_model::Arm;
use bytes::Bytes;
use pingora::protocols::http::HttpTask;
use pingora::proxy::subrequest::pipe::{pipe_subrequest, InputBody, InputBodyType};
use pingora::proxy::subrequest::{BodyMode, Ctx as SubrequestCtx};
use pingora::proxy::Session;
use pingora::{Error, ErrorType, Result};

use super::ctx::RequestCtx;
use crate::route::{Cluster, Route};

/// pingora's own request-body retry buffer (`pingora-core`'s `BODY_BUF_LIMIT`): bodies up to
/// this size are replayed by pingora itself.
pub const PINGORA_RETRY_BUFFER: u64 = 64 * 1024;

/// Envoy's default `per_connection_buffer_limit_bytes`: bodies up to 1 MiB are retried.
pub const DEFAULT_RETRY_BUFFER_LIMIT: u64 = 1024 * 1024;

/// A request body kept for a retry, up to a limit.
#[derive(Debug)]
pub struct BodyCopy {
    chunks: Vec<Bytes>,
    len: u64,
    limit: u64,
    complete: bool,
    overflowed: bool,
    /// The body's length from `Content-Length`, when the client declared one.
    declared: Option<u64>,
}

impl BodyCopy {
    /// A copy for a request on a route that may retry, when its body may outgrow pingora's
    /// buffer but not `limit`: `Content-Length` above 64 KiB and within the limit, or a
    /// chunked body. `None` for everything else (no body, a small one, or one too large).
    pub fn for_request(
        declared: Option<u64>,
        chunked: bool,
        retries: u32,
        limit: u64,
    ) -> Option<Self> {
        if retries == 0 {
            return None;
        }
        let worth_it = match declared {
            Some(n) => n > PINGORA_RETRY_BUFFER && n <= limit,
            None => chunked,
        };
        worth_it.then(|| Self {
            chunks: Vec::new(),
            len: 0,
            limit,
            complete: false,
            overflowed: false,
            declared,
        })
    }

    /// Keeps a chunk of the body as it streams.
    pub fn keep(&mut self, chunk: &Bytes) {
        if self.overflowed {
            return;
        }
        self.len += chunk.len() as u64;
        if self.len > self.limit {
            // Too large to retry (Envoy stops buffering the same way): let the memory go.
            self.overflowed = true;
            self.chunks = Vec::new();
            return;
        }
        if !chunk.is_empty() {
            self.chunks.push(chunk.clone());
        }
    }

    /// The body ended.
    pub fn finish(&mut self) {
        self.complete = true;
    }

    /// Whether a retry can send this body: all of it is kept, or the rest is declared to fit.
    pub fn replayable(&self) -> bool {
        !self.overflowed && (self.complete || self.declared.is_some_and(|n| n <= self.limit))
    }

    /// Whether the whole body has been kept.
    pub fn is_complete(&self) -> bool {
        self.complete && !self.overflowed
    }

    fn take_chunks(&mut self) -> Vec<Bytes> {
        std::mem::take(&mut self.chunks)
    }
}

/// What the attempts sent as subrequests report back to the request that made them.
#[derive(Debug, Default, Clone)]
pub struct Outcome {
    /// Attempts made so far, the first one included.
    pub attempts: u32,
    /// Envoy's response flag of the last attempt, if any.
    pub flag: crate::response_flag::ResponseFlag,
    /// The endpoint of the last attempt.
    pub endpoint: Option<SocketAddr>,
    /// `x-envoy-upstream-service-time` of the answer.
    pub upstream_ms: Option<u128>,
}

/// What a subrequest that sends an attempt again needs from the request that made it: the
/// routing decision (a retry goes to the same route and cluster; it is not split again) and a
/// place to report what happened.
#[derive(Debug)]
pub struct Ticket {
    /// The route of the request.
    pub route: Arc<Route>,
    /// The destination chosen for it.
    pub cluster: Arc<Cluster>,
    /// Its arm.
    pub arm: Arm,
    /// Its consistent-hash key, for the endpoint choice.
    pub sticky: Option<u64>,
    /// Whether the client spoke HTTP/2 (`useClientProtocol`).
    pub client_h2: bool,
    /// The request id.
    pub request_id: Option<String>,
    /// Attempts made before this subrequest's.
    pub attempts_before: u32,
    /// Shared with every subrequest of the request.
    pub outcome: Arc<Mutex<Outcome>>,
    /// The index of the chosen destination in the route's split.
    pub destination: usize,
    /// The path and query forwarded when the route rewrites the path.
    pub rewritten_path: Option<String>,
    /// The CanaryPolicy whose rollout the request is part of.
    pub rollout: Option<Arc<str>>,
    /// The local app, when a stable pod keeps the request (inbound split).
    pub local: Option<SocketAddr>,
}

impl Ticket {
    /// Records what an attempt did.
    pub fn report(&self, update: impl FnOnce(&mut Outcome)) {
        if let Ok(mut outcome) = self.outcome.lock() {
            update(&mut outcome);
        }
    }

    /// The ticket of a request being sent again, if `session` is such a subrequest.
    pub fn of(session: &Session) -> Option<&Ticket> {
        session
            .subrequest_ctx
            .as_ref()?
            .user_ctx()?
            .downcast_ref::<Ticket>()
    }
}

/// What the subrequest's answer looked like, as it went to the client.
#[derive(Debug, Default)]
pub struct Piped {
    /// Response body bytes sent to the client.
    pub response_bytes: u64,
    /// The response body, kept (up to `keep_up_to`) for a prediction.
    pub body: Option<Vec<u8>>,
}

impl super::AugurProxy {
    /// Sends the next attempt of a request whose body pingora could not keep, when one is due
    /// (`ctx.replay`): `Some(Ok(status))` once an answer reached the client, `Some(Err)` when
    /// the attempt could not be made, `None` when no such retry was due.
    pub(super) async fn send_again(
        &self,
        session: &mut Session,
        ctx: &mut RequestCtx,
    ) -> Option<Result<u16>> {
        if !std::mem::take(&mut ctx.replay) {
            return None;
        }
        // The client may still be sending (the upstream answered early): the rest goes through
        // the body filter as it would have, so limits, mirrors and the copy all see it.
        while !ctx.body_copy.as_ref().is_some_and(BodyCopy::is_complete) {
            if !ctx.body_copy.as_ref().is_some_and(BodyCopy::replayable) {
                return Some(Error::e_explain(
                    ErrorType::InternalError,
                    "request body outgrew the retry buffer",
                ));
            }
            let chunk = match session.downstream_session.read_request_body().await {
                Ok(chunk) => chunk,
                Err(e) => return Some(Err(e)),
            };
            let end = chunk.is_none();
            if let Err(e) = self.filter_request_body(chunk.as_ref(), end, ctx) {
                return Some(Err(e));
            }
        }
        let copy = ctx.body_copy.take()?;
        let (Some(route), Some(cluster), Some(arm)) =
            (ctx.route.clone(), ctx.cluster.clone(), ctx.arm)
        else {
            return None;
        };
        let outcome = Arc::new(Mutex::new(Outcome::default()));
        let ticket = Ticket {
            route,
            cluster,
            arm,
            sticky: ctx.sticky,
            client_h2: ctx.client_h2,
            request_id: ctx.request_id.clone(),
            attempts_before: ctx.attempts,
            outcome: Arc::clone(&outcome),
            destination: ctx.destination,
            rewritten_path: ctx.rewritten_path.clone(),
            rollout: ctx.rollout.clone(),
            local: ctx.passthrough.filter(|_| ctx.inbound),
        };
        let keep = ctx
            .response_body
            .is_some()
            .then_some(crate::sample::MAX_PREDICTION_BODY);
        let piped = match pipe_again(session, copy, ticket, keep).await {
            Ok(piped) => piped,
            Err(e) => return Some(Err(e)),
        };
        if let Ok(o) = outcome.lock() {
            ctx.attempts = o.attempts.max(ctx.attempts);
            ctx.flag = o.flag;
            ctx.endpoint = o.endpoint.or(ctx.endpoint);
            ctx.upstream_ms = o.upstream_ms;
        }
        ctx.response_bytes += piped.response_bytes;
        if ctx.response_body.is_some() {
            ctx.response_body = piped.body;
        }
        let status = session.response_written().map_or(0, |r| r.status.as_u16());
        Some(Ok(status))
    }
}

/// An attempt sent again is over: it reports what it did to the request that made it, which
/// logs and counts the whole.
pub(super) fn report(ctx: &mut RequestCtx) -> bool {
    let Some(outcome) = ctx.outcome.take() else {
        return false;
    };
    if let Ok(mut o) = outcome.lock() {
        o.attempts = ctx.attempts;
        o.flag = ctx.flag;
        o.endpoint = ctx.endpoint;
        o.upstream_ms = ctx.upstream_ms;
    }
    true
}

/// Sends the request again as a subrequest with the whole kept body (the caller has read what
/// the client had not sent yet), and pipes its answer to the client. `keep_up_to` keeps the
/// response body for a prediction. `Err` when nothing reached the client: the caller answers
/// with a local reply.
pub async fn pipe_again(
    session: &mut Session,
    mut copy: BodyCopy,
    ticket: Ticket,
    keep_up_to: Option<usize>,
) -> Result<Piped> {
    if !copy.is_complete() {
        return Error::e_explain(
            ErrorType::InternalError,
            "the request body is not all kept for a retry",
        );
    }
    let Some(spawner) = session.subrequest_spawner.as_ref() else {
        return Error::e_explain(ErrorType::InternalError, "subrequests are not enabled");
    };
    let ctx = SubrequestCtx::builder()
        .body_mode(BodyMode::ExpectBody)
        .user_ctx(Box::new(ticket))
        .build();
    let (prepared, handle) = if session.downstream_session.is_http2() {
        // pingora builds the subrequest from an HTTP/1.1 rendering of the request; for an
        // HTTP/2 client it writes the request line as `HTTP/2` and the authority only in the
        // target, which its own HTTP/1 parser then refuses (a `400` instead of the retry). The
        // subrequest is made from an HTTP/1.1 view of the request (with a Host header from
        // `:authority`), and the client's request is left as it was.
        let req = session.downstream_session.req_header_mut();
        let version = req.version;
        let added_host = host_from_authority(req);
        req.set_version(http::Version::HTTP_11);
        let made = spawner.create_subrequest(&session.downstream_session, ctx);
        let req = session.downstream_session.req_header_mut();
        req.set_version(version);
        if added_host {
            req.remove_header(&http::header::HOST);
        }
        made
    } else {
        spawner.create_subrequest(&session.downstream_session, ctx)
    };
    let chunks = copy.take_chunks();
    let body = if chunks.is_empty() {
        InputBody::NoBody
    } else {
        InputBody::Bytes(chunks)
    };
    let mut piped = Piped {
        response_bytes: 0,
        body: keep_up_to.map(|_| Vec::new()),
    };
    let limit = keep_up_to.unwrap_or(0);
    let mut filter = |task: HttpTask| -> Result<Option<HttpTask>> {
        if let HttpTask::Body(Some(data), _) = &task {
            piped.response_bytes += data.len() as u64;
            if let Some(kept) = piped.body.as_mut() {
                if kept.len() + data.len() <= limit {
                    kept.extend_from_slice(data);
                } else {
                    piped.body = None;
                }
            }
        }
        Ok(Some(task))
    };
    let piped_state = pipe_subrequest(
        session,
        prepared,
        handle,
        &mut filter,
        InputBodyType::Preset(body),
    )
    .await;
    // A subrequest whose own attempt failed still answers: with its next attempt (a third try
    // is a subrequest of this one) or a local reply. pingora reports its failure to this pipe
    // as soon as it ends, and the pipe may take that report before the answer queued ahead of
    // it, so the rest of the answer is forwarded here; the report then only says that an
    // attempt failed. `Err` only when no answer came at all.
    let mut state = match piped_state {
        Ok(state) => state,
        Err(mut e) => {
            if let Some(rx) = e.state.pipe_rx.as_mut() {
                let forwarded = forward_rest(session, rx, &mut filter).await;
                e.state.header_received |= forwarded.header;
                if let Err(write) = forwarded.result {
                    tracing::debug!(error = %write, "the retried answer was cut short");
                }
            }
            if !e.state.header_received {
                return Err(e.error);
            }
            e.state
        }
    };
    if let Some(join) = state.join_handle.take() {
        // The answer is out; let the subrequest's task finish while its channel is held.
        let _ = join.await;
    }
    drop(state);
    Ok(piped)
}

/// Gives `req` a Host header from its URI's authority when it has none (an HTTP/2 request
/// carries it as `:authority`); `true` when one was added.
fn host_from_authority(req: &mut pingora::http::RequestHeader) -> bool {
    if req.headers.contains_key(http::header::HOST) {
        return false;
    }
    let Some(authority) = req.uri.authority().map(|a| a.as_str().to_owned()) else {
        return false;
    };
    req.insert_header(http::header::HOST, authority).is_ok()
}

/// What [`forward_rest`] sent on.
struct Forwarded {
    /// Whether a response header was among it.
    header: bool,
    /// `Err` when the client could not be written to, or the subrequest's answer failed.
    result: Result<()>,
}

/// Sends on to the client what a subrequest still has in the pipe, until its answer is done or
/// the subrequest has ended.
async fn forward_rest(
    session: &mut Session,
    rx: &mut tokio::sync::mpsc::Receiver<HttpTask>,
    filter: &mut impl FnMut(HttpTask) -> Result<Option<HttpTask>>,
) -> Forwarded {
    let mut header = false;
    while let Some(task) = rx.recv().await {
        header |= matches!(task, HttpTask::Header(..));
        let task = match filter(task) {
            Ok(Some(task)) => task,
            Ok(None) => continue,
            Err(e) => {
                return Forwarded {
                    header,
                    result: Err(e),
                }
            }
        };
        match session.write_response_tasks(vec![task]).await {
            Ok(true) => break,
            Ok(false) => {}
            Err(e) => {
                return Forwarded {
                    header,
                    result: Err(e),
                }
            }
        }
    }
    Forwarded {
        header,
        result: Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_bodies_pingora_cannot_replay_and_the_limit_allows_are_kept() {
        let limit = DEFAULT_RETRY_BUFFER_LIMIT;
        assert!(BodyCopy::for_request(Some(1000), false, 2, limit).is_none());
        assert!(BodyCopy::for_request(Some(PINGORA_RETRY_BUFFER), false, 2, limit).is_none());
        assert!(BodyCopy::for_request(Some(PINGORA_RETRY_BUFFER + 1), false, 2, limit).is_some());
        assert!(BodyCopy::for_request(Some(limit), false, 2, limit).is_some());
        assert!(BodyCopy::for_request(Some(limit + 1), false, 2, limit).is_none());
        assert!(BodyCopy::for_request(None, true, 2, limit).is_some());
        assert!(BodyCopy::for_request(None, false, 2, limit).is_none());
        assert!(BodyCopy::for_request(Some(100_000), false, 0, limit).is_none());
    }

    #[test]
    fn a_copy_past_the_limit_is_dropped_and_not_replayable() {
        let mut copy = BodyCopy::for_request(None, true, 2, 10).expect("chunked");
        copy.keep(&Bytes::from_static(b"0123456"));
        assert!(!copy.replayable(), "chunked and not finished");
        copy.keep(&Bytes::from_static(b"789"));
        copy.finish();
        assert!(copy.replayable() && copy.is_complete());
        copy.keep(&Bytes::from_static(b"x"));
        assert!(!copy.replayable());
        assert!(copy.chunks.is_empty(), "memory released");
    }

    #[test]
    fn a_declared_length_within_the_limit_is_replayable_before_it_ends() {
        let copy = BodyCopy::for_request(Some(100_000), false, 1, 200_000).expect("copy");
        assert!(copy.replayable());
        assert!(!copy.is_complete());
    }
}
