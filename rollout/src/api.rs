//! The rollout half of the admin API, the same in `augur proxy` and `augur controller`:
//! `GET /rollouts`, `POST /rollouts/{name}/{command}`, `POST /labels`, and the live dashboard
//! (`GET /ui`, its assets, and `GET /rollouts/{name}/history`). Handlers take the request's
//! parts and return an [`ApiReply`]; each server puts it on its own wire.
//!
//! The dashboard is one HTML page with its script and styles, embedded in the binary (no build
//! step, nothing fetched from elsewhere). It polls `GET /rollouts` and the history once a
//! second and draws its charts as inline SVG; its buttons call `POST /rollouts/{name}/...`,
//! sending `Authorization: Bearer <token>` when the user typed one.

use augur_analyzer::rollout::Command;
use http::{Method, StatusCode};
use serde::Deserialize;

use crate::sample;
use crate::status::{CommandReply, LabelsReply};
use crate::{RolloutError, Rollouts};

const INDEX_HTML: &str = include_str!("ui/index.html");
const APP_JS: &str = include_str!("ui/app.js");
const STYLE_CSS: &str = include_str!("ui/style.css");

/// A complete response of the rollout API.
#[derive(Debug)]
pub struct ApiReply {
    /// The status.
    pub status: StatusCode,
    /// Its `Content-Type`.
    pub content_type: &'static str,
    /// The body.
    pub body: Vec<u8>,
}

impl ApiReply {
    /// A plain-text reply.
    pub fn text(status: StatusCode, body: impl Into<String>) -> Self {
        Self {
            status,
            content_type: "text/plain; charset=UTF-8",
            body: body.into().into_bytes(),
        }
    }

    /// A `200` with pretty JSON.
    pub fn json(value: &impl serde::Serialize) -> Self {
        let mut body = serde_json::to_vec_pretty(value).unwrap_or_default();
        body.push(b'\n');
        Self {
            status: StatusCode::OK,
            content_type: "application/json",
            body,
        }
    }
}

/// Whether `path` is one of this API's, so that a server can send it here (and check that
/// mutations are allowed first: see [`is_mutation`]).
pub fn handles(path: &str) -> bool {
    path == "/rollouts"
        || path.starts_with("/rollouts/")
        || path == "/labels"
        || path == "/ui"
        || path.starts_with("/ui/")
}

/// Whether a request changes something (a command or a label), which servers accept from
/// loopback or with the token only.
pub fn is_mutation(method: &Method, path: &str) -> bool {
    method == Method::POST && (path == "/labels" || command_path(path).is_some())
}

/// Answers a request on one of the paths [`handles`] accepts.
pub fn answer(rollouts: &Rollouts, method: &Method, path: &str, body: &[u8]) -> ApiReply {
    let mutating_path = path == "/labels" || command_path(path).is_some();
    if method != Method::POST && mutating_path {
        return ApiReply::text(StatusCode::BAD_REQUEST, "This endpoint requires POST\n");
    }
    if method == Method::GET {
        if path == "/rollouts" {
            return ApiReply::json(&rollouts.status());
        }
        if let Some(name) = history_name(path) {
            return match rollouts.history(name) {
                Some(history) => ApiReply::json(&history),
                None => ApiReply::text(
                    StatusCode::NOT_FOUND,
                    format!("no rollout named {name:?}; `GET /rollouts` lists them\n"),
                ),
            };
        }
        return ui_asset(path);
    }
    if method != Method::POST {
        return ApiReply::text(StatusCode::METHOD_NOT_ALLOWED, "method not allowed\n");
    }
    match command_path(path) {
        Some(rest) => command(rollouts, rest, body),
        None if path == "/labels" => labels(rollouts, body),
        None => ApiReply::text(
            StatusCode::NOT_FOUND,
            "expected /rollouts/{name}/{command}\n",
        ),
    }
}

/// `/rollouts/{name}/{verb}` → `{name}/{verb}`, for anything but a history.
fn command_path(path: &str) -> Option<&str> {
    path.strip_prefix("/rollouts/")
        .filter(|rest| history_name(path).is_none() && !rest.is_empty())
}

/// What a command's body may say: `{"force": true}` lets `promote` skip an analysis gate that
/// lacks the evidence to open.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct CommandBody {
    #[serde(default)]
    force: bool,
}

/// `POST /rollouts/{namespace/name or name}/{start|promote|promote-full|abort|retry|pause|resume}`,
/// with an empty body or `{"force": true}` (promote only).
fn command(rollouts: &Rollouts, rest: &str, body: &[u8]) -> ApiReply {
    let Some((name, verb)) = rest.rsplit_once('/') else {
        return ApiReply::text(
            StatusCode::NOT_FOUND,
            "expected /rollouts/{name}/{command}\n",
        );
    };
    let command = match verb {
        "start" => Command::Start,
        "promote" => Command::Promote,
        "promote-full" => Command::PromoteFull,
        "abort" => Command::Abort,
        "retry" => Command::Retry,
        "pause" => Command::Pause,
        "resume" => Command::Resume,
        _ => return ApiReply::text(
            StatusCode::NOT_FOUND,
            "unknown command: use start, promote, promote-full, abort, retry, pause or resume\n",
        ),
    };
    let options = if body.iter().all(u8::is_ascii_whitespace) {
        CommandBody::default()
    } else {
        match serde_json::from_slice::<CommandBody>(body) {
            Ok(o) => o,
            Err(e) => {
                return ApiReply::text(
                    StatusCode::BAD_REQUEST,
                    format!("expected an empty body or {{\"force\": true}}: {e}\n"),
                )
            }
        }
    };
    let command = match (command, options.force) {
        (Command::Promote, true) => Command::PromoteForce,
        (c, false) => c,
        (c, true) => {
            return ApiReply::text(
                StatusCode::BAD_REQUEST,
                format!("\"force\" applies to promote only, not {c}\n"),
            )
        }
    };
    match rollouts.command(name, command, sample::now()) {
        Ok(decision) => ApiReply::json(&CommandReply { decision }),
        Err(e @ RolloutError::Unknown(_)) => {
            ApiReply::text(StatusCode::NOT_FOUND, format!("{e}\n"))
        }
        Err(e @ (RolloutError::NotAllowed(_) | RolloutError::ShadowOnly(..))) => {
            ApiReply::text(StatusCode::CONFLICT, format!("{e}\n"))
        }
    }
}

/// One ground-truth label: the request id the model answered and the true class.
#[derive(Debug, Deserialize)]
pub struct Label {
    /// The request id (`x-request-id`) of the prediction.
    pub request_id: String,
    /// The true class.
    pub label: String,
}

/// A body of one label or `{"labels": [...]}`.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum Labels {
    Many { labels: Vec<Label> },
    One(Label),
}

/// Parses a `POST /labels` body: one label or `{"labels": [...]}`; the error is the reply.
pub fn parse_labels(body: &[u8]) -> Result<Vec<Label>, ApiReply> {
    match serde_json::from_slice::<Labels>(body) {
        Ok(Labels::Many { labels }) => Ok(labels),
        Ok(Labels::One(one)) => Ok(vec![one]),
        Err(e) => Err(ApiReply::text(
            StatusCode::BAD_REQUEST,
            format!(
                "expected {{\"request_id\": ..., \"label\": ...}} or {{\"labels\": [...]}}: {e}\n"
            ),
        )),
    }
}

/// `POST /labels`: joins delayed ground truth to recorded predictions by request id.
fn labels(rollouts: &Rollouts, body: &[u8]) -> ApiReply {
    let labels = match parse_labels(body) {
        Ok(labels) => labels,
        Err(reply) => return reply,
    };
    let now = sample::now();
    let matched = labels
        .iter()
        .filter(|l| rollouts.label(&l.request_id, &l.label, now))
        .count();
    ApiReply::json(&LabelsReply {
        received: labels.len(),
        matched,
    })
}

/// The dashboard's page and assets.
fn ui_asset(path: &str) -> ApiReply {
    let (content_type, body) = match path {
        "/ui" | "/ui/" | "/ui/index.html" => ("text/html; charset=UTF-8", INDEX_HTML),
        "/ui/app.js" => ("text/javascript; charset=UTF-8", APP_JS),
        "/ui/style.css" => ("text/css; charset=UTF-8", STYLE_CSS),
        _ => return ApiReply::text(StatusCode::NOT_FOUND, "invalid path\n"),
    };
    ApiReply {
        status: StatusCode::OK,
        content_type,
        body: body.as_bytes().to_vec(),
    }
}

/// `/rollouts/{name}/history` → `name` (which may be `namespace/name`).
fn history_name(path: &str) -> Option<&str> {
    path.strip_prefix("/rollouts/")?
        .strip_suffix("/history")
        .filter(|n| !n.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths() {
        assert!(handles("/ui"));
        assert!(handles("/ui/app.js"));
        assert!(!handles("/uix"));
        assert_eq!(
            history_name("/rollouts/default/pneumonia/history"),
            Some("default/pneumonia")
        );
        assert_eq!(
            history_name("/rollouts/pneumonia/history"),
            Some("pneumonia")
        );
        assert_eq!(history_name("/rollouts//history"), None);
        assert!(is_mutation(&Method::POST, "/rollouts/pneumonia/promote"));
        assert!(is_mutation(&Method::POST, "/labels"));
        assert!(!is_mutation(&Method::POST, "/rollouts/pneumonia/history"));
        assert!(!is_mutation(&Method::GET, "/rollouts/pneumonia/promote"));
    }

    #[test]
    fn the_page_loads_its_assets_from_the_admin_port_only() {
        assert!(INDEX_HTML.contains("/ui/app.js") && INDEX_HTML.contains("/ui/style.css"));
        for asset in [INDEX_HTML, APP_JS, STYLE_CSS] {
            // the only absolute URL is the SVG namespace, which is a name, never fetched
            let rest = asset.replace("\"http://www.w3.org/2000/svg\"", "");
            assert!(
                !rest.contains("http://") && !rest.contains("https://") && !rest.contains("//cdn"),
                "the page must work offline: no external resources"
            );
        }
    }
}
