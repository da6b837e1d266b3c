//! The shared vocabulary of augur.
//!
//! The proxy records one [`Sample`] per request and the analyzer reads them; both depend on this
//! small crate instead of on each other, so the analyzer stays free of tokio, pingora and ort.

mod arm;
pub mod fleet;
mod sample;

pub use arm::{Arm, ParseArmError};
pub use sample::{Prediction, Sample};
