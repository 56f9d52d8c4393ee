//! Journal accept throughput: how many jobs per second can be recorded durably (the step
//! before every 202), with 1 and with 32 submissions arriving at once. The journal sits on the
//! disk of `target/` (fsync is real).
//!
//! `cargo bench --bench journal`

use std::sync::Arc;
use std::time::Instant;

use pagemill::service::journal::{Journal, JournalJob, now_ms};

fn job(id: String) -> JournalJob {
    JournalJob {
        spool_path: format!("spool/{id}"),
        id,
        pipeline: "default".into(),
        name: "a.pdf".into(),
        bytes: 1000,
        sha256: "00".into(),
        idempotency_key: None,
        tenant: None,
        state: "accepted".into(),
        submitted_at_ms: now_ms(),
        finished_at_ms: None,
        error_code: None,
        result_path: None,
    }
}

fn main() {
    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let journal = Arc::new(Journal::open(&dir.path().join("journal.sqlite")).unwrap());
    let total = 2000;
    for submitters in [1usize, 32] {
        let started = Instant::now();
        let threads: Vec<_> = (0..submitters)
            .map(|t| {
                let journal = journal.clone();
                std::thread::spawn(move || {
                    for i in 0..total / submitters {
                        journal
                            .accept(&job(format!("{submitters}-{t}-{i}")))
                            .unwrap();
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        let done = total / submitters * submitters;
        let secs = started.elapsed().as_secs_f64();
        println!(
            "{submitters:>3} submitters: {done} accepts in {secs:.2} s = {:.0} accepts/s",
            done as f64 / secs
        );
    }
}
