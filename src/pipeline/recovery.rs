//! What a pipeline needs so that a crashed stage loses no job: the jobs inside the pipeline,
//! to run them again, and the job each stage was handling, to charge the crash to.
//!
//! Every registered job stays here until the save stage has finished it. When a stage
//! crashes, the supervisor stops the whole generation of stages, starts a new one and runs
//! every job held here again ([`Recovery::rerun`]): pages checkpointed in the journal are
//! restored, the others are done again. Messages of an earlier attempt still on their way
//! (from tasks the old stages spawned) carry that attempt's superseded flag, and every stage
//! drops them on arrival. The job a stage was handling when it panicked is charged with the
//! crash (all of them when the stage was handling none); a job charged
//! `supervisor.max_job_crashes` times runs again only to fail with `internal` and the panic
//! message. It fails through the ordinary path, so its result, journal entry and admission
//! budget end as for any failed job, and `pagemill run` counts it.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use crate::model::error::JobError;
use crate::pipeline::messages::{JobRequest, Submission};
use crate::pipeline::stage::Stage;

/// One job inside the pipeline, as it was submitted.
struct InFlight {
    request: JobRequest,
    submitted: Instant,
    cancel: Arc<AtomicBool>,
    span: tracing::Span,
    /// Set when the current attempt is replaced by a new one.
    superseded: Arc<AtomicBool>,
    attempt: u32,
    crashes: u32,
}

/// The jobs of one pipeline that have not finished, and what each stage is handling.
#[derive(Default)]
pub struct Recovery {
    jobs: Mutex<HashMap<String, InFlight>>,
    /// The job of the message each stage is handling (none for messages about no job).
    handling: Mutex<HashMap<Stage, Option<String>>>,
}

/// One job to run again after a crash.
pub struct Rerun {
    pub submission: Submission,
    /// Crashes charged to this job so far.
    pub crashes: u32,
}

impl Recovery {
    /// Remembers a job until it is finished.
    pub fn admit(&self, submission: &Submission) {
        let job = InFlight {
            request: submission.request.clone(),
            submitted: submission.submitted,
            cancel: submission.cancel.clone(),
            span: submission.span.clone(),
            superseded: submission.superseded.clone(),
            attempt: submission.attempt,
            crashes: 0,
        };
        self.lock_jobs().insert(submission.request.id.clone(), job);
    }

    /// Forgets a finished job.
    pub fn finished(&self, id: &str) {
        self.lock_jobs().remove(id);
    }

    /// Notes the job whose message `stage` is handling now.
    pub fn handling(&self, stage: Stage, job: Option<&str>) {
        self.handling
            .lock()
            .expect("recovery lock poisoned")
            .insert(stage, job.map(str::to_owned));
    }

    /// After `stage` crashed with `panic`: supersedes the current attempt of every job inside
    /// the pipeline and returns their next attempts, oldest job first. The job `stage` was
    /// handling is charged with the crash (every job, when it was handling none); a job charged
    /// `max_crashes` times is sent to fail with `internal`.
    pub fn rerun(&self, stage: Stage, panic: &str, max_crashes: u32) -> Vec<Rerun> {
        let culprit = {
            let mut handling = self.handling.lock().expect("recovery lock poisoned");
            let culprit = handling.get(&stage).cloned().flatten();
            handling.clear();
            culprit
        };
        let mut jobs = self.lock_jobs();
        let mut reruns: Vec<Rerun> = jobs
            .values_mut()
            .map(|job| {
                job.superseded.store(true, Ordering::Relaxed);
                job.superseded = Arc::new(AtomicBool::new(false));
                job.attempt += 1;
                if culprit.as_deref().is_none_or(|c| c == job.request.id) {
                    job.crashes += 1;
                }
                let fail = (job.crashes >= max_crashes).then(|| {
                    JobError::Internal(format!(
                        "the {stage} stage crashed {} times on this job: {panic}",
                        job.crashes
                    ))
                });
                Rerun {
                    submission: Submission {
                        request: job.request.clone(),
                        submitted: job.submitted,
                        cancel: job.cancel.clone(),
                        span: job.span.clone(),
                        superseded: job.superseded.clone(),
                        attempt: job.attempt,
                        fail,
                    },
                    crashes: job.crashes,
                }
            })
            .collect();
        reruns.sort_by_key(|r| r.submission.submitted);
        reruns
    }

    fn lock_jobs(&self) -> std::sync::MutexGuard<'_, HashMap<String, InFlight>> {
        self.jobs.lock().expect("recovery lock poisoned")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    fn submission(id: &str) -> Submission {
        Submission::new(
            JobRequest::new(id, format!("{id}.pdf"), PathBuf::from(id)),
            Arc::new(AtomicBool::new(false)),
            tracing::Span::none(),
        )
    }

    #[test]
    fn the_job_being_handled_is_charged_and_fails_after_the_last_allowed_crash() {
        let recovery = Recovery::default();
        let (a, b) = (submission("a"), submission("b"));
        recovery.admit(&a);
        recovery.admit(&b);
        recovery.handling(Stage::Ocr, Some("a"));
        recovery.handling(Stage::Assemble, Some("b"));

        let first = recovery.rerun(Stage::Assemble, "boom", 2);
        assert!(
            a.superseded.load(Ordering::Relaxed),
            "old attempts are superseded"
        );
        assert!(b.superseded.load(Ordering::Relaxed));
        let by_id = |reruns: &[Rerun], id: &str| {
            let r = reruns
                .iter()
                .find(|r| r.submission.request.id == id)
                .unwrap();
            (r.crashes, r.submission.attempt, r.submission.fail.is_some())
        };
        assert_eq!(by_id(&first, "a"), (0, 1, false), "a was not in assemble");
        assert_eq!(
            by_id(&first, "b"),
            (1, 1, false),
            "b made assemble crash once"
        );

        recovery.handling(Stage::Assemble, Some("b"));
        let second = recovery.rerun(Stage::Assemble, "boom", 2);
        assert_eq!(by_id(&second, "a"), (0, 2, false));
        assert_eq!(
            by_id(&second, "b"),
            (2, 2, true),
            "b fails after the second crash"
        );
        let fail = second
            .iter()
            .find_map(|r| r.submission.fail.as_ref())
            .unwrap();
        assert_eq!(fail.code(), "internal");
        assert!(fail.to_string().contains("boom"), "{fail}");

        // A crash while handling no job charges every job; finished jobs are not run again.
        recovery.finished("b");
        recovery.handling(Stage::Ocr, None);
        let third = recovery.rerun(Stage::Ocr, "boom", 2);
        assert_eq!(third.len(), 1);
        assert_eq!(by_id(&third, "a"), (1, 3, false));
    }
}
