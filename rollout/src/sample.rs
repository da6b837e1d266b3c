//! What the engine is fed: samples tagged with their rollout, on the analyzer's clock.

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use augur_model::Sample;

/// A sample with the CanaryPolicy (`namespace/name`) whose rollout it belongs to.
#[derive(Debug, Clone)]
pub struct RoutedSample {
    /// The driving policy; `None` for routes no CanaryPolicy drives.
    pub policy: Option<Arc<str>>,
    /// The sample.
    pub sample: Sample,
}

/// The analyzer's clock in a live process: Unix time in seconds, so that a rollout persisted
/// before a restart keeps its timeline after it.
pub fn now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}
