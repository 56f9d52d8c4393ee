//! Where Tesseract's models are installed, so that a pipeline naming a language that is not
//! installed is refused when it is loaded rather than failing on its first page.

use std::path::PathBuf;

/// Folders Tesseract may load models from: `TESSDATA_PREFIX` (the tessdata folder itself)
/// or Debian's default.
fn tessdata_dirs() -> Vec<PathBuf> {
    let mut dirs = Vec::new();
    if let Some(prefix) = std::env::var_os("TESSDATA_PREFIX") {
        dirs.push(PathBuf::from(prefix));
    }
    for v in ["5", "4.00"] {
        dirs.push(PathBuf::from(format!(
            "/usr/share/tesseract-ocr/{v}/tessdata"
        )));
    }
    dirs.push(PathBuf::from("/usr/share/tessdata"));
    dirs
}

/// Whether a model for `lang` is installed where Tesseract will look.
pub fn language_installed(lang: &str) -> bool {
    tessdata_dirs()
        .iter()
        .any(|d| d.join(format!("{lang}.traineddata")).is_file())
}
