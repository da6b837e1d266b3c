//! The audit log: who changed what, and when, through the admin port or the policy files.
//!
//! The log itself is shared with `augur controller` and lives in [`augur_rollout::audit`]; it
//! is re-exported here for the admin port and the reloader. The proxy appends to `--audit-log`
//! (default `audit.jsonl` under `--state-dir`).

pub use augur_rollout::audit::{command_params, Actor, Admission, AuditLog, PolicyChange};
