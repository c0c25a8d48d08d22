//! Sliding (hopping) windows `[k·slide, k·slide+size)`: sliced windows with
//! panes of `gcd(size, slide)`, so an event updates one pane and a window
//! merges `size / gcd` panes once, when it fires (see `sliced`).

use super::Common;
use super::sliced::Sliced;

fn gcd(mut a: i64, mut b: i64) -> i64 {
    while b != 0 {
        (a, b) = (b, a % b);
    }
    a
}

/// Sliding windows of `size` ms every `slide` ms (both clamped to at least 1).
pub(super) fn new(size: i64, slide: i64, common: Common) -> Sliced {
    let (size, slide) = (size.max(1), slide.max(1));
    Sliced::new(size, slide, gcd(size, slide), common)
}

#[cfg(test)]
mod tests {
    use super::super::sliced::window_starts;
    use super::gcd;

    #[test]
    fn pane_width_is_the_gcd() {
        assert_eq!(gcd(60_000, 10_000), 10_000);
        assert_eq!(gcd(10, 4), 2);
        assert_eq!(gcd(7, 7), 7);
        assert_eq!(gcd(3, 10), 1);
    }

    #[test]
    fn every_overlapping_window_contains_the_event() {
        let starts = |ts| window_starts(ts, 10, 4).collect::<Vec<_>>();
        // Windows [k·4, k·4+10).
        assert_eq!(starts(9), vec![0, 4, 8]);
        assert_eq!(starts(12), vec![4, 8, 12]);
        assert_eq!(starts(0), vec![-8, -4, 0]);
        assert_eq!(starts(-1), vec![-8, -4]);
        assert_eq!(starts(-9), vec![-16, -12]);
    }

    #[test]
    fn hopping_windows_leave_gaps() {
        // Windows [k·10, k·10+3): ts 5 is in none.
        assert_eq!(window_starts(5, 3, 10).count(), 0);
        assert_eq!(window_starts(12, 3, 10).collect::<Vec<_>>(), vec![10]);
    }
}
