//! How large a page's print is, measured before OCR: the x-height of its letters in pixels,
//! from the connected components of a black-and-white copy of the page (Leptonica).
//!
//! Tesseract reads best when print reaches it at a certain size (its LSTM normalises every
//! line to a fixed height, and its layout analysis expects letters of a sensible size): too
//! small and letters blur together, too large and every step before recognition pays for
//! pixels that add nothing. A page's declared resolution does not say how large its print is
//! (a phone photo declares 72 DPI at 4000 px, a poster at 300 DPI has 2 cm letters), so the
//! render stage measures the print and scales the page to the pipeline's target x-height.
//!
//! The same measurement tells two more things for free: a page with no letter-sized ink at all
//! (a blank or separator sheet) needs no OCR, and letters whose *widths* agree better than
//! their heights lie in lines running up or down the page (turned by 90 or 270 degrees), a
//! hint that orientation detection has work to do. Its black-and-white copy also gives
//! Leptonica's count of ascenders and descenders, which says whether the print stands on its
//! head or side: such a page gets orientation detection before it is read, not after a wasted
//! upright reading.
//!
//! And it tells a photograph or drawing without text from a page of print: letters stand in
//! lines, each beside another of its size, while the letter-sized specks of a picture's
//! texture stand alone; and a picture fills much of the page with midtones, which a scan of
//! print (even a faded one) does not. Such a page may skip OCR
//! (`ocr.skip_pictures_without_text`).

use crate::model::page::PagePixels;

use super::lept::{LeptError, Pix};
use super::preprocess::is_bilevel;

/// Components shorter than this are specks, not letters, at any resolution worth reading.
const MIN_LETTER_HEIGHT_PX: u32 = 3;
/// A component wider than this many times its height is a rule, an underline or letters run
/// together, not one letter.
const MAX_LETTER_ASPECT: u32 = 5;
/// Components taller than this fraction of the page are pictures, frames or borders.
const MAX_LETTER_PAGE_FRACTION: u32 = 8;
/// Letters within this relative distance of the modal height count as x-height letters.
const MODE_TOLERANCE: f32 = 0.2;

/// What the print on a page looks like.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TextSize {
    /// The most common height of letter-sized components: lowercase letters without
    /// ascenders or descenders, i.e. the x-height, in pixels (their most common width when
    /// the print is sideways). 0 when the page has no letters.
    pub x_height: u32,
    /// Letter-sized components of about that height.
    pub letters: usize,
    /// Whether the letters' widths cluster more tightly than their heights, as when lines of
    /// text run up or down the page.
    pub sideways: bool,
    /// Which way up the print stands, from its ascenders and descenders (Leptonica): upright,
    /// turned (by 90, 180 or 270 degrees), or not known (too few letters, or no clear sign).
    pub upright: Option<bool>,
    /// Of those letters, the ones with another beside them in their line (their centres
    /// within a quarter x-height across the line, at most an x-height apart along it).
    pub lined: usize,
    /// The share of the page (background brought to one level) in gray levels between ink
    /// and paper: near 0 for print, a fifth or more for a photograph.
    pub midtones: f32,
}

impl TextSize {
    /// A page with no letter-sized components at all.
    pub const NONE: TextSize = TextSize {
        x_height: 0,
        letters: 0,
        sideways: false,
        upright: None,
        lined: 0,
        midtones: 0.0,
    };

    /// Whether the page looks like a picture without text: much of it in midtones, and
    /// fewer than [`MIN_LINED_LETTERS`] letters standing in lines.
    pub fn picture_without_text(&self) -> bool {
        self.midtones >= MIN_PICTURE_MIDTONES && self.lined < MIN_LINED_LETTERS
    }
}

/// A page with fewer letters beside others in their lines holds no text worth reading when it
/// is a picture. Measured (benches/README.md): three photographs and drawings had 0; every
/// page of print in the corpus, 18 (phototest turned) or more, most of them hundreds.
pub const MIN_LINED_LETTERS: usize = 10;
/// A page with at least this share of midtones may be a picture: photographs and drawings
/// measured 0.17-0.47, scans of print 0-0.34 (textured or photographed paper), faded print
/// 0.02. Only together with [`MIN_LINED_LETTERS`] does it make a page a picture.
pub const MIN_PICTURE_MIDTONES: f32 = 0.10;
/// The gray levels counted as midtones, after background normalization (paper at 200).
const MIDTONES: std::ops::RangeInclusive<usize> = 40..=170;

/// The darkest threshold used after background normalization (paper at 200): a page whose
/// Otsu level is paler than this is mostly paper and noise, not ink.
const MAX_INK_LEVEL: u8 = 160;

/// The threshold's histogram counts one pixel in 4x4: half a million pixels of a 300-DPI
/// letter page, plenty for Otsu's level, at a sixteenth of the cost of counting them all
/// (20-30 ms a page).
const HISTOGRAM_SUBSAMPLING: u32 = 4;

/// Pages with fewer letters are not asked which way up they stand.
const MIN_LETTERS_FOR_ORIENTATION: usize = 50;
/// Print of at least this x-height is looked at half size for its orientation, which costs a
/// quarter. Looking again at full size where half size gives no verdict (as for phototest's
/// 18-px print upside down) cost plain pages more than it saved: `pagemill run` on
/// `scans-24p.pdf`, none of whose pages is turned, took 0.5 CPU s more. A page without a
/// verdict is looked at again, at full size, only if its upright reading is poor
/// ([`upright_at_full_size`]).
const REDUCE_FOR_ORIENTATION_FROM_PX: u32 = 16;

/// Measures the print on a page: brings its background to one level (so that unevenly lit
/// photos and tinted paper threshold like clean scans), thresholds it at its Otsu level,
/// finds its connected components, and takes the modal height of those shaped like letters;
/// then, if `judge_orientation` and the print does not already run sideways, asks Leptonica
/// which way up the letters stand.
/// The page is measured at full size:
/// at half size the letters of a 300-DPI page run together and measure as tall as their
/// ascenders (linn.png: 26 px instead of 19).
pub fn measure(pixels: &PagePixels, judge_orientation: bool) -> Result<TextSize, LeptError> {
    let (ink, midtones) = ink_of(pixels)?;
    let mut size = from_boxes(&ink.component_boxes()?, ink.height());
    size.midtones = midtones;
    if judge_orientation && !size.sideways && size.letters >= MIN_LETTERS_FOR_ORIENTATION {
        // Only a hint: a page Leptonica cannot judge is read upright first, as before.
        let upright = if size.x_height >= REDUCE_FOR_ORIENTATION_FROM_PX {
            ink.reduced_binary_2x().and_then(|half| half.upright_text())
        } else {
            ink.upright_text()
        };
        size.upright = upright.unwrap_or(None);
    }
    Ok(size)
}

/// Which way up the print on a page stands, as Leptonica sees it at full size: `Some(true)`
/// upright, `Some(false)` turned, `None` when it cannot tell. For a page whose upright reading
/// was poor and whose print [`measure`] could not judge (at half size, where print is large):
/// at full size Leptonica often can, and where it sees the print upright Tesseract's
/// orientation detection is spared (0.3-0.45 s of OCR time on each of three pages of
/// `scans-24p.pdf`, look included).
pub fn upright_at_full_size(pixels: &PagePixels) -> Result<Option<bool>, LeptError> {
    ink_of(pixels)?.0.upright_text()
}

/// A page's ink as [`measure`] finds it: the page in gray, its background brought to one
/// level, thresholded at its Otsu level; with the share of midtones on the levelled page.
/// A page of black and white only (a 1-bit scan) is its own ink: levelling leaves its black
/// at 0 and its white at 200 or more, which Otsu's level then separates, so it is skipped
/// (it took about half of a 300-DPI page's measurement, some 30 ms).
fn ink_of(pixels: &PagePixels) -> Result<(Pix, f32), LeptError> {
    if is_bilevel(pixels) {
        return Ok((Pix::threshold_pixels(pixels, 128)?, 0.0));
    }
    levelled_ink(pixels)
}

/// [`ink_of`] through levelling and Otsu's level, for any page.
fn levelled_ink(pixels: &PagePixels) -> Result<(Pix, f32), LeptError> {
    let gray = match pixels {
        PagePixels::Gray(gray) => Pix::from_gray(gray)?,
        PagePixels::Rgb(_) => Pix::from_pixels(pixels)?.to_gray_pix()?,
    };
    let normalized = gray.background_normalized()?;
    let histogram = normalized.gray_histogram(HISTOGRAM_SUBSAMPLING)?;
    let threshold = otsu_threshold(&histogram).min(MAX_INK_LEVEL);
    let counted: u64 = histogram.iter().sum();
    let midtones: u64 = histogram[MIDTONES].iter().sum();
    Ok((
        normalized.threshold(threshold as i32)?,
        midtones as f32 / counted.max(1) as f32,
    ))
}

/// [`measure`] from component boxes (`x, y, width, height`) of a page `page_height` pixels tall.
pub fn from_boxes(boxes: &[[u32; 4]], page_height: u32) -> TextSize {
    let max_height = (page_height / MAX_LETTER_PAGE_FRACTION).max(MIN_LETTER_HEIGHT_PX);
    let letters: Vec<[u32; 4]> = boxes
        .iter()
        .copied()
        .filter(|&[_, _, w, h]| {
            (MIN_LETTER_HEIGHT_PX..=max_height).contains(&h)
                && w <= MAX_LETTER_ASPECT * h
                && h <= MAX_LETTER_ASPECT * w.max(1)
        })
        .collect();
    let Some(x_height) = modal(letters.iter().map(|b| b[3])) else {
        return TextSize::NONE;
    };
    let near = |v: u32, m: u32| (v as f32 - m as f32).abs() <= MODE_TOLERANCE * m as f32;
    let by_height = letters.iter().filter(|b| near(b[3], x_height)).count();
    // The same count along the other axis: turned text has its x-height across the page.
    let x_width = modal(letters.iter().map(|b| b[2])).unwrap_or(0);
    let by_width = letters.iter().filter(|b| near(b[2], x_width)).count();
    if by_width > by_height + by_height / 4 {
        // Turned print: its x-height lies across the page, and its lines run up or down it.
        let across: Vec<[u32; 4]> = letters
            .iter()
            .filter(|b| near(b[2], x_width))
            .map(|&[x, y, w, h]| [y, x, h, w])
            .collect();
        TextSize {
            x_height: x_width,
            letters: by_width,
            sideways: true,
            upright: None,
            lined: lined_letters(across, x_width),
            midtones: 0.0,
        }
    } else {
        let upright: Vec<[u32; 4]> = letters
            .iter()
            .copied()
            .filter(|b| near(b[3], x_height))
            .collect();
        TextSize {
            x_height,
            letters: by_height,
            sideways: false,
            upright: None,
            lined: lined_letters(upright, x_height),
            midtones: 0.0,
        }
    }
}

/// How many of `letters` (boxes of about `x_height`, lines running along x) have another
/// beside them in their line: centres within a quarter x-height across the line, and at most
/// an x-height of gap between them along it.
fn lined_letters(mut letters: Vec<[u32; 4]>, x_height: u32) -> usize {
    // Twice the centre across the line, in whole pixels.
    let centre = |b: &[u32; 4]| 2 * b[1] as i64 + b[3] as i64;
    letters.sort_unstable_by_key(centre);
    let (across, along) = (x_height as i64 / 2, x_height as i64);
    let beside = |a: &[u32; 4], b: &[u32; 4]| {
        let gap = (b[0] as i64 - (a[0] + a[2]) as i64).max(a[0] as i64 - (b[0] + b[2]) as i64);
        gap <= along
    };
    (0..letters.len())
        .filter(|&i| {
            let a = &letters[i];
            let after = letters[i + 1..]
                .iter()
                .take_while(|b| centre(b) - centre(a) <= across);
            let before = letters[..i]
                .iter()
                .rev()
                .take_while(|b| centre(a) - centre(b) <= across);
            after.chain(before).any(|b| beside(a, b))
        })
        .count()
}

/// The most common size, each component counted by its size (so that the many specks of a
/// halftone picture or a noisy photo do not outweigh the fewer, larger letters of its text)
/// and together with its neighbouring sizes (so that a size split between two pixel counts
/// is still found); the larger on a tie.
fn modal(values: impl Iterator<Item = u32>) -> Option<u32> {
    let mut weights = Vec::<u64>::new();
    for v in values {
        let v = v as usize;
        if weights.len() <= v + 1 {
            weights.resize(v + 2, 0);
        }
        weights[v] += v as u64;
    }
    (1..weights.len().saturating_sub(1))
        .map(|v| (weights[v - 1] + 2 * weights[v] + weights[v + 1], v))
        .filter(|&(score, _)| score > 0)
        .max()
        .map(|(_, v)| v as u32)
}

/// Otsu's threshold: the gray level that best separates the histogram into two classes
/// (ink below it, paper from it up). A page of one level gets the middle.
pub fn otsu_threshold(counts: &[u64; 256]) -> u8 {
    let total: u64 = counts.iter().sum();
    let sum_all: f64 = counts
        .iter()
        .enumerate()
        .map(|(v, &c)| v as f64 * c as f64)
        .sum();
    let (mut below, mut sum_below) = (0u64, 0f64);
    let (mut best, mut best_level) = (0f64, None);
    for (level, &count) in counts.iter().enumerate() {
        below += count;
        sum_below += level as f64 * count as f64;
        let above = total - below;
        if below == 0 || above == 0 {
            continue;
        }
        let mean_below = sum_below / below as f64;
        let mean_above = (sum_all - sum_below) / above as f64;
        let between = below as f64 * above as f64 * (mean_below - mean_above).powi(2);
        if between > best {
            best = between;
            // Pixels darker than the threshold are ink: the class below includes `level`.
            best_level = Some(level + 1);
        }
    }
    best_level.map_or(128, |l| l.min(255) as u8)
}

#[cfg(test)]
mod tests {
    use super::*;
    use image::{GrayImage, Luma};

    /// Lines of "letters" `h` tall (one in five an ascender, half again as tall) and of
    /// widths varying around `w` as real letters' do, a third of `w` apart, on lines `3 h`
    /// apart.
    fn print(width: u32, height: u32, w: u32, h: u32) -> GrayImage {
        let widths = [w / 2, w, w + w / 3, w - w / 4, 2 * w - w / 3];
        let gap = w / 3;
        // Where each letter of a line starts, and its width.
        let mut letters = Vec::new();
        let mut x = 0;
        for i in 0.. {
            let lw = widths[i % widths.len()];
            if x + lw >= width {
                break;
            }
            letters.push((x, lw));
            x += lw + gap;
        }
        GrayImage::from_fn(width, height, |x, y| {
            let (line, in_line) = (y / (h * 3), y % (h * 3));
            let Some(i) = letters.iter().position(|&(lx, lw)| x >= lx && x < lx + lw) else {
                return Luma([235]);
            };
            let tall = (i as u32 + line).is_multiple_of(5);
            let top = if tall { 0 } else { h / 2 };
            let ink = in_line >= top && in_line < h / 2 + h;
            Luma([if ink { 20 } else { 235 }])
        })
    }

    #[test]
    fn letters_in_lines_are_lined_and_scattered_specks_are_not() {
        // Print: nearly every letter has a neighbour in its line.
        let size = measure(&PagePixels::Gray(print(1200, 900, 14, 20)), false).unwrap();
        assert!(size.lined * 10 >= size.letters * 9, "{size:?}");
        assert!(!size.picture_without_text());
        // Print turned on its side: its lines are counted across the page.
        let turned = PagePixels::Gray(print(1200, 900, 14, 20)).rotated(90);
        let size = measure(&turned, false).unwrap();
        assert!(size.sideways, "{size:?}");
        assert!(size.lined * 10 >= size.letters * 9, "{size:?}");
        // The same letters scattered, each alone: none stands in a line.
        let scattered: Vec<[u32; 4]> = (0..200u32)
            .map(|i| [(i * 97) % 40 * 60, (i * 89) % 50 * 60, 14, 20])
            .collect();
        let size = from_boxes(&scattered, 3000);
        assert_eq!(size.letters, 200);
        assert_eq!(size.lined, 0);
        // A picture is midtones and no lines; print on photographed paper has midtones too.
        let picture = TextSize {
            midtones: 0.3,
            ..size
        };
        assert!(picture.picture_without_text());
        let print_on_paper = TextSize {
            lined: 300,
            ..picture
        };
        assert!(!print_on_paper.picture_without_text());
    }

    #[test]
    fn a_black_and_white_page_is_its_own_ink() {
        // Print in black on white, and a black picture large enough to upset the levelling's
        // map of the background around it.
        let mut page = print(1200, 900, 14, 20);
        for (x, y, v) in page.enumerate_pixels_mut() {
            let picture = (600..1000).contains(&x) && (300..700).contains(&y);
            v.0[0] = if v.0[0] < 128 || picture { 0 } else { 255 };
        }
        let page = PagePixels::Gray(page);
        let (ink, midtones) = ink_of(&page).unwrap();
        let (levelled, levelled_midtones) = levelled_ink(&page).unwrap();
        let boxes = ink.component_boxes().unwrap();
        assert!(boxes.len() > 500, "{}", boxes.len());
        assert_eq!(boxes, levelled.component_boxes().unwrap());
        assert_eq!(midtones, levelled_midtones);
        // A page with gray in it goes through the levelling.
        let gray = PagePixels::Gray(print(1200, 900, 14, 20));
        assert!(!is_bilevel(&gray));
    }

    #[test]
    fn the_x_height_is_the_modal_letter_height() {
        let size = measure(&PagePixels::Gray(print(1200, 900, 14, 20)), true).unwrap();
        assert_eq!(size.x_height, 20);
        assert!(size.letters > 500, "{size:?}");
        assert!(!size.sideways);
        // Twice the print, twice the x-height.
        let size = measure(&PagePixels::Gray(print(2400, 1800, 28, 40)), true).unwrap();
        assert_eq!(size.x_height, 40);
    }

    #[test]
    fn print_turned_on_its_side_is_seen_as_sideways() {
        let upright = print(1200, 900, 14, 20);
        let turned = image::imageops::rotate90(&upright);
        let size = measure(&PagePixels::Gray(turned), true).unwrap();
        assert!(size.sideways, "{size:?}");
        assert_eq!(size.x_height, 20, "measured across the page");
    }

    #[test]
    fn a_blank_page_has_no_letters() {
        let mut page = GrayImage::from_pixel(1000, 1400, Luma([240]));
        // Two specks of dust.
        page.put_pixel(10, 10, Luma([0]));
        page.put_pixel(500, 700, Luma([0]));
        assert_eq!(
            measure(&PagePixels::Gray(page), true).unwrap(),
            TextSize::NONE
        );
    }

    #[test]
    fn otsu_separates_two_levels() {
        let mut counts = [0u64; 256];
        counts[30] = 100;
        counts[220] = 900;
        let t = otsu_threshold(&counts);
        assert!(t > 30 && t <= 220, "{t}");
    }
}
