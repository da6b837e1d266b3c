//! `GET /rollouts`, `POST /rollouts/{name}/{command}` and `POST /labels`.

use augur_analyzer::rollout::Command;
use http::StatusCode;
use serde::Deserialize;

use super::{AdminState, Reply};
use crate::rollout::RolloutError;
use crate::sample;

/// `POST /rollouts/{namespace/name or name}/{promote|promote-full|abort|retry|pause|resume}`.
pub(super) fn command(s: &AdminState, rest: &str) -> Reply {
    let Some((name, verb)) = rest.rsplit_once('/') else {
        return Reply::text(
            StatusCode::NOT_FOUND,
            "expected /rollouts/{name}/{command}\n",
        );
    };
    let command = match verb {
        "promote" => Command::Promote,
        "promote-full" => Command::PromoteFull,
        "abort" => Command::Abort,
        "retry" => Command::Retry,
        "pause" => Command::Pause,
        "resume" => Command::Resume,
        _ => {
            return Reply::text(
                StatusCode::NOT_FOUND,
                "unknown command: use promote, promote-full, abort, retry, pause or resume\n",
            )
        }
    };
    match s.rollouts.command(name, command, sample::now()) {
        Ok(decision) => Reply::json(&serde_json::json!({ "decision": decision })),
        Err(e @ RolloutError::Unknown(_)) => Reply::text(StatusCode::NOT_FOUND, format!("{e}\n")),
        Err(e @ RolloutError::NotAllowed(_)) => Reply::text(StatusCode::CONFLICT, format!("{e}\n")),
    }
}

/// One ground-truth label: the request id the model answered and the true class.
#[derive(Debug, Deserialize)]
struct Label {
    request_id: String,
    label: String,
}

/// A body of one label or `{"labels": [...]}`.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum Labels {
    Many { labels: Vec<Label> },
    One(Label),
}

/// `POST /labels`: joins delayed ground truth to recorded predictions by request id.
pub(super) fn labels(s: &AdminState, body: &[u8]) -> Reply {
    let labels = match serde_json::from_slice::<Labels>(body) {
        Ok(Labels::Many { labels }) => labels,
        Ok(Labels::One(one)) => vec![one],
        Err(e) => {
            return Reply::text(
                StatusCode::BAD_REQUEST,
                format!(
                "expected {{\"request_id\": ..., \"label\": ...}} or {{\"labels\": [...]}}: {e}\n"
            ),
            )
        }
    };
    let now = sample::now();
    let matched = labels
        .iter()
        .filter(|l| s.rollouts.label(&l.request_id, &l.label, now))
        .count();
    Reply::json(&serde_json::json!({ "received": labels.len(), "matched": matched }))
}
