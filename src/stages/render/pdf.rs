//! PDF pages: pixel size, rendering with hayro, and the page's own text layer.

use hayro::hayro_interpret::font::Glyph;
use hayro::hayro_interpret::hayro_cmap::BfString;
use hayro::hayro_interpret::{
    BlendMode, ClipPath, Context, Device, DrawMode, DrawProps, Image, ImageDrawProps,
    InterpreterCache, InterpreterSettings, SoftMask, interpret_page,
};
use hayro::hayro_syntax::page::Page;
use hayro::hayro_syntax::{Filter, Pdf};
use hayro::kurbo::{Affine, BezPath, Point, Rect};
use hayro::vello_cpu::color::palette::css::WHITE;
use hayro::{PixmapSettings, RenderCache, RenderSettings};
use image::GrayImage;

/// Pixel size of a page rendered at `dpi`, computed from its boxes and rotation.
pub fn page_pixel_size(page: &Page<'_>, dpi: u32) -> (u64, u64) {
    let (w_pt, h_pt) = page.render_dimensions();
    let scale = dpi as f64 / 72.0;
    let px = |pt: f32| ((pt as f64) * scale).floor().max(1.0) as u64;
    (px(w_pt), px(h_pt))
}

/// The scale that draws `points` onto exactly `pixels`. hayro sizes its pixmap by truncating
/// `points * scale` in `f32`, and `dpi / 72` can land a hair short: a Letter page (792 pt) at
/// 300 DPI came out 3299.9998, one row short, so a 3300-row scan was drawn 1/3300 smaller
/// than its own pixels and lost its last row. The smallest `f32` scale that reaches `pixels`
/// draws a scan at its own resolution pixel for pixel.
fn scale_to_pixels(points: f32, pixels: u64) -> f32 {
    let mut scale = (pixels as f64 / points.max(f32::MIN_POSITIVE) as f64) as f32;
    // A step or two of the last bit is all rounding can take; the bound only guards odd sizes.
    for _ in 0..16 {
        if (points * scale) as u64 >= pixels {
            break;
        }
        scale = scale.next_up();
    }
    scale
}

/// Pixel size of page `index` (0-based) rendered at `dpi`.
pub fn pdf_page_pixel_size(pdf: &Pdf, index: u32, dpi: u32) -> (u64, u64) {
    page_pixel_size(&pdf.pages()[index as usize], dpi)
}

/// Renders page `index` (0-based) at `dpi` into a grayscale image on a white background,
/// exactly as large as [`page_pixel_size`] says. The caller has checked that size.
pub fn render_pdf_page(pdf: &Pdf, index: u32, dpi: u32) -> GrayImage {
    let page = &pdf.pages()[index as usize];
    let (w_pt, h_pt) = page.render_dimensions();
    let (width, height) = page_pixel_size(page, dpi);
    let cache = RenderCache::new();
    let pixmap = hayro::render(
        page,
        &cache,
        &InterpreterSettings::default(),
        &RenderSettings::default(),
        &PixmapSettings {
            x_scale: scale_to_pixels(w_pt, width),
            y_scale: scale_to_pixels(h_pt, height),
            bg_color: WHITE,
        },
    );
    let (w, h) = (pixmap.width() as u32, pixmap.height() as u32);
    // The background is opaque white, so premultiplied RGBA equals straight RGBA here.
    let luma: Vec<u8> = pixmap
        .data_as_u8_slice()
        .chunks_exact(4)
        .map(|p| ((p[0] as u32 * 77 + p[1] as u32 * 150 + p[2] as u32 * 29) >> 8) as u8)
        .collect();
    GrayImage::from_raw(w, h, luma).expect("pixmap size matches its data")
}

/// The text a page carries, in reading order (top to bottom, left to right), and whether
/// all of it is invisible (an OCR layer added by another tool).
#[derive(Debug, Default)]
pub struct TextLayer {
    pub text: String,
    pub invisible: bool,
}

/// Extracts page `index`'s text layer by interpreting its content stream with a device that
/// records glyphs instead of painting them.
pub fn extract_text_layer(pdf: &Pdf, index: u32) -> TextLayer {
    let mut device = GlyphCollector::default();
    interpret(pdf, index, &mut device);
    TextLayer {
        invisible: device.glyphs.iter().all(|g| g.invisible) && !device.glyphs.is_empty(),
        text: layout_text(device.glyphs),
    }
}

/// Interprets page `index`'s content stream in points (y growing downwards) with `device`,
/// which sees what the page draws without anything being painted.
fn interpret<'a>(pdf: &'a Pdf, index: u32, device: &mut impl Device<'a>) {
    let page = &pdf.pages()[index as usize];
    let cache = InterpreterCache::new();
    let (w, h) = page.render_dimensions();
    let transform = page.initial_transform(true);
    let mut context = Context::new(
        hayro::hayro_interpret::util::TransformExt::to_kurbo(&transform),
        Rect::new(0.0, 0.0, w as f64, h as f64),
        &cache,
        page.xref(),
        InterpreterSettings::default(),
    );
    interpret_page(page, &mut context, device);
}

/// One glyph's text and where it sits on the page (device space, y grows downwards).
#[derive(Debug, Clone)]
struct PlacedGlyph {
    text: String,
    x: f64,
    /// Where the glyph's advance ends: the next glyph of the same word starts about here.
    end_x: f64,
    y: f64,
    /// Approximate glyph height, used to tell lines and words apart.
    size: f64,
    invisible: bool,
}

#[derive(Default)]
struct GlyphCollector {
    glyphs: Vec<PlacedGlyph>,
}

impl<'a> Device<'a> for GlyphCollector {
    fn draw_path(&mut self, _: &BezPath, _: DrawProps<'a>, _: &DrawMode) {}
    fn push_clip_path(&mut self, _: &ClipPath) {}
    fn push_transparency_group(&mut self, _: f32, _: Option<SoftMask<'a>>, _: BlendMode) {}
    fn draw_glyph_run(
        &mut self,
        run: &hayro::hayro_interpret::font::GlyphRun<'_, 'a>,
        props: DrawProps<'a>,
        mode: &DrawMode,
    ) {
        let invisible = matches!(mode, DrawMode::Invisible);
        for g in run.glyphs() {
            let text = match g.as_unicode() {
                Some(BfString::Char(c)) => c.to_string(),
                Some(BfString::String(s)) => s,
                None => continue,
            };
            let advance = match &**g {
                Glyph::Outline(o) => o.advance_width(),
                Glyph::Type3(t) => t.advance_width(),
            }
            .unwrap_or(500.0) as f64;
            // Glyph space has 1000 units per em, as the advance widths do.
            let t: Affine = props.transform * g.transform();
            let origin = t * Point::ORIGIN;
            let size = (t * Point::new(0.0, 1000.0) - origin).hypot().max(1e-3);
            let end = t * Point::new(advance, 0.0);
            self.glyphs.push(PlacedGlyph {
                text,
                x: origin.x,
                end_x: end.x,
                y: origin.y,
                size,
                invisible,
            });
        }
    }
    fn draw_image(&mut self, _: Image<'a, '_>, _: ImageDrawProps<'a>) {}
    fn pop_clip(&mut self) {}
    fn pop_transparency_group(&mut self) {}
}

/// Whether page `index` (0-based), rendered at `dpi`, paints nothing but 1-bit raster images
/// drawn pixel for pixel (a black-and-white scan at its own resolution, as a scanner or
/// `tiff2pdf` writes it: CCITT, JBIG2 or any other 1-bit image), apart from invisible text.
/// Such a page is black and white at heart, whatever gray its rendering shows: hayro blends
/// neighbouring image rows where its sampling falls between them. An image drawn larger or
/// smaller is resampled into gray edges of its own, and does not count. Interprets the
/// content stream without decoding any image.
pub fn drawn_from_bilevel_scan(pdf: &Pdf, index: u32, dpi: u32) -> bool {
    let mut survey = BilevelSurvey {
        pixels_per_point: dpi as f64 / 72.0,
        ..BilevelSurvey::default()
    };
    interpret(pdf, index, &mut survey);
    survey.bilevel_images > 0 && !survey.anything_else
}

/// How far from one device pixel per image pixel a drawn image may be and still count as
/// drawn pixel for pixel (a Letter page's 2550 columns at 300 DPI are off by 1e-6).
const PIXEL_FOR_PIXEL_TOLERANCE: f64 = 0.002;

/// Counts what a page paints: 1-bit raster images drawn pixel for pixel, and whether anything
/// else is drawn.
#[derive(Default)]
struct BilevelSurvey {
    /// Device pixels per PDF point at the rendering's resolution.
    pixels_per_point: f64,
    bilevel_images: usize,
    anything_else: bool,
}

impl BilevelSurvey {
    /// Whether `transform` (image pixels to points) maps each image pixel onto one device
    /// pixel: no scaling, and turned by a multiple of 90° if at all.
    fn pixel_for_pixel(&self, transform: Affine) -> bool {
        let [a, b, c, d, _, _] = transform.as_coeffs();
        let one =
            |v: f64| (v.abs() * self.pixels_per_point - 1.0).abs() <= PIXEL_FOR_PIXEL_TOLERANCE;
        let zero = |v: f64| v.abs() * self.pixels_per_point <= PIXEL_FOR_PIXEL_TOLERANCE;
        (one(a) && zero(b) && zero(c) && one(d)) || (zero(a) && one(b) && one(c) && zero(d))
    }
}

impl<'a> Device<'a> for BilevelSurvey {
    fn draw_path(&mut self, _: &BezPath, _: DrawProps<'a>, _: &DrawMode) {
        self.anything_else = true;
    }
    fn push_clip_path(&mut self, _: &ClipPath) {}
    fn push_transparency_group(&mut self, _: f32, _: Option<SoftMask<'a>>, _: BlendMode) {}
    fn draw_glyph_run(
        &mut self,
        _: &hayro::hayro_interpret::font::GlyphRun<'_, 'a>,
        _: DrawProps<'a>,
        mode: &DrawMode,
    ) {
        if !matches!(mode, DrawMode::Invisible) {
            self.anything_else = true;
        }
    }
    fn draw_image(&mut self, image: Image<'a, '_>, props: ImageDrawProps<'a>) {
        // A stencil mask is 1-bit too, but painted in any colour: not counted.
        let one_bit = match &image {
            Image::Raster(raster) => {
                let stream = raster.stream();
                stream.dict().get::<i32>(b"BitsPerComponent") == Some(1)
                    || stream
                        .filters()
                        .iter()
                        .any(|f| matches!(f, Filter::CcittFaxDecode | Filter::Jbig2Decode))
            }
            Image::Stencil(_) => false,
        };
        if one_bit && self.pixel_for_pixel(props.transform) {
            self.bilevel_images += 1;
        } else {
            self.anything_else = true;
        }
    }
    fn pop_clip(&mut self) {}
    fn pop_transparency_group(&mut self) {}
}

/// A run of glyphs on one line with no wide gap inside, as text.
#[derive(Debug)]
struct Segment {
    start_x: f64,
    end_x: f64,
    text: String,
}

/// A gap wider than this many ems separates segments (and possibly columns).
const SEGMENT_GAP_EMS: f64 = 1.5;
/// Lines that must share a gap at the same place before it counts as a column gutter.
const MIN_GUTTER_LINES: usize = 4;

/// Joins a line's glyphs (sorted by x) into segments, with a space where the gap between two
/// glyphs is wider than a fraction of their size.
fn line_segments(line: &[PlacedGlyph]) -> Vec<Segment> {
    let mut segments: Vec<Segment> = Vec::new();
    let mut prev_end: Option<(f64, f64)> = None;
    for g in line {
        let gap = prev_end.map(|(end_x, size)| (g.x - end_x) / size);
        match (gap, segments.last_mut()) {
            (Some(gap), Some(seg)) if gap <= SEGMENT_GAP_EMS => {
                if gap > 0.2 && !seg.text.ends_with(' ') && g.text != " " {
                    seg.text.push(' ');
                }
                seg.text.push_str(&g.text);
                seg.end_x = seg.end_x.max(g.end_x);
            }
            _ => segments.push(Segment {
                start_x: g.x,
                end_x: g.end_x,
                text: g.text.clone(),
            }),
        }
        prev_end = Some((g.end_x, g.size));
    }
    segments.retain(|s| !s.text.trim().is_empty());
    segments
}

/// The x of a gutter between two text columns: a place where at least
/// [`MIN_GUTTER_LINES`] lines have a wide gap and more lines have a gap there than run
/// across it. `None` for single-column pages.
fn find_gutter(lines: &[Vec<Segment>]) -> Option<f64> {
    let candidates: Vec<f64> = lines
        .iter()
        .flat_map(|segs| segs.windows(2).map(|w| (w[0].end_x + w[1].start_x) / 2.0))
        .collect();
    candidates
        .into_iter()
        .map(|x| {
            let gaps = lines
                .iter()
                .filter(|segs| segs.windows(2).any(|w| w[0].end_x < x && x < w[1].start_x))
                .count();
            let crossings = lines
                .iter()
                .filter(|segs| segs.iter().any(|s| s.start_x < x && x < s.end_x))
                .count();
            (x, gaps, crossings)
        })
        .filter(|&(_, gaps, crossings)| gaps >= MIN_GUTTER_LINES && gaps > crossings)
        .max_by_key(|&(_, gaps, _)| gaps)
        .map(|(x, _, _)| x)
}

/// Groups glyphs into lines by baseline and lines into reading order: top to bottom, and on
/// pages with two columns, the left column before the right one (lines that run across the
/// gutter, such as headings, stay where they are and end the column block above them).
fn layout_text(mut glyphs: Vec<PlacedGlyph>) -> String {
    glyphs.retain(|g| g.x.is_finite() && g.y.is_finite());
    glyphs.sort_by(|a, b| a.y.total_cmp(&b.y));
    let mut lines: Vec<Vec<PlacedGlyph>> = Vec::new();
    for g in glyphs {
        match lines.last_mut() {
            Some(line) if (g.y - line[0].y).abs() < 0.4 * line[0].size.min(g.size) => line.push(g),
            _ => lines.push(vec![g]),
        }
    }
    let lines: Vec<Vec<Segment>> = lines
        .into_iter()
        .map(|mut line| {
            line.sort_by(|a, b| a.x.total_cmp(&b.x));
            line_segments(&line)
        })
        .filter(|segs| !segs.is_empty())
        .collect();
    let join = |segs: &[&Segment]| {
        segs.iter()
            .map(|s| s.text.trim())
            .collect::<Vec<_>>()
            .join(" ")
    };
    let mut out = String::new();
    let Some(gutter) = find_gutter(&lines) else {
        for segs in &lines {
            out.push_str(&join(&segs.iter().collect::<Vec<_>>()));
            out.push('\n');
        }
        return out;
    };
    let (mut left, mut right) = (Vec::new(), Vec::new());
    let flush = |out: &mut String, left: &mut Vec<String>, right: &mut Vec<String>| {
        for line in left.drain(..).chain(right.drain(..)) {
            out.push_str(&line);
            out.push('\n');
        }
    };
    for segs in &lines {
        if segs.iter().any(|s| s.start_x < gutter && gutter < s.end_x) {
            flush(&mut out, &mut left, &mut right);
            out.push_str(&join(&segs.iter().collect::<Vec<_>>()));
            out.push('\n');
            continue;
        }
        let (l, r): (Vec<&Segment>, Vec<&Segment>) = segs.iter().partition(|s| s.end_x <= gutter);
        if !l.is_empty() {
            left.push(join(&l));
        }
        if !r.is_empty() {
            right.push(join(&r));
        }
    }
    flush(&mut out, &mut left, &mut right);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A one-page PDF (8 x 8 pt) that draws an 8x8 gray image of `bits` bits per component
    /// over the whole page with the matrix `cm`, after the operators in `before`.
    fn pdf_drawing_an_image(bits: u8, before: &str, cm: &str) -> Vec<u8> {
        let pixels = vec![0x5a_u8; 8 * bits as usize];
        let content = format!("{before} q {cm} cm /Im1 Do Q");
        let mut image = format!(
            "<< /Type /XObject /Subtype /Image /Width 8 /Height 8 /ColorSpace /DeviceGray \
             /BitsPerComponent {bits} /Length {} >>\nstream\n",
            pixels.len()
        )
        .into_bytes();
        image.extend_from_slice(&pixels);
        image.extend_from_slice(b"\nendstream");
        let content = format!(
            "<< /Length {} >>\nstream\n{content}\nendstream",
            content.len()
        );
        crate::model::document::pdf_of_objects(&[
            b"<< /Type /Catalog /Pages 2 0 R >>",
            b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
            b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 8 8] \
              /Resources << /XObject << /Im1 5 0 R >> >> /Contents 4 0 R >>",
            content.as_bytes(),
            &image,
        ])
    }

    /// Whether the page is a black-and-white scan when rendered at 72 DPI, where the test
    /// page's 8x8 image drawn over 8x8 points is pixel for pixel.
    fn bilevel(pdf_bytes: Vec<u8>) -> bool {
        bilevel_at(pdf_bytes, 72)
    }

    fn bilevel_at(pdf_bytes: Vec<u8>, dpi: u32) -> bool {
        let pdf = Pdf::new(std::sync::Arc::new(pdf_bytes)).expect("the test PDF parses");
        drawn_from_bilevel_scan(&pdf, 0, dpi)
    }

    #[test]
    fn a_black_and_white_scan_is_told_from_other_pages() {
        let upright = "8 0 0 8 0 0";
        assert!(bilevel(pdf_drawing_an_image(1, "", upright)));
        assert!(
            bilevel(pdf_drawing_an_image(1, "", "0 8 -8 0 8 0")),
            "turned by 90°, still pixel for pixel"
        );
        assert!(
            !bilevel_at(pdf_drawing_an_image(1, "", upright), 144),
            "drawn twice as large"
        );
        assert!(
            !bilevel(pdf_drawing_an_image(1, "", "7.9 0 0 7.9 0 0")),
            "drawn 1% smaller"
        );
        assert!(
            !bilevel(pdf_drawing_an_image(8, "", upright)),
            "an 8-bit image"
        );
        assert!(
            !bilevel(pdf_drawing_an_image(1, "0 0 4 4 re f", upright)),
            "a 1-bit image and a filled rectangle"
        );
        let tagged = std::fs::read(
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/tagged.pdf"),
        )
        .unwrap();
        assert!(!bilevel_at(tagged, 300), "a born-digital page");
    }

    /// Glyphs of `text` on a line at height `y`, starting at `x`, 10 units per character.
    fn word(text: &str, x: f64, y: f64) -> Vec<PlacedGlyph> {
        text.chars()
            .enumerate()
            .map(|(i, c)| PlacedGlyph {
                text: c.to_string(),
                x: x + 6.0 * i as f64,
                end_x: x + 6.0 * (i + 1) as f64,
                y,
                size: 10.0,
                invisible: false,
            })
            .collect()
    }

    #[test]
    fn pages_are_drawn_exactly_as_large_as_their_pixel_size() {
        // 792 pt at 300 DPI is 3300 rows; dpi / 72 in f32 made it 3299.
        for (points, dpi) in [
            (792.0f32, 300u32),
            (612.0, 300),
            (841.89, 300),
            (595.28, 150),
        ] {
            let pixels = ((points as f64) * dpi as f64 / 72.0).floor() as u64;
            let scale = scale_to_pixels(points, pixels);
            assert_eq!((points * scale) as u64, pixels, "{points} pt at {dpi} DPI");
            // Within a pixel of the nominal resolution over the whole page.
            assert!((points * scale - points * dpi as f32 / 72.0).abs() < 1.0);
        }
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/tagged.pdf");
        let pdf = Pdf::new(std::sync::Arc::new(std::fs::read(path).unwrap())).unwrap();
        for dpi in [72, 150, 300] {
            let (w, h) = pdf_page_pixel_size(&pdf, 0, dpi);
            assert_eq!(
                render_pdf_page(&pdf, 0, dpi).dimensions(),
                (w as u32, h as u32)
            );
        }
    }

    #[test]
    fn one_column_keeps_lines_and_spaces() {
        let mut glyphs = word("Hello", 0.0, 10.0);
        glyphs.extend(word("world", 33.0, 10.0));
        glyphs.extend(word("Next", 0.0, 25.0));
        assert_eq!(layout_text(glyphs), "Hello world\nNext\n");
    }

    #[test]
    fn two_columns_read_left_then_right_below_a_heading() {
        let mut glyphs = word("A heading that runs across both columns", 0.0, 0.0);
        for (i, (l, r)) in [
            ("left1", "right1"),
            ("left2", "right2"),
            ("left3", "right3"),
            ("left4", "right4"),
        ]
        .iter()
        .enumerate()
        {
            let y = 20.0 + 15.0 * i as f64;
            glyphs.extend(word(l, 0.0, y));
            glyphs.extend(word(r, 200.0, y));
        }
        assert_eq!(
            layout_text(glyphs),
            "A heading that runs across both columns\nleft1\nleft2\nleft3\nleft4\nright1\nright2\nright3\nright4\n"
        );
    }
}
