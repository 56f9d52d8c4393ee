//! Leptonica's brick opening, in a number of full-page passes that grows with the logarithm of
//! the brick's length instead of with the length itself.
//!
//! Before it finds a page's columns, Tesseract looks for ruled lines (`LineFinder`), and to
//! find them it opens the page's binary image three times with `pixOpenBrick`: with a square
//! of 1/20 inch to take out solid areas, then with a bar of 1/4 inch, upright and lying, to
//! keep only long lines (15x15, 1x75 and 75x1 pixels at 300 DPI). Leptonica erodes and dilates
//! with one shifted full-page raster operation per element of the brick: 360 passes over the
//! page, 3.6 % of all the CPU of `pagemill run` on `scans-24p.pdf` (perf, one thread).
//!
//! An erosion by a bar of length `n` is the AND of `n` shifted copies of the image; the AND of
//! `2m` copies is that of `m` copies ANDed with itself shifted by `m`, and any run of `n` is
//! two overlapping runs of the largest power of two `p <= n`. So a bar takes `log2(p)`
//! doublings and two shifts, and the same for a dilation (OR). The result is the same image
//! bit for bit, the boundary conditions included: Leptonica's erosion clears the margins the
//! brick cannot cover (its "asymmetric" convention), and this one clears the same margins;
//! a dilation sees nothing outside the image, and this one works on a copy bordered with
//! empty pixels wide enough that every window falls inside it. The tests below compare the
//! two on random images, `tests/served_to_tesseract.rs` on a page with ruled lines.
//!
//! The executable defines `pixOpenBrick` and exports it (`build.rs`, as for [`super::openmp`]),
//! so Tesseract's calls (and Leptonica's own) bind here. Any call this module does not
//! take on (an existing destination image, a depth other than 1, a 1x1 brick or one of no
//! size) goes to Leptonica's function, found with `dlsym(RTLD_NEXT)`.

use std::ffi::{c_int, c_void};
use std::sync::OnceLock;

use leptess::capi::{self, PIX};

/// The symbol this module defines in place of Leptonica's.
pub use super::served_symbols::BRICK_OPENING_ENTRY_POINTS as ENTRY_POINTS;

const OP_SRC: c_int = capi::PIX_SRC as c_int;
const OP_AND: c_int = (capi::PIX_SRC & capi::PIX_DST) as c_int;
const OP_OR: c_int = (capi::PIX_SRC | capi::PIX_DST) as c_int;
const OP_CLEAR: c_int = capi::PIX_CLR as c_int;

type OpenBrick = unsafe extern "C" fn(*mut PIX, *mut PIX, c_int, c_int) -> *mut PIX;

/// Leptonica's own `pixOpenBrick`, looked up once.
pub fn leptonica_open_brick() -> Option<OpenBrick> {
    static REAL: OnceLock<Option<OpenBrick>> = OnceLock::new();
    *REAL.get_or_init(|| {
        // SAFETY: Leptonica's pixOpenBrick has this signature.
        super::library_definition(c"pixOpenBrick")
            .map(|found| unsafe { std::mem::transmute::<*mut c_void, OpenBrick>(found) })
    })
}

/// Whether calls to `pixOpenBrick` (Tesseract's and Leptonica's) reach this module.
pub fn serves_tesseract() -> bool {
    let ours = pixOpenBrick as unsafe extern "C" fn(_, _, _, _) -> _ as usize;
    super::binds_here(c"pixOpenBrick", ours) && leptonica_open_brick().is_some()
}

/// Leptonica's `pixOpenBrick`: the opening of the 1-bit `pixs` by an `hsize` x `vsize` brick
/// whose origin is at (`hsize / 2`, `vsize / 2`).
///
/// # Safety
/// As for Leptonica's function: `pixs` is null or a valid image, `pixd` null or a valid image.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn pixOpenBrick(
    pixd: *mut PIX,
    pixs: *mut PIX,
    hsize: c_int,
    vsize: c_int,
) -> *mut PIX {
    // SAFETY: `pixs` is checked for null before Leptonica reads its depth.
    let ours = pixd.is_null()
        && !pixs.is_null()
        && unsafe { capi::pixGetDepth(pixs) } == 1
        && hsize >= 1
        && vsize >= 1
        && (hsize, vsize) != (1, 1);
    if ours {
        // SAFETY: `pixs` is a valid 1-bit image.
        if let Some(opened) = unsafe { open_brick(pixs, hsize, vsize) } {
            return opened;
        }
    }
    match leptonica_open_brick() {
        // SAFETY: the caller's arguments, passed on unchanged.
        Some(real) => unsafe { real(pixd, pixs, hsize, vsize) },
        None => std::ptr::null_mut(),
    }
}

/// A direction along which a bar-shaped brick lies.
#[derive(Clone, Copy)]
enum Axis {
    Horizontal,
    Vertical,
}

/// Owned Leptonica images, destroyed when dropped.
struct Owned(*mut PIX);

impl Owned {
    fn new(raw: *mut PIX) -> Option<Owned> {
        (!raw.is_null()).then_some(Owned(raw))
    }

    fn release(mut self) -> *mut PIX {
        std::mem::replace(&mut self.0, std::ptr::null_mut())
    }
}

impl Drop for Owned {
    fn drop(&mut self) {
        if !self.0.is_null() {
            // SAFETY: a non-null pointer here is an image this value owns.
            unsafe { capi::pixDestroy(&mut self.0) }
        }
    }
}

/// The opening as Leptonica computes it: one bar for a brick one pixel wide or tall, else
/// separably (erode across, erode down, dilate across, dilate down).
///
/// # Safety
/// `pixs` is a valid 1-bit image.
unsafe fn open_brick(pixs: *mut PIX, hsize: c_int, vsize: c_int) -> Option<*mut PIX> {
    // SAFETY (all calls below): every image passed is valid and owned or borrowed for the call.
    let opened = if hsize == 1 || vsize == 1 {
        let (axis, n) = if vsize == 1 {
            (Axis::Horizontal, hsize)
        } else {
            (Axis::Vertical, vsize)
        };
        let eroded = unsafe { erode_bar(pixs, axis, n) }?;
        unsafe { dilate_bar(eroded.0, axis, n) }?
    } else {
        let across = unsafe { erode_bar(pixs, Axis::Horizontal, hsize) }?;
        let down = unsafe { erode_bar(across.0, Axis::Vertical, vsize) }?;
        let across = unsafe { dilate_bar(down.0, Axis::Horizontal, hsize) }?;
        unsafe { dilate_bar(across.0, Axis::Vertical, vsize) }?
    };
    Some(opened.release())
}

/// How many pixels `pix` spans along `axis`.
///
/// # Safety
/// `pix` is a valid image.
unsafe fn length_along(pix: *mut PIX, axis: Axis) -> c_int {
    // SAFETY: a valid image.
    unsafe {
        match axis {
            Axis::Horizontal => capi::pixGetWidth(pix),
            Axis::Vertical => capi::pixGetHeight(pix),
        }
    }
}

/// `pixRasterop` in positions along `axis`: the band of `dst` that starts at `at` and runs
/// `len` pixels along the axis (and across the whole image), combined by `op` with `src` read
/// from position `from` on (Leptonica clips the band to both images and leaves the rest of
/// `dst` as it is).
///
/// # Safety
/// `dst` is a valid image; `src` a valid image, or null for an operation without a source.
unsafe fn raster_along(
    dst: *mut PIX,
    axis: Axis,
    at: c_int,
    len: c_int,
    op: c_int,
    src: *mut PIX,
    from: c_int,
) {
    // SAFETY: valid images; Leptonica clips the rectangle to both.
    unsafe {
        let (w, h) = (capi::pixGetWidth(dst), capi::pixGetHeight(dst));
        match axis {
            Axis::Horizontal => capi::pixRasterop(dst, at, 0, len, h, op, src, from, 0),
            Axis::Vertical => capi::pixRasterop(dst, 0, at, w, len, op, src, 0, from),
        };
    }
}

/// `src` combined (`op`: AND or OR) with itself shifted by 1, 2, 4, ... along `axis`, up to
/// `p`, the largest power of two not above `n`: each pixel then holds the AND or OR of a run
/// of `p` pixels, starting at it (AND, runs read forward) or ending at it (OR, runs read back).
/// Returns the image and `p`.
///
/// # Safety
/// `src` is a valid 1-bit image.
unsafe fn doubled(src: *mut PIX, axis: Axis, n: c_int, op: c_int) -> Option<(Owned, c_int)> {
    // SAFETY: valid images throughout; `spare` is a separate buffer, never the source itself.
    unsafe {
        let runs = Owned::new(capi::pixCopy(std::ptr::null_mut(), src))?;
        let spare = Owned::new(capi::pixCreateTemplate(src))?;
        let len = length_along(src, axis);
        let mut p = 1;
        while p <= n / 2 {
            capi::pixCopy(spare.0, runs.0);
            let shift = if op == OP_AND { -p } else { p };
            raster_along(runs.0, axis, shift, len, op, spare.0, 0);
            p *= 2;
        }
        Some((runs, p))
    }
}

/// Leptonica's `pixErode` by a bar of `n` pixels along `axis` with its origin at `n / 2`:
/// pixel `x` is on when the `n` pixels from `x - n/2` are all on, and the margins the bar does
/// not fit in (`n/2` pixels before, `n - 1 - n/2` after) are cleared.
///
/// # Safety
/// `src` is a valid 1-bit image.
unsafe fn erode_bar(src: *mut PIX, axis: Axis, n: c_int) -> Option<Owned> {
    let origin = n / 2;
    let (before, after) = (origin, n - 1 - origin);
    // SAFETY: valid images throughout.
    unsafe {
        let (runs, p) = doubled(src, axis, n, OP_AND)?;
        let out = Owned::new(capi::pixCreateTemplate(src))?;
        let len = length_along(src, axis);
        // Pixel x: the run of p from x - origin, and the run of p ending at x - origin + n - 1.
        raster_along(out.0, axis, origin, len, OP_SRC, runs.0, 0);
        if n > p {
            raster_along(out.0, axis, origin - (n - p), len, OP_AND, runs.0, 0);
        }
        let none = std::ptr::null_mut();
        if before > 0 {
            raster_along(out.0, axis, 0, before, OP_CLEAR, none, 0);
        }
        if after > 0 {
            raster_along(out.0, axis, len - after, after, OP_CLEAR, none, 0);
        }
        Some(out)
    }
}

/// Leptonica's `pixDilate` by a bar of `n` pixels along `axis` with its origin at `n / 2`:
/// pixel `x` is on when any of the `n` pixels ending at `x + n/2` is, nothing outside the
/// image being on.
///
/// # Safety
/// `src` is a valid 1-bit image.
unsafe fn dilate_bar(src: *mut PIX, axis: Axis, n: c_int) -> Option<Owned> {
    let origin = n / 2;
    // The window of pixel x reaches n - 1 - origin pixels before it and origin after it;
    // a border that wide (before: rounded up to whole 32-bit words, so that the copy into the
    // bordered image needs no shifting) holds every window inside the image.
    let before = (n - 1 - origin + 31) / 32 * 32;
    let after = origin;
    // SAFETY: valid images throughout.
    unsafe {
        let bordered = Owned::new(match axis {
            Axis::Horizontal => capi::pixAddBorderGeneral(src, before, after, 0, 0, 0),
            Axis::Vertical => capi::pixAddBorderGeneral(src, 0, 0, before, after, 0),
        })?;
        let (runs, p) = doubled(bordered.0, axis, n, OP_OR)?;
        drop(bordered);
        let out = Owned::new(capi::pixCreateTemplate(src))?;
        let len = length_along(src, axis);
        // Pixel x: the run of p ending at x + origin, and the run of p ending n - p earlier.
        let last = before + origin;
        raster_along(out.0, axis, 0, len, OP_SRC, runs.0, last);
        if n > p {
            raster_along(out.0, axis, 0, len, OP_OR, runs.0, last - (n - p));
        }
        Some(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A small xorshift generator: the same images on every run.
    struct Noise(u64);

    impl Noise {
        fn below(&mut self, n: u64) -> i32 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            (self.0 % n) as i32
        }
    }

    /// A 1-bit image of bars, blocks and specks, its padding bits set as well.
    fn scribbled(w: i32, h: i32, noise: &mut Noise) -> Owned {
        // SAFETY: a fresh image, written within its bounds.
        unsafe {
            let pix = Owned::new(capi::pixCreate(w, h, 1)).unwrap();
            capi::pixSetPadBits(pix.0, 1);
            let set = capi::PIX_SET as c_int;
            for _ in 0..(w + h) / 4 + 3 {
                let (x, y) = (noise.below(w as u64), noise.below(h as u64));
                let (bw, bh) = match noise.below(4) {
                    0 => (noise.below(w as u64 + 10) + 1, noise.below(3) + 1),
                    1 => (noise.below(3) + 1, noise.below(h as u64 + 10) + 1),
                    2 => (noise.below(40) + 1, noise.below(40) + 1),
                    _ => (1, 1),
                };
                capi::pixRasterop(pix.0, x, y, bw, bh, set, std::ptr::null_mut(), 0, 0);
            }
            pix
        }
    }

    /// Leptonica's opening and this module's, compared word for word (padding included).
    fn assert_same_opening(pix: &Owned, hsize: c_int, vsize: c_int) {
        let real = leptonica_open_brick().expect("Leptonica's pixOpenBrick");
        // SAFETY: valid images; results are owned here.
        unsafe {
            let theirs = Owned::new(real(std::ptr::null_mut(), pix.0, hsize, vsize)).unwrap();
            let ours = Owned::new(open_brick(pix.0, hsize, vsize).unwrap()).unwrap();
            let (w, h) = (capi::pixGetWidth(pix.0), capi::pixGetHeight(pix.0));
            assert_eq!(capi::pixGetWidth(ours.0), w);
            assert_eq!(capi::pixGetHeight(ours.0), h);
            assert_eq!(capi::pixGetDepth(ours.0), 1);
            let words = (capi::pixGetWpl(pix.0) * h) as usize;
            let theirs = std::slice::from_raw_parts(capi::pixGetData(theirs.0), words);
            let ours = std::slice::from_raw_parts(capi::pixGetData(ours.0), words);
            assert!(
                theirs == ours,
                "{w}x{h} image opened by a {hsize}x{vsize} brick differs from Leptonica's"
            );
        }
    }

    #[test]
    fn openings_are_leptonicas_bit_for_bit() {
        let mut noise = Noise(0x9e37_79b9_7f4a_7c15);
        let sizes = [
            (1, 1),
            (5, 3),
            (31, 17),
            (32, 32),
            (33, 40),
            (97, 61),
            (200, 150),
            (257, 90),
        ];
        let bricks = [
            (1, 2),
            (2, 1),
            (3, 1),
            (1, 3),
            (2, 2),
            (5, 5),
            (7, 4),
            (4, 7),
            (15, 15),
            (16, 1),
            (1, 16),
            (33, 1),
            (64, 1),
            (1, 64),
            (65, 1),
            (1, 75),
            (75, 1),
            (100, 3),
            (3, 100),
            (300, 1),
        ];
        for (w, h) in sizes {
            for _ in 0..3 {
                let pix = scribbled(w, h, &mut noise);
                for (hsize, vsize) in bricks {
                    assert_same_opening(&pix, hsize, vsize);
                }
            }
        }
    }

    #[test]
    fn the_longest_bar_a_call_can_ask_for_doubles_without_overflow() {
        let pix = scribbled(40, 8, &mut Noise(3));
        // SAFETY: a valid 1-bit image; the result is owned here.
        let (_, p) = unsafe { doubled(pix.0, Axis::Horizontal, c_int::MAX, OP_AND) }.unwrap();
        assert_eq!(p, 1 << 30);
    }

    #[test]
    fn calls_it_does_not_take_on_go_to_leptonica() {
        let mut noise = Noise(7);
        let pix = scribbled(64, 48, &mut noise);
        // SAFETY: valid images; results are owned here.
        unsafe {
            // 1x1 is a copy; an existing destination is Leptonica's to fill.
            let copy = Owned::new(pixOpenBrick(std::ptr::null_mut(), pix.0, 1, 1)).unwrap();
            let mut same = 0;
            capi::pixEqual(copy.0, pix.0, &mut same);
            assert_eq!(same, 1);
            let dest = Owned::new(capi::pixCreateTemplate(pix.0)).unwrap();
            assert_eq!(pixOpenBrick(dest.0, pix.0, 9, 1), dest.0);
            let alone = Owned::new(open_brick(pix.0, 9, 1).unwrap()).unwrap();
            capi::pixEqual(dest.0, alone.0, &mut same);
            assert_eq!(same, 1);
            // A brick of no size is refused, as by Leptonica.
            assert!(pixOpenBrick(std::ptr::null_mut(), pix.0, 0, 3).is_null());
        }
    }
}
