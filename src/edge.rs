//! Bounded edges between stages, made of credits.
//!
//! ractor mailboxes are unbounded, so pagemill bounds every edge itself: a sender acquires a
//! credit (an owned semaphore permit) before it sends, the credit travels inside the message,
//! and the receiver drops it once it is done with the item, i.e. after it has passed its own
//! output on. Items inside a stage plus its queue therefore never exceed the edge's capacity,
//! and a full edge makes the sender wait: backpressure, measured as time blocked.

use std::sync::Arc;
use std::time::Instant;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::metrics as m;

/// One bounded edge into a stage.
#[derive(Clone)]
pub struct Edge {
    name: &'static str,
    pipeline: Arc<str>,
    capacity: usize,
    credits: Arc<Semaphore>,
}

/// Permission for one item to be on an edge; dropping it frees the slot.
#[derive(Debug)]
pub struct Credit {
    _permit: OwnedSemaphorePermit,
}

impl Edge {
    pub fn new(pipeline: &str, name: &'static str, capacity: usize) -> Edge {
        metrics::gauge!(m::STAGE_QUEUE_CAPACITY, "pipeline" => pipeline.to_string(), "stage" => name)
            .set(capacity as f64);
        Edge {
            name,
            pipeline: pipeline.into(),
            capacity,
            credits: Arc::new(Semaphore::new(capacity)),
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
        metrics::gauge!(m::STAGE_QUEUE_DEPTH, "pipeline" => self.pipeline.to_string(), "stage" => self.name)
            .set(self.in_use() as f64);
        Credit { _permit: permit }
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
