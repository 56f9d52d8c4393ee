//! Every metric name pagemill emits, in one place.
//!
//! Names carry the `pagemill_` prefix and base units; `_total` only on counters. Labels are
//! bounded: `pipeline`, `stage`, `outcome`, `error_type`; never a job id.

/// Items a stage received (counter; labels pipeline, stage).
pub const STAGE_RECEIVED: &str = "pagemill_stage_received_total";
/// Items a stage passed on (counter; labels pipeline, stage).
pub const STAGE_SENT: &str = "pagemill_stage_sent_total";
/// Items a stage failed (counter; labels pipeline, stage, error_type).
pub const STAGE_ERRORS: &str = "pagemill_stage_errors_total";
/// Time a stage spent on one item (histogram; labels pipeline, stage).
pub const STAGE_PROCESSING_SECONDS: &str = "pagemill_stage_processing_seconds";
/// Time a sender waited for a credit on a full edge (histogram; labels pipeline, stage).
pub const STAGE_BACKPRESSURE_SECONDS: &str = "pagemill_stage_backpressure_wait_seconds";
/// Items holding a credit on the edge into a stage (gauge; labels pipeline, stage).
pub const STAGE_QUEUE_DEPTH: &str = "pagemill_stage_queue_depth";
/// Capacity of the edge into a stage (gauge; labels pipeline, stage).
pub const STAGE_QUEUE_CAPACITY: &str = "pagemill_stage_queue_capacity";
/// Stage restarts by the supervisor (counter; labels pipeline, stage).
pub const STAGE_RESTARTS: &str = "pagemill_stage_restarts_total";
/// Jobs finished (counter; labels pipeline, outcome).
pub const JOBS_COMPLETED: &str = "pagemill_jobs_completed_total";
/// Time from submission to saved result (histogram; labels pipeline, outcome).
pub const JOB_DURATION_SECONDS: &str = "pagemill_job_duration_seconds";
/// Pages OCRed or taken from a text layer (counter; labels pipeline, outcome).
pub const PAGES: &str = "pagemill_pages_total";
/// Mean Tesseract confidence per OCRed page, 0-100 (histogram; label pipeline).
pub const OCR_CONFIDENCE: &str = "pagemill_ocr_page_confidence";
