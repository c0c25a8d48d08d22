//! Exponential backoff between retries.

use std::time::Duration;

/// The pause before retry number `retry` (1-based): `initial`, doubled for
/// each earlier retry, at most `cap`.
#[must_use]
pub fn delay(initial: Duration, retry: u32, cap: Duration) -> Duration {
    let doublings = retry.saturating_sub(1).min(30);
    initial.saturating_mul(1 << doublings).min(cap)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doubles_from_the_initial_pause_up_to_the_cap() {
        let ms = Duration::from_millis;
        let got: Vec<_> = (1..=6).map(|r| delay(ms(100), r, ms(1000))).collect();
        assert_eq!(
            got,
            [ms(100), ms(200), ms(400), ms(800), ms(1000), ms(1000)]
        );
        assert_eq!(delay(ms(100), 1000, Duration::MAX), ms(100) * (1 << 30));
    }
}
