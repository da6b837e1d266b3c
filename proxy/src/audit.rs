//! The audit log: who changed what, and when, through the admin port or the policy files.
//!
//! One JSON object per line, appended to `--audit-log` (default `audit.jsonl` under
//! `--state-dir`) and repeated on the tracing log (target `augur::audit`). Admin mutations
//! (every POST, allowed or refused) record the peer address, how it was admitted (`loopback`,
//! `bearer`, or `refused`; never the token), the endpoint, its known parameters and the status
//! answered; policy loads and reloads record the trigger, the outcome, the old and new hashes
//! and the files. Nothing a client chose freely (unknown paths, query strings, bodies) is
//! written: parameters are recorded only once validated.
//!
//! 45 CFR 164.312(b) asks systems holding ePHI to "record and examine activity"; the rollout's
//! own decisions have their own audit log beside its state (see [`augur_rollout::persist`]).

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::SystemTime;

use serde::Serialize;
use serde_json::Value;

/// How an admin request was admitted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Admission {
    /// From a loopback address.
    Loopback,
    /// With the admin bearer token (from anywhere).
    Bearer,
    /// Neither: the mutation was refused (403).
    Refused,
}

/// Who did it.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Actor {
    /// The client's address and port.
    pub peer: Option<SocketAddr>,
    /// How it was admitted.
    pub admission: Admission,
}

/// The audit log: a file (optional) and the tracing log.
#[derive(Debug)]
pub struct AuditLog {
    path: Option<PathBuf>,
    file: Option<Mutex<File>>,
}

impl AuditLog {
    /// Appends to `path` (created with its directory when missing).
    pub fn open(path: &Path) -> std::io::Result<Self> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)?;
        }
        let file = OpenOptions::new().create(true).append(true).open(path)?;
        Ok(Self {
            path: Some(path.to_path_buf()),
            file: Some(Mutex::new(file)),
        })
    }

    /// An audit log that only goes to the tracing log.
    pub fn tracing_only() -> Self {
        Self {
            path: None,
            file: None,
        }
    }

    /// The file, if any.
    pub fn path(&self) -> Option<&Path> {
        self.path.as_deref()
    }

    /// Records an admin request.
    pub fn admin(&self, actor: Actor, method: &str, endpoint: &str, params: Value, status: u16) {
        self.record(
            "admin",
            serde_json::json!({
                "actor": actor,
                "method": method,
                "endpoint": endpoint,
                "params": params,
                "status": status,
            }),
        );
    }

    /// Records a policy load or reload.
    pub fn policy(&self, change: &PolicyChange<'_>) {
        self.record(
            "policy",
            serde_json::to_value(change).unwrap_or(Value::Null),
        );
    }

    fn record(&self, kind: &str, mut event: Value) {
        let now = SystemTime::now();
        if let Value::Object(map) = &mut event {
            map.insert("time".into(), crate::access_log::rfc3339(now).into());
            map.insert("kind".into(), kind.into());
        }
        let line = event.to_string();
        tracing::info!(target: "augur::audit", event = %line, "audit");
        let Some(file) = &self.file else { return };
        let mut file = match file.lock() {
            Ok(f) => f,
            Err(poisoned) => poisoned.into_inner(),
        };
        let written = file
            .write_all(format!("{line}\n").as_bytes())
            .and_then(|()| file.flush());
        if let Err(e) = written {
            tracing::error!(error = %e, "cannot append to the audit log");
        }
    }
}

/// A policy load or reload, as the audit log records it.
#[derive(Debug, Serialize)]
pub struct PolicyChange<'a> {
    /// `startup`, `file change` or `SIGHUP`.
    pub trigger: &'a str,
    /// `loaded`, `applied` or `rejected`.
    pub outcome: &'a str,
    /// Hash of the set serving before (none at start-up).
    pub old_hash: Option<&'a str>,
    /// Hash of the set serving after.
    pub new_hash: &'a str,
    /// The files of the set serving after.
    pub files: &'a [PathBuf],
    /// Diagnostics of a rejected set (`file:line:column: path: message`).
    pub errors: &'a [String],
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_are_json_with_time_kind_and_actor() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/audit.jsonl");
        let log = AuditLog::open(&path).unwrap();
        let actor = Actor {
            peer: Some("127.0.0.1:4000".parse().unwrap()),
            admission: Admission::Bearer,
        };
        log.admin(
            actor,
            "POST",
            "/logging",
            serde_json::json!({"level": "debug"}),
            200,
        );
        log.policy(&PolicyChange {
            trigger: "SIGHUP",
            outcome: "applied",
            old_hash: Some("aa"),
            new_hash: "bb",
            files: &[PathBuf::from("p.yaml")],
            errors: &[],
        });
        let text = std::fs::read_to_string(&path).unwrap();
        let lines: Vec<Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(lines.len(), 2);
        assert_eq!(lines[0]["kind"], "admin");
        assert_eq!(lines[0]["actor"]["admission"], "bearer");
        assert_eq!(lines[0]["actor"]["peer"], "127.0.0.1:4000");
        assert_eq!(lines[0]["params"]["level"], "debug");
        assert!(lines[0]["time"].as_str().unwrap().ends_with('Z'));
        assert_eq!(lines[1]["kind"], "policy");
        assert_eq!(lines[1]["old_hash"], "aa");
        assert_eq!(lines[1]["files"][0], "p.yaml");
    }
}
