//! Compiles the one C++ file of the OCR stage (`src/stages/ocr/read_page.cpp`): Tesseract's
//! left-to-right result iterator, which reads a page out in linear time, has no C API.
//! Tesseract itself is linked by `tesseract-sys` (through leptess).

fn main() {
    const SOURCE: &str = "src/stages/ocr/read_page.cpp";
    println!("cargo:rerun-if-changed={SOURCE}");
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
}
