//! Transient bursts: the worst short window of each rate, which a Fail must not rest on.
//!
//! A canary that fails 30% of its requests for one minute (a cold cache, a dependency blip)
//! and is healthy otherwise leaves a mark on the cumulative error rate for a long time: at 100
//! req/s the cumulative bound would show "+4 points" for half an hour and roll the canary back.
//! Bursts are the rollback triggers' business (they fire on a condition shown over *their*
//! window). So the analysis decides a **Fail** of a rate metric on the cumulative counts minus
//! the counts of the worst window of `window_s` seconds seen so far (the one with the most
//! excess bad events against stable's rate), and a **Pass** on all the counts. Dropping data
//! can only make a Fail less likely for a canary within its allowance, so the false-rollback
//! guarantee stands; a sustained regression still shows once there is evidence beyond one
//! window.
//!
//! Windows are the last [`BUCKETS`] buckets of `window_s / BUCKETS` seconds, evaluated whenever
//! a bucket closes, and once more at each look for the window still open; memory is a few
//! buckets whatever the traffic.

use std::collections::VecDeque;

use augur_model::Arm;
use serde::{Deserialize, Serialize};

/// Buckets per window.
pub const BUCKETS: usize = 8;
/// The default window: a burst up to two minutes is not held against the canary by the analysis.
pub const DEFAULT_WINDOW_S: f64 = 120.0;

/// The rate quantities tracked.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Quantity {
    /// Errors among requests.
    Errors = 0,
    /// Correct among labelled predictions.
    Correct = 1,
    /// Agreements among predictions compared with the shadow.
    Agreed = 2,
}

/// Events and totals of one quantity in both arms.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Pair {
    /// Stable's events.
    pub x_stable: u64,
    /// Stable's total.
    pub n_stable: u64,
    /// The canary's events.
    pub x_canary: u64,
    /// The canary's total.
    pub n_canary: u64,
}

impl Pair {
    fn add(&mut self, o: &Pair) {
        self.x_stable += o.x_stable;
        self.n_stable += o.n_stable;
        self.x_canary += o.x_canary;
        self.n_canary += o.n_canary;
    }

    /// Excess canary events over what stable's `rate` predicts (`up`), or the shortfall.
    fn excess(&self, rate: f64, up: bool) -> f64 {
        let d = self.x_canary as f64 - self.n_canary as f64 * rate;
        if up {
            d
        } else {
            -d
        }
    }
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
struct Worst {
    excess: f64,
    counts: Pair,
}

/// The tracker.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Transients {
    bucket_s: f64,
    buckets: VecDeque<(i64, [Pair; 3])>,
    totals: [Pair; 3],
    /// Worst windows per quantity: `[up, down]` (more events is bad / fewer is bad).
    worst: [[Worst; 2]; 3],
}

impl Default for Transients {
    fn default() -> Self {
        Self::new(DEFAULT_WINDOW_S)
    }
}

impl Transients {
    /// A tracker of windows of `window_s` seconds (0 or less: none; nothing is excluded).
    pub fn new(window_s: f64) -> Self {
        let window_s = if window_s.is_finite() { window_s } else { 0.0 };
        Transients {
            bucket_s: window_s / BUCKETS as f64,
            buckets: VecDeque::new(),
            totals: [Pair::default(); 3],
            worst: Default::default(),
        }
    }

    fn enabled(&self) -> bool {
        self.bucket_s > 0.0
    }

    /// Records one event of quantity `q` for `arm` at `t`: `hit` is the event (an error, a
    /// correct prediction, an agreement).
    pub fn record(&mut self, q: Quantity, arm: Arm, hit: bool, t: f64) {
        let slot = |p: &mut Pair| match arm {
            Arm::Stable => {
                p.n_stable += 1;
                p.x_stable += u64::from(hit);
            }
            Arm::Canary => {
                p.n_canary += 1;
                p.x_canary += u64::from(hit);
            }
            Arm::Mirror | Arm::Shadow => {}
        };
        slot(&mut self.totals[q as usize]);
        if !self.enabled() || !t.is_finite() {
            return;
        }
        let index = (t / self.bucket_s).floor() as i64;
        let q = q as usize;
        if let Some(b) = self.buckets.iter_mut().rev().find(|b| b.0 == index) {
            slot(&mut b.1[q]);
            return;
        }
        match self.buckets.back().map(|b| b.0) {
            Some(newest) if index < newest => {
                // A late event in a gap of the window: a bucket of its own, in order.
                if index > newest - BUCKETS as i64 {
                    let at = self.buckets.partition_point(|b| b.0 < index);
                    let mut counts = [Pair::default(); 3];
                    slot(&mut counts[q]);
                    self.buckets.insert(at, (index, counts));
                }
            }
            _ => {
                // A bucket closed: its window is a candidate.
                self.consider();
                let mut counts = [Pair::default(); 3];
                slot(&mut counts[q]);
                self.buckets.push_back((index, counts));
                while self
                    .buckets
                    .front()
                    .is_some_and(|b| b.0 <= index - BUCKETS as i64)
                {
                    self.buckets.pop_front();
                }
            }
        }
    }

    /// The window of the buckets held now.
    fn current(&self, q: Quantity) -> Pair {
        let mut p = Pair::default();
        for b in &self.buckets {
            p.add(&b.1[q as usize]);
        }
        p
    }

    fn stable_rate(&self, q: Quantity) -> f64 {
        let t = &self.totals[q as usize];
        if t.n_stable == 0 {
            0.0
        } else {
            t.x_stable as f64 / t.n_stable as f64
        }
    }

    /// Updates the worst windows with the window held now.
    fn consider(&mut self) {
        for q in [Quantity::Errors, Quantity::Correct, Quantity::Agreed] {
            let window = self.current(q);
            let rate = self.stable_rate(q);
            for (i, up) in [true, false].into_iter().enumerate() {
                let excess = window.excess(rate, up);
                let w = &mut self.worst[q as usize][i];
                if excess > w.excess {
                    *w = Worst {
                        excess,
                        counts: window,
                    };
                }
            }
        }
    }

    /// The counts of the worst window so far of `q` (more events are bad when `up`), the window
    /// still open included; zero when nothing stands out.
    pub fn worst(&self, q: Quantity, up: bool) -> Pair {
        if !self.enabled() {
            return Pair::default();
        }
        let stored = &self.worst[q as usize][usize::from(!up)];
        let current = self.current(q);
        let excess = current.excess(self.stable_rate(q), up);
        if excess > stored.excess {
            current
        } else {
            stored.counts
        }
    }

    /// The window's length, seconds.
    pub fn window_s(&self) -> f64 {
        self.bucket_s * BUCKETS as f64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_worst_window_is_the_burst() {
        let mut tr = Transients::new(120.0);
        // one canary and nine stable requests a second for 20 minutes; the canary fails every
        // request from 300 s to 360 s, 1% otherwise
        for s in 0..1200 {
            let t = f64::from(s);
            let burst = (300..360).contains(&s);
            tr.record(Quantity::Errors, Arm::Canary, burst || s % 100 == 7, t);
            for k in 0..9 {
                tr.record(
                    Quantity::Errors,
                    Arm::Stable,
                    (s * 9 + k) % 100 == 3,
                    t + 0.1,
                );
            }
        }
        let w = tr.worst(Quantity::Errors, true);
        assert!(w.x_canary >= 60 && w.n_canary <= 120, "{w:?}");
        assert!(w.n_stable > 0);
        // the other direction's worst is a window with fewer errors than stable's rate
        let down = tr.worst(Quantity::Errors, false);
        assert!(down.x_canary <= 1, "{down:?}");
        assert_eq!(
            Transients::new(0.0).worst(Quantity::Errors, true),
            Pair::default()
        );
    }
}
