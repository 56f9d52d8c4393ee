//! Bounded edges between stages, made of credits.
//!
//! ractor mailboxes are unbounded, so pagemill bounds every edge itself: a sender acquires a
//! credit (an owned semaphore permit) before it sends, the credit travels inside the message,
//! and the receiver drops it once it is done with the item, i.e. after it has passed its own
//! output on. Items inside a stage plus its queue therefore never exceed the edge's capacity,
//! and a full edge makes the sender wait: backpressure, measured as time blocked.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Instant;

use ractor::ActorRef;
use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore};

use crate::runtime::metrics as m;

/// One bounded edge into a stage.
#[derive(Clone)]
pub struct Edge {
    name: &'static str,
    pipeline: Arc<str>,
    capacity: usize,
    credits: Arc<Semaphore>,
    depth: metrics::Gauge,
    /// Senders waiting through [`Edge::acquire_ranked`], lowest rank first.
    ranked: Arc<Mutex<RankedWaiters>>,
    /// Woken when a credit is dropped or the first ranked waiter changes.
    released: Arc<Notify>,
}

/// Ranked waiters as `(rank, arrival)`: the first is served next.
#[derive(Default)]
struct RankedWaiters {
    arrivals: u64,
    queue: BTreeSet<(u64, u64)>,
}

/// Permission for one item to be on an edge; dropping it frees the slot.
pub struct Credit {
    _permit: OwnedSemaphorePermit,
    depth: metrics::Gauge,
    released: Arc<Notify>,
}

impl std::fmt::Debug for Credit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Credit")
    }
}

impl Drop for Credit {
    fn drop(&mut self) {
        self.depth.decrement(1.0);
        self.released.notify_waiters();
    }
}

/// A ranked waiter's place in the queue, given up when it is served or stops waiting.
struct Place {
    ranked: Arc<Mutex<RankedWaiters>>,
    released: Arc<Notify>,
    ticket: (u64, u64),
}

impl Drop for Place {
    fn drop(&mut self) {
        let was_first = {
            let mut waiters = self.ranked.lock().expect("edge waiters poisoned");
            let was_first = waiters.queue.first() == Some(&self.ticket);
            waiters.queue.remove(&self.ticket);
            was_first
        };
        if was_first {
            // The next waiter may find a credit free.
            self.released.notify_waiters();
        }
    }
}

impl Edge {
    pub fn new(pipeline: &str, name: &'static str, capacity: usize) -> Edge {
        metrics::gauge!(m::STAGE_QUEUE_CAPACITY, "pipeline" => pipeline.to_string(), "stage" => name)
            .set(capacity as f64);
        let depth = metrics::gauge!(m::STAGE_QUEUE_DEPTH, "pipeline" => pipeline.to_string(), "stage" => name);
        depth.set(0.0);
        Edge {
            name,
            pipeline: pipeline.into(),
            capacity,
            credits: Arc::new(Semaphore::new(capacity)),
            depth,
            ranked: Arc::default(),
            released: Arc::new(Notify::new()),
        }
    }

    /// Items currently holding a credit on this edge.
    pub fn in_use(&self) -> usize {
        self.capacity - self.credits.available_permits()
    }

    /// Waits for a free slot, recording the time spent blocked.
    pub async fn acquire(&self) -> Credit {
        let started = Instant::now();
        let permit = self
            .credits
            .clone()
            .acquire_owned()
            .await
            .expect("edge semaphores are never closed");
        self.credit(permit, started)
    }

    /// Waits for a free slot like [`Edge::acquire`], but among the senders waiting this way
    /// the one with the lowest `rank` is served first (first come among equals). Render ranks
    /// by the pages a document has already rendered, so a newly arrived small job takes the
    /// next slot into OCR ahead of a big one that has been filling it.
    pub async fn acquire_ranked(&self, rank: u64) -> Credit {
        let started = Instant::now();
        let place = {
            let mut waiters = self.ranked.lock().expect("edge waiters poisoned");
            let ticket = (rank, waiters.arrivals);
            waiters.arrivals += 1;
            waiters.queue.insert(ticket);
            Place {
                ranked: self.ranked.clone(),
                released: self.released.clone(),
                ticket,
            }
        };
        loop {
            let released = self.released.notified();
            tokio::pin!(released);
            released.as_mut().enable();
            let first = self
                .ranked
                .lock()
                .expect("edge waiters poisoned")
                .queue
                .first()
                == Some(&place.ticket);
            if first && let Ok(permit) = self.credits.clone().try_acquire_owned() {
                drop(place);
                return self.credit(permit, started);
            }
            released.await;
        }
    }

    fn credit(&self, permit: OwnedSemaphorePermit, started: Instant) -> Credit {
        let waited = started.elapsed().as_secs_f64();
        metrics::histogram!(m::STAGE_BACKPRESSURE_SECONDS, "pipeline" => self.pipeline.to_string(), "stage" => self.name)
            .record(waited);
        self.depth.increment(1.0);
        Credit {
            _permit: permit,
            depth: self.depth.clone(),
            released: self.released.clone(),
        }
    }
}

/// The next stage and the bounded edge into it. The supervisor sets the actor when it spawns
/// the stage and swaps it when it restarts a crashed one; senders always reach the live one.
pub struct Downstream<M: ractor::Message> {
    pub edge: Edge,
    actor: Arc<RwLock<Option<ActorRef<M>>>>,
}

impl<M: ractor::Message> Clone for Downstream<M> {
    fn clone(&self) -> Self {
        Downstream {
            edge: self.edge.clone(),
            actor: self.actor.clone(),
        }
    }
}

impl<M: ractor::Message> Downstream<M> {
    /// An edge whose stage is not spawned yet.
    pub fn new(edge: Edge) -> Self {
        Downstream {
            edge,
            actor: Arc::new(RwLock::new(None)),
        }
    }

    /// Points senders at a (re)started actor.
    pub fn set(&self, actor: ActorRef<M>) {
        *self.actor.write().expect("downstream lock poisoned") = Some(actor);
    }

    /// Waits for room on the edge, then sends the message built around the credit.
    pub async fn send_with(&self, build: impl FnOnce(Credit) -> M) {
        let credit = self.edge.acquire().await;
        self.send_now(build(credit));
    }

    /// Sends a message that already holds its credit (or needs none).
    pub fn send_now(&self, msg: M) {
        let actor = self.actor.read().expect("downstream lock poisoned").clone();
        match actor.map(|a| a.send_message(msg)) {
            Some(Ok(())) => {}
            Some(Err(e)) => tracing::error!(error = %e, "a stage is gone; message dropped"),
            None => tracing::error!("a stage was never started; message dropped"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test]
    async fn the_lowest_ranked_sender_gets_the_next_credit() {
        let edge = Edge::new("t", "test", 1);
        let held = edge.acquire().await;
        let order = Arc::new(Mutex::new(Vec::new()));
        let waiter = |rank: u64, name: &'static str| {
            let (edge, order) = (edge.clone(), order.clone());
            tokio::spawn(async move {
                let credit = edge.acquire_ranked(rank).await;
                order.lock().unwrap().push(name);
                tokio::time::sleep(Duration::from_millis(20)).await;
                drop(credit);
            })
        };
        let big = waiter(5, "big, asked first");
        tokio::time::sleep(Duration::from_millis(20)).await;
        let small = waiter(0, "small, asked later");
        tokio::time::sleep(Duration::from_millis(20)).await;
        // A waiter that gives up leaves the queue without holding up the others.
        let gone = tokio::spawn({
            let edge = edge.clone();
            async move { edge.acquire_ranked(0).await }
        });
        tokio::time::sleep(Duration::from_millis(20)).await;
        gone.abort();
        drop(held);
        tokio::time::timeout(Duration::from_secs(5), async {
            big.await.unwrap();
            small.await.unwrap();
        })
        .await
        .expect("both waiters are served");
        assert_eq!(
            *order.lock().unwrap(),
            ["small, asked later", "big, asked first"]
        );
        assert_eq!(edge.in_use(), 0);
    }

    #[tokio::test]
    async fn a_full_edge_blocks_until_a_credit_is_dropped() {
        let edge = Edge::new("t", "test", 2);
        let a = edge.acquire().await;
        let _b = edge.acquire().await;
        assert_eq!(edge.in_use(), 2);
        let third = tokio::time::timeout(Duration::from_millis(100), edge.acquire()).await;
        assert!(third.is_err(), "a full edge must make the sender wait");
        drop(a);
        let third = tokio::time::timeout(Duration::from_secs(5), edge.acquire()).await;
        assert!(third.is_ok());
    }
}
