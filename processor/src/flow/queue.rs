//! A bounded, multi-producer single-consumer queue counted in records.
//!
//! tokio's and std's bounded channels block or fail when full; the
//! `backpressure` policies also need to drop the oldest queued records or
//! keep a sample of new ones, so the queue is a `VecDeque` under a mutex
//! with two condition variables. Batches keep the lock cheap.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Condvar, Mutex, MutexGuard};
use std::time::Duration;

use tributary_crds::Overflow;

use super::Message;

/// Counters of what the policy did.
#[derive(Debug, Default)]
pub struct QueueStats {
    /// Records dropped by `dropOldest`, `dropNewest` or `sample`.
    pub dropped: AtomicU64,
    /// Times a producer waited on a full queue (`block`).
    pub blocked: AtomicU64,
}

struct State {
    items: VecDeque<Message>,
    weight: usize,
    /// Deterministic sampling accumulator (error diffusion, no RNG).
    sample_acc: f64,
}

/// See the module docs.
pub struct Queue {
    state: Mutex<State>,
    not_empty: Condvar,
    not_full: Condvar,
    capacity: usize,
    policy: Overflow,
    sample_rate: f64,
    /// What the policy did.
    pub stats: QueueStats,
}

impl Queue {
    /// A queue holding up to `capacity` records.
    #[must_use]
    pub fn new(capacity: usize, policy: Overflow, sample_rate: f64) -> Self {
        Self {
            state: Mutex::new(State {
                items: VecDeque::new(),
                weight: 0,
                sample_acc: 0.0,
            }),
            not_empty: Condvar::new(),
            not_full: Condvar::new(),
            capacity: capacity.max(1),
            policy,
            sample_rate: sample_rate.clamp(0.0, 1.0),
            stats: QueueStats::default(),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A poisoned lock means a thread panicked mid-push; the data is a
        // plain queue and still consistent, so keep going.
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn drop_count(&self, n: usize) {
        self.stats.dropped.fetch_add(n as u64, Ordering::Relaxed);
    }

    /// Enqueues a message, applying the overflow policy to batches.
    /// Control messages (`End`, `Failed`) are never dropped.
    pub fn push(&self, msg: Message) {
        let mut st = self.lock();
        let w = msg.weight();
        if w == 0 || st.weight + w <= self.capacity {
            st.weight += w;
            st.items.push_back(msg);
            drop(st);
            self.not_empty.notify_one();
            return;
        }
        match self.policy {
            Overflow::Block => {
                self.stats.blocked.fetch_add(1, Ordering::Relaxed);
                // Admit an oversized batch into an empty queue rather than deadlock.
                while st.weight > 0 && st.weight + w > self.capacity {
                    st = self
                        .not_full
                        .wait(st)
                        .unwrap_or_else(std::sync::PoisonError::into_inner);
                }
                st.weight += w;
                st.items.push_back(msg);
            }
            Overflow::DropNewest => {
                let Message::Batch(mut b) = msg else { return };
                let room = self.capacity.saturating_sub(st.weight);
                let dropped = b.records.len().saturating_sub(room);
                b.records.truncate(room);
                self.drop_count(dropped);
                if !b.records.is_empty() || !b.dead.is_empty() {
                    st.weight += b.records.len() + b.dead.len();
                    st.items.push_back(Message::Batch(b));
                }
            }
            Overflow::DropOldest => {
                st.weight += w;
                st.items.push_back(msg);
                while st.weight > self.capacity {
                    let Some(pos) = st
                        .items
                        .iter()
                        .position(|m| matches!(m, Message::Batch(b) if !b.records.is_empty()))
                    else {
                        break;
                    };
                    let excess = st.weight - self.capacity;
                    let Some(Message::Batch(b)) = st.items.get_mut(pos) else {
                        break;
                    };
                    let n = excess.min(b.records.len());
                    b.records.drain(..n);
                    st.weight -= n;
                    self.drop_count(n);
                }
            }
            Overflow::Sample => {
                let Message::Batch(mut b) = msg else { return };
                let before = b.records.len();
                let rate = self.sample_rate;
                let mut acc = st.sample_acc;
                b.records.retain(|_| {
                    acc += rate;
                    if acc >= 1.0 {
                        acc -= 1.0;
                        true
                    } else {
                        false
                    }
                });
                st.sample_acc = acc;
                self.drop_count(before - b.records.len());
                // Sampling bounds the rate, not the size: block if still over.
                let w = b.records.len() + b.dead.len();
                while st.weight > 0 && st.weight + w > self.capacity {
                    st = self
                        .not_full
                        .wait(st)
                        .unwrap_or_else(std::sync::PoisonError::into_inner);
                }
                st.weight += w;
                st.items.push_back(Message::Batch(b));
            }
        }
        drop(st);
        self.not_empty.notify_one();
    }

    /// Dequeues a message, waiting up to `timeout`.
    pub fn pop(&self, timeout: Duration) -> Option<Message> {
        let mut st = self.lock();
        if st.items.is_empty() {
            st = self
                .not_empty
                .wait_timeout_while(st, timeout, |s| s.items.is_empty())
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .0;
        }
        let msg = st.items.pop_front()?;
        st.weight -= msg.weight();
        drop(st);
        self.not_full.notify_all();
        Some(msg)
    }

    /// Records queued now.
    #[must_use]
    pub fn len(&self) -> usize {
        self.lock().weight
    }

    /// True when nothing is queued.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// A batch of `n` empty records, for tests.
#[cfg(test)]
fn batch(n: usize) -> Message {
    use crate::record::Record;
    Message::Batch(super::Batch {
        partition: 0,
        records: (0..n)
            .map(|i| Record::new(serde_json::json!(i), 0))
            .collect(),
        dead: vec![],
        created: None,
    })
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;

    fn values(q: &Queue) -> Vec<serde_json::Value> {
        let mut out = vec![];
        while let Some(Message::Batch(b)) = q.pop(Duration::ZERO) {
            out.extend(b.records.into_iter().map(|r| r.value));
        }
        out
    }

    #[test]
    fn drop_newest_keeps_what_fits() {
        let q = Queue::new(5, Overflow::DropNewest, 1.0);
        q.push(batch(3));
        q.push(batch(4));
        assert_eq!(q.len(), 5);
        assert_eq!(q.stats.dropped.load(Ordering::Relaxed), 2);
        assert_eq!(
            values(&q),
            serde_json::json!([0, 1, 2, 0, 1])
                .as_array()
                .unwrap()
                .clone()
        );
    }

    #[test]
    fn drop_oldest_evicts_from_the_front() {
        let q = Queue::new(5, Overflow::DropOldest, 1.0);
        q.push(batch(3));
        q.push(batch(4));
        assert_eq!(q.stats.dropped.load(Ordering::Relaxed), 2);
        assert_eq!(
            values(&q),
            serde_json::json!([2, 0, 1, 2, 3])
                .as_array()
                .unwrap()
                .clone()
        );
    }

    #[test]
    fn sample_keeps_the_rate_when_full() {
        let q = Queue::new(10, Overflow::Sample, 0.25);
        q.push(batch(6));
        assert_eq!(
            q.stats.dropped.load(Ordering::Relaxed),
            0,
            "not full: nothing sampled"
        );
        q.push(batch(8));
        assert_eq!(q.len(), 8, "one record in four of the 8 kept");
        q.push(batch(4));
        assert_eq!(q.len(), 9);
        assert_eq!(q.stats.dropped.load(Ordering::Relaxed), 9);
    }

    #[test]
    fn block_waits_for_room_and_loses_nothing() {
        let q = Arc::new(Queue::new(8, Overflow::Block, 1.0));
        let producer = {
            let q = q.clone();
            std::thread::spawn(move || {
                for _ in 0..50 {
                    q.push(batch(4));
                }
                q.push(Message::End { partition: 0 });
            })
        };
        let mut total = 0;
        loop {
            match q.pop(Duration::from_secs(5)) {
                Some(Message::End { .. }) | None => break,
                Some(m) => {
                    assert!(q.len() <= 8);
                    total += m.weight();
                }
            }
        }
        producer.join().unwrap();
        assert_eq!(total, 200);
        assert_eq!(q.stats.dropped.load(Ordering::Relaxed), 0);
    }
}
