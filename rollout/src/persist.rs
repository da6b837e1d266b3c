//! Rollout state on disk: one JSON file per CanaryPolicy, replaced atomically (write, fsync,
//! rename, fsync the directory) on every transition, an append-only JSON-lines audit log of
//! every decision beside it, and the history of rollouts of earlier releases.

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use augur_analyzer::rollout::{Decision, Rollout};
use serde::{Deserialize, Serialize};

/// What is saved for one rollout.
#[derive(Debug, Serialize, Deserialize)]
pub struct SavedRollout {
    /// `namespace/name` of the CanaryPolicy.
    pub policy: String,
    /// Hash of the policy files the rollout was started from.
    pub policy_hash: String,
    /// The (stable, canary) pair the rollout judges ([`super::release::release_key`]); absent
    /// in state saved before releases were tracked.
    #[serde(default)]
    pub release: Option<String>,
    /// The complete rollout state.
    pub rollout: Rollout,
}

/// A rollout of an earlier release, kept in `<namespace>_<name>.history.jsonl`.
#[derive(Debug, Serialize)]
pub struct ArchivedRollout<'a> {
    /// When it was archived (Unix seconds).
    pub archived_at: f64,
    /// Why: the release changed, or saved state did not match the policy's pair.
    pub reason: &'a str,
    /// `namespace/name` of the CanaryPolicy.
    pub policy: &'a str,
    /// The pair it judged.
    pub release: Option<&'a str>,
    /// Hash of the policy files it was started from.
    pub policy_hash: &'a str,
    /// Where it ended.
    pub state: &'a augur_analyzer::rollout::RolloutState,
    /// Its weights then.
    pub weights: augur_analyzer::rollout::Weights,
    /// What its gates took.
    pub gates: Vec<&'a augur_analyzer::rollout::GateRecord>,
    /// Its last decisions, oldest first.
    pub decisions: Vec<&'a Decision>,
}

/// One line of the audit log.
#[derive(Debug, Serialize)]
pub struct AuditRecord<'a> {
    /// `namespace/name` of the CanaryPolicy.
    pub policy: &'a str,
    /// Hash of the serving policy files.
    pub policy_hash: &'a str,
    /// Who caused it: `analyzer`, or `admin` for a manual command.
    pub actor: &'a str,
    /// The (stable, canary) pair of the rollout.
    pub release: &'a str,
    /// The decision, with its measured values, statistics and reason.
    #[serde(flatten)]
    pub decision: &'a Decision,
}

/// The state directory.
#[derive(Debug, Clone)]
pub struct StateDir {
    root: PathBuf,
}

impl StateDir {
    /// Uses (and creates) `root`.
    pub fn open(root: &Path) -> std::io::Result<Self> {
        fs::create_dir_all(root)?;
        Ok(Self {
            root: root.to_path_buf(),
        })
    }

    fn file_stem(policy: &str) -> String {
        policy
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '-' || c == '.' {
                    c
                } else {
                    '_'
                }
            })
            .collect()
    }

    /// Where `policy`'s state lives.
    pub fn state_path(&self, policy: &str) -> PathBuf {
        self.root.join(format!("{}.json", Self::file_stem(policy)))
    }

    /// Where `policy`'s rollouts of earlier releases are kept.
    pub fn history_path(&self, policy: &str) -> PathBuf {
        self.root
            .join(format!("{}.history.jsonl", Self::file_stem(policy)))
    }

    /// Appends a rollout of an earlier release to the history.
    pub fn archive(&self, record: &ArchivedRollout<'_>) -> std::io::Result<()> {
        let mut line = serde_json::to_vec(record).map_err(std::io::Error::other)?;
        line.push(b'\n');
        let mut f = OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.history_path(record.policy))?;
        f.write_all(&line)?;
        f.sync_data()
    }

    /// Removes `policy`'s saved state (after archiving it).
    pub fn forget(&self, policy: &str) -> std::io::Result<()> {
        match fs::remove_file(self.state_path(policy)) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        }
    }

    /// Where `policy`'s audit log lives.
    pub fn audit_path(&self, policy: &str) -> PathBuf {
        self.root
            .join(format!("{}.decisions.jsonl", Self::file_stem(policy)))
    }

    /// Reads a saved rollout, if there is a readable one.
    pub fn load(&self, policy: &str) -> Option<SavedRollout> {
        let bytes = fs::read(self.state_path(policy)).ok()?;
        match serde_json::from_slice(&bytes) {
            Ok(saved) => Some(saved),
            Err(e) => {
                tracing::error!(policy, error = %e, "unreadable rollout state; starting afresh");
                None
            }
        }
    }

    /// Replaces the saved state atomically.
    pub fn save(&self, saved: &SavedRollout) -> std::io::Result<()> {
        let path = self.state_path(&saved.policy);
        let tmp = path.with_extension("json.tmp");
        let bytes = serde_json::to_vec(saved).map_err(std::io::Error::other)?;
        {
            let mut f = File::create(&tmp)?;
            f.write_all(&bytes)?;
            f.sync_all()?;
        }
        fs::rename(&tmp, &path)?;
        File::open(&self.root)?.sync_all()
    }

    /// Appends one decision to the audit log.
    pub fn audit(&self, record: &AuditRecord<'_>) -> std::io::Result<()> {
        let mut line = serde_json::to_vec(record).map_err(std::io::Error::other)?;
        line.push(b'\n');
        let mut f = OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.audit_path(record.policy))?;
        f.write_all(&line)?;
        f.sync_data()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use augur_analyzer::spec::{AnalysisSpec, StepSpec};

    #[test]
    fn save_then_load_round_trips() {
        let dir = tempfile::tempdir().unwrap();
        let state = StateDir::open(dir.path()).unwrap();
        let mut rollout = Rollout::new(
            AnalysisSpec::default(),
            vec![
                StepSpec::SetWeight(20),
                StepSpec::Pause { duration_s: None },
            ],
            vec![],
        );
        rollout.tick(1000.0);
        let saved = SavedRollout {
            policy: "default/p".into(),
            policy_hash: "h".into(),
            release: Some("r".into()),
            rollout,
        };
        state.save(&saved).unwrap();
        let back = state.load("default/p").unwrap();
        assert_eq!(back.rollout, saved.rollout);
        assert_eq!(back.rollout.weights().canary, 20);
        assert!(state.state_path("default/p").ends_with("default_p.json"));
    }
}
