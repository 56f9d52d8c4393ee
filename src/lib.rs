//! pagemill turns documents into structured, summarized text.
//!
//! A document goes through a chain of stages (ingest, render, OCR, assemble, summarize, save),
//! each a ractor actor under one supervisor per pipeline, joined by bounded edges; render and
//! OCR share one CPU pool. See `README.md` for the picture.

pub mod cli;
pub mod config;
pub mod config_env;
mod config_keys;
pub mod document;
pub mod edge;
pub mod error;
pub mod eval;
pub mod faults;
pub mod http;
pub mod limits;
pub mod metrics;
pub mod model;
pub mod pool;
pub mod progress;
pub mod recovery;
pub mod result;
pub mod sched;
pub mod service;
pub mod stages;
pub mod supervisor;
pub mod telemetry;
