//! Where a decision is made: the rollouts of the serving CanaryPolicies, fed with samples (the
//! proxy's own, or fleet-wide evidence read from Prometheus), judged by the pure analyzer, and
//! applied as weights. The single `augur proxy` and `augur controller` run this same code; only
//! where the weights go differs ([`WeightSink`]: the proxy's own routes, or every sidecar).
//!
//! [`Rollouts`] owns one rollout per CanaryPolicy and release (its (stable, canary) pair,
//! [`release`]). Every transition sets the weights, is saved atomically to the state directory
//! and appended to the audit log ([`persist`]), and moves the rollout gauges ([`metrics`]).
//! [`driver::Driver`] feeds samples in, follows policy reloads and lets time pass; [`api`]
//! answers the admin API's rollout paths (its JSON typed in [`status`]) and serves the `/ui`
//! dashboard; [`audit`] records who sent each admin command (the proxy's admin port and the
//! controller's API both write it).
//!
//! Time: every event (a sample, a label, a command) first ticks its rollout to the event's time,
//! and the driver's timer ticks every rollout once a second, so the rollout processes each whole
//! second once, in the same order as `augur analyze` replaying the recording does
//! ([`recording`], [`augur_analyzer::replay`]).

pub mod agreement;
pub mod api;
pub mod audit;
pub mod driver;
pub mod history;
pub mod metrics;
pub mod persist;
pub mod prometheus;
pub mod recording;
pub mod release;
mod rollouts;
pub mod sample;
pub mod shadowing;
pub mod sink;
pub mod spec;
pub mod status;
pub mod watch;

pub use metrics::RolloutMetrics;
pub use rollouts::{DueFetch, RolloutError, RolloutSummary, Rollouts};
pub use sink::WeightSink;

#[cfg(test)]
mod tests;
