//! What pagemill serves Tesseract in place of its libraries, in the test binary and in the
//! `pagemill` executable: the serial OpenMP runtime (`src/runtime/openmp.rs`), of which
//! Tesseract needs nothing more, and the PNG level of its line images
//! (`src/runtime/line_images.rs`).

use crate::common;

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::process::Command;

use common::*;
use pagemill::model::page::{PageImage, PagePixels};
use pagemill::runtime::{line_images, openmp};
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
fn leptonica_sets_the_png_level_through_pagemill() {
    assert!(
        dynamic_symbols(&loaded_library("liblept"), true).contains("png_set_compression_level"),
        "Leptonica no longer sets a PNG compression level: line_images has nothing to do"
    );
    assert!(line_images::serves_leptonica());
}

#[test]
fn the_pagemill_executable_exports_what_it_serves_tesseract() {
    let exported = dynamic_symbols(
        PathBuf::from(env!("CARGO_BIN_EXE_pagemill")).as_path(),
        false,
    );
    for symbol in openmp::ENTRY_POINTS.iter().chain(line_images::ENTRY_POINTS) {
        assert!(
            exported.contains(*symbol),
            "pagemill does not export {symbol}"
        );
    }
}

#[test]
fn tesseracts_parallel_regions_run_on_the_calling_thread() {
    assert!(
        openmp::serves_tesseract(),
        "Tesseract's OpenMP calls bind to libgomp"
    );
    let out = tempfile::tempdir().unwrap();
    let cfg = pipeline(out.path(), &[]).ocr;
    let gray = image::open(fixture("phototest.tif")).unwrap().to_luma8();
    let before = openmp::regions_on_this_thread();
    let page = ocr_page(
        &mut Engines::default(),
        PageImage::new(PagePixels::Gray(gray), 200),
        1,
        &cfg,
        std::time::Duration::from_secs(120),
    )
    .unwrap();
    let regions = openmp::regions_on_this_thread() - before;
    assert!(page.text.contains("quick brown dog"), "{}", page.text);
    // Every layer of the LSTM at every time step of every line is one region.
    assert!(regions > 1_000, "only {regions} parallel regions ran here");
}
