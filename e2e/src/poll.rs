//! Waiting for a condition with a deadline.
//!
//! Tests never sleep for a fixed time to let something happen: they poll
//! the condition until it holds or the deadline passes, and a timeout names
//! what was awaited and the last thing seen.

use std::fmt::Debug;
use std::future::Future;
use std::time::Duration;

/// The condition did not hold before the deadline.
#[derive(Debug, thiserror::Error)]
#[error("timed out after {timeout:?} waiting for {what}; last seen: {last}")]
pub struct Timeout {
    /// What was awaited.
    pub what: String,
    /// The deadline.
    pub timeout: Duration,
    /// The last observation (an error or a value that did not satisfy).
    pub last: String,
}

/// Calls `check` every `interval` until it returns `Ok(Some(v))`, and returns
/// `v`. `Ok(None)` and `Err(_)` mean "not yet"; the last one is reported on
/// timeout.
///
/// # Errors
///
/// [`Timeout`] when `timeout` passes first.
pub async fn until<T, E, F, Fut>(
    what: &str,
    timeout: Duration,
    interval: Duration,
    mut check: F,
) -> Result<T, Timeout>
where
    E: Debug,
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<Option<T>, E>>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        let last = match check().await {
            Ok(Some(v)) => return Ok(v),
            Ok(None) => String::from("condition not met"),
            Err(e) => format!("{e:?}"),
        };
        if tokio::time::Instant::now() >= deadline {
            return Err(Timeout {
                what: what.to_owned(),
                timeout,
                last,
            });
        }
        tokio::time::sleep(interval).await;
    }
}

/// A deadline for loops that accumulate state between polls (where a
/// closure for [`until`] would have to borrow mutably).
#[derive(Debug, Clone)]
pub struct Deadline {
    what: String,
    timeout: Duration,
    at: tokio::time::Instant,
}

impl Deadline {
    /// A deadline `timeout` from now for `what`.
    #[must_use]
    pub fn new(what: &str, timeout: Duration) -> Self {
        Self {
            what: what.to_owned(),
            timeout,
            at: tokio::time::Instant::now() + timeout,
        }
    }

    /// `Ok` while time is left.
    ///
    /// # Errors
    ///
    /// [`Timeout`] carrying `last` once the deadline has passed.
    pub fn check(&self, last: impl Debug) -> Result<(), Timeout> {
        if tokio::time::Instant::now() >= self.at {
            Err(Timeout {
                what: self.what.clone(),
                timeout: self.timeout,
                last: format!("{last:?}"),
            })
        } else {
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU32, Ordering};

    #[tokio::test(start_paused = true)]
    async fn returns_once_the_condition_holds() {
        let calls = AtomicU32::new(0);
        let v = until(
            "third call",
            Duration::from_secs(5),
            Duration::from_millis(100),
            || {
                let n = calls.fetch_add(1, Ordering::SeqCst);
                async move { Ok::<_, String>((n >= 2).then_some(n)) }
            },
        )
        .await
        .unwrap();
        assert_eq!(v, 2);
    }

    #[tokio::test(start_paused = true)]
    async fn deadline_passes_after_its_timeout() {
        let d = Deadline::new("x", Duration::from_secs(1));
        assert!(d.check("fine").is_ok());
        tokio::time::advance(Duration::from_secs(2)).await;
        assert!(
            d.check("seen 3")
                .unwrap_err()
                .to_string()
                .contains("seen 3")
        );
    }

    #[tokio::test(start_paused = true)]
    async fn timeout_reports_the_last_error() {
        let err = until(
            "never",
            Duration::from_secs(1),
            Duration::from_millis(100),
            || async { Err::<Option<()>, _>("broker down") },
        )
        .await
        .unwrap_err();
        assert!(err.to_string().contains("broker down"), "{err}");
        assert!(err.to_string().contains("never"), "{err}");
    }
}
