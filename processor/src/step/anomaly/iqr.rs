//! Rolling interquartile range (Tukey's fences): a value is an anomaly when
//! it lies more than `k` IQRs below the first or above the third quartile of
//! the previous `window` values of its key.

use std::collections::VecDeque;

/// The last `window` values of one key, also kept sorted.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct Iqr {
    window: usize,
    arrival: VecDeque<f64>,
    sorted: Vec<f64>,
}

/// The `q`-quantile of sorted values by linear interpolation between the
/// closest ranks (`(n − 1)·q`, NumPy's default and R's type 7).
#[must_use]
pub fn quantile(sorted: &[f64], q: f64) -> f64 {
    #[allow(
        clippy::cast_precision_loss,
        clippy::cast_possible_truncation,
        clippy::cast_sign_loss,
        reason = "small, non-negative positions"
    )]
    {
        let h = (sorted.len() - 1) as f64 * q;
        let lo = h.floor() as usize;
        let hi = (lo + 1).min(sorted.len() - 1);
        sorted[lo] + (h - h.floor()) * (sorted[hi] - sorted[lo])
    }
}

impl Iqr {
    /// Empty state keeping `window` values (at least 2).
    #[must_use]
    pub fn new(window: usize) -> Self {
        Self {
            window: window.max(2),
            arrival: VecDeque::with_capacity(window.max(2)),
            sorted: Vec::with_capacity(window.max(2)),
        }
    }

    /// How far `x` lies outside `[Q1, Q3]` of the values before it, in IQRs
    /// (0 inside); then `x` joins the window. `None` until the window has
    /// filled. Off a window with IQR 0 the score is `f64::MAX`.
    pub fn score(&mut self, x: f64) -> Option<f64> {
        let score = (self.sorted.len() == self.window).then(|| {
            let q1 = quantile(&self.sorted, 0.25);
            let q3 = quantile(&self.sorted, 0.75);
            let iqr = q3 - q1;
            let out = if x > q3 {
                x - q3
            } else if x < q1 {
                q1 - x
            } else {
                0.0
            };
            if out == 0.0 {
                0.0
            } else if iqr > 0.0 {
                out / iqr
            } else {
                f64::MAX
            }
        });
        if self.arrival.len() == self.window
            && let Some(old) = self.arrival.pop_front()
            && let Ok(i) = self.sorted.binary_search_by(|v| v.total_cmp(&old))
        {
            self.sorted.remove(i);
        }
        self.arrival.push_back(x);
        let at = self.sorted.partition_point(|v| v.total_cmp(&x).is_lt());
        self.sorted.insert(at, x);
        score
    }

    /// Values held.
    #[must_use]
    pub fn len(&self) -> usize {
        self.arrival.len()
    }
}
