//! The circuit breaker of the HTTP sink, as a state machine over an
//! injected clock (tests step time instead of sleeping).

use std::time::{Duration, Instant};

/// Where the breaker is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum State {
    /// Requests flow; counts consecutive failures.
    Closed {
        /// Failed requests in a row.
        failures: u32,
    },
    /// No request until `until`.
    Open {
        /// When a probe may go.
        until: Instant,
    },
    /// One probe request is allowed.
    HalfOpen,
}

impl State {
    /// The `tributary_http_circuit_state` value: 0 closed, 1 open, 2 half-open.
    #[must_use]
    pub fn code(self) -> i64 {
        match self {
            Self::Closed { .. } => 0,
            Self::Open { .. } => 1,
            Self::HalfOpen => 2,
        }
    }
}

/// A change worth logging and counting.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Transition {
    /// Closed or half-open → open.
    Opened,
    /// Open → half-open: a probe goes.
    Probing,
    /// Half-open (or failing) → closed.
    Closed,
}

/// Opens after `threshold` consecutive failures, for `open_for`.
#[derive(Debug)]
pub struct Breaker {
    threshold: u32,
    open_for: Duration,
    state: State,
}

impl Breaker {
    /// A closed breaker.
    #[must_use]
    pub fn new(threshold: u32, open_for: Duration) -> Self {
        Self {
            threshold: threshold.max(1),
            open_for,
            state: State::Closed { failures: 0 },
        }
    }

    /// The current state.
    #[must_use]
    pub fn state(&self) -> State {
        self.state
    }

    /// May a request go at `now`? `Err(wait)` while open; an open breaker
    /// whose time is up turns half-open and lets one probe go.
    ///
    /// # Errors
    /// How long to wait before asking again.
    pub fn permit(&mut self, now: Instant) -> Result<Option<Transition>, Duration> {
        match self.state {
            State::Open { until } if now < until => Err(until - now),
            State::Open { .. } => {
                self.state = State::HalfOpen;
                Ok(Some(Transition::Probing))
            }
            _ => Ok(None),
        }
    }

    /// The request got an answer.
    pub fn success(&mut self) -> Option<Transition> {
        let was = self.state;
        self.state = State::Closed { failures: 0 };
        match was {
            State::Closed { failures: 0 } => None,
            _ => Some(Transition::Closed),
        }
    }

    /// The request failed at `now`.
    pub fn failure(&mut self, now: Instant) -> Option<Transition> {
        match self.state {
            State::Closed { failures } if failures + 1 < self.threshold => {
                self.state = State::Closed {
                    failures: failures + 1,
                };
                None
            }
            _ => {
                self.state = State::Open {
                    until: now + self.open_for,
                };
                Some(Transition::Opened)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn opens_after_consecutive_failures_probes_then_closes() {
        let t0 = Instant::now();
        let secs = Duration::from_secs;
        let mut b = Breaker::new(3, secs(10));
        assert_eq!(b.failure(t0), None);
        assert_eq!(
            b.success(),
            Some(Transition::Closed),
            "a success resets the count"
        );
        assert_eq!(b.failure(t0), None);
        assert_eq!(b.failure(t0), None);
        assert_eq!(b.failure(t0), Some(Transition::Opened));
        assert_eq!(b.state().code(), 1);
        assert_eq!(b.permit(t0 + secs(4)), Err(secs(6)));
        assert_eq!(b.permit(t0 + secs(10)), Ok(Some(Transition::Probing)));
        assert_eq!(b.state(), State::HalfOpen);
        // A failed probe opens it again at once, for another open_for.
        assert_eq!(b.failure(t0 + secs(11)), Some(Transition::Opened));
        assert_eq!(b.permit(t0 + secs(20)), Err(secs(1)));
        assert_eq!(b.permit(t0 + secs(21)), Ok(Some(Transition::Probing)));
        assert_eq!(b.success(), Some(Transition::Closed));
        assert_eq!(b.state(), State::Closed { failures: 0 });
        assert_eq!(b.permit(t0 + secs(21)), Ok(None));
    }
}
