//! The data that flows through pagemill, independent of any stage: the document and its
//! type, its pages, the result record and the job errors. Nothing here imports a stage, the
//! pipeline or the service above it.

pub mod document;
pub mod error;
pub mod image_pages;
pub mod media_type;
pub mod page;
pub mod result;
