//! A serial OpenMP runtime for Tesseract, in place of libgomp's.
//!
//! Tesseract's LSTM opens an OpenMP parallel region for every layer at every time step of
//! every text line: about 300,000 regions on a dense page. pagemill already keeps one page per
//! core on its own pool, so each region runs on one thread; but libgomp still sets up and tears
//! down a team for it, with a futex system call each time, and that costs about 8% of a page's
//! recognition time (measured on the eight text pages of `scans-24p.pdf`: 25.3-26.0 s with
//! libgomp limited to one thread, 23.0-23.6 s with this runtime).
//!
//! The executable defines the six OpenMP entry points `libtesseract` imports (the only OpenMP
//! user in the process) and exports them (`build.rs` passes the linker `--export-dynamic-symbol`
//! for each, in the binary and the test binaries; the benches keep libgomp for their engine
//! bound), so the dynamic linker binds Tesseract's calls to them rather than to libgomp's.
//! Each region then runs its body once on the calling thread, as a team of one: the same
//! arithmetic in the same order as libgomp with `OMP_THREAD_LIMIT=1`. [`serves_tesseract`]
//! tells whether the binding took (the binary falls back to `OMP_THREAD_LIMIT=1` if not), and
//! `tests/served_to_tesseract.rs` checks that Tesseract imports nothing else from OpenMP.

use std::cell::Cell;
use std::ffi::{c_int, c_uint, c_void};

/// The OpenMP symbols this module defines: exactly those `libtesseract` imports.
pub use super::served_symbols::OPENMP_ENTRY_POINTS as ENTRY_POINTS;

thread_local! {
    /// The `sections` construct running on this thread: the next section to hand out and
    /// how many there are (1-based; 0 means none left).
    static SECTIONS: Cell<(c_uint, c_uint)> = const { Cell::new((0, 0)) };
    /// Parallel regions this thread has run (for tests and diagnostics).
    static REGIONS: Cell<u64> = const { Cell::new(0) };
}

/// Parallel regions run on the calling thread so far.
pub fn regions_on_this_thread() -> u64 {
    REGIONS.with(Cell::get)
}

/// Whether Tesseract's OpenMP calls reach this runtime: the process's global symbol lookup
/// finds these definitions before libgomp's.
pub fn serves_tesseract() -> bool {
    let ours = GOMP_parallel as unsafe extern "C" fn(_, _, _, _) as usize;
    super::binds_here(c"GOMP_parallel", ours)
}

/// `#pragma omp parallel`: runs the region's body once, on this thread.
///
/// # Safety
/// `body` must be an outlined OpenMP region that accepts `data`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn GOMP_parallel(
    body: unsafe extern "C" fn(*mut c_void),
    data: *mut c_void,
    _num_threads: c_uint,
    _flags: c_uint,
) {
    REGIONS.with(|r| r.set(r.get() + 1));
    // SAFETY: the compiler-generated caller passes its region body and that body's data.
    unsafe { body(data) }
}

/// `#pragma omp parallel sections`: runs the body once, on this thread, which takes the
/// `count` sections one after the other through [`GOMP_sections_next`].
///
/// # Safety
/// As for [`GOMP_parallel`].
#[unsafe(no_mangle)]
pub unsafe extern "C" fn GOMP_parallel_sections(
    body: unsafe extern "C" fn(*mut c_void),
    data: *mut c_void,
    _num_threads: c_uint,
    count: c_uint,
    _flags: c_uint,
) {
    REGIONS.with(|r| r.set(r.get() + 1));
    let enclosing = SECTIONS.with(|s| s.replace((1, count)));
    // SAFETY: as in GOMP_parallel.
    unsafe { body(data) };
    SECTIONS.with(|s| s.set(enclosing));
}

/// The next section of the current `sections` construct (1-based), or 0 when all are taken.
#[unsafe(no_mangle)]
pub extern "C" fn GOMP_sections_next() -> c_uint {
    SECTIONS.with(|s| {
        let (next, count) = s.get();
        if next == 0 || next > count {
            return 0;
        }
        s.set((next + 1, count));
        next
    })
}

/// End of a `sections` construct without a barrier: a team of one has nothing to wait for.
#[unsafe(no_mangle)]
pub extern "C" fn GOMP_sections_end_nowait() {}

/// The team of every region is this thread alone.
#[unsafe(no_mangle)]
pub extern "C" fn omp_get_num_threads() -> c_int {
    1
}

/// This thread is thread 0 of its team of one.
#[unsafe(no_mangle)]
pub extern "C" fn omp_get_thread_num() -> c_int {
    0
}

#[cfg(test)]
mod tests {
    use super::*;

    unsafe extern "C" fn take_sections(data: *mut c_void) {
        // SAFETY: the test passes a Vec<c_uint>.
        let taken = unsafe { &mut *data.cast::<Vec<c_uint>>() };
        loop {
            match GOMP_sections_next() {
                0 => break,
                section => taken.push(section),
            }
        }
        GOMP_sections_end_nowait();
    }

    #[test]
    fn sections_are_handed_out_once_each_in_order() {
        let mut taken: Vec<c_uint> = Vec::new();
        // SAFETY: take_sections accepts a Vec<c_uint>.
        unsafe {
            GOMP_parallel_sections(
                take_sections,
                (&mut taken as *mut Vec<c_uint>).cast(),
                4,
                3,
                0,
            )
        };
        assert_eq!(taken, [1, 2, 3]);
        assert_eq!(GOMP_sections_next(), 0, "none outside a construct");
    }
}
