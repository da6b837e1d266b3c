//! Multi-document YAML in and out, through `serde_yaml_ng`.
//!
//! `serde_yaml_ng` rather than the workspace's `saphyr`: injection works on
//! `serde_json::Value` (the webhook's native shape), and `serde_yaml_ng` converts both ways
//! through serde and reads a multi-document stream, which saphyr (no serde) does not. It is
//! the maintained fork of the archived `serde_yaml`. Comments are not preserved (neither does
//! `istioctl kube-inject`); keys come out sorted.

use serde::Deserialize;
use serde_json::Value;
use thiserror::Error;

/// A document that is not valid YAML.
#[derive(Debug, Error)]
#[error("YAML document {index}: {message}")]
pub struct YamlError {
    /// 1-based document number.
    pub index: usize,
    /// The parser's message (with line and column).
    pub message: String,
}

/// Parses every document of a YAML stream; empty documents are dropped.
pub fn parse_documents(text: &str) -> Result<Vec<Value>, YamlError> {
    let mut docs = Vec::new();
    for (i, doc) in serde_yaml_ng::Deserializer::from_str(text).enumerate() {
        let value = Value::deserialize(doc).map_err(|e| YamlError {
            index: i + 1,
            message: e.to_string(),
        })?;
        if !value.is_null() {
            docs.push(value);
        }
    }
    Ok(docs)
}

/// Writes documents as one YAML stream separated by `---`.
pub fn render_documents(docs: &[Value]) -> Result<String, YamlError> {
    let mut out = String::new();
    for (i, doc) in docs.iter().enumerate() {
        if i > 0 {
            out.push_str("---\n");
        }
        out.push_str(&serde_yaml_ng::to_string(doc).map_err(|e| YamlError {
            index: i + 1,
            message: e.to_string(),
        })?);
    }
    Ok(out)
}
