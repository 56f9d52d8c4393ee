//! What the process runs on: the CPU pool, thread scheduling, the OpenMP runtime and PNG level
//! Tesseract's calls reach, telemetry and metric names, and the OCR models installed on the
//! machine.

pub mod line_images;
pub mod metrics;
pub mod openmp;
pub mod pool;
pub mod sched;
pub mod telemetry;
pub mod tessdata;
