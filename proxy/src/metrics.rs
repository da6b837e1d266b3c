//! Every metric the proxy exports, declared once as a struct of handles.

use prometheus::proto::MetricType;
use prometheus::{Encoder, IntCounter, IntGauge, Registry, TextEncoder};

/// The proxy's metric handles and the registry that exports them.
pub struct Metrics {
    registry: Registry,
    /// Policy reloads attempted (file changes and SIGHUP), whatever their outcome.
    pub config_reloads: IntCounter,
    /// Policy reloads rejected because the new files were invalid; the last good set kept serving.
    pub config_reload_failures: IntCounter,
    /// 1 when the last reload attempt succeeded (or changed nothing), 0 when it was rejected.
    pub config_last_reload_successful: IntGauge,
    /// Unix time of the last policy set that was swapped in.
    pub config_last_reload_success_timestamp: IntGauge,
}

impl Metrics {
    /// Creates and registers every handle.
    pub fn new() -> Result<Self, prometheus::Error> {
        let registry = Registry::new();
        let config_reloads = IntCounter::new(
            "augur_config_reloads_total",
            "Policy reloads attempted (file changes and SIGHUP).",
        )?;
        let config_reload_failures = IntCounter::new(
            "augur_config_reload_failures_total",
            "Policy reloads rejected as invalid; the last good policy set kept serving.",
        )?;
        let config_last_reload_successful = IntGauge::new(
            "augur_config_last_reload_successful",
            "Whether the last policy reload attempt succeeded (1) or was rejected (0).",
        )?;
        let config_last_reload_success_timestamp = IntGauge::new(
            "augur_config_last_reload_success_timestamp_seconds",
            "Unix time at which the serving policy set was loaded.",
        )?;
        registry.register(Box::new(config_reloads.clone()))?;
        registry.register(Box::new(config_reload_failures.clone()))?;
        registry.register(Box::new(config_last_reload_successful.clone()))?;
        registry.register(Box::new(config_last_reload_success_timestamp.clone()))?;
        config_last_reload_successful.set(1);
        Ok(Self {
            registry,
            config_reloads,
            config_reload_failures,
            config_last_reload_successful,
            config_last_reload_success_timestamp,
        })
    }

    /// Renders every metric in the Prometheus text exposition format.
    pub fn render(&self) -> Vec<u8> {
        let mut buf = Vec::with_capacity(4096);
        // Encoding into a Vec only fails on inconsistent metric families, which the
        // registry rules out at registration.
        let _ = TextEncoder::new().encode(&self.registry.gather(), &mut buf);
        buf
    }

    /// The metrics as Envoy's `/stats` text: `name: value` per line, labels folded into the name.
    pub fn render_envoy_stats(&self) -> String {
        use std::fmt::Write as _;
        let mut out = String::new();
        for family in self.registry.gather() {
            for m in family.get_metric() {
                let mut name = family.name().to_owned();
                for label in m.get_label() {
                    let _ = write!(name, ".{}.{}", label.name(), label.value());
                }
                let value = match family.get_field_type() {
                    MetricType::COUNTER => m.get_counter().get_value(),
                    MetricType::GAUGE => m.get_gauge().get_value(),
                    _ => continue,
                };
                let _ = writeln!(out, "{name}: {value}");
            }
        }
        out
    }
}
