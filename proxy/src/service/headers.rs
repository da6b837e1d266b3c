//! Request and response header handling shared with Envoy: hop-by-hop stripping, request ids,
//! forwarded protocol, attempt count and the route's set/add/remove edits.

use augur_policies::HeaderOperations;
use pingora::http::{RequestHeader, ResponseHeader};

/// Hop-by-hop headers (RFC 9110 §7.6.1) that never cross a proxy.
pub const HOP_BY_HOP: [&str; 8] = [
    "connection",
    "keep-alive",
    "proxy-connection",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "upgrade",
];

/// Removes hop-by-hop headers, including those the client nominated in `Connection`.
/// `transfer-encoding` is left to pingora, which re-frames the body itself.
pub fn strip_hop_by_hop(req: &mut RequestHeader) {
    let nominated: Vec<String> = req
        .headers
        .get_all("connection")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|t| t.trim().to_ascii_lowercase())
        .filter(|t| !t.is_empty() && !is_protected(t))
        .collect();
    for name in nominated.iter().map(String::as_str).chain(HOP_BY_HOP) {
        req.remove_header(name);
    }
}

/// Whether the client asked for trailers (`te: trailers`). Envoy forwards exactly that `te`
/// value upstream, and drops every other: gRPC needs it end to end.
pub fn wants_trailers(client: &RequestHeader) -> bool {
    client
        .headers
        .get_all("te")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|t| {
            t.split(';')
                .next()
                .unwrap_or("")
                .trim()
                .eq_ignore_ascii_case("trailers")
        })
}

/// Headers a client may not strip through `Connection` (Envoy refuses to remove these).
fn is_protected(name: &str) -> bool {
    matches!(
        name,
        "host" | ":authority" | "content-length" | "transfer-encoding"
    ) || name.starts_with(':')
}

/// Ensures the request carries an `x-request-id`; returns it. A new one is a UUIDv4.
pub fn ensure_request_id(req: &mut RequestHeader) -> pingora::Result<String> {
    if let Some(id) = req
        .headers
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
    {
        if !id.is_empty() {
            return Ok(id.to_owned());
        }
    }
    // A UUIDv4 from the thread-local generator: `Uuid::new_v4` would ask the kernel
    // (`getrandom`) on every request, a system call the profile showed on each one.
    let uuid = uuid::Builder::from_random_bytes(rand::random()).into_uuid();
    let mut buf = uuid::Uuid::encode_buffer();
    let id: &str = uuid.hyphenated().encode_lower(&mut buf);
    req.insert_header("x-request-id", id)?;
    Ok(id.to_owned())
}

/// Applies a route's request edits.
pub fn edit_request(req: &mut RequestHeader, ops: &HeaderOperations) -> pingora::Result<()> {
    for (k, v) in &ops.set {
        req.insert_header(k.clone(), v.as_str())?;
    }
    for (k, v) in &ops.add {
        req.append_header(k.clone(), v.as_str())?;
    }
    for k in &ops.remove {
        req.remove_header(k.as_str());
    }
    Ok(())
}

/// Applies a route's response edits.
pub fn edit_response(resp: &mut ResponseHeader, ops: &HeaderOperations) -> pingora::Result<()> {
    for (k, v) in &ops.set {
        resp.insert_header(k.clone(), v.as_str())?;
    }
    for (k, v) in &ops.add {
        resp.append_header(k.clone(), v.as_str())?;
    }
    for k in &ops.remove {
        resp.remove_header(k.as_str());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strips_standard_and_nominated_hop_by_hop_headers() {
        let mut req = RequestHeader::build("GET", b"/", None).unwrap();
        req.insert_header("connection", "keep-alive, x-secret, Host")
            .unwrap();
        req.insert_header("keep-alive", "timeout=5").unwrap();
        req.insert_header("x-secret", "1").unwrap();
        req.insert_header("host", "model").unwrap();
        req.insert_header("x-keep", "1").unwrap();
        strip_hop_by_hop(&mut req);
        assert!(req.headers.get("connection").is_none());
        assert!(req.headers.get("keep-alive").is_none());
        assert!(req.headers.get("x-secret").is_none());
        assert_eq!(
            req.headers.get("host").unwrap(),
            "model",
            "host cannot be nominated"
        );
        assert!(req.headers.get("x-keep").is_some());
    }

    #[test]
    fn only_te_trailers_asks_for_trailers() {
        let mut req = RequestHeader::build("POST", b"/", None).unwrap();
        req.insert_header("te", "gzip, trailers;q=1").unwrap();
        assert!(wants_trailers(&req));
        let mut req = RequestHeader::build("POST", b"/", None).unwrap();
        req.insert_header("te", "gzip").unwrap();
        assert!(!wants_trailers(&req));
        strip_hop_by_hop(&mut req);
        assert!(req.headers.get("te").is_none());
    }

    #[test]
    fn request_id_is_kept_or_generated() {
        let mut req = RequestHeader::build("GET", b"/", None).unwrap();
        req.insert_header("x-request-id", "abc").unwrap();
        assert_eq!(ensure_request_id(&mut req).unwrap(), "abc");
        let mut fresh = RequestHeader::build("GET", b"/", None).unwrap();
        let id = ensure_request_id(&mut fresh).unwrap();
        assert_eq!(uuid::Uuid::parse_str(&id).unwrap().get_version_num(), 4);
        assert_eq!(
            fresh.headers.get("x-request-id").unwrap().to_str().unwrap(),
            id
        );
    }
}
