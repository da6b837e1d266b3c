//! The one adapter that touches the system: runs `iptables-restore` / `iptables`.
//!
//! Everything else in this module is pure; this file owns process spawning. The backend
//! (nf_tables or legacy) is chosen from `iptables --version` ("iptables v1.8.9 (nf_tables)")
//! unless forced, and the matching `iptables-nft-restore` / `iptables-legacy-restore` is used
//! when it exists, so rules land in the same backend as kube-proxy's. A command prefix (e.g.
//! `ip netns exec NS`) lets tests apply the rules inside a network namespace.

use std::io::Write as _;
use std::path::Path;
use std::process::{Command, Stdio};

use thiserror::Error;

use super::cleanup::{Leftovers, TABLES};
use super::plan::Plan;

/// Failures of the adapter.
#[derive(Debug, Error)]
pub enum ApplyError {
    /// The program could not be started.
    #[error("cannot run {program}: {source}")]
    Spawn {
        /// The program.
        program: String,
        /// Why.
        source: std::io::Error,
    },
    /// The program ran and failed.
    #[error("{program} failed ({status}): {stderr}")]
    Failed {
        /// The program.
        program: String,
        /// Its exit status.
        status: String,
        /// Its standard error, trimmed.
        stderr: String,
    },
    /// `iptables --version` named no backend we know.
    #[error("cannot tell the iptables backend from {0:?}; pass --iptables-backend")]
    UnknownBackend(String),
}

/// Which iptables implementation holds the rules.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Backend {
    /// iptables-nft (the nf_tables kernel API), Debian's default.
    Nft,
    /// iptables-legacy (the x_tables kernel API).
    Legacy,
}

impl Backend {
    /// Reads the backend from `iptables --version` output.
    pub fn from_version_output(output: &str) -> Option<Self> {
        if output.contains("nf_tables") {
            Some(Self::Nft)
        } else if output.contains("legacy") {
            Some(Self::Legacy)
        } else {
            None
        }
    }

    /// The backend-specific program names, e.g. (`iptables-nft-restore`, `iptables-nft`).
    fn program_names(self) -> (&'static str, &'static str) {
        match self {
            Self::Nft => ("iptables-nft-restore", "iptables-nft"),
            Self::Legacy => ("iptables-legacy-restore", "iptables-legacy"),
        }
    }
}

/// Runs iptables programs, optionally behind a command prefix.
#[derive(Debug, Clone)]
pub struct Iptables {
    prefix: Vec<String>,
    restore: String,
    iptables: String,
    /// The backend in use.
    pub backend: Backend,
}

impl Iptables {
    /// Chooses the programs for `backend` (detected when `None`); `prefix` is prepended to
    /// every command (empty to run directly).
    pub fn new(backend: Option<Backend>, prefix: Vec<String>) -> Result<Self, ApplyError> {
        let backend = match backend {
            Some(backend) => backend,
            None => {
                let out = run(&prefix, "iptables", &["--version".to_string()], None)?;
                Backend::from_version_output(&out)
                    .ok_or_else(|| ApplyError::UnknownBackend(out.trim().to_string()))?
            }
        };
        let (restore, iptables) = backend.program_names();
        let pick = |specific: &str, generic: &str| {
            if on_path(specific) {
                specific.to_string()
            } else {
                generic.to_string()
            }
        };
        Ok(Self {
            restore: pick(restore, "iptables-restore"),
            iptables: pick(iptables, "iptables"),
            prefix,
            backend,
        })
    }

    /// Applies `plan`: first removes any earlier install, whatever its flags (so a restarted
    /// init container neither appends the jumps twice nor keeps rules of changed annotations),
    /// then feeds the rules to `iptables-restore --noflush`.
    pub fn apply(&self, plan: &Plan) -> Result<(), ApplyError> {
        self.cleanup(Some(plan))?;
        self.restore(&plan.render())
    }

    /// Removes a capture install whatever flags it was made with, as istio-iptables' cleanup
    /// does: first the rules `plan` (today's flags, when they are valid) puts in built-in
    /// chains, then everything [`Leftovers`] finds in `iptables-save` (the `ISTIO_*` chains of
    /// nat, mangle and raw, every jump into them, augur's commented rules). Returns how many
    /// rules and chains the second pass removed. A table the kernel does not have is skipped.
    pub fn cleanup(&self, plan: Option<&Plan>) -> Result<usize, ApplyError> {
        for args in plan.map(Plan::cleanup_commands).unwrap_or_default() {
            if let Err(err) = run(&self.prefix, &self.iptables, &args, None) {
                tracing::debug!(%err, "cleanup step skipped");
            }
        }
        let mut removed = 0;
        for table in TABLES {
            let save = match self.save(table) {
                Ok(save) => save,
                Err(err) => {
                    tracing::debug!(table, %err, "cleanup: table not readable, skipped");
                    continue;
                }
            };
            let leftovers = Leftovers::find(table, &save);
            if leftovers.is_empty() {
                continue;
            }
            self.restore(&leftovers.render())?;
            removed += leftovers.rules.len() + leftovers.chains.len();
        }
        Ok(removed)
    }

    /// `table` as `iptables-save -t <table>` prints it.
    pub fn save(&self, table: &str) -> Result<String, ApplyError> {
        let save = self.restore.replace("-restore", "-save");
        run(
            &self.prefix,
            &save,
            &["-t".to_string(), table.to_string()],
            None,
        )
    }

    /// The nat table as `iptables-save -t nat` prints it (for diagnostics and tests).
    pub fn save_nat(&self) -> Result<String, ApplyError> {
        self.save("nat")
    }

    fn restore(&self, input: &str) -> Result<(), ApplyError> {
        run(
            &self.prefix,
            &self.restore,
            &["--noflush".to_string()],
            Some(input),
        )
        .map(drop)
    }
}

fn on_path(program: &str) -> bool {
    std::env::var_os("PATH")
        .map(|paths| {
            std::env::split_paths(&paths).any(|dir| Path::new(&dir).join(program).is_file())
        })
        .unwrap_or(false)
}

fn run(
    prefix: &[String],
    program: &str,
    args: &[String],
    stdin: Option<&str>,
) -> Result<String, ApplyError> {
    let (exe, rest) = match prefix.split_first() {
        Some((first, rest)) => (first.as_str(), rest),
        None => (program, &[][..]),
    };
    let mut cmd = Command::new(exe);
    cmd.args(rest);
    if !prefix.is_empty() {
        cmd.arg(program);
    }
    cmd.args(args)
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let spawn_err = |source| ApplyError::Spawn {
        program: program.to_string(),
        source,
    };
    let mut child = cmd.spawn().map_err(spawn_err)?;
    if let (Some(text), Some(mut pipe)) = (stdin, child.stdin.take()) {
        pipe.write_all(text.as_bytes()).map_err(spawn_err)?;
    }
    let out = child.wait_with_output().map_err(spawn_err)?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(ApplyError::Failed {
            program: program.to_string(),
            status: out.status.to_string(),
            stderr: String::from_utf8_lossy(&out.stderr).trim().to_string(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backend_from_version_output() {
        assert_eq!(
            Backend::from_version_output("iptables v1.8.9 (nf_tables)\n"),
            Some(Backend::Nft)
        );
        assert_eq!(
            Backend::from_version_output("iptables v1.8.7 (legacy)"),
            Some(Backend::Legacy)
        );
        assert_eq!(Backend::from_version_output("iptables v1.4.21"), None);
    }
}
