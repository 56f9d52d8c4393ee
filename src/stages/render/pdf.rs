//! PDF pages: pixel size, rendering with hayro, and the page's own text layer.

use hayro::hayro_interpret::font::Glyph;
use hayro::hayro_interpret::hayro_cmap::BfString;
use hayro::hayro_interpret::{
    BlendMode, ClipPath, Context, Device, DrawMode, DrawProps, Image, ImageDrawProps,
    InterpreterCache, InterpreterSettings, SoftMask, interpret_page,
};
use hayro::hayro_syntax::Pdf;
use hayro::hayro_syntax::page::Page;
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

/// Pixel size of page `index` (0-based) rendered at `dpi`.
pub fn pdf_page_pixel_size(pdf: &Pdf, index: u32, dpi: u32) -> (u64, u64) {
    page_pixel_size(&pdf.pages()[index as usize], dpi)
}

/// Renders page `index` (0-based) at `dpi` into a grayscale image on a white background.
/// The caller has checked the size with [`check_page_size`].
pub fn render_pdf_page(pdf: &Pdf, index: u32, dpi: u32) -> GrayImage {
    let page = &pdf.pages()[index as usize];
    let scale = dpi as f32 / 72.0;
    let cache = RenderCache::new();
    let pixmap = hayro::render(
        page,
        &cache,
        &InterpreterSettings::default(),
        &RenderSettings::default(),
        &PixmapSettings {
            x_scale: scale,
            y_scale: scale,
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
    let mut device = GlyphCollector::default();
    interpret_page(page, &mut context, &mut device);
    TextLayer {
        invisible: device.glyphs.iter().all(|g| g.invisible) && !device.glyphs.is_empty(),
        text: layout_text(device.glyphs),
    }
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

/// Groups glyphs into lines by baseline, orders lines top to bottom and glyphs left to right,
/// and puts a space where the gap between glyphs is wider than a fraction of their size.
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
    let mut out = String::new();
    for mut line in lines {
        line.sort_by(|a, b| a.x.total_cmp(&b.x));
        let mut prev_end: Option<(f64, f64)> = None;
        let mut text = String::new();
        for g in &line {
            if let Some((end_x, size)) = prev_end
                && g.x - end_x > 0.2 * size
                && !text.ends_with(' ')
                && g.text != " "
            {
                text.push(' ');
            }
            text.push_str(&g.text);
            prev_end = Some((g.end_x, g.size));
        }
        let trimmed = text.trim();
        if !trimmed.is_empty() {
            out.push_str(trimmed);
            out.push('\n');
        }
    }
    out
}
