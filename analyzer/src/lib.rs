//! augur's analyzer: statistics on canary vs stable, bounded per-arm windows, a judge, rollback
//! triggers and the rollout state machine.
//!
//! The crate is pure: no async runtime, no proxy, no model runtime, no clock reads and no I/O.
//! Callers pass samples, counts and times (`now`, seconds) as values and get typed results back,
//! so every decision can be replayed from the recorded samples; every state type is serde so the
//! proxy can persist it and resume after a crash.
//!
//! - [`stats`]: the tests (Mann-Whitney and Hodges-Lehmann, Welch, quantile intervals, rates,
//!   anytime-valid mSPRT and its dual confidence sequences, exact binomial bounds, sample-ratio
//!   mismatch);
//! - [`window`]: bounded-memory per-arm summaries of samples;
//! - [`spec`]: the analyzer's own configuration (metrics, steps, triggers) and its defaults;
//! - [`verdict`], [`judge`]: per-metric verdicts of canary vs stable;
//! - [`labels`]: delayed ground-truth (and shadow answer) joins by request id;
//! - [`triggers`]: rollback triggers over sliding time windows;
//! - [`rollout`]: the rollout state machine and its audit [`rollout::Decision`]s;
//! - [`tally`]: labelled and shadow-compared predictions known only by their counts (a fleet's);
//! - [`replay`]: a recorded sample stream through the same machine;
//! - [`plan`]: what evidence costs before a rollout starts (canary requests and time per gate).

pub mod judge;
pub mod labels;
pub mod plan;
pub mod replay;
pub mod rollout;
pub mod spec;
pub mod stats;
pub mod tally;
pub mod triggers;
pub mod verdict;
pub mod window;
