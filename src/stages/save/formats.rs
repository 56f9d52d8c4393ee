//! The files written beside a result JSON, as `save.formats` asks: plain text, hOCR, ALTO XML,
//! a per-word TSV and a searchable PDF ([`super::searchable_pdf`]). hOCR and ALTO wrap the per-page fragments Tesseract wrote during OCR
//! in one document per job; pages that had no OCR (text layers, failures) appear as empty
//! pages so that page numbers still line up. Beside them, the OCR stage keeps each page's
//! preview image in `<id>.previews/` ([`preview_path`]).

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use crate::config::OutputFormat;
use crate::model::result::{JobResult, PageSource};

/// The file name suffix of a format.
pub fn extension(format: OutputFormat) -> &'static str {
    match format {
        OutputFormat::Txt => "txt",
        OutputFormat::Hocr => "hocr",
        OutputFormat::Alto => "alto.xml",
        OutputFormat::Tsv => "tsv",
        OutputFormat::Pdf => "pdf",
    }
}

/// The folder beside a job's result that holds its pages' previews (`<id>.previews`).
pub fn previews_dir(results_dir: &Path, id: &str) -> PathBuf {
    results_dir.join(format!("{id}.previews"))
}

/// Where page `number`'s preview of job `id` is kept (`<id>.previews/<number>.png`).
pub fn preview_path(results_dir: &Path, id: &str, number: u32) -> PathBuf {
    previews_dir(results_dir, id).join(format!("{number}.png"))
}

/// The document of one format for a job's result.
pub fn render(format: OutputFormat, result: &JobResult) -> Vec<u8> {
    match format {
        OutputFormat::Txt => result.text.clone().into_bytes(),
        OutputFormat::Hocr => hocr(result).into_bytes(),
        OutputFormat::Alto => alto(result).into_bytes(),
        OutputFormat::Tsv => tsv(result).into_bytes(),
        OutputFormat::Pdf => super::searchable_pdf::render(result),
    }
}

/// Escapes text for XML, dropping characters XML 1.0 does not allow at all.
fn xml_escape(text: &str) -> String {
    let allowed: String = text
        .chars()
        .filter(|&c| {
            matches!(c, '\t' | '\n' | '\r') || (c >= ' ' && c != '\u{fffe}' && c != '\u{ffff}')
        })
        .collect();
    allowed
        .replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
        .replace('\'', "&apos;")
}

fn software() -> String {
    format!("pagemill {}", env!("CARGO_PKG_VERSION"))
}

fn hocr(result: &JobResult) -> String {
    let mut out = format!(
        r#"<?xml version="1.0" encoding="UTF-8"?>
<!DOCTYPE html PUBLIC "-//W3C//DTD XHTML 1.0 Transitional//EN"
    "http://www.w3.org/TR/xhtml1/DTD/xhtml1-transitional.dtd">
<html xmlns="http://www.w3.org/1999/xhtml" xml:lang="en" lang="en">
 <head>
  <title>{}</title>
  <meta http-equiv="Content-Type" content="text/html;charset=utf-8"/>
  <meta name='ocr-system' content='{}' />
  <meta name='ocr-capabilities' content='ocr_page ocr_carea ocr_par ocr_line ocrx_word ocrp_wconf'/>
 </head>
 <body>
"#,
        xml_escape(&result.source.name),
        software()
    );
    for page in &result.pages {
        match &page.layout.hocr {
            Some(fragment) => out.push_str(fragment),
            None => {
                let _ = writeln!(
                    out,
                    "  <div class='ocr_page' id='page_{n}' title='ppageno {p}'></div>",
                    n = page.number,
                    p = page.number - 1
                );
            }
        }
    }
    out.push_str(" </body>\n</html>\n");
    out
}

/// Tesseract numbers the blocks, lines and words of each page from zero; prefixing them with
/// the page keeps every ID unique in a document of many pages, as XML IDs must be.
fn alto_page_with_unique_ids(fragment: &str, number: u32) -> String {
    fragment.replace(" ID=\"", &format!(" ID=\"p{number}_"))
}

fn alto(result: &JobResult) -> String {
    let mut out = format!(
        r#"<?xml version="1.0" encoding="UTF-8"?>
<alto xmlns="http://www.loc.gov/standards/alto/ns-v4#" xmlns:xlink="http://www.w3.org/1999/xlink" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" xsi:schemaLocation="http://www.loc.gov/standards/alto/ns-v4# http://www.loc.gov/standards/alto/v4/alto-4-2.xsd">
	<Description>
		<MeasurementUnit>pixel</MeasurementUnit>
		<sourceImageInformation>
			<fileName>{}</fileName>
		</sourceImageInformation>
	</Description>
	<Layout>
"#,
        xml_escape(&result.source.name)
    );
    for page in &result.pages {
        match &page.layout.alto {
            Some(fragment) => out.push_str(&alto_page_with_unique_ids(fragment, page.number)),
            None => {
                let _ = writeln!(
                    out,
                    "\t\t<Page ID=\"p{n}_page\" PHYSICAL_IMG_NR=\"{n}\" WIDTH=\"0\" HEIGHT=\"0\"/>",
                    n = page.number
                );
            }
        }
    }
    out.push_str("\t</Layout>\n</alto>\n");
    out
}

fn tsv(result: &JobResult) -> String {
    let mut out = String::from("page\tleft\ttop\tright\tbottom\tconfidence\ttext\n");
    for page in &result.pages {
        if page.source != PageSource::Ocr {
            continue;
        }
        for word in &page.words {
            let [left, top, right, bottom] = word.bbox;
            // Tesseract's words hold no tabs or newlines; keep it that way for any source.
            let text: String = word
                .text
                .chars()
                .map(|c| if c.is_control() { ' ' } else { c })
                .collect();
            let _ = writeln!(
                out,
                "{}\t{left}\t{top}\t{right}\t{bottom}\t{:.2}\t{text}",
                page.number, word.confidence
            );
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn alto_ids_are_prefixed_with_the_page() {
        let fragment = r#"<Page ID="page_0"><String ID="string_0" CONTENT="a"/></Page>"#;
        assert_eq!(
            alto_page_with_unique_ids(fragment, 3),
            r#"<Page ID="p3_page_0"><String ID="p3_string_0" CONTENT="a"/></Page>"#
        );
    }

    #[test]
    fn xml_special_characters_are_escaped() {
        assert_eq!(xml_escape(r#"a<b>&"c'"#), "a&lt;b&gt;&amp;&quot;c&apos;");
        assert_eq!(xml_escape("a\u{1}b\u{fffe}"), "ab");
    }
}
