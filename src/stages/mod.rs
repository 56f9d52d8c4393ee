//! The stages of a pipeline, in flow order:
//!
//! ```text
//! ingest ──► render ──► ocr ──► assemble ──► summarize ──► save
//!               └──── text-layer pages ──────►┘
//! ```
//! Each stage keeps its pure work (callable from tests and benches) apart from the actor that
//! schedules it. A stage imports what flows into and out of it from [`crate::pipeline`] and
//! [`crate::model`], never another stage.

pub mod assemble;
pub mod ingest;
pub mod ocr;
pub mod render;
pub mod save;
pub mod summarize;
