//! Every integration test in one binary, so that a change to the library links one test
//! executable instead of one per file. Each module is one area; `common` holds the helpers.
//! The crash-recovery tests need the `fault-injection` feature (see `scripts/test.sh`).
//! `tests/hostile.rs` stays a binary of its own: it measures the peak memory of its process.

mod common;

mod access;
mod backpressure;
mod batch;
mod cluster;
mod config_files;
mod contract;
mod corpus_accuracy;
#[cfg(feature = "fault-injection")]
mod crash_recovery;
mod daemon;
mod dashboards;
mod disk_full;
mod edge;
mod fairness;
mod fixtures_pipeline;
mod journal;
mod llm;
mod logs;
mod module_cycles;
mod outputs;
mod page_work;
mod retention;
mod served_to_tesseract;
mod sinks;
mod web;
