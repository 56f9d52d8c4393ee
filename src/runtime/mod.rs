//! What the process runs on: the CPU pool, thread scheduling, the OpenMP runtime, line-image
//! storage and brick opening Tesseract's calls reach, telemetry and metric names, and the OCR models
//! installed on the machine.

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
fn binds_here(name: &std::ffi::CStr, ours: usize) -> bool {
    // SAFETY: dlsym with RTLD_DEFAULT and a NUL-terminated name only looks the symbol up.
    let found = unsafe { libc::dlsym(libc::RTLD_DEFAULT, name.as_ptr()) };
    !found.is_null() && found as usize == ours
}
