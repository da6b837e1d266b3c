//! Pure statistical tests used by the judge: canary (experiment) against stable (control).
//!
//! Every function takes plain values (slices, counts, weights) and returns a typed result or a
//! [`StatsError`] for degenerate input, never a panic and never a silent `NaN`. Nothing here
//! reads a clock or does I/O, so results are reproducible from the inputs alone.
//!
//! Conventions shared by all tests:
//! - `x`/`control` is the stable arm and `y`/`experiment` the canary, in that order;
//! - [`Alternative::Greater`] means "the first sample is larger" (scipy's convention), so a
//!   canary-slower alternative is `Less` when the control comes first;
//! - fixed-horizon p-values (Mann-Whitney, Welch, Fisher, z) are valid only when looked at once;
//!   repeated looks must go through [`msprt`] or [`confseq`], whose p-values and bounds are
//!   always valid.
//!
//! Agreement with scipy is checked by `tests/vectors.rs` against JSON vectors written by
//! `tests/vectors/generate.py`.

pub mod binomial;
pub mod confseq;
mod error;
pub mod fisher;
pub mod hodges_lehmann;
pub mod mann_whitney;
pub mod moments;
pub mod msprt;
pub mod proportions;
pub mod quantile;
mod rank;
pub mod srm;
mod u_dist;
pub mod welch;

pub use error::StatsError;

/// The alternative hypothesis of a test, in scipy's convention (first sample vs second).
#[derive(Copy, Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Alternative {
    /// The two samples differ in either direction.
    TwoSided,
    /// The first sample is smaller (stochastically, or in the tested parameter).
    Less,
    /// The first sample is larger (stochastically, or in the tested parameter).
    Greater,
}

/// The statistic and p-value of a fixed-horizon test.
#[derive(Copy, Clone, Debug, PartialEq, serde::Serialize)]
pub struct TestResult {
    /// The test statistic (its meaning is documented on the function that returns it).
    pub statistic: f64,
    /// The p-value under the null hypothesis, in `[0, 1]`.
    pub p_value: f64,
}

/// A two-sided interval estimate; `None` ends mean "unbounded with this much data".
#[derive(Copy, Clone, Debug, PartialEq, serde::Serialize)]
pub struct Interval {
    /// The lower end, or `None` when the data cannot bound it.
    pub lower: Option<f64>,
    /// The upper end, or `None` when the data cannot bound it.
    pub upper: Option<f64>,
}

/// Rejects empty samples and non-finite values; `which` names the sample in the error.
pub(crate) fn check_sample(sample: &[f64], which: &'static str) -> Result<(), StatsError> {
    if sample.is_empty() {
        return Err(StatsError::EmptySample { which });
    }
    if sample.iter().any(|v| !v.is_finite()) {
        return Err(StatsError::NonFinite { which });
    }
    Ok(())
}

/// Rejects a confidence level outside the open interval `(0, 1)`.
pub(crate) fn check_level(confidence: f64) -> Result<(), StatsError> {
    if confidence.is_finite() && confidence > 0.0 && confidence < 1.0 {
        Ok(())
    } else {
        Err(StatsError::InvalidParameter {
            name: "confidence",
            value: confidence,
        })
    }
}

/// The standard normal distribution (infallible constructor arguments).
pub(crate) fn std_normal() -> statrs::distribution::Normal {
    // mean 0 and sd 1 are always valid; fall back to the default (also N(0,1)).
    statrs::distribution::Normal::new(0.0, 1.0).unwrap_or_default()
}
