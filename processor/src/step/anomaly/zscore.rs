//! Rolling z-score: how many sample standard deviations a value lies from
//! the mean of the previous `window` values of its key.

use std::collections::VecDeque;

/// The last `window` values of one key.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct ZScore {
    window: usize,
    values: VecDeque<f64>,
}

impl ZScore {
    /// Empty state keeping `window` values (at least 2).
    #[must_use]
    pub fn new(window: usize) -> Self {
        Self {
            window: window.max(2),
            values: VecDeque::with_capacity(window.max(2)),
        }
    }

    /// `|x - mean| / stddev` over the `window` values before `x` (sample
    /// stddev, n − 1), then `x` joins the window. `None` until the window
    /// has filled: a z-score over fewer values is not the configured
    /// statistic, and over very few it flags noise. A value off a constant
    /// window scores `f64::MAX`.
    pub fn score(&mut self, x: f64) -> Option<f64> {
        let score = self.peek(x);
        if self.values.len() == self.window {
            self.values.pop_front();
        }
        self.values.push_back(x);
        score
    }

    fn peek(&self, x: f64) -> Option<f64> {
        let n = self.values.len();
        if n < self.window {
            return None;
        }
        #[allow(clippy::cast_precision_loss, reason = "window sizes are small")]
        let nf = n as f64;
        // Two passes over at most `window` values: exact, no drift.
        let mean = self.values.iter().sum::<f64>() / nf;
        let var = self.values.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (nf - 1.0);
        let sd = var.sqrt();
        let d = (x - mean).abs();
        Some(if sd > 0.0 {
            d / sd
        } else if d == 0.0 {
            0.0
        } else {
            f64::MAX
        })
    }

    /// Values held.
    #[must_use]
    pub fn len(&self) -> usize {
        self.values.len()
    }
}
