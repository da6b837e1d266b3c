//! The rollouts' gauges and counters (one label set per CanaryPolicy), the same names in the
//! single proxy and the controller, so that dashboards and alerts read either.

use prometheus::{GaugeVec, IntCounterVec, IntGaugeVec, Opts, Registry};

/// Gauges and counters of the rollouts (one label set per CanaryPolicy).
#[derive(Clone)]
pub struct RolloutMetrics {
    /// Current weight per arm (`stable`, `canary`), in percent.
    pub weight: IntGaugeVec,
    /// Current step index (0-based).
    pub step: IntGaugeVec,
    /// Last verdict per metric: 1 pass, 0 inconclusive or no data, -1 fail.
    pub verdict: GaugeVec,
    /// The value each arm measured at the last look (rate, latency in ms, PSI, Brier score).
    pub value: GaugeVec,
    /// The last look's estimate per metric: canary minus stable, or the PSI for drift.
    pub estimate: GaugeVec,
    /// Rollouts that ended rolled back.
    pub rollbacks: IntCounterVec,
    /// Rollouts that ended promoted.
    pub deployments: IntCounterVec,
    /// Failed reads of a rollout's metric source (Prometheus down, slow or answering errors).
    pub source_errors: IntCounterVec,
    /// End of the last window of evidence read from a rollout's metric source (Unix seconds):
    /// `time() - this` is how far behind its clock runs; it stops while the source is down.
    pub source_read_until: GaugeVec,
}

impl RolloutMetrics {
    /// Creates the rollout metrics and registers them in `registry`.
    pub fn register(registry: &Registry) -> prometheus::Result<Self> {
        let weight = IntGaugeVec::new(
            Opts::new(
                "augur_rollout_weight",
                "Current traffic weight per arm, in percent.",
            ),
            &["policy", "arm"],
        )?;
        let step = IntGaugeVec::new(
            Opts::new("augur_rollout_step", "Current rollout step (0-based)."),
            &["policy"],
        )?;
        let verdict = GaugeVec::new(
            Opts::new(
                "augur_rollout_verdict",
                "Last verdict per metric: 1 pass, 0 inconclusive or no data, -1 fail.",
            ),
            &["policy", "metric"],
        )?;
        let value = GaugeVec::new(
            Opts::new(
                "augur_rollout_metric_value",
                "Value each arm measured at the last analysis look.",
            ),
            &["policy", "metric", "kind", "arm"],
        )?;
        let estimate = GaugeVec::new(
            Opts::new(
                "augur_rollout_metric_estimate",
                "Estimate at the last analysis look: canary minus stable, or the PSI for drift.",
            ),
            &["policy", "metric", "kind"],
        )?;
        registry.register(Box::new(value.clone()))?;
        registry.register(Box::new(estimate.clone()))?;
        let rollbacks = IntCounterVec::new(
            Opts::new("rollbacks_total", "Rollouts rolled back."),
            &["policy"],
        )?;
        let deployments = IntCounterVec::new(
            Opts::new("deployments_total", "Rollouts promoted to 100%."),
            &["policy"],
        )?;
        let source_errors = IntCounterVec::new(
            Opts::new(
                "augur_metric_source_errors_total",
                "Failed reads of a rollout's metric source.",
            ),
            &["policy"],
        )?;
        registry.register(Box::new(source_errors.clone()))?;
        let source_read_until = GaugeVec::new(
            Opts::new(
                "augur_metric_source_read_until_seconds",
                "End of the last window of evidence read from a rollout's metric source (Unix seconds).",
            ),
            &["policy"],
        )?;
        registry.register(Box::new(source_read_until.clone()))?;
        registry.register(Box::new(weight.clone()))?;
        registry.register(Box::new(step.clone()))?;
        registry.register(Box::new(verdict.clone()))?;
        registry.register(Box::new(rollbacks.clone()))?;
        registry.register(Box::new(deployments.clone()))?;
        Ok(Self {
            weight,
            step,
            verdict,
            value,
            estimate,
            rollbacks,
            deployments,
            source_errors,
            source_read_until,
        })
    }
}
