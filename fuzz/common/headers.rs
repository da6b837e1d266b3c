//! The `headers` fuzz target's input and checks, shared by the target
//! (`fuzz/fuzz_targets/headers.rs`) and its replay under `cargo test`
//! (`proxy/tests/fuzz_corpus.rs`), which both include this file with `#[path]`.
//!
//! Header handling on untrusted requests: hop-by-hop stripping (with headers the client
//! nominates in `Connection`), `x-request-id`, a route's set/add/remove edits on the request
//! and the response, and the `Host` port stripping the router does.
//!
//! The input is structured ([`arbitrary`]): a request (method, path, headers in order), the
//! route's header operations (names lowercased as the policy loader does) and a status.
//!
//! Checked beyond "no panic": after stripping, no hop-by-hop header is left and `Host`,
//! `Content-Length` and `Transfer-Encoding` survive even when nominated; the request id
//! returned is the one the request carries; after an edit that succeeded, removed headers
//! are gone and set ones hold their value.

use arbitrary::Arbitrary;
use augur_policies::HeaderOperations;
use augur_proxy::route::host;
use augur_proxy::service::headers::{
    edit_request, edit_response, ensure_request_id, strip_hop_by_hop, HOP_BY_HOP,
};
use pingora::http::{RequestHeader, ResponseHeader};

/// A route's header operations, before the loader lowercases the names.
#[derive(Arbitrary, Debug)]
struct Ops {
    set: Vec<(String, String)>,
    add: Vec<(String, String)>,
    remove: Vec<String>,
}

impl Ops {
    fn to_policy(&self) -> HeaderOperations {
        let lower = |list: &[(String, String)]| {
            list.iter()
                .map(|(k, v)| (k.to_ascii_lowercase(), v.clone()))
                .collect()
        };
        HeaderOperations {
            set: lower(&self.set),
            add: lower(&self.add),
            remove: self.remove.iter().map(|k| k.to_ascii_lowercase()).collect(),
        }
    }
}

/// The whole input.
#[derive(Arbitrary, Debug)]
pub(crate) struct Input {
    method: String,
    path: Vec<u8>,
    headers: Vec<(String, Vec<u8>)>,
    request_ops: Ops,
    response_ops: Ops,
    status: u16,
}

/// Headers a client may not strip through `Connection`.
const PROTECTED: [&str; 3] = ["host", "content-length", "transfer-encoding"];

/// After a successful edit: removed names are absent, set names (not removed) hold their value.
fn check_edit(headers: &pingora::http::HMap, ops: &HeaderOperations) {
    for k in &ops.remove {
        assert!(
            headers.get(k.as_str()).is_none(),
            "{k:?} survived its removal"
        );
    }
    for (k, v) in &ops.set {
        if ops.remove.contains(k) || ops.add.iter().any(|(a, _)| a == k) {
            continue;
        }
        let last_set = ops.set.iter().rev().find(|(s, _)| s == k).map(|(_, v)| v);
        if last_set != Some(v) {
            continue;
        }
        let got: Vec<_> = headers.get_all(k.as_str()).iter().collect();
        assert_eq!(got.len(), 1, "{k:?} set once, found {}", got.len());
        assert_eq!(
            got[0].as_bytes(),
            v.as_bytes(),
            "{k:?} does not hold its set value"
        );
    }
}

/// Builds the input's request, strips, identifies and edits it, edits the response, and
/// checks each step; returns whether the request could be built (the other inputs stop there).
pub(crate) fn check(input: &Input) -> bool {
    let Ok(mut req) = RequestHeader::build(input.method.as_str(), &input.path, None) else {
        return false;
    };
    for (name, value) in &input.headers {
        let _ = req.append_header(name.clone(), value.as_slice());
    }
    if let Some(authority) = req.headers.get("host").and_then(|v| v.to_str().ok()) {
        let stripped = host::strip_port(authority);
        assert!(
            authority.contains(stripped),
            "strip_port invented {stripped:?}"
        );
    }

    let before: Vec<bool> = PROTECTED
        .iter()
        .map(|h| req.headers.get(*h).is_some())
        .collect();
    strip_hop_by_hop(&mut req);
    for h in HOP_BY_HOP {
        assert!(req.headers.get(h).is_none(), "hop-by-hop {h:?} survived");
    }
    for (h, was) in PROTECTED.iter().zip(before) {
        assert_eq!(req.headers.get(*h).is_some(), was, "{h:?} was stripped");
    }

    if let Ok(id) = ensure_request_id(&mut req) {
        let carried = req.headers.get("x-request-id").map(|v| v.as_bytes());
        assert_eq!(carried, Some(id.as_bytes()), "request id not carried");
    }

    let ops = input.request_ops.to_policy();
    if edit_request(&mut req, &ops).is_ok() {
        check_edit(&req.headers, &ops);
    }
    let Ok(mut resp) = ResponseHeader::build(input.status, None) else {
        return true;
    };
    let ops = input.response_ops.to_policy();
    if edit_response(&mut resp, &ops).is_ok() {
        check_edit(&resp.headers, &ops);
    }
    true
}
