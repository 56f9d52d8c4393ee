//! Adaptive concurrency for the requests to one LLM server: additive increase, multiplicative
//! decrease (AIMD), after the idea of Vector's Adaptive Request Concurrency.
//!
//! A server's capacity is rarely known (llama.cpp's slots, vLLM's batch, a provider's quota),
//! so the limit of requests in flight is learned from the answers:
//!
//! - **Increase by one** after a window of good answers (as many as the limit) during which
//!   the limit was reached and the mean latency stayed within the moving baseline.
//! - **Multiply by [`DECREASE_RATIO`]** (0.9) on an answer that says "too much": 429, 5xx, a timeout
//!   or a refused connection, or when a window's mean latency rises above the baseline.
//!   Answers to requests sent before the last change of the limit do not change it again,
//!   so one burst of 429s lowers the limit once, not once per request.
//! - The limit stays within `1..=max`. With `initial = max` it is fixed: it neither grows
//!   nor shrinks.
//!
//! Waiting for a permit is first come, first served (a tokio semaphore whose permits are
//! added when the limit grows and forgotten, as they come back, when it shrinks).
//!
//! Written here rather than taken from a crate: the AIMD limiters available are Tower layers
//! (pagemill calls reqwest directly, and judges an answer only after reading it) or react to
//! errors alone, without the latency baseline.
//!
//! Emits `pagemill_llm_requests_in_flight` and `pagemill_llm_concurrency_limit` (label
//! `endpoint`: one limiter per server, shared by the pipelines that call it).

use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::runtime::metrics as m;

/// Factor the limit is multiplied by (rounded down, by one at least) when the server shows it
/// has too much. Vector's default: gentle enough that the limit hovers near the server's
/// capacity instead of halving below it.
pub const DECREASE_RATIO: f64 = 0.9;
/// Weight of the newest window in the moving latency baseline.
const BASELINE_WEIGHT: f64 = 0.4;
/// A window's mean latency counts as rising when it exceeds the baseline by this many mean
/// deviations...
const DEVIATION_SCALE: f64 = 2.5;
/// ...and by at least this fraction of the baseline (LLM latency varies with text length).
const LATENCY_TOLERANCE: f64 = 0.3;

/// What the answer to one request says about the server's load.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Outcome {
    /// A good answer, after this long.
    Answered(Duration),
    /// 429, 5xx, a timeout or a refused connection.
    Overloaded,
    /// Says nothing about load (a 400, an unreadable answer, a cancelled request).
    Neutral,
}

/// The concurrency limit of one LLM server's requests.
pub struct Limiter {
    semaphore: Arc<Semaphore>,
    state: Mutex<State>,
    max: usize,
    /// False when `initial = max`: the limit is fixed.
    adaptive: bool,
    in_flight_gauge: metrics::Gauge,
    limit_gauge: metrics::Gauge,
}

/// The moving latency baseline: an exponentially weighted mean and mean deviation.
#[derive(Debug, Clone, Copy)]
struct Baseline {
    mean: f64,
    deviation: f64,
}

struct State {
    limit: usize,
    /// Permits to forget as they come back: the limit was lowered while they were out.
    debt: usize,
    in_flight: usize,
    /// Highest number of requests ever in flight at once.
    peak_in_flight: usize,
    /// Bumped at each change of the limit; answers to requests sent before count for nothing.
    epoch: u64,
    /// Good answers in the current window and their summed latency, in seconds.
    window_answers: usize,
    window_seconds: f64,
    /// Whether the requests in flight reached the limit during the window: only then is
    /// more concurrency worth trying.
    window_full: bool,
    baseline: Option<Baseline>,
}

/// Permission for one request; dropping it without [`Permit::finish`] counts as neutral.
pub struct Permit<'a> {
    limiter: &'a Limiter,
    permit: Option<OwnedSemaphorePermit>,
    epoch: u64,
    outcome: Outcome,
}

impl Permit<'_> {
    /// Reports what the answer said, and frees the permit.
    pub fn finish(mut self, outcome: Outcome) {
        self.outcome = outcome;
    }
}

impl Drop for Permit<'_> {
    fn drop(&mut self) {
        if let Some(permit) = self.permit.take() {
            self.limiter.release(permit, self.epoch, self.outcome);
        }
    }
}

impl Limiter {
    /// A limiter starting at `initial` requests in flight, never above `max`; `endpoint` labels
    /// its metrics.
    pub fn new(initial: usize, max: usize, endpoint: &str) -> Limiter {
        let max = max.max(1);
        let initial = initial.clamp(1, max);
        let limit_gauge =
            metrics::gauge!(m::LLM_CONCURRENCY_LIMIT, "endpoint" => endpoint.to_string());
        let in_flight_gauge =
            metrics::gauge!(m::LLM_REQUESTS_IN_FLIGHT, "endpoint" => endpoint.to_string());
        limit_gauge.set(initial as f64);
        in_flight_gauge.set(0.0);
        Limiter {
            semaphore: Arc::new(Semaphore::new(initial)),
            state: Mutex::new(State {
                limit: initial,
                debt: 0,
                in_flight: 0,
                peak_in_flight: 0,
                epoch: 0,
                window_answers: 0,
                window_seconds: 0.0,
                window_full: false,
                baseline: None,
            }),
            max,
            adaptive: initial < max,
            in_flight_gauge,
            limit_gauge,
        }
    }

    /// Waits for room under the current limit.
    pub async fn acquire(&self) -> Permit<'_> {
        let permit = self
            .semaphore
            .clone()
            .acquire_owned()
            .await
            .expect("the limiter's semaphore is never closed");
        let mut s = self.lock();
        s.in_flight += 1;
        s.peak_in_flight = s.peak_in_flight.max(s.in_flight);
        if s.in_flight >= s.limit {
            s.window_full = true;
        }
        self.in_flight_gauge.set(s.in_flight as f64);
        Permit {
            limiter: self,
            permit: Some(permit),
            epoch: s.epoch,
            outcome: Outcome::Neutral,
        }
    }

    /// The current limit.
    pub fn limit(&self) -> usize {
        self.lock().limit
    }

    /// Requests in flight now.
    pub fn in_flight(&self) -> usize {
        self.lock().in_flight
    }

    /// The most requests that were ever in flight at once.
    pub fn peak_in_flight(&self) -> usize {
        self.lock().peak_in_flight
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().expect("limiter lock")
    }

    fn release(&self, permit: OwnedSemaphorePermit, epoch: u64, outcome: Outcome) {
        let mut s = self.lock();
        s.in_flight -= 1;
        self.in_flight_gauge.set(s.in_flight as f64);
        if s.debt > 0 {
            s.debt -= 1;
            permit.forget();
        } else {
            drop(permit);
        }
        // Only answers to requests sent under the current limit judge it.
        if !self.adaptive || epoch != s.epoch {
            return;
        }
        match outcome {
            Outcome::Neutral => {}
            Outcome::Overloaded => self.decrease(&mut s),
            Outcome::Answered(latency) => {
                s.window_answers += 1;
                s.window_seconds += latency.as_secs_f64();
                if s.window_answers >= s.limit {
                    self.close_window(&mut s);
                }
            }
        }
    }

    /// Judges a full window of good answers: more room, less, or the same.
    fn close_window(&self, s: &mut State) {
        let mean = s.window_seconds / s.window_answers as f64;
        let rising = s.baseline.is_some_and(|b| {
            mean > b.mean + (DEVIATION_SCALE * b.deviation).max(LATENCY_TOLERANCE * b.mean)
        });
        s.baseline = Some(match s.baseline {
            None => Baseline {
                mean,
                deviation: 0.0,
            },
            Some(b) => Baseline {
                mean: b.mean + BASELINE_WEIGHT * (mean - b.mean),
                deviation: b.deviation + BASELINE_WEIGHT * ((mean - b.mean).abs() - b.deviation),
            },
        });
        if rising {
            self.decrease(s);
        } else if s.window_full && s.limit < self.max {
            s.limit += 1;
            if s.debt > 0 {
                s.debt -= 1;
            } else {
                self.semaphore.add_permits(1);
            }
            self.new_window(s);
        } else {
            s.window_answers = 0;
            s.window_seconds = 0.0;
            s.window_full = s.in_flight >= s.limit;
        }
    }

    /// Multiplies the limit down (at least 1) and starts a new window.
    fn decrease(&self, s: &mut State) {
        let lower = ((s.limit as f64 * DECREASE_RATIO).floor() as usize).max(1);
        let cut = s.limit - lower;
        s.limit = lower;
        // Permits not handed out go at once; the others as they come back.
        let forgotten = self.semaphore.forget_permits(cut);
        s.debt += cut - forgotten;
        self.new_window(s);
    }

    fn new_window(&self, s: &mut State) {
        s.epoch += 1;
        s.window_answers = 0;
        s.window_seconds = 0.0;
        s.window_full = s.in_flight >= s.limit;
        self.limit_gauge.set(s.limit as f64);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const STEADY: Outcome = Outcome::Answered(Duration::from_millis(300));

    /// Whether one more permit is available right now.
    async fn has_room(l: &Limiter) -> bool {
        tokio::time::timeout(Duration::from_millis(20), l.acquire())
            .await
            .is_ok()
    }

    #[tokio::test]
    async fn no_more_requests_than_the_limit() {
        let l = Limiter::new(3, 8, "t");
        let held = [l.acquire().await, l.acquire().await, l.acquire().await];
        assert!(!has_room(&l).await, "a fourth request must wait");
        drop(held);
        assert!(has_room(&l).await);
    }

    #[tokio::test]
    async fn grows_by_one_after_a_full_window_of_steady_answers() {
        let l = Limiter::new(2, 8, "t");
        for round in 0..3 {
            let limit = l.limit();
            let permits: Vec<_> =
                futures_util::future::join_all((0..limit).map(|_| l.acquire())).await;
            for p in permits {
                p.finish(STEADY);
            }
            assert_eq!(l.limit(), limit + 1, "round {round}");
        }
        assert_eq!(l.limit(), 5);
    }

    #[tokio::test]
    async fn does_not_grow_when_the_limit_is_never_reached() {
        let l = Limiter::new(4, 8, "t");
        for _ in 0..20 {
            l.acquire().await.finish(STEADY);
        }
        assert_eq!(l.limit(), 4, "one request at a time shows no need for more");
    }

    #[tokio::test]
    async fn never_grows_past_max() {
        let l = Limiter::new(2, 3, "t");
        for _ in 0..5 {
            let n = l.limit();
            let permits: Vec<_> = futures_util::future::join_all((0..n).map(|_| l.acquire())).await;
            for p in permits {
                p.finish(STEADY);
            }
        }
        assert_eq!(l.limit(), 3);
    }

    #[tokio::test]
    async fn initial_equal_to_max_is_a_fixed_limit() {
        let l = Limiter::new(3, 3, "t");
        let permits: Vec<_> = futures_util::future::join_all((0..3).map(|_| l.acquire())).await;
        for p in permits {
            p.finish(Outcome::Overloaded);
        }
        assert_eq!(l.limit(), 3);
        assert!(has_room(&l).await);
    }

    #[tokio::test]
    async fn a_burst_of_overload_answers_lowers_the_limit_once() {
        let l = Limiter::new(8, 9, "t");
        let permits: Vec<_> = futures_util::future::join_all((0..8).map(|_| l.acquire())).await;
        for p in permits {
            p.finish(Outcome::Overloaded);
        }
        assert_eq!(l.limit(), 7, "answers to one round lower the limit once");
        // The next round's 429 lowers it again, down to 1 at the least.
        for expected in [6, 5, 4, 3, 2, 1, 1] {
            l.acquire().await.finish(Outcome::Overloaded);
            assert_eq!(l.limit(), expected);
        }
    }

    #[tokio::test]
    async fn a_lowered_limit_holds_back_requests_until_enough_come_back() {
        let l = Limiter::new(20, 21, "t");
        let mut held: Vec<_> = futures_util::future::join_all((0..20).map(|_| l.acquire())).await;
        held.pop().unwrap().finish(Outcome::Overloaded);
        assert_eq!(l.limit(), 18);
        // Nineteen out, limit eighteen: nothing more until two of them are back.
        assert!(!has_room(&l).await);
        held.pop().unwrap().finish(Outcome::Neutral);
        assert!(!has_room(&l).await);
        held.pop().unwrap().finish(Outcome::Neutral);
        assert!(has_room(&l).await);
        assert_eq!(l.in_flight(), 17);
    }

    #[tokio::test]
    async fn rising_latency_lowers_the_limit() {
        let l = Limiter::new(4, 8, "t");
        let round = |latency: Duration| {
            let l = &l;
            async move {
                let n = l.limit();
                let permits: Vec<_> =
                    futures_util::future::join_all((0..n).map(|_| l.acquire())).await;
                for p in permits {
                    p.finish(Outcome::Answered(latency));
                }
            }
        };
        round(Duration::from_millis(300)).await;
        round(Duration::from_millis(310)).await;
        assert_eq!(l.limit(), 6, "steady latency: room to grow");
        round(Duration::from_millis(900)).await;
        assert_eq!(l.limit(), 5, "three times slower: the server is queueing");
    }
}
