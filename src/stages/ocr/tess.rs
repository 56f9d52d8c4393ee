//! A small safe wrapper over Tesseract's C API (through leptess's `capi`).
//!
//! leptess's high-level `TessApi` hides the handle, and pagemill needs calls it does not wrap:
//! the page segmentation mode, raw-pixel input and orientation detection; and one it cannot
//! reach at all, a linear read-out of the results (`read_page.cpp`, compiled by `build.rs`,
//! because Tesseract's left-to-right iterator is C++ only). All `unsafe` of the OCR stage
//! lives in this file.

use std::ffi::{CStr, CString, c_char, c_int, c_void};
use std::ptr;

use leptess::capi;

use super::PagePixels;
use crate::model::page::WordRecord;
use crate::runtime::line_images;

type WordCallback =
    unsafe extern "C" fn(*mut c_void, c_int, c_int, c_int, c_int, f32, *const c_char);
type TextCallback = unsafe extern "C" fn(*mut c_void, *const c_char, usize);

unsafe extern "C" {
    /// `read_page.cpp`: 1 when read, 0 when the page needs right-to-left reading order, -1
    /// when nothing was recognized.
    fn pagemill_read_page(
        api: *mut c_void,
        context: *mut c_void,
        on_word: WordCallback,
        on_text: TextCallback,
    ) -> c_int;
}

/// One Tesseract engine. `Send` (it moves to the pool thread that owns it), not `Sync`.
pub struct Tesseract {
    handle: *mut capi::TessBaseAPI,
}

// The handle is used by one thread at a time; Tesseract engines are not shared.
unsafe impl Send for Tesseract {}

/// The orientation Tesseract's OSD model sees on a page.
#[derive(Debug, Clone, Copy)]
pub struct Orientation {
    /// Clockwise rotation, in degrees, that turns the page upright (0, 90, 180 or 270).
    pub rotate_clockwise: u32,
    pub confidence: f32,
}

#[derive(Debug, thiserror::Error)]
pub enum TessError {
    #[error("Tesseract could not load language {0:?} (is its traineddata installed?)")]
    Init(String),
    #[error("Tesseract could not recognize the page")]
    Recognize,
    #[error("the page image is empty or too large for Tesseract")]
    BadImage,
    #[error("recognition ran out of time")]
    Timeout,
}

impl Tesseract {
    /// Loads `languages` (e.g. "deu+eng") with the LSTM engine, from the default tessdata.
    pub fn new(languages: &str) -> Result<Tesseract, TessError> {
        Self::with_init_variables(languages, &[])
    }

    /// Loads `languages` with parameters that only take effect while a model loads (such as
    /// `load_system_dawg`), each a name and a value.
    pub fn with_init_variables(
        languages: &str,
        variables: &[(&str, &str)],
    ) -> Result<Tesseract, TessError> {
        Self::with_engine_mode(languages, capi::TessOcrEngineMode_OEM_DEFAULT, variables)
    }

    /// Loads the orientation and script detection model.
    pub fn new_osd() -> Result<Tesseract, TessError> {
        Self::with_engine_mode("osd", capi::TessOcrEngineMode_OEM_TESSERACT_ONLY, &[])
    }

    fn with_engine_mode(
        languages: &str,
        mode: capi::TessOcrEngineMode,
        variables: &[(&str, &str)],
    ) -> Result<Tesseract, TessError> {
        let init_error = || TessError::Init(languages.into());
        let lang = CString::new(languages).map_err(|_| init_error())?;
        let c_strings = |i: usize| -> Result<Vec<CString>, TessError> {
            variables
                .iter()
                .map(|v| CString::new(if i == 0 { v.0 } else { v.1 }).map_err(|_| init_error()))
                .collect()
        };
        let (names, values) = (c_strings(0)?, c_strings(1)?);
        let mut name_ptrs: Vec<*mut c_char> = names.iter().map(|n| n.as_ptr().cast_mut()).collect();
        let mut value_ptrs: Vec<*mut c_char> =
            values.iter().map(|v| v.as_ptr().cast_mut()).collect();
        // SAFETY: create returns a fresh handle that we own; Init4 reads the C strings (which
        // outlive the call) only during the call and writes through none of the pointers.
        unsafe {
            let handle = capi::TessBaseAPICreate();
            if handle.is_null() {
                return Err(init_error());
            }
            let engine = Tesseract { handle };
            let rc = capi::TessBaseAPIInit4(
                handle,
                ptr::null(),
                lang.as_ptr(),
                mode,
                ptr::null_mut(),
                0,
                name_ptrs.as_mut_ptr(),
                value_ptrs.as_mut_ptr(),
                name_ptrs.len(),
                0,
            );
            if rc != 0 {
                return Err(init_error());
            }
            let mut engine = engine;
            // Tesseract prints per-page diagnostics ("Detected 451 diacritics", "Invalid
            // resolution 0 dpi" from orientation detection) to stderr; failures reach us
            // through return codes, so its chatter goes nowhere.
            engine.set_variable("debug_file", "/dev/null");
            Ok(engine)
        }
    }

    /// Sets a Tesseract parameter; returns false if Tesseract does not know it.
    pub fn set_variable(&mut self, name: &str, value: &str) -> bool {
        let (Ok(name), Ok(value)) = (CString::new(name), CString::new(value)) else {
            return false;
        };
        // SAFETY: valid handle and NUL-terminated strings alive for the call.
        unsafe { capi::TessBaseAPISetVariable(self.handle, name.as_ptr(), value.as_ptr()) != 0 }
    }

    pub fn set_page_segmentation_mode(&mut self, mode: u32) {
        // SAFETY: valid handle; Tesseract range-checks nothing, the config validates 0..=13.
        unsafe { capi::TessBaseAPISetPageSegMode(self.handle, mode as capi::TessPageSegMode) }
    }

    /// Gives Tesseract a page (8-bit gray or 24-bit colour) and its resolution. Tesseract
    /// copies the pixels.
    pub fn set_image(&mut self, page: &PagePixels, dpi: u32) -> Result<(), TessError> {
        let (width, height) = page.dimensions();
        let (pixels, bytes_per_pixel) = match page {
            PagePixels::Gray(g) => (g.as_raw().as_slice(), 1),
            PagePixels::Rgb(c) => (c.as_raw().as_slice(), 3),
        };
        let (w, h) = (width as usize, height as usize);
        if w == 0
            || h == 0
            || pixels.len() < w * h * bytes_per_pixel
            || width.saturating_mul(bytes_per_pixel as u32) > i32::MAX as u32
            || height > i32::MAX as u32
        {
            return Err(TessError::BadImage);
        }
        // SAFETY: the buffer holds height rows of width*bytes_per_pixel bytes (checked above);
        // SetImage copies it.
        unsafe {
            capi::TessBaseAPISetImage(
                self.handle,
                pixels.as_ptr(),
                width as i32,
                height as i32,
                bytes_per_pixel as i32,
                (width as usize * bytes_per_pixel) as i32,
            );
            capi::TessBaseAPISetSourceResolution(self.handle, dpi as i32);
        }
        // Orientation detection reads the resolution from this parameter, not from the image.
        self.set_variable("user_defined_dpi", &dpi.to_string());
        Ok(())
    }

    /// Recognizes the current image, giving up after `limit` through Tesseract's own
    /// progress monitor (checked between words): the thread comes back, the page fails.
    pub fn recognize_within(&mut self, limit: std::time::Duration) -> Result<(), TessError> {
        let started = std::time::Instant::now();
        let limit_ms = limit.as_millis().clamp(1, i32::MAX as u128) as i32;
        // SAFETY: the monitor is created, used for this one call and deleted; the handle is
        // valid with an image set.
        let rc = unsafe {
            let monitor = capi::TessMonitorCreate();
            if monitor.is_null() {
                return Err(TessError::Recognize);
            }
            capi::TessMonitorSetDeadlineMSecs(monitor, limit_ms);
            // Line images stay raw pixels within the call (`runtime::line_images`).
            let recognizing = line_images::Recognizing::begin();
            let rc = capi::TessBaseAPIRecognize(self.handle, monitor);
            drop(recognizing);
            capi::TessMonitorDelete(monitor);
            rc
        };
        if started.elapsed() >= limit {
            Err(TessError::Timeout)
        } else if rc == 0 {
            Ok(())
        } else {
            Err(TessError::Recognize)
        }
    }

    pub fn utf8_text(&mut self) -> String {
        // SAFETY: Tesseract returns an owned C string (or null) freed with TessDeleteText.
        unsafe { take_text(capi::TessBaseAPIGetUTF8Text(self.handle)) }
    }

    /// The recognized page's text and words in one left-to-right pass (`read_page.cpp`): the
    /// same text as [`Self::utf8_text`] and the same words as the TSV's word rows, in linear time
    /// where Tesseract's own outputs take time quadratic in the words of the page. `None` when a
    /// word on the page is right-to-left or mixed: reading order then needs Tesseract's outputs.
    pub fn read_page(&mut self) -> Option<(String, Vec<WordRecord>)> {
        struct Collected {
            text: String,
            words: Vec<WordRecord>,
        }
        unsafe extern "C" fn on_word(
            context: *mut c_void,
            left: c_int,
            top: c_int,
            right: c_int,
            bottom: c_int,
            confidence: f32,
            text: *const c_char,
        ) {
            // SAFETY: `context` is the `Collected` below, alive and not otherwise borrowed
            // during the call; `text` is a NUL-terminated string Tesseract owns for the call.
            let (collected, text) =
                unsafe { (&mut *context.cast::<Collected>(), CStr::from_ptr(text)) };
            let text = text.to_string_lossy();
            let text = text.trim();
            if text.is_empty() {
                return;
            }
            let at_least_zero = |v: c_int| v.max(0) as u32;
            collected.words.push(WordRecord {
                text: text.to_string(),
                confidence: confidence.max(0.0),
                bbox: [left, top, right, bottom].map(at_least_zero),
            });
        }
        unsafe extern "C" fn on_text(context: *mut c_void, text: *const c_char, length: usize) {
            // SAFETY: as in on_word; `text` points at `length` bytes.
            unsafe {
                let bytes = std::slice::from_raw_parts(text.cast::<u8>(), length);
                (*context.cast::<Collected>()).text = String::from_utf8_lossy(bytes).into_owned();
            }
        }
        let mut collected = Collected {
            text: String::new(),
            words: Vec::new(),
        };
        // SAFETY: valid handle after recognition (the C++ side casts it to the TessBaseAPI it
        // is); the callbacks match the C++ signatures and `collected` outlives the call.
        let rc = unsafe {
            pagemill_read_page(
                self.handle.cast(),
                (&mut collected as *mut Collected).cast(),
                on_word,
                on_text,
            )
        };
        (rc == 1).then_some((collected.text, collected.words))
    }

    /// Tesseract's TSV output: one row per page, block, paragraph, line and word.
    pub fn tsv_text(&mut self) -> String {
        // SAFETY: as for utf8_text.
        unsafe { take_text(capi::TessBaseAPIGetTsvText(self.handle, 0)) }
    }

    /// The recognized page as an hOCR `ocr_page` element; ids carry `page_number` (0-based).
    pub fn hocr_text(&mut self, page_number: u32) -> String {
        // SAFETY: as for utf8_text.
        unsafe {
            take_text(capi::TessBaseAPIGetHOCRText(
                self.handle,
                page_number as i32,
            ))
        }
    }

    /// The recognized page as an ALTO `Page` element.
    pub fn alto_text(&mut self, page_number: u32) -> String {
        // SAFETY: as for utf8_text.
        unsafe {
            take_text(capi::TessBaseAPIGetAltoText(
                self.handle,
                page_number as i32,
            ))
        }
    }

    pub fn mean_confidence(&mut self) -> i32 {
        // SAFETY: valid handle after recognition.
        unsafe { capi::TessBaseAPIMeanTextConf(self.handle) }
    }

    /// Runs orientation detection on the current image (needs an engine from [`Self::new_osd`]).
    pub fn detect_orientation(&mut self) -> Option<Orientation> {
        let mut degrees = 0;
        let mut confidence = 0f32;
        let mut script: *const c_char = ptr::null();
        let mut script_confidence = 0f32;
        // SAFETY: valid handle, all out-pointers point at live locals; the script name is owned
        // by Tesseract and not read here.
        let ok = unsafe {
            capi::TessBaseAPIDetectOrientationScript(
                self.handle,
                &mut degrees,
                &mut confidence,
                &mut script,
                &mut script_confidence,
            )
        };
        (ok != 0).then(|| Orientation {
            // Tesseract reports how far the page is turned clockwise; turning it upright
            // takes the rest of the circle.
            rotate_clockwise: ((360 - degrees.rem_euclid(360)) % 360) as u32,
            confidence,
        })
    }

    /// Frees the image and results of the last page, keeping the loaded model.
    pub fn clear(&mut self) {
        // SAFETY: valid handle.
        unsafe { capi::TessBaseAPIClear(self.handle) }
    }
}

impl Drop for Tesseract {
    fn drop(&mut self) {
        // SAFETY: the handle is ours and not used after this.
        unsafe {
            capi::TessBaseAPIEnd(self.handle);
            capi::TessBaseAPIDelete(self.handle);
        }
    }
}

/// Copies and frees a C string returned by Tesseract.
unsafe fn take_text(raw: *mut c_char) -> String {
    if raw.is_null() {
        return String::new();
    }
    // SAFETY: Tesseract returned a NUL-terminated string that we own.
    unsafe {
        let text = CStr::from_ptr(raw).to_string_lossy().into_owned();
        capi::TessDeleteText(raw);
        text
    }
}
