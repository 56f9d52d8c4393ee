//! What pagemill serves Tesseract in place of its libraries, in the test binary and in the
//! `pagemill` executable: the serial OpenMP runtime (`src/runtime/openmp.rs`), of which
//! Tesseract needs nothing more, the storage of its line images
//! (`src/runtime/line_images.rs`) and the brick opening of its line finder
//! (`src/runtime/brick_opening.rs`).

use crate::common;

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::process::Command;

use common::*;
use pagemill::model::page::{PageImage, PagePixels};
use pagemill::runtime::{brick_opening, line_images, openmp};
use pagemill::stages::ocr::{Engines, ocr_page};

/// Symbols of `file`'s dynamic symbol table, undefined ones or defined ones, without versions.
fn dynamic_symbols(file: &std::path::Path, undefined: bool) -> BTreeSet<String> {
    let flag = if undefined {
        "--undefined-only"
    } else {
        "--defined-only"
    };
    let out = Command::new("nm")
        .args(["-D", flag])
        .arg(file)
        .output()
        .expect("nm (binutils) runs");
    assert!(out.status.success(), "nm -D {}", file.display());
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|line| line.split_whitespace().last())
        .map(|symbol| symbol.split('@').next().unwrap_or(symbol).to_string())
        .collect()
}

/// The shared library this test binary has loaded whose file name contains `name`.
fn loaded_library(name: &str) -> PathBuf {
    let maps = std::fs::read_to_string("/proc/self/maps").unwrap();
    maps.lines()
        .filter_map(|line| line.split_whitespace().nth(5))
        .find(|path| path.contains(name))
        .map(PathBuf::from)
        .unwrap_or_else(|| panic!("{name} is loaded"))
}

fn is_openmp(symbol: &str) -> bool {
    symbol.starts_with("GOMP_") || symbol.starts_with("omp_")
}

#[test]
fn tesseract_imports_only_the_openmp_entry_points_pagemill_serves() {
    let imported: BTreeSet<String> = dynamic_symbols(&loaded_library("libtesseract.so"), true)
        .into_iter()
        .filter(|s| is_openmp(s))
        .collect();
    assert!(!imported.is_empty(), "this Tesseract uses no OpenMP at all");
    let served: BTreeSet<String> = openmp::ENTRY_POINTS.iter().map(|s| s.to_string()).collect();
    let missing: Vec<_> = imported.difference(&served).collect();
    assert!(
        missing.is_empty(),
        "Tesseract calls OpenMP entry points the serial runtime does not define: {missing:?}"
    );
}

#[test]
fn everything_pagemill_serves_tesseract_is_served_in_the_test_binary() {
    assert_eq!(
        pagemill::runtime::served_to_tesseract(),
        ["openmp", "line_images", "brick_opening"]
    );
}

#[test]
fn the_pagemill_executable_exports_what_it_serves_tesseract() {
    let exported = dynamic_symbols(
        PathBuf::from(env!("CARGO_BIN_EXE_pagemill")).as_path(),
        false,
    );
    for symbol in openmp::ENTRY_POINTS
        .iter()
        .chain(line_images::ENTRY_POINTS)
        .chain(brick_opening::ENTRY_POINTS)
    {
        assert!(
            exported.contains(*symbol),
            "pagemill does not export {symbol}"
        );
    }
}

/// phototest.tif read by the OCR stage on this thread, as the default pipeline reads it.
fn read_phototest_here() -> String {
    let out = tempfile::tempdir().unwrap();
    let cfg = pipeline(out.path(), &[]).ocr;
    let gray = image::open(fixture("phototest.tif")).unwrap().to_luma8();
    let page = ocr_page(
        &mut Engines::default(),
        PageImage::new(PagePixels::Gray(gray), 200),
        1,
        &cfg,
        std::time::Duration::from_secs(120),
    )
    .unwrap();
    assert!(page.text.contains("quick brown dog"), "{}", page.text);
    page.text
}

/// How much the per-thread counter `count` grows while this thread reads phototest.tif.
fn counted_over_a_reading(count: fn() -> u64) -> u64 {
    let before = count();
    read_phototest_here();
    count() - before
}

#[test]
fn tesseracts_parallel_regions_run_on_the_calling_thread() {
    assert!(
        openmp::serves_tesseract(),
        "Tesseract's OpenMP calls bind to libgomp"
    );
    let regions = counted_over_a_reading(openmp::regions_on_this_thread);
    // Every layer of the LSTM at every time step of every line is one region.
    assert!(regions > 1_000, "only {regions} parallel regions ran here");
}

#[test]
fn tesseracts_brick_openings_bind_to_pagemill_and_open_a_page_as_leptonica_does() {
    assert!(
        dynamic_symbols(&loaded_library("libtesseract.so"), true).contains("pixOpenBrick"),
        "Tesseract no longer opens images with pixOpenBrick: brick_opening has nothing to do"
    );
    assert!(brick_opening::serves_tesseract());
    // phototest.tif binarised, and enlarged so that its print is that of a 300-DPI page, with
    // a frame, a rule through its text and a filled box drawn on it, opened by the bricks
    // Tesseract's line finder uses at 300 DPI.
    let gray = image::open(fixture("phototest.tif")).unwrap().to_luma8();
    let (w, h) = (gray.width() * 3 / 2, gray.height() * 3 / 2);
    let gray = image::imageops::resize(&gray, w, h, image::imageops::FilterType::Triangle);
    let real = brick_opening::leptonica_open_brick().expect("Leptonica's pixOpenBrick");
    // SAFETY: a fresh 1-bit image written within its bounds; every image made is destroyed.
    unsafe {
        use leptess::capi;
        let mut page = capi::pixCreate(w as i32, h as i32, 1);
        for (x, y, px) in gray.enumerate_pixels() {
            capi::pixSetPixel(page, x as i32, y as i32, u32::from(px.0[0] < 128));
        }
        let set = capi::PIX_SET as i32;
        let null = std::ptr::null_mut();
        for (x, y, bw, bh) in [
            (20, 20, w as i32 - 40, 3),
            (20, h as i32 - 23, w as i32 - 40, 4),
            (20, 20, 2, h as i32 - 40),
            (w as i32 - 23, 20, 3, h as i32 - 40),
            (40, h as i32 / 2, w as i32 - 80, 2),
            (w as i32 / 2, 60, 60, 45),
        ] {
            capi::pixRasterop(page, x, y, bw, bh, set, null, 0, 0);
        }
        let mut ink = 0;
        capi::pixCountPixels(page, &mut ink, std::ptr::null_mut());
        assert!(ink > 10_000, "{ink} black pixels");
        for (hsize, vsize) in [(15, 15), (1, 75), (75, 1), (5, 5)] {
            let mut theirs = real(std::ptr::null_mut(), page, hsize, vsize);
            let mut ours = brick_opening::pixOpenBrick(std::ptr::null_mut(), page, hsize, vsize);
            let mut same = 0;
            capi::pixEqual(theirs, ours, &mut same);
            let mut kept = 0;
            capi::pixCountPixels(ours, &mut kept, std::ptr::null_mut());
            assert_eq!(
                same, 1,
                "{hsize}x{vsize}: {kept} pixels kept, not Leptonica's"
            );
            assert!(kept > 0, "{hsize}x{vsize} kept nothing");
            capi::pixDestroy(&mut theirs);
            capi::pixDestroy(&mut ours);
        }
        capi::pixDestroy(&mut page);
    }
}

#[test]
fn tesseracts_line_images_are_stored_raw_within_recognition() {
    assert!(
        line_images::serves_tesseract(),
        "Tesseract's pixWriteMem calls bind to Leptonica"
    );
    // phototest.tif has six lines of text, each handed to the LSTM as one image.
    let stored = counted_over_a_reading(line_images::stored_raw_on_this_thread);
    assert!(stored >= 6, "only {stored} line images stored raw");
}
