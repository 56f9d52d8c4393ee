//! Tesseract's text-line images, kept as raw pixels instead of PNG.
//!
//! Tesseract 5.3 hands every text line to its LSTM as an `ImageData`, which keeps the line's
//! pixels PNG-encoded (`pixWriteMem(..., IFF_PNG)`) and decodes them again (`pixReadMem`)
//! before recognition: a zlib compression, a CRC and row filters one way, and the inverse the
//! other, for an image that is never written anywhere and lives for one line.
//!
//! The executable defines `pixWriteMem` and exports it (`build.rs`, as for [`super::openmp`]),
//! so Tesseract's calls bind here. While the calling thread is inside Tesseract's recognition
//! call (the [`Recognizing`] guard, which `stages::ocr` holds around it), a PNG asked for is
//! written instead in Leptonica's own serialized form (SPIX: a header, then the pixel words as
//! they are), which `pixReadMem` recognizes by its header and reads back as the same image.
//! Everywhere else, and for every other format, Leptonica's function runs unchanged.

use std::cell::Cell;
use std::ffi::{c_int, c_void};
use std::sync::OnceLock;

use leptess::capi::{self, PIX};

/// The symbol this module defines in place of Leptonica's.
pub use super::served_symbols::LINE_IMAGE_ENTRY_POINTS as ENTRY_POINTS;

const PNG: c_int = capi::IFF_PNG as c_int;
const SPIX: c_int = capi::IFF_SPIX as c_int;

thread_local! {
    /// Whether this thread is inside Tesseract's recognition call.
    static RECOGNIZING: Cell<bool> = const { Cell::new(false) };
    /// Line images this thread has stored raw (for tests and diagnostics).
    static STORED_RAW: Cell<u64> = const { Cell::new(0) };
}

/// Marks the current thread as inside Tesseract's recognition call until dropped.
pub struct Recognizing {
    enclosing: bool,
}

impl Recognizing {
    pub fn begin() -> Recognizing {
        Recognizing {
            enclosing: RECOGNIZING.with(|r| r.replace(true)),
        }
    }
}

impl Drop for Recognizing {
    fn drop(&mut self) {
        RECOGNIZING.with(|r| r.set(self.enclosing));
    }
}

/// Line images stored raw on the calling thread so far.
pub fn stored_raw_on_this_thread() -> u64 {
    STORED_RAW.with(Cell::get)
}

type WriteMem = unsafe extern "C" fn(*mut *mut u8, *mut usize, *mut PIX, c_int) -> c_int;

/// Leptonica's own `pixWriteMem`, looked up once.
fn leptonica_write_mem() -> Option<WriteMem> {
    static REAL: OnceLock<Option<WriteMem>> = OnceLock::new();
    *REAL.get_or_init(|| {
        // SAFETY: Leptonica's pixWriteMem has this signature.
        super::library_definition(c"pixWriteMem")
            .map(|found| unsafe { std::mem::transmute::<*mut c_void, WriteMem>(found) })
    })
}

/// Whether Tesseract's calls to `pixWriteMem` reach this module.
pub fn serves_tesseract() -> bool {
    let ours = pixWriteMem as unsafe extern "C" fn(_, _, _, _) -> _ as usize;
    super::binds_here(c"pixWriteMem", ours) && leptonica_write_mem().is_some()
}

/// Leptonica's `pixWriteMem`, writing SPIX where a PNG is asked for within recognition.
///
/// # Safety
/// As for Leptonica's function.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn pixWriteMem(
    pdata: *mut *mut u8,
    psize: *mut usize,
    pix: *mut PIX,
    format: c_int,
) -> c_int {
    let format = if format == PNG && RECOGNIZING.with(Cell::get) {
        STORED_RAW.with(|n| n.set(n.get() + 1));
        SPIX
    } else {
        format
    };
    match leptonica_write_mem() {
        // SAFETY: the caller's arguments, passed on with the format possibly replaced.
        Some(real) => unsafe { real(pdata, psize, pix, format) },
        None => 1,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `pix` written as a PNG is asked for, its first bytes, and the image read back from them.
    fn written_as_png(pix: *mut PIX) -> (Vec<u8>, *mut PIX) {
        let (mut data, mut size) = (std::ptr::null_mut(), 0usize);
        // SAFETY: a valid image; Leptonica allocates `data`, freed here after copying.
        unsafe {
            assert_eq!(pixWriteMem(&mut data, &mut size, pix, PNG), 0);
            let bytes = std::slice::from_raw_parts(data, size).to_vec();
            capi::lept_free(data.cast());
            let back = capi::pixReadMem(bytes.as_ptr(), bytes.len());
            assert!(!back.is_null());
            (bytes, back)
        }
    }

    #[test]
    fn within_recognition_a_png_is_stored_raw_and_read_back_the_same() {
        for depth in [1, 8, 32] {
            // SAFETY: fresh images written within their bounds, destroyed at the end.
            unsafe {
                let mut pix = capi::pixCreate(97, 23, depth);
                for (x, y) in (0..97).flat_map(|x| (0..23).map(move |y| (x, y))) {
                    let value = ((x * 7 + y * 13) % 256) as u32;
                    let value = match depth {
                        1 => value & 1,
                        8 => value,
                        _ => value << 24 | (255 - value) << 16 | (value / 2) << 8,
                    };
                    capi::pixSetPixel(pix, x, y, value);
                }
                if depth == 32 {
                    capi::pixSetSpp(pix, 3);
                }
                let stored_before = stored_raw_on_this_thread();
                let recognizing = Recognizing::begin();
                let (raw, inside) = written_as_png(pix);
                drop(recognizing);
                assert_eq!(&raw[..4], b"spix", "{depth}-bit line image");
                assert_eq!(stored_raw_on_this_thread(), stored_before + 1);
                // Once the guard has ended, a PNG is a PNG again.
                let (png, outside) = written_as_png(pix);
                assert_eq!(&png[1..4], b"PNG", "{depth}-bit image outside recognition");
                for mut back in [outside, inside] {
                    let mut same = 0;
                    capi::pixEqual(pix, back, &mut same);
                    assert_eq!(same, 1, "{depth}-bit image read back differs");
                    capi::pixDestroy(&mut back);
                }
                capi::pixDestroy(&mut pix);
            }
        }
    }
}
