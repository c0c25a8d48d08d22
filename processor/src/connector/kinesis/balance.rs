//! Which leases a worker takes, the way the Kinesis Client Library's lease
//! taker decides: first leases nobody holds or whose owner stopped
//! renewing, up to a fair share; then, when none is free and another
//! worker holds more than its share, one lease stolen from the most
//! loaded worker per cycle (so ownership converges without flapping).

use std::collections::BTreeMap;

/// A lease as the taker sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Candidate<'a> {
    /// The shard id.
    pub key: &'a str,
    /// The current owner, if any.
    pub owner: Option<&'a str>,
    /// The owner has not renewed it within the lease duration.
    pub expired: bool,
}

/// The fair share: active leases over live workers, rounded up.
#[must_use]
pub fn target(active: usize, workers: usize) -> usize {
    active.div_ceil(workers.max(1))
}

/// The keys worker `me` should try to take this cycle, from the leases
/// that may be read (finished shards and children of unfinished parents
/// are left out by the caller).
#[must_use]
pub fn to_take<'a>(leases: &[Candidate<'a>], me: &str) -> Vec<&'a str> {
    let live = |l: &Candidate<'_>| l.owner.is_some() && !l.expired;
    let mut load: BTreeMap<&str, Vec<&'a str>> = BTreeMap::new();
    load.insert(me, Vec::new());
    for l in leases.iter().filter(|l| live(l)) {
        if let Some(o) = l.owner {
            load.entry(o).or_default().push(l.key);
        }
    }
    let share = target(leases.len(), load.len());
    let mine = load.get(me).map_or(0, Vec::len);
    if mine >= share {
        return Vec::new();
    }
    let free: Vec<&'a str> = leases
        .iter()
        .filter(|l| !live(l) && l.owner != Some(me))
        .map(|l| l.key)
        .collect();
    if !free.is_empty() {
        return free.into_iter().take(share - mine).collect();
    }
    let Some((_, most)) = load
        .iter()
        .filter(|(o, _)| **o != me)
        .max_by_key(|(o, keys)| (keys.len(), std::cmp::Reverse(**o)))
    else {
        return Vec::new();
    };
    let steal = most.len() > share || (most.len() == share && share - mine > 1);
    if steal {
        most.iter().max().map(|k| vec![*k]).unwrap_or_default()
    } else {
        Vec::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn held(
        keys: &[&'static str],
        owner: Option<&'static str>,
        expired: bool,
    ) -> Vec<Candidate<'static>> {
        keys.iter()
            .map(|k| Candidate {
                key: k,
                owner,
                expired,
            })
            .collect()
    }

    #[test]
    fn a_lone_worker_takes_every_free_lease() {
        let l = held(&["s0", "s1", "s2"], None, false);
        assert_eq!(to_take(&l, "a"), ["s0", "s1", "s2"]);
    }

    #[test]
    fn free_leases_are_taken_up_to_the_fair_share() {
        let mut l = held(&["s0", "s1"], Some("b"), false);
        l.extend(held(&["s2", "s3"], None, false));
        assert_eq!(to_take(&l, "a"), ["s2", "s3"]);
        let mut l = held(&["s0"], Some("b"), false);
        l.extend(held(&["s1", "s2", "s3"], None, false));
        assert_eq!(to_take(&l, "a"), ["s1", "s2"]);
    }

    #[test]
    fn the_leases_of_a_dead_worker_are_taken_once_expired() {
        let mut l = held(&["s0", "s1"], Some("a"), false);
        l.extend(held(&["s2", "s3"], Some("dead"), false));
        assert!(
            to_take(&l, "a").is_empty(),
            "not expired yet: no steal at 2/2"
        );
        let mut l = held(&["s0", "s1"], Some("a"), false);
        l.extend(held(&["s2", "s3"], Some("dead"), true));
        assert_eq!(to_take(&l, "a"), ["s2", "s3"]);
    }

    #[test]
    fn one_lease_is_stolen_per_cycle_from_the_most_loaded_worker() {
        let l = held(&["s0", "s1", "s2", "s3"], Some("b"), false);
        assert_eq!(to_take(&l, "a").len(), 1);
        // 3 against 1 over 4 shards: the share is 2, so one more steal.
        let mut l = held(&["s0", "s1", "s2"], Some("b"), false);
        l.extend(held(&["s3"], Some("a"), false));
        assert_eq!(to_take(&l, "a"), ["s2"]);
        // 2 against 1 over 3 shards is balanced.
        let mut l = held(&["s0", "s1"], Some("b"), false);
        l.extend(held(&["s2"], Some("a"), false));
        assert!(to_take(&l, "a").is_empty());
        assert!(to_take(&l, "b").is_empty());
    }

    #[test]
    fn the_fair_share_rounds_up() {
        assert_eq!(target(4, 2), 2);
        assert_eq!(target(3, 2), 2);
        assert_eq!(target(0, 1), 0);
        assert_eq!(target(5, 0), 5);
    }
}
