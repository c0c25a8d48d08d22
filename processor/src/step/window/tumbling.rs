//! Tumbling windows `[k·size, (k+1)·size)`: sliced windows whose slide is
//! their size, so each window is exactly one pane (see `sliced`).

use super::Common;
use super::sliced::Sliced;

/// Tumbling windows of `size` ms (clamped to at least 1).
pub(super) fn new(size: i64, common: Common) -> Sliced {
    let size = size.max(1);
    Sliced::new(size, size, size, common)
}

#[cfg(test)]
mod tests {
    use super::super::sliced::{floor_to, window_starts};

    #[test]
    fn assignment_floors_including_negative_timestamps() {
        assert_eq!(floor_to(0, 10), 0);
        assert_eq!(floor_to(9, 10), 0);
        assert_eq!(floor_to(10, 10), 10);
        assert_eq!(floor_to(-1, 10), -10);
        assert_eq!(floor_to(-10, 10), -10);
        assert_eq!(floor_to(-11, 10), -20);
        assert_eq!(window_starts(-1, 10, 10).collect::<Vec<_>>(), vec![-10]);
        assert_eq!(window_starts(25, 10, 10).collect::<Vec<_>>(), vec![20]);
    }

    #[test]
    fn assignment_saturates_at_the_ends_of_time() {
        assert_eq!(floor_to(i64::MIN, 7), i64::MIN);
        assert_eq!(floor_to(i64::MAX, 10), i64::MAX - 7);
        assert_eq!(window_starts(i64::MIN, 7, 7).count(), 1);
        assert_eq!(window_starts(i64::MAX, 7, 7).count(), 1);
    }
}
