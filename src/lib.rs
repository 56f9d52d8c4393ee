//! pagemill turns documents into structured, summarized text.
//!
//! A document goes through a chain of stages (ingest, render, OCR, assemble, summarize, save),
//! each a ractor actor under one supervisor per pipeline, joined by bounded edges; render and
//! OCR share one CPU pool. See `README.md` for the picture.

// warp's filter chain for the whole API, each route guarded by its key scope, nests deeper
// than the compiler's default limit when its futures are checked.
#![recursion_limit = "256"]

pub mod cli;
pub mod config;
pub mod eval;
pub mod http;
pub mod limits;
pub mod llm;
pub mod model;
pub mod pipeline;
pub mod runtime;
pub mod service;
pub mod stages;
