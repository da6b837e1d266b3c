//! Structured logs through `tracing`, as text or JSON lines (pingora's `log` records included).
//!
//! The filter can be changed while running (Envoy's `POST /logging?level=` on the admin port).
//! Nothing here logs request bodies or identifiers: callers log routes, arms and outcomes only.

use std::sync::OnceLock;

use tracing_subscriber::layer::SubscriberExt as _;
use tracing_subscriber::reload;
use tracing_subscriber::util::SubscriberInitExt as _;
use tracing_subscriber::{EnvFilter, Registry};

use crate::cli::LogFormat;

type FilterHandle = reload::Handle<EnvFilter, Registry>;

/// The running filter, for [`set_level`].
static FILTER: OnceLock<(FilterHandle, std::sync::Mutex<String>)> = OnceLock::new();

/// The levels Envoy's admin accepts, and the `tracing` level each means.
const LEVELS: [(&str, &str); 8] = [
    ("trace", "trace"),
    ("debug", "debug"),
    ("info", "info"),
    ("warning", "warn"),
    ("warn", "warn"),
    ("error", "error"),
    ("critical", "error"),
    ("off", "off"),
];

/// Installs the global subscriber. Call once, before anything logs.
pub fn init(format: LogFormat, filter: &str) -> anyhow::Result<()> {
    let parsed = EnvFilter::try_new(filter)
        .map_err(|e| anyhow::anyhow!("invalid --log-level {filter:?}: {e}"))?;
    let (layer, handle) = reload::Layer::new(parsed);
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let fmt = tracing_subscriber::fmt::layer()
        .with_ansi(ansi)
        .with_writer(std::io::stderr);
    let registry = tracing_subscriber::registry().with(layer);
    let result = match format {
        LogFormat::Text => registry.with(fmt).try_init(),
        LogFormat::Json => registry.with(fmt.json().flatten_event(true)).try_init(),
    };
    result.map_err(|e| anyhow::anyhow!("cannot install the log subscriber: {e}"))?;
    let _ = FILTER.set((handle, std::sync::Mutex::new(filter.to_owned())));
    Ok(())
}

/// Why a level change was refused.
#[derive(Debug, thiserror::Error)]
pub enum LevelError {
    /// Not one of Envoy's level names.
    #[error("unknown level {0:?} (expected trace, debug, info, warning, error, critical or off)")]
    Unknown(String),
    /// No reloadable subscriber is installed (a library embedding, or a test).
    #[error("logging is not reloadable in this process")]
    NotInstalled,
}

/// Sets every logger to Envoy level `level`; returns the `tracing` filter now in force.
pub fn set_level(level: &str) -> Result<String, LevelError> {
    let Some((_, mapped)) = LEVELS.iter().find(|(envoy, _)| *envoy == level) else {
        return Err(LevelError::Unknown(level.to_owned()));
    };
    let (handle, current) = FILTER.get().ok_or(LevelError::NotInstalled)?;
    handle
        .reload(EnvFilter::new(*mapped))
        .map_err(|_| LevelError::NotInstalled)?;
    if let Ok(mut c) = current.lock() {
        *c = (*mapped).to_owned();
    }
    Ok((*mapped).to_owned())
}

/// The filter in force (what `--log-level` or the last [`set_level`] set).
pub fn current() -> String {
    FILTER
        .get()
        .and_then(|(_, c)| c.lock().ok().map(|c| c.clone()))
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_levels_are_refused_by_name() {
        let e = set_level("loud").expect_err("not a level");
        assert!(e.to_string().contains("\"loud\""), "{e}");
    }
}
