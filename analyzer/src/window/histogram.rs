//! A fixed-footprint latency histogram with log-spaced buckets (DDSketch's mapping).
//!
//! Bucket `i ≥ 1` holds values in `(L·γ^{i−1}, L·γ^i]` with `γ = (1+a)/(1−a)`, `a` =
//! [`RELATIVE_ACCURACY`] and `L` = [`MIN_LATENCY_MS`]; it reports `2·L·γ^i/(γ+1)`, which is within
//! a relative error `a` of every value in the bucket (Masson, Rim, Lee, "DDSketch", VLDB 2019).
//!
//! **Error bound**: for a value set within `[MIN_LATENCY_MS, MAX_LATENCY_MS]`, `quantile(q)`
//! is within relative error 1% of the exact order statistic `x_(⌊q·(n−1)⌋)` (0-based).
//! Values below the range are counted in bucket 0 and reported as `MIN_LATENCY_MS`; values above
//! it are counted in the last bucket, which reports the exact maximum; results are clamped to the exact minimum and maximum seen.
//! Count, sum, minimum and maximum are exact. Non-finite and negative values are counted in
//! `invalid` only. The footprint is fixed: ~1,160 `u64` buckets (~9 KiB).

/// The relative accuracy of quantiles within the range.
pub const RELATIVE_ACCURACY: f64 = 0.01;
/// The smallest latency resolved, in milliseconds (1 µs).
pub const MIN_LATENCY_MS: f64 = 1e-3;
/// The largest latency resolved, in milliseconds (~2.8 hours).
pub const MAX_LATENCY_MS: f64 = 1e7;

/// `γ = (1 + a) / (1 − a)`.
const GAMMA: f64 = (1.0 + RELATIVE_ACCURACY) / (1.0 - RELATIVE_ACCURACY);

/// A latency histogram with a fixed number of log-spaced buckets.
///
/// Serialized sparsely (only non-empty buckets, as `[index, count]` pairs) with `min`/`max` as
/// `null` when empty, so persisted rollout state stays small and valid JSON.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(into = "HistogramState", try_from = "HistogramState")]
pub struct LatencyHistogram {
    buckets: Vec<u64>,
    count: u64,
    invalid: u64,
    sum: f64,
    min: f64,
    max: f64,
}

/// The persisted form of a [`LatencyHistogram`].
#[derive(serde::Serialize, serde::Deserialize)]
struct HistogramState {
    buckets: Vec<(usize, u64)>,
    count: u64,
    invalid: u64,
    sum: f64,
    min: Option<f64>,
    max: Option<f64>,
}

impl From<LatencyHistogram> for HistogramState {
    fn from(h: LatencyHistogram) -> Self {
        let empty = h.count == 0;
        HistogramState {
            buckets: h
                .buckets
                .iter()
                .enumerate()
                .filter(|(_, &n)| n > 0)
                .map(|(i, &n)| (i, n))
                .collect(),
            count: h.count,
            invalid: h.invalid,
            sum: h.sum,
            min: (!empty).then_some(h.min),
            max: (!empty).then_some(h.max),
        }
    }
}

impl TryFrom<HistogramState> for LatencyHistogram {
    type Error = String;

    fn try_from(s: HistogramState) -> Result<Self, Self::Error> {
        let mut h = LatencyHistogram::new();
        let len = h.buckets.len();
        for (i, n) in s.buckets {
            let slot = h
                .buckets
                .get_mut(i)
                .ok_or_else(|| format!("bucket index {i} out of range (< {len})"))?;
            *slot = n;
        }
        if h.buckets.iter().sum::<u64>() != s.count {
            return Err("bucket counts do not add up to count".to_owned());
        }
        h.count = s.count;
        h.invalid = s.invalid;
        h.sum = s.sum;
        h.min = s.min.unwrap_or(f64::INFINITY);
        h.max = s.max.unwrap_or(f64::NEG_INFINITY);
        Ok(h)
    }
}

impl Default for LatencyHistogram {
    fn default() -> Self {
        Self::new()
    }
}

fn bucket_count() -> usize {
    ((MAX_LATENCY_MS / MIN_LATENCY_MS).ln() / GAMMA.ln()).ceil() as usize + 1
}

impl LatencyHistogram {
    /// An empty histogram.
    pub fn new() -> Self {
        LatencyHistogram {
            buckets: vec![0; bucket_count()],
            count: 0,
            invalid: 0,
            sum: 0.0,
            min: f64::INFINITY,
            max: f64::NEG_INFINITY,
        }
    }

    fn index(&self, value: f64) -> usize {
        if value <= MIN_LATENCY_MS {
            return 0;
        }
        let i = ((value / MIN_LATENCY_MS).ln() / GAMMA.ln()).ceil();
        (i as usize).min(self.buckets.len() - 1)
    }

    /// Records one latency in milliseconds.
    pub fn record(&mut self, value: f64) {
        if !value.is_finite() || value < 0.0 {
            self.invalid += 1;
            return;
        }
        let i = self.index(value);
        self.buckets[i] += 1;
        self.count += 1;
        self.sum += value;
        self.min = self.min.min(value);
        self.max = self.max.max(value);
    }

    /// Adds another histogram's counts into this one.
    pub fn merge(&mut self, other: &LatencyHistogram) {
        for (mine, theirs) in self.buckets.iter_mut().zip(&other.buckets) {
            *mine += theirs;
        }
        self.count += other.count;
        self.invalid += other.invalid;
        self.sum += other.sum;
        self.min = self.min.min(other.min);
        self.max = self.max.max(other.max);
    }

    /// The number of valid values recorded.
    pub fn count(&self) -> u64 {
        self.count
    }

    /// The number of rejected (non-finite or negative) values.
    pub fn invalid(&self) -> u64 {
        self.invalid
    }

    /// The exact mean, or `None` when empty.
    pub fn mean(&self) -> Option<f64> {
        (self.count > 0).then(|| self.sum / self.count as f64)
    }

    /// The exact minimum, or `None` when empty.
    pub fn min(&self) -> Option<f64> {
        (self.count > 0).then_some(self.min)
    }

    /// The exact maximum, or `None` when empty.
    pub fn max(&self) -> Option<f64> {
        (self.count > 0).then_some(self.max)
    }

    /// How many values are `≤ value`, up to the bucket resolution (whole buckets counted).
    pub fn count_at_most(&self, value: f64) -> u64 {
        if !value.is_finite() || self.count == 0 {
            return if value == f64::INFINITY {
                self.count
            } else {
                0
            };
        }
        let i = self.index(value);
        self.buckets[..=i].iter().sum()
    }

    /// The `q`-quantile (`q ∈ [0, 1]`) within the documented error bound; `None` when empty or
    /// `q` is out of range.
    pub fn quantile(&self, q: f64) -> Option<f64> {
        if self.count == 0 || !(0.0..=1.0).contains(&q) {
            return None;
        }
        let rank = q * (self.count - 1) as f64;
        let mut cumulative = 0u64;
        for (i, &n) in self.buckets.iter().enumerate() {
            cumulative += n;
            if cumulative as f64 > rank {
                let value = if i == 0 {
                    MIN_LATENCY_MS
                } else if i == self.buckets.len() - 1 {
                    // the overflow bucket: the exact maximum is the best report.
                    self.max
                } else {
                    MIN_LATENCY_MS * 2.0 * GAMMA.powi(i as i32) / (GAMMA + 1.0)
                };
                return Some(value.clamp(self.min, self.max));
            }
        }
        Some(self.max)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_are_within_the_stated_relative_error() {
        // A deterministic spread over 6 decades, with duplicates.
        let mut values: Vec<f64> = (0..20_000u64)
            .map(|i| {
                let u = ((i.wrapping_mul(2_654_435_761) % 1_000_003) as f64) / 1_000_003.0;
                0.05 * 10f64.powf(6.0 * u)
            })
            .collect();
        let mut h = LatencyHistogram::new();
        for &v in &values {
            h.record(v);
        }
        values.sort_by(f64::total_cmp);
        for q in [0.0, 0.01, 0.25, 0.5, 0.9, 0.95, 0.99, 0.999, 1.0] {
            let exact = values[(q * (values.len() - 1) as f64).floor() as usize];
            let got = h.quantile(q).expect("non-empty");
            assert!(
                (got - exact).abs() <= RELATIVE_ACCURACY * exact * (1.0 + 1e-12),
                "q={q}: {got} vs {exact}"
            );
        }
        assert_eq!(h.count(), 20_000);
        assert!(h.buckets.len() < 1_200);
    }

    #[test]
    fn edges_and_invalid_values() {
        let mut h = LatencyHistogram::new();
        assert_eq!(h.quantile(0.5), None);
        h.record(f64::NAN);
        h.record(-1.0);
        h.record(0.0);
        h.record(1e9);
        assert_eq!((h.count(), h.invalid()), (2, 2));
        assert_eq!(h.quantile(0.0), Some(MIN_LATENCY_MS));
        assert_eq!(h.quantile(1.0), Some(1e9));
        assert_eq!(h.count_at_most(1.0), 1);
        let mut other = LatencyHistogram::new();
        other.record(5.0);
        h.merge(&other);
        assert_eq!(h.count(), 3);
        assert_eq!(h.mean(), Some((1e9 + 5.0) / 3.0));
    }
}
