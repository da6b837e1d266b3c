//! The shared vocabulary of augur.
//!
//! The proxy records one [`Sample`] per request and the analyzer reads them; both depend on this
//! small crate instead of on each other, so the analyzer stays free of tokio, pingora and ort.
//! The policy crate and the analyzer name what is measured with the same [`metric`] types.

mod arm;
pub mod fleet;
pub mod metric;
mod sample;

pub use arm::{Arm, ParseArmError};
pub use metric::{Direction, MetricKind, TriggerMetric};
pub use sample::{Prediction, Sample};
