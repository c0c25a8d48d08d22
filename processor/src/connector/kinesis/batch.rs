//! `PutRecords` limits: at most 500 entries and 5 MiB per call, 1 MiB per
//! entry (data plus partition key), and the backoff between retries.

use std::ops::Range;
use std::time::Duration;

/// Entries per `PutRecords` call.
pub const MAX_RECORDS: usize = 500;
/// Bytes (data plus partition keys) per `PutRecords` call.
pub const MAX_BATCH_BYTES: usize = 5 * 1024 * 1024;
/// Bytes of one entry (data plus partition key).
pub const MAX_RECORD_BYTES: usize = 1024 * 1024;

/// Splits entries of the given sizes into consecutive calls within the
/// limits, keeping their order. Every size must be at most
/// [`MAX_RECORD_BYTES`] (larger records are dead letters before this).
#[must_use]
pub fn calls(sizes: &[usize]) -> Vec<Range<usize>> {
    let mut out = Vec::new();
    let (mut start, mut bytes) = (0, 0);
    for (i, &size) in sizes.iter().enumerate() {
        if i > start && (i - start == MAX_RECORDS || bytes + size > MAX_BATCH_BYTES) {
            out.push(start..i);
            start = i;
            bytes = 0;
        }
        bytes += size;
    }
    if start < sizes.len() {
        out.push(start..sizes.len());
    }
    out
}

/// The wait before retry `attempt` (1-based): 100 ms doubling, capped at 5 s.
#[must_use]
pub fn backoff(attempt: u32) -> Duration {
    Duration::from_millis(100u64.saturating_mul(1 << attempt.saturating_sub(1).min(6)))
        .min(Duration::from_secs(5))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn calls_respect_the_count_and_byte_limits_in_order() {
        assert!(calls(&[]).is_empty());
        assert_eq!(calls(&[10; 1200]), [0..500, 500..1000, 1000..1200]);
        let mib = 1024 * 1024;
        // Five 1 MiB entries fill a call; the sixth starts the next.
        assert_eq!(calls(&[mib; 6]), [0..5, 5..6]);
        assert_eq!(calls(&[mib - 1, 2, mib, mib, mib, mib]), [0..5, 5..6]);
        // Every entry lands in exactly one call, in order.
        let sizes: Vec<usize> = (0..2000).map(|i| (i * 7919) % (64 * 1024)).collect();
        let c = calls(&sizes);
        assert_eq!(c.first().map(|r| r.start), Some(0));
        assert_eq!(c.last().map(|r| r.end), Some(2000));
        for w in c.windows(2) {
            assert_eq!(w[0].end, w[1].start);
        }
        for r in &c {
            assert!(r.len() <= MAX_RECORDS);
            assert!(sizes[r.clone()].iter().sum::<usize>() <= MAX_BATCH_BYTES);
        }
    }

    #[test]
    fn backoff_doubles_and_is_capped() {
        assert_eq!(backoff(1), Duration::from_millis(100));
        assert_eq!(backoff(2), Duration::from_millis(200));
        assert_eq!(backoff(6), Duration::from_millis(3200));
        assert_eq!(backoff(7), Duration::from_secs(5));
        assert_eq!(backoff(40), Duration::from_secs(5));
    }
}
