//! Structured logs through `tracing`, as text or JSON lines (pingora's `log` records included).
//!
//! The filter can be changed while running (Envoy's `POST /logging?level=` on the admin port).
//! Nothing here logs request bodies or identifiers: callers log routes, arms and outcomes only.

use std::sync::OnceLock;

use tracing_subscriber::filter::filter_fn;
use tracing_subscriber::layer::SubscriberExt as _;
use tracing_subscriber::reload;
use tracing_subscriber::Layer as _;
use tracing_subscriber::{EnvFilter, Registry};

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    /// Human-readable text.
    Text,
    /// One JSON object per line.
    Json,
}

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

/// Why logging could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum LoggingError {
    /// The filter does not parse.
    #[error("invalid --log-level {filter:?}: {reason}")]
    Filter {
        /// The filter given.
        filter: String,
        /// Why.
        reason: String,
    },
    /// A global logger was installed already.
    #[error("cannot install the {what}: {reason}")]
    Install {
        /// The subscriber or the `log` bridge.
        what: &'static str,
        /// Why.
        reason: String,
    },
}

/// Installs the global subscriber. Call once, before anything logs.
pub fn init(format: LogFormat, filter: &str) -> Result<(), LoggingError> {
    let parsed = EnvFilter::try_new(filter).map_err(|e| LoggingError::Filter {
        filter: filter.to_owned(),
        reason: e.to_string(),
    })?;
    let (layer, handle) = reload::Layer::new(parsed);
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let fmt = tracing_subscriber::fmt::layer()
        .with_ansi(ansi)
        .with_writer(std::io::stderr);
    let registry = tracing_subscriber::registry().with(layer);
    let result = match format {
        LogFormat::Text => tracing::subscriber::set_global_default(
            registry.with(fmt.with_filter(filter_fn(phi_safe))),
        ),
        LogFormat::Json => tracing::subscriber::set_global_default(
            registry.with(
                fmt.json()
                    .flatten_event(true)
                    .with_filter(filter_fn(phi_safe)),
            ),
        ),
    };
    result.map_err(|e| LoggingError::Install {
        what: "log subscriber",
        reason: e.to_string(),
    })?;
    log::set_boxed_logger(Box::new(PingoraLog)).map_err(|e| LoggingError::Install {
        what: "log bridge",
        reason: e.to_string(),
    })?;
    log::set_max_level(log::LevelFilter::Info);
    let _ = FILTER.set((handle, std::sync::Mutex::new(filter.to_owned())));
    Ok(())
}

/// Whether an event may be written whatever the filter: augur's own at every level, other
/// crates' only up to `info`. Their debug and trace lines are not written with patient data in
/// mind: pingora's print whole request headers and URIs (query strings included), so they are
/// never emitted, even at `--log-level trace`.
fn phi_safe(meta: &tracing::Metadata<'_>) -> bool {
    meta.target().starts_with("augur") || *meta.level() <= tracing::Level::INFO
}

/// pingora's record of a client whose TLS handshake failed (no or an untrusted certificate, an
/// old protocol, no common suite): the client's fault, and one line per connection an attacker
/// could repeat at will. Envoy only counts these (`ssl.connection_error`); augur counts them in
/// [`crate::metrics::TLS_HANDSHAKE_FAILURES`] and writes the line at DEBUG.
const HANDSHAKE_FAILED: (&str, &str) = (
    "pingora_core::services::listening",
    "Downstream handshake error",
);

/// pingora's `log` records that report no fault of the proxy's and need nobody's action: a
/// pooled connection raced by its idle watcher (pingora opens a new one), and clients that went
/// away, sent garbage or failed their TLS handshake. pingora logs them at ERROR; augur writes
/// them at DEBUG, where ERROR keeps meaning "a person must act" (`(target, start of the
/// message)`).
const ROUTINE: [(&str, &str); 5] = [
    HANDSHAKE_FAILED,
    (
        "pingora_core::connectors",
        "failed to acquire reusable stream",
    ),
    ("pingora_proxy", "Error finish sending body to downstream"),
    (
        "pingora_proxy",
        "failed to send error response to downstream",
    ),
    ("pingora_proxy", "Fail to proxy: "),
];

/// Whether a pingora record is one of the [`ROUTINE`] ones. Only ERROR and WARN records are
/// formatted to look.
fn routine(record: &log::Record<'_>) -> bool {
    if record.level() > log::Level::Warn {
        return false;
    }
    let candidates = ROUTINE
        .iter()
        .filter(|(t, _)| record.target().starts_with(t));
    let mut message = None;
    for (_, start) in candidates {
        let text = message.get_or_insert_with(|| record.args().to_string());
        // "Fail to proxy" is routine only for a client's broken request, which pingora
        // reports with the downstream session's type (`handle_new_request`).
        let downstream =
            !start.starts_with("Fail to proxy") || text.contains("downstream session type");
        if text.starts_with(start) && downstream {
            return true;
        }
    }
    false
}

/// Passes pingora's `log` records to `tracing`, the [`ROUTINE`] ones at DEBUG.
struct PingoraLog;

impl log::Log for PingoraLog {
    fn enabled(&self, _: &log::Metadata<'_>) -> bool {
        true
    }

    fn log(&self, record: &log::Record<'_>) {
        let routine = routine(record);
        if routine && record.target().starts_with(HANDSHAKE_FAILED.0) {
            crate::metrics::TLS_HANDSHAKE_FAILURES.inc();
        }
        let result = if routine {
            tracing_log::format_trace(
                &log::Record::builder()
                    .level(log::Level::Debug)
                    .target(record.target())
                    .args(*record.args())
                    .module_path(record.module_path())
                    .file(record.file())
                    .line(record.line())
                    .build(),
            )
        } else {
            tracing_log::format_trace(record)
        };
        // Nowhere to report a failure to log.
        let _ = result;
    }

    fn flush(&self) {}
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

    fn record_of<'a>(
        target: &'a str,
        level: log::Level,
        args: std::fmt::Arguments<'a>,
    ) -> log::Record<'a> {
        log::Record::builder()
            .target(target)
            .level(level)
            .args(args)
            .build()
    }

    #[test]
    fn pingoras_routine_errors_are_demoted_and_real_ones_kept() {
        let pool = format_args!("failed to acquire reusable stream");
        assert!(routine(&record_of(
            "pingora_core::connectors",
            log::Level::Error,
            pool
        )));
        let gone =
            format_args!("Fail to proxy: Downstream ReadError, downstream session type: HTTP/1.1");
        assert!(routine(&record_of(
            "pingora_proxy",
            log::Level::Error,
            gone
        )));
        let real = format_args!("Fail to proxy: Upstream ConnectRefused, status: 502");
        assert!(!routine(&record_of(
            "pingora_proxy",
            log::Level::Error,
            real
        )));
        let handshake = format_args!(
            "Downstream handshake error from 127.0.0.1:4000:  TLSHandshakeFailure context: \
             TLS accept() failed"
        );
        assert!(routine(&record_of(
            "pingora_core::services::listening",
            log::Level::Error,
            handshake
        )));
        let other = format_args!("failed to acquire reusable stream");
        assert!(!routine(&record_of(
            "someone_else",
            log::Level::Error,
            other
        )));
    }

    #[test]
    fn other_crates_debug_lines_are_never_written() {
        use tracing::{Level, Metadata};
        static FIELDS: &[&str] = &[];
        macro_rules! meta {
            ($target:expr, $level:expr) => {{
                struct Cs;
                impl tracing::callsite::Callsite for Cs {
                    fn set_interest(&self, _: tracing::subscriber::Interest) {}
                    fn metadata(&self) -> &Metadata<'_> {
                        unreachable!()
                    }
                }
                static CS: Cs = Cs;
                Metadata::new(
                    "e",
                    $target,
                    $level,
                    None,
                    None,
                    None,
                    tracing::field::FieldSet::new(FIELDS, tracing::callsite::Identifier(&CS)),
                    tracing::metadata::Kind::EVENT,
                )
            }};
        }
        assert!(!phi_safe(&meta!("pingora_proxy::proxy_h1", Level::DEBUG)));
        assert!(!phi_safe(&meta!("h2::codec", Level::TRACE)));
        assert!(phi_safe(&meta!("pingora_core::server", Level::INFO)));
        assert!(phi_safe(&meta!("augur_proxy::service", Level::TRACE)));
        assert!(phi_safe(&meta!("augur::audit", Level::DEBUG)));
    }

    #[test]
    fn unknown_levels_are_refused_by_name() {
        let e = set_level("loud").expect_err("not a level");
        assert!(e.to_string().contains("\"loud\""), "{e}");
    }
}
