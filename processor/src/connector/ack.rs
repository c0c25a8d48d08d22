//! Acknowledging broker messages once the engine says they are durable.
//!
//! A broker source stamps each record with the next number of a
//! [`Ledger`] (its `position.offset`) and keeps the broker's handle for
//! it (a Redis entry ID, a JetStream ack subject). The engine's
//! [`Acker`](crate::source::Acker) only raises a shared mark; the source
//! thread reads the mark between reads and acknowledges every handle
//! below it, so acknowledgements go out on the source's own connection,
//! and then confirms how far it got ([`Mark::done`]).

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};

use crate::source::{Acker, Running, SourceError};

/// The mark the engine raises and the one the source confirmed.
#[derive(Default)]
struct Marks {
    asked: AtomicI64,
    done: AtomicI64,
}

/// The engine's side: raises the mark.
struct MarkAcker(Arc<Marks>);

impl Acker for MarkAcker {
    fn ack_below(&mut self, below: i64) {
        self.0.asked.fetch_max(below, Ordering::Relaxed);
    }

    fn confirmed_below(&self) -> Option<i64> {
        Some(self.0.done.load(Ordering::Acquire))
    }
}

/// The source's side of the mark: every sequence number below
/// [`Mark::get`] is durable.
#[derive(Clone)]
pub struct Mark(Arc<Marks>);

impl Mark {
    /// A mark at 0 and the [`Acker`] that raises it.
    #[must_use]
    pub fn new() -> (Self, Box<dyn Acker>) {
        let shared = Arc::new(Marks::default());
        (Self(shared.clone()), Box::new(MarkAcker(shared)))
    }

    /// Sequence numbers below this are durable.
    #[must_use]
    pub fn get(&self) -> i64 {
        self.0.asked.load(Ordering::Relaxed)
    }

    /// Everything below `below` was acknowledged at the broker.
    pub fn done(&self, below: i64) {
        self.0.done.fetch_max(below, Ordering::Release);
    }
}

/// Runs an acknowledging source's read loop on its own thread: `run`
/// gets the [`Mark`] whose [`Acker`] the engine is handed.
///
/// # Errors
/// [`SourceError::Open`] when the thread cannot be spawned.
pub fn spawn<F>(name: &str, run: F) -> Result<Running, SourceError>
where
    F: FnOnce(Mark) + Send + 'static,
{
    let (mark, acker) = Mark::new();
    let handle = std::thread::Builder::new()
        .name(format!("source-{name}"))
        .spawn(move || run(mark))
        .map_err(|source| SourceError::Open {
            path: format!("{name} source thread"),
            source,
        })?;
    Ok(Running {
        handle,
        partitions: vec![0],
        bounded: false,
        acker: Some(acker),
    })
}

/// Broker handles of the records in flight, by sequence number.
///
/// Sequence numbers are dense and start at 0, so the ledger is a queue
/// whose front has the number `base`.
#[derive(Debug)]
pub struct Ledger<T> {
    base: i64,
    items: VecDeque<T>,
}

impl<T> Default for Ledger<T> {
    fn default() -> Self {
        Self {
            base: 0,
            items: VecDeque::new(),
        }
    }
}

impl<T> Ledger<T> {
    /// Remembers `handle` and returns its sequence number.
    pub fn push(&mut self, handle: T) -> i64 {
        let seq = self.base + self.items.len() as i64;
        self.items.push_back(handle);
        seq
    }

    /// Forgets and returns the handles with a sequence number below `below`.
    pub fn release_below(&mut self, below: i64) -> Vec<T> {
        let n = usize::try_from(below.saturating_sub(self.base))
            .unwrap_or(0)
            .min(self.items.len());
        self.base += n as i64;
        self.items.drain(..n).collect()
    }

    /// Handles still in flight, oldest first.
    pub fn iter(&self) -> impl Iterator<Item = &T> {
        self.items.iter()
    }

    /// How many handles are in flight.
    #[must_use]
    pub fn len(&self) -> usize {
        self.items.len()
    }

    /// Whether nothing is in flight.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn releases_exactly_what_is_below_the_mark() {
        let mut l = Ledger::default();
        assert_eq!(l.push("a"), 0);
        assert_eq!(l.push("b"), 1);
        assert_eq!(l.push("c"), 2);
        assert!(l.release_below(0).is_empty());
        assert_eq!(l.release_below(2), vec!["a", "b"]);
        assert_eq!(
            l.release_below(1),
            Vec::<&str>::new(),
            "a lower mark releases nothing"
        );
        assert_eq!(l.push("d"), 3, "numbers stay dense after a release");
        assert_eq!(l.release_below(i64::MAX), vec!["c", "d"]);
        assert!(l.is_empty());
    }

    #[test]
    fn the_acker_only_raises_the_mark() {
        let (mark, mut acker) = Mark::new();
        acker.ack_below(5);
        acker.ack_below(3);
        assert_eq!(mark.get(), 5);
        assert_eq!(acker.confirmed_below(), Some(0), "nothing confirmed yet");
        mark.done(4);
        mark.done(2);
        assert_eq!(acker.confirmed_below(), Some(4));
    }
}
