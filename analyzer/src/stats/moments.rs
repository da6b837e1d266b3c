//! Running count, mean and variance (Welford), mergeable and O(1) in memory.
//!
//! Windows keep one of these per arm (e.g. of log-latency) so mean-based tests (Welch,
//! mSPRT) need no raw samples.

/// Count, mean and sum of squared deviations of a stream of values.
#[derive(Copy, Clone, Debug, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Moments {
    count: u64,
    mean: f64,
    m2: f64,
}

impl Moments {
    /// An empty summary.
    pub const fn new() -> Self {
        Moments {
            count: 0,
            mean: 0.0,
            m2: 0.0,
        }
    }

    /// The summary of a slice (two-pass, as numpy, for accuracy).
    pub fn from_slice(values: &[f64]) -> Self {
        if values.is_empty() {
            return Self::new();
        }
        let n = values.len() as f64;
        let mean = values.iter().sum::<f64>() / n;
        let m2 = values.iter().map(|v| (v - mean) * (v - mean)).sum();
        Moments {
            count: values.len() as u64,
            mean,
            m2,
        }
    }

    /// The summary of `count` values known by their sum and sum of squares (counters exported
    /// by a fleet); rounding can only make the spread smaller than zero, which is clamped.
    pub fn from_sums(count: u64, sum: f64, sum_of_squares: f64) -> Self {
        if count == 0 || !sum.is_finite() || !sum_of_squares.is_finite() {
            return Self::new();
        }
        let mean = sum / count as f64;
        Moments {
            count,
            mean,
            m2: (sum_of_squares - sum * mean).max(0.0),
        }
    }

    /// Adds one value (ignored when not finite).
    pub fn push(&mut self, value: f64) {
        if !value.is_finite() {
            return;
        }
        self.count += 1;
        let delta = value - self.mean;
        self.mean += delta / self.count as f64;
        self.m2 += delta * (value - self.mean);
    }

    /// Merges another summary into this one (Chan et al.'s parallel formula).
    pub fn merge(&mut self, other: &Moments) {
        if other.count == 0 {
            return;
        }
        let total = self.count + other.count;
        let delta = other.mean - self.mean;
        let (a, b) = (self.count as f64, other.count as f64);
        self.mean += delta * b / total as f64;
        self.m2 += other.m2 + delta * delta * a * b / total as f64;
        self.count = total;
    }

    /// The number of values.
    pub fn count(&self) -> u64 {
        self.count
    }

    /// The mean (0 when empty).
    pub fn mean(&self) -> f64 {
        self.mean
    }

    /// The unbiased sample variance (`n − 1` denominator; 0 with fewer than 2 values).
    pub fn variance(&self) -> f64 {
        if self.count < 2 {
            0.0
        } else {
            self.m2 / (self.count - 1) as f64
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn streaming_and_merge_agree_with_two_pass() {
        let values: Vec<f64> = (0..101).map(|i| (i as f64).sqrt() * 3.0 - 7.0).collect();
        let exact = Moments::from_slice(&values);
        let mut a = Moments::new();
        let mut b = Moments::new();
        for (i, v) in values.iter().enumerate() {
            if i % 3 == 0 {
                a.push(*v)
            } else {
                b.push(*v)
            }
        }
        a.merge(&b);
        assert_eq!(a.count(), 101);
        assert!((a.mean() - exact.mean()).abs() < 1e-12);
        assert!((a.variance() - exact.variance()).abs() < 1e-10 * exact.variance());
    }
}
