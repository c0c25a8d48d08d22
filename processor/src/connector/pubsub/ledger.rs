//! Sequence numbers for received messages and the acknowledgements they
//! stand for.
//!
//! Pub/Sub messages carry no offset, so the source numbers them in arrival
//! order (`position.offset`) and keeps each one's ack handle here until the
//! engine says everything below a number is durable.

use std::collections::VecDeque;

/// Something that settles one received message.
pub trait Settle {
    /// Acknowledges it: Pub/Sub will not redeliver it.
    fn ack(self);
}

impl Settle for google_cloud_pubsub::subscriber::handler::Handler {
    fn ack(self) {
        google_cloud_pubsub::subscriber::handler::Handler::ack(self);
    }
}

/// Handles in sequence order. Dropping a handle without acknowledging it
/// nacks the message (Pub/Sub redelivers it at once).
pub struct Ledger<H> {
    next: i64,
    held: VecDeque<(i64, H)>,
}

impl<H: Settle> Default for Ledger<H> {
    fn default() -> Self {
        Self {
            next: 0,
            held: VecDeque::new(),
        }
    }
}

impl<H: Settle> Ledger<H> {
    /// Records a received message; returns its sequence number.
    pub fn push(&mut self, handle: H) -> i64 {
        let seq = self.next;
        self.next += 1;
        self.held.push_back((seq, handle));
        seq
    }

    /// Acknowledges every message numbered below `below`; returns how many.
    pub fn ack_below(&mut self, below: i64) -> usize {
        let mut n = 0;
        while self.held.front().is_some_and(|(seq, _)| *seq < below) {
            if let Some((_, h)) = self.held.pop_front() {
                h.ack();
                n += 1;
            }
        }
        n
    }

    /// Takes every unacknowledged handle (to nack them by dropping).
    pub fn take_all(&mut self) -> Vec<H> {
        self.held.drain(..).map(|(_, h)| h).collect()
    }
}

#[cfg(test)]
mod tests {
    use std::cell::RefCell;
    use std::rc::Rc;

    use super::*;

    struct Probe(u32, Rc<RefCell<Vec<u32>>>);

    impl Settle for Probe {
        fn ack(self) {
            self.1.borrow_mut().push(self.0);
        }
    }

    #[test]
    fn acknowledges_exactly_what_is_below_the_mark_in_order() {
        let acked = Rc::new(RefCell::new(Vec::new()));
        let mut l = Ledger::default();
        let seqs: Vec<i64> = (0..5).map(|i| l.push(Probe(i, acked.clone()))).collect();
        assert_eq!(seqs, [0, 1, 2, 3, 4]);
        assert_eq!(l.ack_below(i64::MIN), 0);
        assert_eq!(l.ack_below(3), 3);
        assert_eq!(*acked.borrow(), [0, 1, 2]);
        // A mark that goes back (a window still holds older input) acks nothing.
        assert_eq!(l.ack_below(1), 0);
        assert_eq!(l.push(Probe(5, acked.clone())), 5);
        assert_eq!(l.ack_below(i64::MAX), 3);
        assert_eq!(*acked.borrow(), [0, 1, 2, 3, 4, 5]);
        assert!(l.take_all().is_empty());
    }

    #[test]
    fn take_all_leaves_nothing_to_acknowledge() {
        let acked = Rc::new(RefCell::new(Vec::new()));
        let mut l = Ledger::default();
        l.push(Probe(0, acked.clone()));
        l.push(Probe(1, acked.clone()));
        assert_eq!(l.take_all().len(), 2);
        assert_eq!(l.ack_below(i64::MAX), 0);
        assert!(acked.borrow().is_empty());
    }
}
