//! The admin audit log: who changed what, and when, through an admin API or the policy files.
//! Shared by `augur proxy` (its admin port) and `augur controller` (its API and admin ports).
//!
//! One JSON object per line, appended to a file (the proxy's `--audit-log`, the controller's
//! `audit.jsonl` in its `--state-dir`) and repeated on the tracing log (target `augur::audit`).
//! Admin mutations (every POST, allowed or refused) record the peer address, how it was
//! admitted (`loopback`, `bearer`, or `refused`; never the token), the endpoint, its known
//! parameters and the status answered; policy loads and reloads record the trigger, the
//! outcome, the old and new hashes and the files. Nothing a client chose freely (unknown paths,
//! query strings, bodies) is written: parameters are recorded only once validated.
//!
//! 45 CFR 164.312(b) asks systems holding ePHI to "record and examine activity"; the rollout's
//! own decisions have their own audit log beside its state (see [`crate::persist`]).

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};

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
    /// Neither: the mutation was refused (the proxy answers 403, the controller 401).
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
    pub const fn tracing_only() -> Self {
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
            map.insert("time".into(), rfc3339(now).into());
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

/// The parameters recorded for `POST /rollouts/{name}/{command}`: the rollout and the command
/// when the rollout exists (`found`; a 404's name is whatever the client wrote, and is not
/// recorded), nothing otherwise.
pub fn command_params(path: &str, found: bool) -> Value {
    match path
        .strip_prefix("/rollouts/")
        .and_then(|r| r.rsplit_once('/'))
    {
        Some((name, command)) if found => {
            serde_json::json!({ "rollout": name, "command": command })
        }
        _ => serde_json::json!({}),
    }
}

/// `t` as RFC 3339 in UTC with milliseconds (`2026-01-02T03:04:05.678Z`).
pub fn rfc3339(t: SystemTime) -> String {
    let d = t.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = d.as_secs();
    let (days, rem) = (secs / 86_400, secs % 86_400);
    let (y, m, day) = civil_from_days(days as i64);
    format!(
        "{y:04}-{m:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
        d.subsec_millis()
    )
}

/// Days since 1970-01-01 to (year, month, day), after Howard Hinnant's `civil_from_days`.
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (yoe + era * 400 + i64::from(m <= 2), m, d)
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

    #[test]
    fn command_params_name_only_rollouts_that_exist() {
        assert_eq!(
            command_params("/rollouts/default/model/promote", true),
            serde_json::json!({"rollout": "default/model", "command": "promote"})
        );
        assert_eq!(
            command_params("/rollouts/PHI-MARK/promote", false),
            serde_json::json!({})
        );
        assert_eq!(command_params("/labels", true), serde_json::json!({}));
    }

    #[test]
    fn dates_are_utc_rfc3339() {
        assert_eq!(rfc3339(UNIX_EPOCH), "1970-01-01T00:00:00.000Z");
        let t = UNIX_EPOCH + std::time::Duration::from_millis(1_795_438_914_276);
        assert_eq!(rfc3339(t), "2026-11-23T13:01:54.276Z");
        assert_eq!(civil_from_days(11_016), (2000, 2, 29));
    }
}
