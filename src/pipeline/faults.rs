//! Faults injected on purpose, for the tests that prove a crashed stage loses no job.
//!
//! Built only with the `fault-injection` feature (the test suite turns it on); without it
//! [`inject`] does nothing and costs nothing. With it, `PAGEMILL_FAULT=STAGE:NAME:ITEM:TIMES`
//! (several separated by commas) makes the stage `STAGE` panic while handling item `ITEM` of
//! the document named `NAME`, the first `TIMES` times it gets there in this process. What an
//! item is depends on the stage: for ingest, 0 (the document); for assemble, the page's place
//! in the order its pages arrived (1 for the first), so that the pages before it are
//! checkpointed whatever order OCR finished them in; for render and OCR, the page number, the
//! panic happening in the pool task that renders or recognizes the page, not in the actor.

/// Panics here if the fault set in `PAGEMILL_FAULT` says so.
#[cfg(feature = "fault-injection")]
pub fn inject(stage: crate::pipeline::stage::Stage, document: &str, item: u32) {
    use std::sync::OnceLock;
    use std::sync::atomic::{AtomicU32, Ordering};

    struct Fault {
        stage: String,
        document: String,
        item: u32,
        times: u32,
        fired: AtomicU32,
    }
    static FAULTS: OnceLock<Vec<Fault>> = OnceLock::new();
    let faults = FAULTS.get_or_init(|| {
        let Ok(specs) = std::env::var("PAGEMILL_FAULT") else {
            return Vec::new();
        };
        specs
            .split(',')
            .map(|spec| {
                let parts: Vec<&str> = spec.split(':').collect();
                let [stage, document, item, times] = parts[..] else {
                    panic!("PAGEMILL_FAULT is STAGE:NAME:ITEM:TIMES, not {spec:?}");
                };
                Fault {
                    stage: stage.into(),
                    document: document.into(),
                    item: item.parse().expect("PAGEMILL_FAULT item"),
                    times: times.parse().expect("PAGEMILL_FAULT times"),
                    fired: AtomicU32::new(0),
                }
            })
            .collect()
    });
    for f in faults {
        if f.stage == stage.name()
            && f.document == document
            && f.item == item
            && f.fired.fetch_add(1, Ordering::Relaxed) < f.times
        {
            panic!("fault injected in {stage} on item {item} of {document}");
        }
    }
}

/// Does nothing: faults are injected only in builds with the `fault-injection` feature.
#[cfg(not(feature = "fault-injection"))]
#[inline(always)]
pub fn inject(_stage: crate::pipeline::stage::Stage, _document: &str, _item: u32) {}
