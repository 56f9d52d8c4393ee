//! Fuzz target for the document front: type detection, opening (PDF cross-reference table and
//! page tree, image headers, TIFF directories), the page count and byte/page limits, and the
//! set-up of each page (text layer, pixel size checked against the limit, rendering or
//! decoding at a low resolution, preprocessing) — everything pagemill does to untrusted bytes
//! before OCR. Any panic or crash is a finding.

#![no_main]

use std::path::Path;
use std::sync::LazyLock;

use libfuzzer_sys::fuzz_target;
use pagemill::config::{DEFAULT_PIPELINE_YAML, Pipeline, parse_pipeline};
use pagemill::document::open_document;
use pagemill::stages::render::prepare_page;

/// The default pipeline at 20 DPI, with pages capped at one megapixel, so that each input
/// runs in milliseconds.
static PIPELINE: LazyLock<Pipeline> = LazyLock::new(|| {
    let mut pipeline = parse_pipeline(Path::new("default.yaml"), DEFAULT_PIPELINE_YAML)
        .expect("the embedded default pipeline is valid");
    pipeline.render.dpi = 20;
    pipeline.limits.max_page_pixels = 1_000_000;
    pipeline.limits.max_pages = 8;
    pipeline
});

fuzz_target!(|data: &[u8]| {
    let pipeline = &*PIPELINE;
    if let Ok(doc) = open_document(data.to_vec(), &pipeline.limits) {
        for index in 0..doc.page_count.min(2) {
            let _ = prepare_page(&doc, index, pipeline);
        }
    }
});
