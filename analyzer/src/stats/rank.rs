//! Average ranks with tie groups, the first step of rank tests.

/// The ranks (1-based, ties get the average rank) of `x ++ y` and the size of each tie group.
pub(crate) struct Ranked {
    /// Sum of the ranks of the first sample.
    pub(crate) rank_sum_x: f64,
    /// Sizes of tie groups with more than one member.
    pub(crate) ties: Vec<usize>,
}

impl Ranked {
    /// `Σ (t³ − t)` over tie groups, the tie correction term.
    pub(crate) fn tie_term(&self) -> f64 {
        self.ties
            .iter()
            .map(|&t| {
                let t = t as f64;
                t * t * t - t
            })
            .sum()
    }
}

/// Ranks the pooled sample; the values must be finite (checked by the callers).
pub(crate) fn rank(x: &[f64], y: &[f64]) -> Ranked {
    let mut pooled: Vec<(f64, bool)> = x
        .iter()
        .map(|&v| (v, true))
        .chain(y.iter().map(|&v| (v, false)))
        .collect();
    pooled.sort_by(|a, b| a.0.total_cmp(&b.0));
    let mut rank_sum_x = 0.0;
    let mut ties = Vec::new();
    let mut i = 0;
    while i < pooled.len() {
        let mut j = i + 1;
        // -0.0 and 0.0 tie, as in scipy.
        while j < pooled.len() && pooled[j].0 == pooled[i].0 {
            j += 1;
        }
        let average = (i + 1 + j) as f64 / 2.0;
        let in_x = pooled[i..j].iter().filter(|p| p.1).count();
        rank_sum_x += average * in_x as f64;
        if j - i > 1 {
            ties.push(j - i);
        }
        i = j;
    }
    Ranked { rank_sum_x, ties }
}
