//! The one error type of the statistics module: degenerate or invalid input.

/// Why a statistic could not be computed from the given input.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum StatsError {
    /// A sample (or a count total) is empty.
    #[error("sample {which} is empty")]
    EmptySample {
        /// Which sample.
        which: &'static str,
    },
    /// A sample holds a NaN or an infinity.
    #[error("sample {which} holds a non-finite value")]
    NonFinite {
        /// Which sample.
        which: &'static str,
    },
    /// A sample is smaller than the method needs.
    #[error("sample {which} has {got} values, the method needs at least {needed}")]
    TooFew {
        /// Which sample.
        which: &'static str,
        /// How many it has.
        got: usize,
        /// How many the method needs.
        needed: usize,
    },
    /// The statistic's variance is zero (e.g. every value tied, or a rate of 0 or 1 in both arms):
    /// the test is undefined.
    #[error("the test is undefined: {0}")]
    ZeroVariance(&'static str),
    /// The exact distribution was asked for data with ties.
    #[error("the exact distribution needs data without ties")]
    ExactWithTies,
    /// The input is too large for the requested exact method.
    #[error("input too large for the exact method: {0}")]
    TooLarge(&'static str),
    /// A parameter is outside its domain.
    #[error("parameter {name} = {value} is out of range")]
    InvalidParameter {
        /// The parameter's name.
        name: &'static str,
        /// The rejected value.
        value: f64,
    },
    /// Two inputs that must have the same length do not.
    #[error("length mismatch: {left} vs {right}")]
    LengthMismatch {
        /// The first length.
        left: usize,
        /// The second length.
        right: usize,
    },
}
