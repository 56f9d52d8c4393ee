// The symbols pagemill defines in place of Tesseract's libraries (`openmp`, `line_images`,
// `brick_opening`).
// `build.rs` includes this file too, to export exactly these from the binary and the test
// binaries; so it holds plain items only (no inner attributes, no `use`).

/// The OpenMP entry points `libtesseract` imports, served by `runtime::openmp`.
pub const OPENMP_ENTRY_POINTS: &[&str] = &[
    "GOMP_parallel",
    "GOMP_parallel_sections",
    "GOMP_sections_next",
    "GOMP_sections_end_nowait",
    "omp_get_num_threads",
    "omp_get_thread_num",
];

/// The Leptonica function Tesseract stores its line images with, served by
/// `runtime::line_images`.
pub const LINE_IMAGE_ENTRY_POINTS: &[&str] = &["pixWriteMem"];

/// The Leptonica function Tesseract's line finder opens images with, served by
/// `runtime::brick_opening`.
pub const BRICK_OPENING_ENTRY_POINTS: &[&str] = &["pixOpenBrick"];
