//! Compiles the one C++ file of the OCR stage (`src/stages/ocr/read_page.cpp`): Tesseract's
//! left-to-right result iterator, which reads a page out in linear time, has no C API.
//! Tesseract itself is linked by `tesseract-sys` (through leptess).
//!
//! Also links and exports the OpenMP entry points of `src/runtime/openmp.rs`, the line-image
//! writing of `src/runtime/line_images.rs` and the brick opening of
//! `src/runtime/brick_opening.rs` in the binary and the test binaries, so that Tesseract's and
//! Leptonica's calls bind to them.

// The same list the library's `runtime::openmp`, `runtime::line_images` and
// `runtime::brick_opening` define.
include!("src/runtime/served_symbols.rs");

fn main() {
    const SOURCE: &str = "src/stages/ocr/read_page.cpp";
    println!("cargo:rerun-if-changed={SOURCE}");
    println!("cargo:rerun-if-changed=src/runtime/served_symbols.rs");
    let tesseract = pkg_config::Config::new()
        .cargo_metadata(false)
        .probe("tesseract")
        .expect("Tesseract's development files (libtesseract-dev) are needed to build pagemill");
    cc::Build::new()
        .cpp(true)
        .std("c++17")
        .includes(&tesseract.include_paths)
        .warnings(true)
        .file(SOURCE)
        .compile("pagemill_read_page");
    // Pull each definition in from the library and put it in the dynamic symbol table, in the
    // binary and the test binaries. Not in the benches: their engine bound is Tesseract as
    // everyone else runs it, on libgomp limited to one thread, with Leptonica's own PNG line
    // images and brick opening.
    for target in ["bins", "tests"] {
        for symbol in OPENMP_ENTRY_POINTS
            .iter()
            .chain(LINE_IMAGE_ENTRY_POINTS)
            .chain(BRICK_OPENING_ENTRY_POINTS)
        {
            println!("cargo:rustc-link-arg-{target}=-Wl,--undefined={symbol}");
            println!("cargo:rustc-link-arg-{target}=-Wl,--export-dynamic-symbol={symbol}");
        }
    }
    // The linker would still export a definition the benches happen to link in whenever a
    // shared library on the command line uses it (Leptonica's functions are used by
    // Tesseract): no symbol of the library's archive is exported from a bench.
    println!("cargo:rustc-link-arg-benches=-Wl,--exclude-libs,ALL");
}
