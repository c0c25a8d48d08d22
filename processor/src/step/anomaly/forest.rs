//! Isolation forest (Liu, Ting and Zhou, 2008) over a key's rolling window.
//!
//! No maintained Rust crate fits a streaming, per-key, seeded use (the ones
//! published are unmaintained or fix the dimension at compile time), so this
//! is the algorithm in a few lines: each tree isolates a random subsample of
//! `sample_size` points by random axis-aligned splits up to depth
//! `ceil(log2 sample_size)`; a point's score is `2^(−E[h(x)] / c(n))`, near 1
//! for points isolated quickly (anomalies), about 0.5 and below otherwise.
//!
//! # Guarantees
//! Deterministic: the random choices come from `SplitMix64` seeded with the
//! step's `seed`, the key's hash and the number of the training round, so a
//! run over the same input gives the same scores.

use std::collections::VecDeque;

pub use crate::rng::SplitMix64;

/// Average path length of an unsuccessful search in a binary search tree of
/// `n` points: the normalisation `c(n)` of the paper.
#[must_use]
pub fn c(n: usize) -> f64 {
    #[allow(clippy::cast_precision_loss, reason = "small counts")]
    let nf = n as f64;
    match n {
        0 | 1 => 0.0,
        2 => 1.0,
        _ => 2.0 * ((nf - 1.0).ln() + 0.577_215_664_9) - 2.0 * (nf - 1.0) / nf,
    }
}

#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
enum Node {
    Split {
        dim: usize,
        at: f64,
        left: usize,
        right: usize,
    },
    Leaf {
        size: usize,
    },
}

/// A trained forest: trees as flat node arrays.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct Forest {
    trees: Vec<Vec<Node>>,
    sample: usize,
}

impl Forest {
    /// Grows `trees` trees on `points` (all of the same dimension), each on a
    /// subsample of `sample` points drawn without replacement.
    #[must_use]
    pub fn train(points: &[Vec<f64>], trees: usize, sample: usize, rng: &mut SplitMix64) -> Self {
        let sample = sample.clamp(1, points.len().max(1));
        let limit = usize::BITS - (sample.max(2) - 1).leading_zeros();
        let mut idx: Vec<usize> = (0..points.len()).collect();
        let trees = (0..trees)
            .map(|_| {
                // Partial Fisher–Yates: the first `sample` entries are the subsample.
                for i in 0..sample.min(idx.len()) {
                    let j = i + rng.index(idx.len() - i);
                    idx.swap(i, j);
                }
                let mut nodes = Vec::new();
                let mut sub: Vec<&[f64]> = idx[..sample.min(idx.len())]
                    .iter()
                    .map(|&i| points[i].as_slice())
                    .collect();
                grow(&mut sub, 0, limit as usize, rng, &mut nodes);
                nodes
            })
            .collect();
        Self { trees, sample }
    }

    /// The anomaly score of `x` in `(0, 1]`.
    #[must_use]
    pub fn score(&self, x: &[f64]) -> f64 {
        if self.trees.is_empty() {
            return 0.5;
        }
        let total: f64 = self.trees.iter().map(|t| path_length(t, x)).sum();
        #[allow(clippy::cast_precision_loss, reason = "small counts")]
        let mean = total / self.trees.len() as f64;
        let norm = c(self.sample);
        if norm == 0.0 {
            return 0.5;
        }
        2f64.powf(-mean / norm)
    }
}

/// Appends the subtree isolating `points` to `nodes`; returns its index.
fn grow(
    points: &mut [&[f64]],
    depth: usize,
    limit: usize,
    rng: &mut SplitMix64,
    nodes: &mut Vec<Node>,
) -> usize {
    let me = nodes.len();
    nodes.push(Node::Leaf { size: points.len() });
    if points.len() <= 1 || depth >= limit {
        return me;
    }
    let dims = points[0].len();
    // Only dimensions with spread can split; pick one of them at random.
    let spread: Vec<(usize, f64, f64)> = (0..dims)
        .filter_map(|d| {
            let (lo, hi) = points
                .iter()
                .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), p| {
                    (lo.min(p[d]), hi.max(p[d]))
                });
            (hi > lo).then_some((d, lo, hi))
        })
        .collect();
    if spread.is_empty() {
        return me;
    }
    let (dim, lo, hi) = spread[rng.index(spread.len())];
    let at = lo + rng.unit() * (hi - lo);
    let mut split = 0;
    for i in 0..points.len() {
        if points[i][dim] < at {
            points.swap(i, split);
            split += 1;
        }
    }
    if split == 0 || split == points.len() {
        return me;
    }
    let (l, r) = points.split_at_mut(split);
    let left = grow(l, depth + 1, limit, rng, nodes);
    let right = grow(r, depth + 1, limit, rng, nodes);
    nodes[me] = Node::Split {
        dim,
        at,
        left,
        right,
    };
    me
}

/// Depth at which `x` lands, plus `c(size)` for the points left unsplit there.
fn path_length(nodes: &[Node], x: &[f64]) -> f64 {
    let mut i = 0;
    let mut depth = 0.0;
    loop {
        match &nodes[i] {
            Node::Leaf { size } => return depth + c(*size),
            Node::Split {
                dim,
                at,
                left,
                right,
            } => {
                i = if x.get(*dim).copied().unwrap_or(0.0) < *at {
                    *left
                } else {
                    *right
                };
                depth += 1.0;
            }
        }
    }
}

/// One key's window and forest, retrained every `window` new points.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct Rolling {
    window: usize,
    trees: usize,
    sample: usize,
    seed: u64,
    points: VecDeque<Vec<f64>>,
    since: usize,
    rounds: u64,
    forest: Option<Forest>,
}

impl Rolling {
    /// Empty state; `seed` should already mix in the key.
    #[must_use]
    pub fn new(window: usize, trees: usize, sample: usize, seed: u64) -> Self {
        Self {
            window: window.max(2),
            trees: trees.max(1),
            sample: sample.max(2),
            seed,
            points: VecDeque::new(),
            since: 0,
            rounds: 0,
            forest: None,
        }
    }

    /// The score of `x` by the forest trained on earlier points (`None`
    /// until the window has filled once); then `x` joins the window.
    pub fn score(&mut self, x: Vec<f64>) -> Option<f64> {
        let s = self.forest.as_ref().map(|f| f.score(&x));
        if self.points.len() == self.window {
            self.points.pop_front();
        }
        self.points.push_back(x);
        self.since += 1;
        if self.points.len() == self.window && self.since >= self.window {
            self.since = 0;
            self.rounds += 1;
            let mut rng =
                SplitMix64::new(self.seed ^ self.rounds.wrapping_mul(0xA24B_AED4_963E_E407));
            let pts: Vec<Vec<f64>> = self.points.iter().cloned().collect();
            self.forest = Some(Forest::train(&pts, self.trees, self.sample, &mut rng));
        }
        s
    }

    /// Points held.
    #[must_use]
    pub fn len(&self) -> usize {
        self.points.len()
    }
}
