//! Scoring image files from disk, for `augur score`.

use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::model::{ScoreInput, ShadowModel};

/// The result for one file; `error` is set instead of `label`/`score` when it failed.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ScoreReport {
    /// The file.
    pub path: PathBuf,
    /// The predicted label.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub label: Option<String>,
    /// Probability of the positive class.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub score: Option<f32>,
    /// Submission to result, milliseconds (0 when reading failed).
    pub latency_ms: f64,
    /// Why it failed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// Scores `paths` in order. All files are queued before waiting, so a model with a dynamic
/// batch dimension micro-batches them. The content type comes from the extension (`.png`,
/// `.jpg`/`.jpeg`, `.dcm`), else from the bytes.
pub fn score_images(model: &ShadowModel, paths: &[PathBuf]) -> Vec<ScoreReport> {
    let mut pending = Vec::with_capacity(paths.len());
    for path in paths {
        let report = |error: String| ScoreReport {
            path: path.clone(),
            label: None,
            score: None,
            latency_ms: 0.0,
            error: Some(error),
        };
        let queued = std::fs::read(path)
            .map_err(|e| report(format!("cannot read: {e}")))
            .and_then(|body| {
                let (tx, rx) = crossbeam_channel::bounded(1);
                let input = ScoreInput::encoded(body, content_type_for(path));
                model
                    .submit_blocking(input, move |r| {
                        let _ = tx.send(r);
                    })
                    .map(|()| rx)
                    .map_err(|e| report(e.to_string()))
            });
        pending.push((path, queued));
    }
    pending
        .into_iter()
        .map(|(path, queued)| match queued {
            Err(report) => report,
            Ok(rx) => match rx.recv() {
                Ok(Ok(score)) => ScoreReport {
                    path: path.clone(),
                    label: Some(score.label),
                    score: Some(score.score),
                    latency_ms: score.latency.as_secs_f64() * 1e3,
                    error: None,
                },
                Ok(Err(e)) => ScoreReport {
                    path: path.clone(),
                    label: None,
                    score: None,
                    latency_ms: 0.0,
                    error: Some(e.to_string()),
                },
                Err(_) => ScoreReport {
                    path: path.clone(),
                    label: None,
                    score: None,
                    latency_ms: 0.0,
                    error: Some("shadow worker stopped".to_owned()),
                },
            },
        })
        .collect()
}

fn content_type_for(path: &Path) -> Option<&'static str> {
    let ext = path.extension()?.to_str()?.to_ascii_lowercase();
    match ext.as_str() {
        "png" => Some("image/png"),
        "jpg" | "jpeg" => Some("image/jpeg"),
        "dcm" | "dicom" => Some("application/dicom"),
        _ => None,
    }
}
