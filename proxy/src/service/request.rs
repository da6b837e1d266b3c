//! The phases a request goes through before it is sent upstream, in order: admit (limits,
//! Envoy's sanitizing, the request id), route, protect (ApiProtection), inject faults, plan
//! mirrors. Each phase either lets the request go on or answers it.

use std::sync::Arc;

use augur_model::Arm;
use bytes::Bytes;
use pingora::http::RequestHeader;
use pingora::proxy::Session;
use pingora::Result;

use super::capture::{self, Listener};
use super::ctx::RequestCtx;
use super::decide::{decide, Decision, Forwarding};
use super::replay::{BodyCopy, Ticket};
use super::sanitize::{self, Refusal};
use super::{headers, mirroring, AugurProxy};
use crate::local_reply::{self, NO_ROUTE};
use crate::policy_store::Snapshot;
use crate::response_flag::ResponseFlag;
use crate::route::{percent_roll, Route};

/// The header a stable pod's sidecar puts on a request it sends on to the canary, so that the
/// canary pod's sidecar does not split it again (no loop, no sample counted twice). Its value
/// is the policy's mark, [`split_mark`]: `<namespace>/<name>;<fingerprint>`.
///
/// A client may send the header too. On the inbound listener it is removed from every request
/// (apps never see it), and it is honoured only when it carries the mark of the policy that
/// would split the request here; any other value (a bare policy name, a guessed or stale
/// fingerprint) is ignored, and the request is split and sampled like any other.
pub const SPLIT_HEADER: &str = "x-augur-split";

/// The split marks of one policy set: [`split_mark`] per CanaryPolicy.
struct Marks {
    /// The hash of the set they were made from.
    set: String,
    /// `namespace/name` → `namespace/name;fingerprint`.
    by_policy: std::collections::HashMap<String, Arc<str>>,
}

/// The marks of the last policy set seen (made once per set, not per request).
static MARKS: arc_swap::ArcSwapOption<Marks> = arc_swap::ArcSwapOption::const_empty();

/// The value of [`SPLIT_HEADER`] for `policy` (`namespace/name`) in the serving set: the name
/// and the policy's fingerprint ([`augur_policies::fingerprint::rollout_fingerprint`]), which
/// every sidecar holding the same version of the policy computes alike and a client does not
/// see. It is not a credential: whoever knows the exact policy can compute it.
pub(super) fn split_mark(snapshot: &Snapshot, policy: &str) -> Option<Arc<str>> {
    if let Some(marks) = MARKS
        .load()
        .as_ref()
        .filter(|m| m.set == snapshot.loaded.hash)
    {
        return marks.by_policy.get(policy).cloned();
    }
    let set = &snapshot.loaded.set;
    let by_policy = set
        .canary_policies
        .iter()
        .map(|p| {
            let name = augur_policies::policy_key(p);
            let fingerprint = augur_policies::fingerprint::rollout_fingerprint(set, p);
            let mark = Arc::from(format!("{name};{fingerprint}"));
            (name, mark)
        })
        .collect();
    let marks = Arc::new(Marks {
        set: snapshot.loaded.hash.clone(),
        by_policy,
    });
    let found = marks.by_policy.get(policy).cloned();
    MARKS.store(Some(marks));
    found
}

/// What the route phase made of a request.
enum Routed {
    /// It was answered (no route, a redirect, a direct response).
    Answered,
    /// A captured connection no route covers: it goes on to its original destination.
    PassedThrough,
    /// It goes to this destination.
    Forward(Box<Forwarding>),
}

impl AugurProxy {
    /// Runs the phases; `Ok(true)` once the request has been answered here.
    pub(super) async fn filter_request(
        &self,
        session: &mut Session,
        ctx: &mut RequestCtx,
    ) -> Result<bool> {
        if let Some(ticket) = Ticket::of(session) {
            // An attempt sent again: the request was admitted, checked and routed already.
            resume(ticket, ctx, self.retry_buffer_limit, session.req_header());
            return Ok(false);
        }
        if self.admit(session, ctx).await? {
            return Ok(true);
        }
        // One snapshot per request: routing and the shadow model come from the same policy set.
        let snapshot = self.store.snapshot();
        let forwarding = match self.route(&snapshot, session, ctx).await? {
            Routed::Answered => return Ok(true),
            Routed::PassedThrough => return Ok(false),
            Routed::Forward(forwarding) => *forwarding,
        };
        let Forwarding {
            route,
            cluster,
            arm,
            sticky,
            destination,
            rewritten_path,
            rollout,
        } = forwarding;
        ctx.sticky = sticky;
        ctx.destination = destination;
        ctx.rewritten_path = rewritten_path;
        if ctx.inbound && arm != Arm::Canary {
            // Split in a stable pod: stable is the local app, where the request was going.
            ctx.passthrough = capture::original_dst(session);
        }
        ctx.rollout = rollout;
        if self.protect(session, ctx, &route).await? || inject_fault(session, ctx, &route).await? {
            ctx.route = Some(route);
            return Ok(true);
        }
        if route.prediction.is_some() {
            ctx.response_body = Some(Vec::new());
        }
        ctx.body_copy = body_copy(session.req_header(), &route, self.retry_buffer_limit);
        ctx.arm = Some(arm);
        plan_mirrors(&snapshot, &route, session, ctx);
        ctx.route = Some(route);
        ctx.cluster = Some(cluster);
        Ok(false)
    }

    /// Limits, load shedding and what Envoy's connection manager does before routing
    /// ([`sanitize`]); then the request id. `Ok(true)` when refused.
    async fn admit(&self, session: &mut Session, ctx: &mut RequestCtx) -> Result<bool> {
        // HTTP/1.1 requests a client pipelined behind this one are served in order after it
        // (RFC 9112 §9.3.2), as Envoy does, instead of being dropped with the connection.
        session.set_pipelining_enabled(true);
        if let Some(reply) = self.gate.admit(session, self.metrics.active_requests.get()) {
            ctx.flag = reply.flag;
            reply.send_and_close(session).await?;
            return Ok(true);
        }
        ctx.client_h2 = session.is_http2();
        let refusal = sanitize::sanitize(
            session.req_header_mut(),
            ctx.client_h2,
            self.path_normalization,
        );
        if let Err(refusal) = refusal {
            let reply = match refusal {
                Refusal::Reply(reply) => {
                    reply.send(session).await?;
                    reply
                }
                Refusal::ReplyAndClose(reply) => {
                    reply.send_and_close(session).await?;
                    reply
                }
            };
            ctx.flag = reply.flag;
            return Ok(true);
        }
        ctx.request_id = Some(headers::ensure_request_id(session.req_header_mut())?);
        Ok(false)
    }

    /// Finds the request's route and destination, answers redirects, direct responses and
    /// requests no route takes, and passes captured traffic no policy covers through.
    async fn route(
        &self,
        snapshot: &Snapshot,
        session: &mut Session,
        ctx: &mut RequestCtx,
    ) -> Result<Routed> {
        let listener = self.capture.listener(session);
        if listener == Listener::Inbound {
            // Inbound: the local app, at the address the client dialled, unless a policy splits
            // this pod's inbound traffic and no sidecar split this request already. Whoever
            // sent the mark, it goes no further than here.
            ctx.inbound = true;
            let mark = session.req_header_mut().remove_header(SPLIT_HEADER);
            let Some(dst) = capture::original_dst(session) else {
                return Ok(Routed::PassedThrough);
            };
            if let Decision::Forward(f) = decide(snapshot, &self.weights, session, true) {
                if let Some(policy) = f.rollout.as_deref() {
                    let split_already = mark.as_ref().is_some_and(|v| {
                        split_mark(snapshot, policy).is_some_and(|m| v.as_bytes() == m.as_bytes())
                    });
                    if !split_already {
                        if mark.is_some() {
                            tracing::debug!(
                                policy,
                                "ignored an x-augur-split that is not this policy's mark"
                            );
                        }
                        return Ok(Routed::Forward(f));
                    }
                }
            }
            ctx.passthrough = Some(dst);
            return Ok(Routed::PassedThrough);
        }
        match decide(snapshot, &self.weights, session, false) {
            Decision::Reply(reply) if reply == NO_ROUTE && listener == Listener::Outbound => {
                // ALLOW_ANY: a destination no policy covers is passed through.
                if let Some(dst) = capture::original_dst(session) {
                    ctx.passthrough = Some(dst);
                    return Ok(Routed::PassedThrough);
                }
                ctx.flag = reply.flag;
                reply.send(session).await?;
                Ok(Routed::Answered)
            }
            Decision::Reply(reply) => {
                ctx.flag = reply.flag;
                reply.send(session).await?;
                Ok(Routed::Answered)
            }
            Decision::Local {
                status,
                body,
                location,
            } => {
                local_reply::send_with_location(session, status, body, location.as_deref()).await?;
                Ok(Routed::Answered)
            }
            Decision::Forward(forwarding) => Ok(Routed::Forward(forwarding)),
        }
    }

    /// The route's ApiProtection: API key, rate limit, declared body size. `Ok(true)` when
    /// refused.
    async fn protect(
        &self,
        session: &mut Session,
        ctx: &mut RequestCtx,
        route: &Route,
    ) -> Result<bool> {
        let Some(protection) = &route.protection else {
            return Ok(false);
        };
        let client = session
            .client_addr()
            .and_then(|a| a.as_inet())
            .map(|a| a.ip());
        if let Some(reply) = protection.check(&self.limiter, session.req_header_mut(), client) {
            ctx.flag = reply.flag;
            reply.send(session).await?;
            return Ok(true);
        }
        let declared = crate::limits::declared_body_bytes(session.req_header());
        if protection
            .max_request_body_bytes
            .is_some_and(|max| declared.is_some_and(|n| n > max))
        {
            // The body is never read: close, so it cannot be taken for the next request.
            crate::limits::PAYLOAD_TOO_LARGE
                .send_and_close(session)
                .await?;
            return Ok(true);
        }
        Ok(false)
    }
}

/// The route's `fault`: a delay (flag DI), then an abort (flag FI). `Ok(true)` when aborted.
async fn inject_fault(session: &mut Session, ctx: &mut RequestCtx, route: &Route) -> Result<bool> {
    let Some(fault) = &route.fault else {
        return Ok(false);
    };
    if let Some(delay) = fault
        .delay
        .as_ref()
        .filter(|d| percent_roll(d.percentage.value()))
    {
        ctx.flag = ResponseFlag::DelayInjected;
        tokio::time::sleep(delay.fixed_delay).await;
    }
    if let Some(abort) = fault
        .abort
        .as_ref()
        .filter(|a| percent_roll(a.percentage.value()))
    {
        ctx.flag = ResponseFlag::FaultInjected;
        local_reply::send(
            session,
            abort.http_status,
            Bytes::from_static(b"fault filter abort"),
            "text/plain",
        )
        .await?;
        return Ok(true);
    }
    Ok(false)
}

/// Rolls the route's mirrors and its shadow model's share; the chosen copies keep the body as
/// it streams.
fn plan_mirrors(snapshot: &Snapshot, route: &Arc<Route>, session: &Session, ctx: &mut RequestCtx) {
    if route.mirrors.is_empty() && route.shadow_percentage.is_none() {
        return;
    }
    let shadow = ctx
        .rollout
        .as_deref()
        .and_then(|p| snapshot.shadows.get(p).cloned());
    ctx.mirror = mirroring::plan(
        route,
        ctx.rollout.clone(),
        shadow,
        session.req_header(),
        ctx.request_id.as_deref(),
    );
}

/// The copy of the request body a retry may need ([`BodyCopy::for_request`]).
fn body_copy(req: &RequestHeader, route: &Route, limit: u64) -> Option<BodyCopy> {
    BodyCopy::for_request(
        crate::limits::declared_body_bytes(req),
        req.headers.contains_key(http::header::TRANSFER_ENCODING),
        route.retry.attempts,
        limit,
    )
}

/// Restores the routing decision of a request whose next attempt runs as a subrequest
/// ([`super::replay`]), so that the attempt goes to the same cluster and reports back to it.
fn resume(ticket: &Ticket, ctx: &mut RequestCtx, retry_buffer_limit: u64, req: &RequestHeader) {
    ctx.active.release();
    ctx.route = Some(Arc::clone(&ticket.route));
    ctx.cluster = Some(Arc::clone(&ticket.cluster));
    ctx.arm = Some(ticket.arm);
    ctx.sticky = ticket.sticky;
    ctx.client_h2 = ticket.client_h2;
    ctx.request_id = ticket.request_id.clone();
    ctx.attempts = ticket.attempts_before;
    ctx.outcome = Some(Arc::clone(&ticket.outcome));
    ctx.destination = ticket.destination;
    ctx.rewritten_path = ticket.rewritten_path.clone();
    ctx.rollout = ticket.rollout.clone();
    ctx.passthrough = ticket.local;
    ctx.inbound = ticket.local.is_some();
    ctx.body_copy = body_copy(req, &ticket.route, retry_buffer_limit);
}
