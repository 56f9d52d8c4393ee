//! Bounded edges between stages, made of credits.
//!
//! ractor mailboxes are unbounded, so pagemill bounds every edge itself: a sender acquires a
//! credit (an owned semaphore permit) before it sends, the credit travels inside the message,
//! and the receiver drops it once it is done with the item, i.e. after it has passed its own
//! output on. Items inside a stage plus its queue therefore never exceed the edge's capacity,
//! and a full edge makes the sender wait: backpressure, measured as time blocked.

use std::sync::{Arc, RwLock};
use std::time::Instant;

use ractor::ActorRef;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::runtime::metrics as m;

/// One bounded edge into a stage.
#[derive(Clone)]
pub struct Edge {
    name: &'static str,
    pipeline: Arc<str>,
    capacity: usize,
    credits: Arc<Semaphore>,
    depth: metrics::Gauge,
}

/// Permission for one item to be on an edge; dropping it frees the slot.
pub struct Credit {
    _permit: OwnedSemaphorePermit,
    depth: metrics::Gauge,
}

impl std::fmt::Debug for Credit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Credit")
    }
}

impl Drop for Credit {
    fn drop(&mut self) {
        self.depth.decrement(1.0);
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
        let waited = started.elapsed().as_secs_f64();
        metrics::histogram!(m::STAGE_BACKPRESSURE_SECONDS, "pipeline" => self.pipeline.to_string(), "stage" => self.name)
            .record(waited);
        self.depth.increment(1.0);
        Credit {
            _permit: permit,
            depth: self.depth.clone(),
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
