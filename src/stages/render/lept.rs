//! A small safe wrapper over the Leptonica image operations preprocessing uses (through
//! leptess's `capi`, the same library Tesseract links). All `unsafe` of preprocessing lives in
//! this file: an owned [`Pix`] is destroyed exactly once, and every call checks for null.

use image::{GrayImage, RgbImage};
use leptess::capi;

use crate::model::page::{PagePixels, luminance};

/// An owned Leptonica image.
pub struct Pix {
    raw: *mut capi::PIX,
}

// A Pix is plain memory owned by one value; Leptonica keeps no thread-local state for it.
unsafe impl Send for Pix {}

impl Drop for Pix {
    fn drop(&mut self) {
        // SAFETY: `raw` is non-null and owned by this value.
        unsafe { capi::pixDestroy(&mut self.raw) }
    }
}

/// Leptonica returned no image: out of memory or an argument it refused.
#[derive(Debug, thiserror::Error)]
#[error("Leptonica could not {0}")]
pub struct LeptError(&'static str);

impl Pix {
    fn own(raw: *mut capi::PIX, what: &'static str) -> Result<Pix, LeptError> {
        if raw.is_null() {
            Err(LeptError(what))
        } else {
            Ok(Pix { raw })
        }
    }

    /// Copies page pixels into a Leptonica image (8 bits gray, or 32 bits colour).
    pub fn from_pixels(pixels: &PagePixels) -> Result<Pix, LeptError> {
        match pixels {
            PagePixels::Gray(g) => Pix::from_gray(g),
            PagePixels::Rgb(c) => Pix::from_rgb(c),
        }
    }

    /// Copies the image back out: colour stays colour, anything else becomes 8-bit gray.
    pub fn to_pixels(&self) -> Result<PagePixels, LeptError> {
        if self.depth() == 32 {
            Ok(PagePixels::Rgb(self.to_rgb()))
        } else {
            self.to_gray().map(PagePixels::Gray)
        }
    }

    /// Copies an RGB image into Leptonica's 32-bit layout (red in the most significant byte).
    fn from_rgb(rgb: &RgbImage) -> Result<Pix, LeptError> {
        Pix::filled_row_by_row(rgb.width(), rgb.height(), 32, rgb.as_raw(), |row, words| {
            for (word, px) in words.iter_mut().zip(row.chunks_exact(3)) {
                *word = u32::from_be_bytes([px[0], px[1], px[2], 255]);
            }
        })
    }

    /// A new `width` x `height` image of `depth` bits per pixel, each row of words written by
    /// `fill` from the matching row of `samples` (rows packed, `samples.len() / height` bytes
    /// each).
    fn filled_row_by_row(
        width: u32,
        height: u32,
        depth: i32,
        samples: &[u8],
        fill: impl Fn(&[u8], &mut [u32]),
    ) -> Result<Pix, LeptError> {
        let h = height as usize;
        // SAFETY: pixCreate allocates h rows of wpl words, zeroed; `fill` writes within one
        // row's words at a time.
        unsafe {
            let pix = Pix::own(
                capi::pixCreate(width as i32, height as i32, depth),
                "allocate an image",
            )?;
            // pixCreate refuses an empty image, so h, the row length and wpl are not 0 here.
            let wpl = capi::pixGetWpl(pix.raw) as usize;
            let data = std::slice::from_raw_parts_mut(capi::pixGetData(pix.raw), wpl * h);
            let row_bytes = samples.len() / h;
            for (row, words) in samples
                .chunks_exact(row_bytes)
                .zip(data.chunks_exact_mut(wpl))
            {
                fill(row, words);
            }
            Ok(pix)
        }
    }

    fn to_rgb(&self) -> RgbImage {
        let (w, h) = (self.width() as usize, self.height() as usize);
        // SAFETY: a 32-bit pix holds h rows of wpl (>= w) words.
        unsafe {
            let wpl = capi::pixGetWpl(self.raw) as usize;
            let data = std::slice::from_raw_parts(capi::pixGetData(self.raw), wpl * h);
            let mut out = Vec::with_capacity(3 * w * h);
            for words in data.chunks_exact(wpl) {
                for word in &words[..w] {
                    out.extend_from_slice(&word.to_be_bytes()[..3]);
                }
            }
            RgbImage::from_raw(w as u32, h as u32, out).expect("3*w*h bytes")
        }
    }

    /// Copies an 8-bit grayscale image into Leptonica's layout (32-bit words, first pixel in
    /// the most significant byte).
    pub fn from_gray(gray: &GrayImage) -> Result<Pix, LeptError> {
        Pix::filled_row_by_row(
            gray.width(),
            gray.height(),
            8,
            gray.as_raw(),
            |row, words| {
                for (word, px) in words.iter_mut().zip(row.chunks(4)) {
                    let mut bytes = [0u8; 4];
                    bytes[..px.len()].copy_from_slice(px);
                    *word = u32::from_be_bytes(bytes);
                }
            },
        )
    }

    /// A 1-bit image of `gray` made in one pass, without an 8-bit copy first: pixels darker
    /// than `threshold` become foreground (as [`Pix::threshold`] decides).
    pub fn threshold_gray(gray: &GrayImage, threshold: u8) -> Result<Pix, LeptError> {
        Pix::filled_row_by_row(
            gray.width(),
            gray.height(),
            1,
            gray.as_raw(),
            |row, words| {
                for (word, px) in words.iter_mut().zip(row.chunks(32)) {
                    // The first pixel is the most significant bit.
                    *word = px
                        .iter()
                        .enumerate()
                        .filter(|&(_, &p)| p < threshold)
                        .fold(0u32, |bits, (i, _)| bits | (1 << (31 - i)));
                }
            },
        )
    }

    /// [`Pix::threshold_gray`] for gray or colour pages, colour seen as Tesseract's gray.
    pub fn threshold_pixels(pixels: &PagePixels, threshold: u8) -> Result<Pix, LeptError> {
        match pixels {
            PagePixels::Gray(gray) => Pix::threshold_gray(gray, threshold),
            PagePixels::Rgb(rgb) => {
                Pix::filled_row_by_row(rgb.width(), rgb.height(), 1, rgb.as_raw(), |row, words| {
                    for (word, px) in words.iter_mut().zip(row.chunks(96)) {
                        *word = px
                            .chunks_exact(3)
                            .enumerate()
                            .filter(|&(_, p)| luminance([p[0], p[1], p[2]]) < threshold)
                            .fold(0u32, |bits, (i, _)| bits | (1 << (31 - i)));
                    }
                })
            }
        }
    }

    /// An 8-bit gray copy: colour weighted as Tesseract weighs it, gray as it is.
    pub fn to_gray_pix(&self) -> Result<Pix, LeptError> {
        match self.depth() {
            // SAFETY: valid 32-bit pix; new image owned by the result.
            32 => Pix::own(
                unsafe { capi::pixConvertRGBToGray(self.raw, 0.3, 0.5, 0.2) },
                "convert to gray",
            ),
            // SAFETY: valid pix; pixConvertTo8 returns a new image we own.
            _ => Pix::own(
                unsafe { capi::pixConvertTo8(self.raw, 0) },
                "convert to gray",
            ),
        }
    }

    /// An 8-bit gray image with its background (paper, however unevenly lit or tinted)
    /// brought to one level, 200, so that one threshold separates ink from paper everywhere.
    pub fn background_normalized(&self) -> Result<Pix, LeptError> {
        // SAFETY: valid 8-bit pix; no mask or gray map given; new image owned by the result.
        Pix::own(
            unsafe {
                capi::pixBackgroundNormSimple(self.raw, std::ptr::null_mut(), std::ptr::null_mut())
            },
            "normalize the background",
        )
    }

    /// How many pixels of this 8-bit image have each gray level, counting every
    /// `subsampling`-th pixel of every `subsampling`-th row (1 counts them all).
    pub fn gray_histogram(&self, subsampling: u32) -> Result<[u64; 256], LeptError> {
        // SAFETY: valid 8-bit pix; the numa is ours and destroyed below, read through an
        // out-pointer to a live local.
        unsafe {
            let mut numa = capi::pixGetGrayHistogram(self.raw, subsampling.max(1) as i32);
            if numa.is_null() {
                return Err(LeptError("count gray levels"));
            }
            let mut counts = [0u64; 256];
            let levels = capi::numaGetCount(numa).clamp(0, 256) as usize;
            for (level, count) in counts.iter_mut().enumerate().take(levels) {
                let mut value = 0;
                capi::numaGetIValue(numa, level as i32, &mut value);
                *count = value.max(0) as u64;
            }
            capi::numaDestroy(&mut numa);
            Ok(counts)
        }
    }

    /// The bounding boxes (`x, y, width, height`) of the 8-connected foreground components
    /// of a 1-bit image.
    pub fn component_boxes(&self) -> Result<Vec<[u32; 4]>, LeptError> {
        // SAFETY: valid 1-bit pix; a null pixa asks for boxes only; the boxa is ours and
        // destroyed below, each box read through out-pointers to live locals.
        unsafe {
            let mut boxa = capi::pixConnCompBB(self.raw, 8);
            if boxa.is_null() {
                return Err(LeptError("find connected components"));
            }
            let count = capi::boxaGetCount(boxa).max(0);
            let mut boxes = Vec::with_capacity(count as usize);
            for i in 0..count {
                let (mut x, mut y, mut w, mut h) = (0, 0, 0, 0);
                if capi::boxaGetBoxGeometry(boxa, i, &mut x, &mut y, &mut w, &mut h) == 0 {
                    boxes.push([x, y, w, h].map(|v| v.max(0) as u32));
                }
            }
            capi::boxaDestroy(&mut boxa);
            Ok(boxes)
        }
    }

    /// Half the size of this 1-bit image, a pixel set where any of its four was.
    pub fn reduced_binary_2x(&self) -> Result<Pix, LeptError> {
        // SAFETY: valid 1-bit pix; level 1 needs no table; new image owned by the result.
        Pix::own(
            unsafe { capi::pixReduceRankBinary2(self.raw, 1, std::ptr::null_mut()) },
            "reduce the image",
        )
    }

    /// Which way up the print on this 1-bit image stands, from the ascenders and descenders
    /// of its letters (Leptonica's `pixOrientDetect` and `makeOrientDecision` with their
    /// default thresholds): `Some(true)` upright, `Some(false)` turned by 90, 180 or 270
    /// degrees, `None` when the evidence is too weak to say.
    pub fn upright_text(&self) -> Result<Option<bool>, LeptError> {
        let (mut up, mut left) = (0f32, 0f32);
        let mut orientation = 0;
        // SAFETY: valid 1-bit pix; out-pointers to live locals; 0 selects the defaults.
        unsafe {
            if capi::pixOrientDetect(self.raw, &mut up, &mut left, 0, 0) != 0
                || capi::makeOrientDecision(up, left, 0.0, 0.0, &mut orientation, 0) != 0
            {
                return Err(LeptError("detect the text orientation"));
            }
        }
        Ok(match orientation as u32 {
            capi::L_TEXT_ORIENT_UP => Some(true),
            capi::L_TEXT_ORIENT_LEFT | capi::L_TEXT_ORIENT_DOWN | capi::L_TEXT_ORIENT_RIGHT => {
                Some(false)
            }
            _ => None,
        })
    }

    /// Copies the image back out as 8-bit grayscale, converting from 1 bit if need be.
    pub fn to_gray(&self) -> Result<GrayImage, LeptError> {
        let eight = if self.depth() == 8 {
            None
        } else {
            // SAFETY: valid pix; the result is a new image we own.
            Some(Pix::own(
                unsafe { capi::pixConvertTo8(self.raw, 0) },
                "convert to 8 bits",
            )?)
        };
        let pix = eight.as_ref().unwrap_or(self);
        let (w, h) = (pix.width() as usize, pix.height() as usize);
        // SAFETY: an 8-bit pix holds h rows of wpl words.
        unsafe {
            let wpl = capi::pixGetWpl(pix.raw) as usize;
            let data = std::slice::from_raw_parts(capi::pixGetData(pix.raw), wpl * h);
            let mut out = Vec::with_capacity(w * h);
            for words in data.chunks_exact(wpl) {
                let row = words.iter().flat_map(|word| word.to_be_bytes());
                out.extend(row.take(w));
            }
            Ok(GrayImage::from_raw(w as u32, h as u32, out).expect("w*h bytes"))
        }
    }

    pub fn width(&self) -> u32 {
        // SAFETY: valid pix.
        unsafe { capi::pixGetWidth(self.raw) as u32 }
    }

    pub fn height(&self) -> u32 {
        // SAFETY: valid pix.
        unsafe { capi::pixGetHeight(self.raw) as u32 }
    }

    fn depth(&self) -> i32 {
        // SAFETY: valid pix.
        unsafe { capi::pixGetDepth(self.raw) }
    }

    /// 1-bit image: pixels darker than `threshold` become foreground.
    pub fn threshold(&self, threshold: i32) -> Result<Pix, LeptError> {
        // SAFETY: valid pix; new image owned by the result.
        Pix::own(
            unsafe { capi::pixConvertTo1(self.raw, threshold) },
            "binarize",
        )
    }

    /// Skew of the text lines within ±7° (Leptonica's default search): the angle for
    /// [`Pix::rotate`] and the confidence.
    pub fn find_skew(&self) -> Option<(f32, f32)> {
        let (mut angle, mut confidence) = (0f32, 0f32);
        // SAFETY: valid 1-bit pix, out-pointers to live locals.
        let rc = unsafe { capi::pixFindSkew(self.raw, &mut angle, &mut confidence) };
        (rc == 0).then_some((angle, confidence))
    }

    /// Rotates clockwise by `degrees` about the centre onto a canvas large enough for the
    /// whole rotated page, filling with white (Leptonica's own deskew does the same).
    pub fn rotate(&self, degrees: f32) -> Result<Pix, LeptError> {
        // SAFETY: valid pix; new image owned by the result.
        Pix::own(
            unsafe {
                capi::pixRotate(
                    self.raw,
                    degrees.to_radians(),
                    capi::L_ROTATE_AREA_MAP as i32,
                    capi::L_BRING_IN_WHITE as i32,
                    self.width() as i32,
                    self.height() as i32,
                )
            },
            "rotate",
        )
    }

    /// Scales a gray or colour image by `factor` (linear interpolation when enlarging).
    pub fn scale(&self, factor: f32) -> Result<Pix, LeptError> {
        // SAFETY: valid pix; new image owned by the result.
        Pix::own(unsafe { capi::pixScale(self.raw, factor, factor) }, "scale")
    }

    /// Stretches local contrast so faded text becomes dark on a white background.
    pub fn normalize_contrast(&self) -> Result<Pix, LeptError> {
        // SAFETY: valid 8-bit pix; null pixd asks for a new image. Tiles of 100 px, a minimum
        // spread of 50 gray levels before a tile is stretched, and 2-tile smoothing.
        Pix::own(
            unsafe { capi::pixContrastNorm(std::ptr::null_mut(), self.raw, 100, 100, 50, 2, 2) },
            "normalize contrast",
        )
    }

    /// 3x3 mean filter: softens the stair-stepped edges of a black-and-white scan into the
    /// gray edges of the anti-aliased text Tesseract's models were trained on.
    pub fn mean_3x3(&self) -> Result<Pix, LeptError> {
        // SAFETY: valid 8-bit pix; new image owned by the result. A half-width of 1 in both
        // directions is a 3x3 block; Leptonica mirrors the page at its edges.
        Pix::own(
            unsafe { capi::pixBlockconv(self.raw, 1, 1) },
            "smooth edges",
        )
    }

    /// 3x3 median filter: removes salt-and-pepper noise, keeps strokes.
    pub fn median(&self) -> Result<Pix, LeptError> {
        // SAFETY: valid 8-bit pix; new image owned by the result.
        Pix::own(
            unsafe { capi::pixRankFilterGray(self.raw, 3, 3, 0.5) },
            "filter noise",
        )
    }

    /// Sauvola's adaptive threshold (window 2*25+1 px, factor 0.35), as 1-bit.
    pub fn sauvola(&self) -> Result<Pix, LeptError> {
        let mut out: *mut capi::PIX = std::ptr::null_mut();
        // SAFETY: valid 8-bit pix; on success `out` is a new image we own. A 1x1 tiling is the
        // whole page at once.
        let rc = unsafe {
            capi::pixSauvolaBinarizeTiled(self.raw, 25, 0.35, 1, 1, std::ptr::null_mut(), &mut out)
        };
        if rc != 0 {
            return Err(LeptError("binarize (Sauvola)"));
        }
        Pix::own(out, "binarize (Sauvola)")
    }

    /// The foreground of a 1-bit image that touches the image border (dark scanner edges).
    pub fn border_components(&self) -> Result<Pix, LeptError> {
        // SAFETY: valid 1-bit pix; both results are new images we own.
        unsafe {
            let inner = Pix::own(
                capi::pixRemoveBorderConnComps(self.raw, 8),
                "find border components",
            )?;
            Pix::own(
                capi::pixXor(std::ptr::null_mut(), self.raw, inner.raw),
                "find border components",
            )
        }
    }

    /// Paints the pixels of this 8-bit image white wherever the 1-bit `mask` is set.
    pub fn whiten_where(&mut self, mask: &Pix) -> Result<(), LeptError> {
        // SAFETY: valid pixes of the same size; modifies self in place.
        let rc = unsafe { capi::pixSetMasked(self.raw, mask.raw, 0xffffffff) };
        if rc == 0 {
            Ok(())
        } else {
            Err(LeptError("whiten the border"))
        }
    }

    /// Fraction of pixels set in a 1-bit image.
    pub fn foreground_fraction(&self) -> f32 {
        let mut count = 0;
        // SAFETY: valid 1-bit pix; null table lets Leptonica build its own.
        unsafe { capi::pixCountPixels(self.raw, &mut count, std::ptr::null_mut()) };
        count as f32 / (self.width() as f32 * self.height() as f32).max(1.0)
    }
}

/// Sends Leptonica's messages ("Info in makeOrientDecision: ...", "Error in ...") to the log
/// (target `leptonica`: errors and warnings as warnings, the rest at debug level) instead of
/// stderr, where they would break the log's format (one JSON object per line).
pub fn send_messages_to_the_log() {
    unsafe extern "C" fn to_the_log(message: *const std::ffi::c_char) {
        if message.is_null() {
            return;
        }
        // SAFETY: Leptonica passes a NUL-terminated message, alive for the call.
        let message = unsafe { std::ffi::CStr::from_ptr(message) }.to_string_lossy();
        let message = message.trim_end();
        if message.starts_with("Error") || message.starts_with("Warning") {
            tracing::warn!(target: "leptonica", "{message}");
        } else {
            tracing::debug!(target: "leptonica", "{message}");
        }
    }
    // SAFETY: the handler is a plain function that lives as long as the process.
    unsafe { capi::leptSetStderrHandler(Some(to_the_log)) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gray_pixels_survive_the_round_trip() {
        let gray = GrayImage::from_fn(13, 5, |x, y| image::Luma([(x * 17 + y * 31) as u8]));
        let back = Pix::from_gray(&gray).unwrap().to_gray().unwrap();
        assert_eq!(back, gray);
    }

    #[test]
    fn colour_pixels_survive_the_round_trip() {
        let rgb = RgbImage::from_fn(7, 3, |x, y| image::Rgb([x as u8 * 30, y as u8 * 70, 200]));
        let pixels = PagePixels::Rgb(rgb);
        let back = Pix::from_pixels(&pixels).unwrap().to_pixels().unwrap();
        assert_eq!(back, pixels);
    }

    #[test]
    fn thresholding_in_one_pass_matches_leptonica() {
        let gray = GrayImage::from_fn(77, 13, |x, y| {
            image::Luma([((x * 37 + y * 91) % 256) as u8])
        });
        let ours = Pix::threshold_gray(&gray, 160).unwrap().to_gray().unwrap();
        let theirs = Pix::from_gray(&gray)
            .unwrap()
            .threshold(160)
            .unwrap()
            .to_gray()
            .unwrap();
        assert_eq!(ours, theirs);
    }

    #[test]
    fn a_one_bit_image_comes_back_black_on_white() {
        let mut gray = GrayImage::from_pixel(20, 10, image::Luma([255]));
        gray.put_pixel(3, 4, image::Luma([0]));
        let back = Pix::from_gray(&gray)
            .unwrap()
            .threshold(128)
            .unwrap()
            .to_gray()
            .unwrap();
        assert_eq!(back, gray);
    }
}
