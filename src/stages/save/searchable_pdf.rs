//! The searchable PDF (`save.formats: [pdf]`): one page per result page, showing the image
//! Tesseract read (upright and deskewed) with every recognized word laid over it as invisible
//! text at its box, so a viewer shows the scan while search, selection and `pdftotext` see
//! the words. Pages that took a PDF's own text layer carry that text invisibly on a blank
//! page of the same number; failed pages are blank.
//!
//! The text uses the standard Helvetica font in WinAnsi encoding, which every PDF reader
//! has; characters outside it become `?`. The font dictionary gives every glyph the same
//! advance, so each word can be scaled exactly to the width of its box, and the gaps between
//! boxes read as the spaces between words.

use pdf_writer::types::TextRenderingMode;
use pdf_writer::{Content, Filter, Finish, Name, Pdf, Rect, Ref, Str};

use crate::model::page::PageRaster;
use crate::model::result::{JobResult, PageRecord};

const FONT: Name<'static> = Name(b"F1");
const IMAGE: Name<'static> = Name(b"Im1");
/// US Letter, in points, for pages without an image.
const BLANK_PAGE: (f32, f32) = (612.0, 792.0);
/// The advance of every glyph, in thousandths of an em.
const GLYPH_ADVANCE: f32 = 500.0;

/// Hands out object numbers in order.
struct Ids(i32);

impl Ids {
    fn next(&mut self) -> Ref {
        self.0 += 1;
        Ref::new(self.0)
    }
}

/// Writes the whole document.
pub fn render(result: &JobResult) -> Vec<u8> {
    let mut pdf = Pdf::new();
    let mut ids = Ids(0);
    let catalog = ids.next();
    let tree = ids.next();
    let font = ids.next();
    let page_ids: Vec<Ref> = result.pages.iter().map(|_| ids.next()).collect();

    pdf.catalog(catalog).pages(tree);
    pdf.pages(tree)
        .kids(page_ids.iter().copied())
        .count(page_ids.len() as i32);
    pdf.type1_font(font)
        .base_font(Name(b"Helvetica"))
        .encoding_predefined(Name(b"WinAnsiEncoding"))
        .first_char(0)
        .last_char(255)
        .widths([GLYPH_ADVANCE; 256]);

    for (page, &page_id) in result.pages.iter().zip(&page_ids) {
        let content_id = ids.next();
        let raster = page.layout.raster.as_ref();
        let image_id = raster.map(|_| ids.next());
        let (width, height) = raster.map_or(BLANK_PAGE, |r| {
            let scale = 72.0 / r.dpi.max(1) as f32;
            (r.width as f32 * scale, r.height as f32 * scale)
        });

        let mut pdf_page = pdf.page(page_id);
        pdf_page
            .media_box(Rect::new(0.0, 0.0, width, height))
            .parent(tree)
            .contents(content_id);
        let mut resources = pdf_page.resources();
        resources.fonts().pair(FONT, font);
        if let Some(image_id) = image_id {
            resources.x_objects().pair(IMAGE, image_id);
        }
        resources.finish();
        pdf_page.finish();

        if let (Some(raster), Some(image_id)) = (raster, image_id) {
            write_image(&mut pdf, image_id, raster);
        }
        let content = match raster {
            Some(raster) => scan_page(page, raster, width, height),
            None => text_only_page(page, height),
        };
        pdf.stream(content_id, &content.finish());
    }
    pdf.finish()
}

fn write_image(pdf: &mut Pdf, id: Ref, raster: &PageRaster) {
    let mut image = pdf.image_xobject(id, &raster.zlib);
    image.filter(Filter::FlateDecode);
    image.width(raster.width as i32);
    image.height(raster.height as i32);
    if raster.rgb {
        image.color_space().device_rgb();
    } else {
        image.color_space().device_gray();
    }
    image.bits_per_component(8);
    image.finish();
}

/// WinAnsi bytes for `text`: Latin-1 characters as themselves, anything else as `?`.
fn win_ansi(text: &str) -> Vec<u8> {
    text.chars()
        .map(|c| match c as u32 {
            0x20..=0x7e | 0xa0..=0xff => c as u8,
            _ => b'?',
        })
        .collect()
}

/// The image over the whole page, then each word as invisible text over its box.
fn scan_page(page: &PageRecord, raster: &PageRaster, width: f32, height: f32) -> Content {
    let mut content = Content::new();
    content.save_state();
    content.transform([width, 0.0, 0.0, height, 0.0, 0.0]);
    content.x_object(IMAGE);
    content.restore_state();

    // Word boxes are in the source page's pixels; the image may be at another scale.
    let scale = 72.0 * raster.scale / raster.dpi.max(1) as f32;
    // One size for the page, the median word height, so that the words of a line share it.
    let mut heights: Vec<u32> = page.words.iter().map(|w| w.bbox[3] - w.bbox[1]).collect();
    heights.sort_unstable();
    let size = (heights.get(heights.len() / 2).copied().unwrap_or(12) as f32 * scale).max(1.0);
    content.begin_text();
    content.set_text_rendering_mode(TextRenderingMode::Invisible);
    content.set_font(FONT, size);
    for word in &page.words {
        let [left, _top, right, bottom] = word.bbox.map(|v| v as f32 * scale);
        let chars = word.text.chars().count().max(1) as f32;
        let natural = size * GLYPH_ADVANCE / 1000.0 * chars;
        content.set_horizontal_scaling(100.0 * (right - left).max(1.0) / natural);
        // PDF's origin is the bottom left; the word sits on its box's bottom edge.
        content.set_text_matrix([1.0, 0.0, 0.0, 1.0, left, height - bottom]);
        content.show(Str(&win_ansi(&word.text)));
    }
    content.end_text();
    content
}

/// A page's text, one line after another from the top, invisible.
fn text_only_page(page: &PageRecord, height: f32) -> Content {
    const SIZE: f32 = 10.0;
    let mut content = Content::new();
    content.begin_text();
    content.set_text_rendering_mode(TextRenderingMode::Invisible);
    content.set_font(FONT, SIZE);
    for (i, line) in page.text.lines().enumerate() {
        let y = height - 36.0 - (i as f32 + 1.0) * SIZE * 1.2;
        if y < 0.0 {
            break;
        }
        content.set_text_matrix([1.0, 0.0, 0.0, 1.0, 36.0, y]);
        content.show(Str(&win_ansi(line)));
    }
    content.end_text();
    content
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_outside_win_ansi_becomes_question_marks() {
        assert_eq!(win_ansi("Grüße ſ€"), b"Gr\xfc\xdfe ??".to_vec());
    }
}
