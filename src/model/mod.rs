//! The data that flows through pagemill, independent of any stage: what a document is.
//! Nothing here imports a stage, the pipeline or the service above it.

pub mod media_type;
