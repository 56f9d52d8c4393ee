//! Tesseract's text-line images, stored without compression.
//!
//! Tesseract 5.3 hands every text line to its LSTM as an `ImageData`, which keeps the line's
//! pixels PNG-encoded and decodes them again before recognition: one zlib compression and one
//! decompression per line, through Leptonica and libpng. The PNG is never written anywhere and
//! lives for one line, yet it is compressed at zlib's default level. At level 0 (stored) the
//! pixels, and so every character read, are the same, and `pagemill run` on `scans-24p.pdf`
//! used 3-4% less CPU (A/B runs of the same binary with and without the level forced).
//!
//! The executable defines `png_set_compression_level` and exports it (`build.rs`, as for
//! [`super::openmp`]), so Leptonica's call binds here; it passes level 0 on to libpng's own
//! function, found with `dlsym(RTLD_NEXT)`. pagemill itself writes no PNG through libpng
//! (its own PNG decoding is the pure-Rust `png` crate), so nothing else is affected.

use std::ffi::{c_int, c_void};
use std::sync::OnceLock;

/// The symbol this module defines in place of libpng's.
pub use super::served_symbols::LIBPNG_ENTRY_POINTS as ENTRY_POINTS;

/// zlib's "stored" level: no compression.
const LEVEL: c_int = 0;

type SetCompressionLevel = unsafe extern "C" fn(*mut c_void, c_int);

/// libpng's own `png_set_compression_level`, looked up once.
fn libpng_set_compression_level() -> Option<SetCompressionLevel> {
    static REAL: OnceLock<Option<SetCompressionLevel>> = OnceLock::new();
    *REAL.get_or_init(|| {
        // SAFETY: dlsym with RTLD_NEXT and a NUL-terminated name only looks the symbol up.
        let found = unsafe { libc::dlsym(libc::RTLD_NEXT, c"png_set_compression_level".as_ptr()) };
        // SAFETY: a non-null result is libpng's function of this signature.
        (!found.is_null())
            .then(|| unsafe { std::mem::transmute::<*mut c_void, SetCompressionLevel>(found) })
    })
}

/// Whether Leptonica's calls to `png_set_compression_level` reach this module.
pub fn serves_leptonica() -> bool {
    let ours = png_set_compression_level as unsafe extern "C" fn(_, _) as usize;
    super::binds_here(c"png_set_compression_level", ours)
        && libpng_set_compression_level().is_some()
}

/// libpng's `png_set_compression_level`, with the level replaced by [`LEVEL`].
///
/// # Safety
/// `png` must be a libpng write structure, as for libpng's function.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn png_set_compression_level(png: *mut c_void, _level: c_int) {
    if let Some(set) = libpng_set_compression_level() {
        // SAFETY: the caller passes a libpng write structure.
        unsafe { set(png, LEVEL) }
    }
}
