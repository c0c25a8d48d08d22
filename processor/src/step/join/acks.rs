//! What a join tells sources that acknowledge their records (Redis
//! Streams, NATS, Pub/Sub, Pulsar, Kinesis): which records it, and the
//! steps after it, no longer need.
//!
//! Such a source acknowledges everything below one mark and redelivers
//! the rest after a crash. Three things keep a record from being
//! acknowledged, beyond being held in the join's state:
//! - a **later step** still holds something it caused: a pair (seen there
//!   at its left record's offset) or an unmatched right row (seen at no
//!   offset at all, so only an empty later state shows it is gone);
//! - a **redelivered partner**: a released record of an outer side (the
//!   left of a `left` join, either of a `full` one) above its source's
//!   mark comes back after a crash; if it met none of its partners again
//!   it would be output as unmatched although it had matched. One partner
//!   is enough, so the other input's mark stays at or below the *largest*
//!   offset among its partners ([`Acks::cross`]). Keeping one partner, not
//!   every partner, is what keeps the marks near the held records: on a
//!   busy key every record is somebody's partner, and keeping them all
//!   would chain back to the first record and acknowledge nothing.
//!
//! The two sources apply their marks on their own threads, so a crash
//! may fall between the two. For a `left` or `right` join the marks are
//! therefore judged by what the outer input's broker *confirmed* it
//! acknowledged: the inner input's mark moves past a partner only once
//! the outer record is gone for good, and an inner record that comes back
//! alone only repeats nothing. A `full` join cannot be made safe that way:
//! of a matched pair, one record is acknowledged first, and a crash just
//! then brings the other back alone, to be output as unmatched once more
//! (only a snapshot of the join's state would avoid it). Its marks are
//! lowered together from the marks asked for, which keeps that window to
//! the moment between the two sources applying them.
//!
//! Inner sides never need a partner back: redelivered, they only repeat
//! pairs that are already out (at least once).

use tributary_crds::JoinType;

use super::state::Side;

/// What the steps after the join hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Downstream {
    /// The smallest left offset a later step holds, if any.
    pub low_water: Option<i64>,
    /// The later steps hold nothing at all.
    pub empty: bool,
}

/// A right record that left the join while what it caused may still be
/// held by a later step.
#[derive(Debug, Clone, Copy)]
struct Pending {
    offset: i64,
    /// Let go once the later steps hold no offset up to this one;
    /// `i64::MAX` (an unmatched row, which carries no offset): once they
    /// hold nothing at all.
    after: i64,
}

impl Pending {
    fn let_go(&self, d: Downstream) -> bool {
        if self.after == i64::MAX {
            d.empty
        } else {
            d.low_water.is_none_or(|low| low > self.after)
        }
    }
}

/// A record released from the state before its source acknowledged it.
#[derive(Debug, Clone, Copy)]
struct Released {
    offset: i64,
    /// The largest offset of its partners (of the other input).
    partner: i64,
}

/// See the module docs.
#[derive(Debug, Default)]
pub(super) struct Acks {
    /// The `with` source acknowledges: follow its records past release.
    side: bool,
    /// Both inputs acknowledge: keep a partner of each released record of
    /// an outer side until that record's own input acknowledged it.
    cross: bool,
    /// Per input (left, right): its unmatched records are output.
    outer: [bool; 2],
    pending: Vec<Pending>,
    /// Per input (left, right).
    released: [Vec<Released>; 2],
}

impl Acks {
    /// Tracking for a `with` source that acknowledges (`side`) after a main
    /// source that does or does not (`main`), in a join of `kind`.
    pub(super) fn new(side: bool, main: bool, kind: JoinType) -> Self {
        let outer = match kind {
            JoinType::Inner => [false, false],
            JoinType::Left => [true, false],
            JoinType::Right => [false, true],
            JoinType::Full => [true, true],
        };
        Self {
            side,
            cross: side && main,
            outer,
            ..Self::default()
        }
    }

    /// A right record at `offset` was output as an unmatched row at once
    /// (its key is null).
    pub(super) fn emitted_right(&mut self, offset: i64) {
        if self.side && offset != i64::MAX {
            self.pending.push(Pending {
                offset,
                after: i64::MAX,
            });
        }
    }

    /// A record of `side` at `offset` leaves the state. `partner`: the
    /// largest offset of its partners (`i64::MIN` without any, `i64::MAX`
    /// when one has no offset);
    /// `paired_up_to`: for a right record, the largest left offset of its
    /// pairs (`i64::MIN` without any, `i64::MAX` when one has none);
    /// `unmatched_row`: it is output as an unmatched row now.
    pub(super) fn leaving(
        &mut self,
        side: Side,
        offset: i64,
        partner: i64,
        paired_up_to: i64,
        unmatched_row: bool,
    ) {
        if offset == i64::MAX {
            return;
        }
        let i = side.index();
        if self.cross && self.outer[i] && partner != i64::MIN && partner != i64::MAX {
            self.released[i].push(Released { offset, partner });
        }
        if self.side && side == Side::Right {
            let after = if unmatched_row {
                i64::MAX
            } else {
                paired_up_to
            };
            if after != i64::MIN {
                self.pending.push(Pending { offset, after });
            }
        }
    }

    /// The smallest right offset a later step may still need, forgetting
    /// the records they let go of.
    pub(super) fn downstream(&mut self, d: Downstream) -> Option<i64> {
        self.pending.retain(|p| !p.let_go(d));
        self.pending.iter().map(|p| p.offset).min()
    }

    /// Lowers the marks `(main, side)` — everything below each is to be
    /// acknowledged — so that a released record of an outer side that may
    /// come back keeps a partner at or above the other mark.
    ///
    /// With one outer side, "may come back" is judged by what the outer
    /// input's broker `confirmed`: the outer record's partners are let go
    /// only once it is gone for good, which holds whenever the crash comes.
    /// With two (`full`), that would let each mark move only one partner
    /// further per round, waiting on the other, so both are judged by the
    /// marks asked for now and lowered together until neither moves.
    pub(super) fn cross(&self, main: i64, side: i64, confirmed: (i64, i64)) -> (i64, i64) {
        if !self.cross {
            return (main, side);
        }
        let keep = |rs: &[Released], from: i64| {
            rs.iter()
                .filter(|r| r.offset >= from)
                .map(|r| r.partner)
                .min()
                .unwrap_or(i64::MAX)
        };
        let (left, right) = (&self.released[0], &self.released[1]);
        match self.outer {
            [true, true] => {
                let (mut main, mut side) = (main, side);
                loop {
                    let s = side.min(keep(left, main));
                    let m = main.min(keep(right, s));
                    if (m, s) == (main, side) {
                        return (main, side);
                    }
                    (main, side) = (m, s);
                }
            }
            _ => (
                main.min(keep(right, confirmed.1)),
                side.min(keep(left, confirmed.0)),
            ),
        }
    }

    /// The brokers confirmed these marks: released records below them
    /// never come back.
    pub(super) fn acked(&mut self, main: i64, side: i64) {
        self.released[0].retain(|r| r.offset >= main);
        self.released[1].retain(|r| r.offset >= side);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_outer_record_keeps_its_last_partner_until_its_broker_confirmed() {
        let mut a = Acks::new(true, true, JoinType::Left);
        // Left 10 paired with rights 2 and 4; right 6 with lefts 5 and 8.
        a.leaving(Side::Left, 10, 4, i64::MIN, false);
        a.leaving(Side::Right, 6, 8, 10, false);
        assert_eq!(
            a.cross(12, 20, (0, 0)),
            (12, 4),
            "left 10 may come back; right 6 (inner) keeps nothing"
        );
        assert_eq!(a.cross(12, 20, (11, 0)), (12, 20), "left 10 is gone");
        a.acked(11, 0);
        assert!(a.released[0].is_empty());
        let mut a = Acks::new(true, true, JoinType::Right);
        a.leaving(Side::Right, 6, 8, 10, false);
        assert_eq!(a.cross(12, 20, (0, 6)), (8, 20));
        assert_eq!(a.cross(12, 20, (0, 7)), (12, 20));
    }

    #[test]
    fn a_full_join_lowers_both_marks_together() {
        let mut a = Acks::new(true, true, JoinType::Full);
        a.leaving(Side::Left, 10, 4, i64::MIN, false);
        a.leaving(Side::Right, 6, 8, 10, false);
        assert_eq!(a.cross(12, 20, (0, 0)), (12, 20), "both below the marks");
        // Left 10 comes back and needs right 4, which brings right 6 back,
        // which needs left 8.
        assert_eq!(a.cross(9, 20, (0, 0)), (8, 4));
        assert_eq!(a.cross(7, 20, (0, 0)), (7, 4), "right 6 still has left 8");
    }

    #[test]
    fn inner_joins_and_non_acknowledging_mains_keep_nothing() {
        let mut a = Acks::new(true, true, JoinType::Inner);
        a.leaving(Side::Left, 10, 4, i64::MIN, false);
        assert_eq!(a.cross(9, 20, (0, 0)), (9, 20));
        let mut a = Acks::new(true, false, JoinType::Full);
        a.leaving(Side::Left, 10, 4, i64::MIN, false);
        assert_eq!(a.cross(i64::MIN, 20, (i64::MIN, 0)), (i64::MIN, 20));
        assert!(a.released.iter().all(Vec::is_empty));
    }
}
