//! The pipeline machinery, apart from the work of any stage: the one list of stages and their
//! shared context, the bounded edges between them, the messages that flow along those edges,
//! and the supervisor that starts the stages, restarts them after a crash and runs the jobs
//! they held again.

pub mod context;
pub mod edge;
pub mod events;
pub mod faults;
pub mod job;
pub mod messages;
pub mod progress;
pub mod recovery;
pub mod stage;
pub mod supervisor;
