//! What the process runs on: the CPU pool, thread scheduling, the OpenMP runtime, line-image
//! storage and brick opening Tesseract's calls reach, telemetry and metric names, and the OCR
//! models installed on the machine.

use std::ffi::{CStr, c_void};

pub mod brick_opening;
pub mod line_images;
pub mod metrics;
pub mod openmp;
pub mod pool;
pub mod sched;
mod served_symbols;
pub mod telemetry;
pub mod tessdata;

/// Whether the process's global symbol lookup finds `name` at `ours`: a symbol pagemill
/// serves in place of a library's ([`openmp`], [`line_images`], [`brick_opening`]) binds to
/// pagemill's definition.
fn binds_here(name: &CStr, ours: usize) -> bool {
    // SAFETY: dlsym with RTLD_DEFAULT and a NUL-terminated name only looks the symbol up.
    let found = unsafe { libc::dlsym(libc::RTLD_DEFAULT, name.as_ptr()) };
    !found.is_null() && found as usize == ours
}

/// The library's own definition of `name`, the next after pagemill's in the lookup order: where
/// a function pagemill serves passes on the calls it does not take on.
fn library_definition(name: &CStr) -> Option<*mut c_void> {
    // SAFETY: dlsym with RTLD_NEXT and a NUL-terminated name only looks the symbol up.
    let found = unsafe { libc::dlsym(libc::RTLD_NEXT, name.as_ptr()) };
    (!found.is_null()).then_some(found)
}

/// What pagemill serves Tesseract in place of its libraries in this process, by module: all
/// three in the binary and the test binaries, none in the benches, whose engine bound is
/// Tesseract on its libraries alone.
pub fn served_to_tesseract() -> Vec<&'static str> {
    [
        ("openmp", openmp::serves_tesseract()),
        ("line_images", line_images::serves_tesseract()),
        ("brick_opening", brick_opening::serves_tesseract()),
    ]
    .into_iter()
    .filter_map(|(module, served)| served.then_some(module))
    .collect()
}
