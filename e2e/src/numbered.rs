//! Numbered workloads for at-least-once checks: records `{"n": i}` for
//! `i` in `0..n` go in, and every number must come out at least once.

use std::collections::BTreeMap;

/// When every number of `0..n` was seen (and nothing else), the number of
/// duplicates; `None` while some are missing.
#[must_use]
pub fn duplicates_if_complete(seen: &BTreeMap<u64, u32>, n: u64) -> Option<u32> {
    let complete = seen.len() as u64 == n && seen.keys().copied().eq(0..n);
    complete.then(|| seen.values().map(|c| c.saturating_sub(1)).sum())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn complete_only_when_every_number_is_there() {
        let seen: BTreeMap<u64, u32> = [(0, 1), (1, 2), (2, 1)].into();
        assert_eq!(duplicates_if_complete(&seen, 3), Some(1));
        assert_eq!(duplicates_if_complete(&seen, 4), None);
        let shifted: BTreeMap<u64, u32> = [(1, 1), (2, 1), (3, 1)].into();
        assert_eq!(duplicates_if_complete(&shifted, 3), None);
    }
}
