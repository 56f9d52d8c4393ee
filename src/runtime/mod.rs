//! What the process runs on: the CPU pool, thread scheduling, telemetry and metric names, and
//! the OCR models installed on the machine.

pub mod metrics;
pub mod pool;
pub mod sched;
pub mod telemetry;
pub mod tessdata;
