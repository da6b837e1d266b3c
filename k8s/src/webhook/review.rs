//! AdmissionReview v1 in, AdmissionReview v1 out: the webhook's decision as a pure function.
//!
//! The pod in `request.object` goes through [`crate::inject::inject`]; the difference
//! between it and the result becomes an RFC 6902 JSON Patch, base64-encoded in
//! `response.patch`. Skipped pods (opt-out, hostNetwork, already injected) are allowed with
//! no patch. A pod whose annotations cannot be honoured is denied with the reason, so the
//! mistake surfaces at `kubectl apply` rather than as a crash-looping sidecar.

use base64::Engine as _;
use serde_json::{json, Value};

use crate::inject::{inject, InjectConfig};

/// Builds the AdmissionReview response for `review` (the request body).
pub fn review(review: &Value, cfg: &InjectConfig) -> Value {
    let uid = review
        .pointer("/request/uid")
        .cloned()
        .unwrap_or_else(|| json!(""));
    let response = match review.pointer("/request/object") {
        Some(object) => respond(object, review, cfg),
        None => denied("AdmissionReview has no request.object", 400),
    };
    let mut response = response;
    response["uid"] = uid;
    json!({
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "response": response,
    })
}

fn respond(object: &Value, review: &Value, cfg: &InjectConfig) -> Value {
    let mut pod = object.clone();
    // Pods in admission requests may lack kind; the request's kind tells.
    if pod.get("kind").is_none() {
        let kind = review
            .pointer("/request/kind/kind")
            .cloned()
            .unwrap_or_else(|| json!("Pod"));
        pod["kind"] = kind;
    }
    match inject(&pod, cfg) {
        Ok(injected) if injected.skipped.is_some() => json!({"allowed": true}),
        Ok(injected) => {
            let patch = json_patch::diff(&pod, &injected.object);
            let bytes = serde_json::to_vec(&patch).unwrap_or_default();
            json!({
                "allowed": true,
                "patchType": "JSONPatch",
                "patch": base64::engine::general_purpose::STANDARD.encode(bytes),
            })
        }
        Err(err) => denied(&format!("augur injection: {err}"), 400),
    }
}

fn denied(message: &str, code: u16) -> Value {
    json!({
        "allowed": false,
        "status": {"code": code, "message": message},
    })
}
