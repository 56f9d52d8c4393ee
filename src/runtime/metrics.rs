//! Every metric name pagemill emits, in one place.
//!
//! Names carry the `pagemill_` prefix and base units; `_total` only on counters. Labels are
//! bounded: `pipeline`, `stage`, `outcome`, `error_type`, `endpoint` (an LLM server's base
//! URL, from the pipelines' configuration); never a job id.

/// Items a stage received (counter; labels pipeline, stage).
pub const STAGE_RECEIVED: &str = "pagemill_stage_received_total";
/// Items a stage passed on (counter; labels pipeline, stage).
pub const STAGE_SENT: &str = "pagemill_stage_sent_total";
/// Items a stage failed (counter; labels pipeline, stage, error_type). The failure still
/// travels on as the job's outcome.
pub const STAGE_ERRORS: &str = "pagemill_stage_errors_total";
/// Items a stage dropped unprocessed, e.g. pages of a cancelled job (counter; labels
/// pipeline, stage). At rest, received = sent + errors + discarded for every stage.
pub const STAGE_DISCARDED: &str = "pagemill_stage_discarded_total";
/// Time a stage spent on one item (histogram; labels pipeline, stage).
pub const STAGE_PROCESSING_SECONDS: &str = "pagemill_stage_processing_seconds";
/// Time a sender waited for a credit on a full edge (histogram; labels pipeline, stage).
pub const STAGE_BACKPRESSURE_SECONDS: &str = "pagemill_stage_backpressure_wait_seconds";
/// Items holding a credit on the edge into a stage (gauge; labels pipeline, stage).
pub const STAGE_QUEUE_DEPTH: &str = "pagemill_stage_queue_depth";
/// Capacity of the edge into a stage (gauge; labels pipeline, stage).
pub const STAGE_QUEUE_CAPACITY: &str = "pagemill_stage_queue_capacity";
/// Items a stage works on at once (gauge; labels pipeline, stage). Utilization is the rate
/// of `pagemill_stage_processing_seconds_sum` divided by this.
pub const STAGE_WORKERS: &str = "pagemill_stage_workers";
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
/// Orientation detections run (counter; label outcome: `turned` or `kept`, after `first_`
/// (the page's print looked turned, or `orientation: always`) or `poor_reading_`).
pub const OCR_ORIENTATION_CHECKS: &str = "pagemill_ocr_orientation_checks_total";
/// The outcomes of [`OCR_ORIENTATION_CHECKS`], each counted from 0.
pub const ORIENTATION_CHECK_OUTCOMES: [&str; 4] = [
    "first_kept",
    "first_turned",
    "poor_reading_kept",
    "poor_reading_turned",
];
/// Jobs accepted and not yet finished (gauge; label pipeline).
pub const JOBS_IN_SYSTEM: &str = "pagemill_jobs_in_system";
/// Pages of unfinished jobs and uploads, counted against the admission budget (gauge; label
/// pipeline).
pub const ADMISSION_PAGES: &str = "pagemill_admission_pages_in_system";
/// The admission budget in pages (gauge; label pipeline).
pub const ADMISSION_PAGES_LIMIT: &str = "pagemill_admission_pages_limit";
/// Bytes of unfinished jobs and uploads, counted against the admission budget (gauge; label
/// pipeline).
pub const ADMISSION_BYTES: &str = "pagemill_admission_bytes_in_system";
/// The admission budget in bytes (gauge; label pipeline).
pub const ADMISSION_BYTES_LIMIT: &str = "pagemill_admission_bytes_limit";
/// Jobs accepted by the HTTP API (counter; label pipeline).
pub const JOBS_ACCEPTED: &str = "pagemill_jobs_accepted_total";
/// Submissions refused (counter; labels pipeline, reason).
pub const JOBS_REJECTED: &str = "pagemill_jobs_rejected_total";
/// HTTP requests (counter; labels route, method, code).
pub const HTTP_REQUESTS: &str = "pagemill_http_requests_total";
/// HTTP request duration (histogram; labels route, method).
pub const HTTP_REQUEST_SECONDS: &str = "pagemill_http_request_duration_seconds";
/// Requests to the LLM server (counter; labels pipeline, endpoint, code: the HTTP status or
/// `unreachable`).
pub const LLM_REQUESTS: &str = "pagemill_llm_requests_total";
/// Duration of one LLM request (histogram; labels pipeline, endpoint).
pub const LLM_REQUEST_SECONDS: &str = "pagemill_llm_request_duration_seconds";
/// Tokens the LLM server reported (counter; labels pipeline, endpoint, direction: in | out).
pub const LLM_TOKENS: &str = "pagemill_llm_tokens_total";
/// Summaries served from the cache instead of the LLM (counter; label pipeline).
pub const LLM_CACHE_HITS: &str = "pagemill_llm_cache_hits_total";
/// LLM summaries a resumed job took from the journal instead of the server (counter; label
/// pipeline).
pub const LLM_SUMMARIES_RESTORED: &str = "pagemill_llm_summaries_restored_total";
/// Documents summarized by the fallback engine because the LLM failed (counter; label
/// pipeline).
pub const LLM_FALLBACKS: &str = "pagemill_llm_fallbacks_total";
/// 1 while the LLM circuit breaker holds requests back, else 0 (gauge; label endpoint: every
/// pipeline calling that server shares its circuit).
pub const LLM_CIRCUIT_OPEN: &str = "pagemill_llm_circuit_open";
/// Documents waiting in the summarize stage for the LLM server to come back, with
/// `fallback: none` (gauge; label pipeline). They hold their place on the edge into the stage.
pub const LLM_DOCUMENTS_WAITING: &str = "pagemill_llm_documents_waiting";
/// Requests to the LLM server in flight now, from every pipeline (gauge; label endpoint).
pub const LLM_REQUESTS_IN_FLIGHT: &str = "pagemill_llm_requests_in_flight";
/// The adaptive limit of LLM requests in flight at once, shared by every pipeline calling the
/// server (gauge; label endpoint).
pub const LLM_CONCURRENCY_LIMIT: &str = "pagemill_llm_concurrency_limit";
/// Time a request waited for room under the endpoint's per-minute ceilings (histogram; labels
/// pipeline, endpoint).
pub const LLM_QUOTA_WAIT_SECONDS: &str = "pagemill_llm_quota_wait_seconds";
/// Structured extractions (counter; labels pipeline, outcome: valid | invalid | failed).
/// `invalid` counts answers that did not match the schema, each retried.
pub const LLM_EXTRACTIONS: &str = "pagemill_llm_extractions_total";
/// Result deliveries to a sink beyond the results directory (counter; labels pipeline, sink,
/// outcome: delivered | retried | dead_letter).
pub const SINK_DELIVERIES: &str = "pagemill_sink_deliveries_total";
/// Threads in the CPU pool (gauge).
pub const POOL_THREADS: &str = "pagemill_cpu_pool_threads";
/// Tasks submitted to the CPU pool and not finished (gauge).
pub const POOL_QUEUED: &str = "pagemill_cpu_pool_queued_tasks";
/// Seconds CPU pool threads spent running tasks (counter).
pub const POOL_BUSY_SECONDS: &str = "pagemill_cpu_pool_busy_seconds_total";
/// 1 while a cluster node is connected to NATS, else 0 (gauge; only in cluster mode).
pub const CLUSTER_CONNECTED: &str = "pagemill_cluster_connected";
/// Jobs in the cluster's queue, delivered or not (gauge; the stream's messages).
pub const CLUSTER_QUEUED_JOBS: &str = "pagemill_cluster_queued_jobs";
/// Ranges of split jobs in the cluster's ranges stream, delivered or not (gauge).
pub const CLUSTER_QUEUED_RANGES: &str = "pagemill_cluster_queued_ranges";
/// Jobs of a pipeline waiting in the cluster's queue for a node (gauge; label pipeline).
pub const CLUSTER_JOBS_WAITING: &str = "pagemill_cluster_jobs_waiting";
/// Jobs of a pipeline delivered to a node and not yet acknowledged (gauge; label pipeline).
pub const CLUSTER_ACKS_PENDING: &str = "pagemill_cluster_acks_pending";
/// Jobs this node received again after an earlier delivery (counter; label pipeline).
pub const CLUSTER_REDELIVERIES: &str = "pagemill_cluster_redeliveries_total";
/// Jobs this node took over from a node whose lease had gone stale (counter; label pipeline).
pub const CLUSTER_LEASE_TAKEOVERS: &str = "pagemill_cluster_lease_takeovers_total";
/// Jobs this node handed back to the queue unfinished, when leaving (counter; label
/// pipeline).
pub const CLUSTER_JOBS_HANDED_BACK: &str = "pagemill_cluster_jobs_handed_back_total";
/// Always 1, labelled with the version (gauge).
pub const BUILD_INFO: &str = "pagemill_build_info";
/// Prefix of the process metrics (memory, CPU, open files).
pub const PROCESS_PREFIX: &str = "pagemill_";

/// Histogram buckets in seconds, from HTTP edge latencies to whole jobs.
pub const SECONDS_BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
    60.0, 120.0, 300.0, 600.0, 1800.0,
];
/// Buckets for OCR confidence (0-100).
pub const CONFIDENCE_BUCKETS: &[f64] =
    &[10.0, 20.0, 30.0, 40.0, 50.0, 60.0, 70.0, 80.0, 90.0, 95.0];

/// Registers help text and units for every metric (Prometheus requires help text).
pub fn describe() {
    use metrics::{Unit, describe_counter, describe_gauge, describe_histogram};
    describe_counter!(STAGE_RECEIVED, "Items a stage received");
    describe_counter!(STAGE_SENT, "Items a stage passed on in good order");
    describe_counter!(STAGE_ERRORS, "Items that failed in a stage, by error type");
    describe_counter!(
        STAGE_DISCARDED,
        "Items a stage dropped unprocessed (cancelled jobs)"
    );
    describe_histogram!(
        STAGE_PROCESSING_SECONDS,
        Unit::Seconds,
        "Time a stage spent on one item"
    );
    describe_histogram!(
        STAGE_BACKPRESSURE_SECONDS,
        Unit::Seconds,
        "Time a sender waited for room on the edge into a stage"
    );
    describe_gauge!(
        STAGE_QUEUE_DEPTH,
        "Items holding a credit on the edge into a stage"
    );
    describe_gauge!(STAGE_QUEUE_CAPACITY, "Capacity of the edge into a stage");
    describe_counter!(STAGE_RESTARTS, "Stage restarts after a crash");
    describe_gauge!(STAGE_WORKERS, "Items a stage works on at once");
    describe_gauge!(CLUSTER_CONNECTED, "1 while this node is connected to NATS");
    describe_gauge!(
        CLUSTER_QUEUED_JOBS,
        "Jobs in the cluster's queue, delivered or not"
    );
    describe_gauge!(
        CLUSTER_QUEUED_RANGES,
        "Ranges of split jobs in the cluster's ranges stream, delivered or not"
    );
    describe_gauge!(
        CLUSTER_JOBS_WAITING,
        "Jobs waiting in the cluster's queue for a node"
    );
    describe_gauge!(
        CLUSTER_ACKS_PENDING,
        "Jobs delivered to a node and not yet acknowledged"
    );
    describe_counter!(
        CLUSTER_REDELIVERIES,
        "Jobs this node received again after an earlier delivery"
    );
    describe_counter!(
        CLUSTER_LEASE_TAKEOVERS,
        "Jobs this node took over from a node whose lease went stale"
    );
    describe_counter!(
        CLUSTER_JOBS_HANDED_BACK,
        "Jobs this node handed back to the queue unfinished when leaving"
    );
    describe_gauge!(JOBS_IN_SYSTEM, "Jobs accepted and not yet finished");
    describe_gauge!(
        ADMISSION_PAGES,
        "Pages of unfinished jobs and uploads, against the admission budget"
    );
    describe_gauge!(ADMISSION_PAGES_LIMIT, "The admission budget in pages");
    describe_gauge!(
        ADMISSION_BYTES,
        Unit::Bytes,
        "Bytes of unfinished jobs and uploads, against the admission budget"
    );
    describe_gauge!(
        ADMISSION_BYTES_LIMIT,
        Unit::Bytes,
        "The admission budget in bytes"
    );
    describe_counter!(JOBS_COMPLETED, "Jobs finished, by outcome");
    describe_histogram!(
        JOB_DURATION_SECONDS,
        Unit::Seconds,
        "Submission to saved result"
    );
    describe_counter!(PAGES, "Pages finished, by outcome");
    describe_counter!(
        OCR_ORIENTATION_CHECKS,
        "Orientation detections run, by why and what they found"
    );
    for outcome in ORIENTATION_CHECK_OUTCOMES {
        metrics::counter!(OCR_ORIENTATION_CHECKS, "outcome" => outcome).increment(0);
    }
    describe_histogram!(
        OCR_CONFIDENCE,
        "Mean Tesseract confidence of an OCRed page, 0-100"
    );
    describe_counter!(JOBS_ACCEPTED, "Jobs accepted by the HTTP API");
    describe_counter!(JOBS_REJECTED, "Submissions refused, by reason");
    describe_counter!(
        HTTP_REQUESTS,
        "HTTP requests, by route, method and status code"
    );
    describe_histogram!(HTTP_REQUEST_SECONDS, Unit::Seconds, "HTTP request duration");
    describe_counter!(LLM_REQUESTS, "Requests to the LLM server, by HTTP status");
    describe_histogram!(
        LLM_REQUEST_SECONDS,
        Unit::Seconds,
        "Duration of one LLM request"
    );
    describe_counter!(LLM_TOKENS, "Tokens the LLM server reported, in and out");
    describe_counter!(LLM_CACHE_HITS, "Summaries served from the cache");
    describe_counter!(
        LLM_SUMMARIES_RESTORED,
        "LLM summaries a resumed job took from the journal"
    );
    describe_counter!(
        LLM_FALLBACKS,
        "Documents summarized by the fallback engine after the LLM failed"
    );
    describe_gauge!(
        LLM_CIRCUIT_OPEN,
        "1 while the LLM circuit breaker holds requests back"
    );
    describe_gauge!(
        LLM_DOCUMENTS_WAITING,
        "Documents waiting for the LLM server to come back (fallback: none)"
    );
    describe_gauge!(
        LLM_REQUESTS_IN_FLIGHT,
        "Requests to the LLM server in flight now"
    );
    describe_gauge!(
        LLM_CONCURRENCY_LIMIT,
        "The adaptive limit of LLM requests in flight at once"
    );
    describe_histogram!(
        LLM_QUOTA_WAIT_SECONDS,
        Unit::Seconds,
        "Time an LLM request waited under the per-minute ceilings"
    );
    describe_counter!(
        LLM_EXTRACTIONS,
        "Structured extractions by outcome: valid, invalid (retried), failed"
    );
    describe_counter!(
        SINK_DELIVERIES,
        "Result deliveries to sinks: delivered, retried, dead letters"
    );
    describe_gauge!(POOL_THREADS, "Threads in the CPU pool");
    describe_gauge!(
        POOL_QUEUED,
        "Tasks submitted to the CPU pool and not finished"
    );
    describe_counter!(
        POOL_BUSY_SECONDS,
        Unit::Seconds,
        "Seconds CPU pool threads spent on tasks"
    );
    describe_gauge!(BUILD_INFO, "Always 1; the version is a label");
}
