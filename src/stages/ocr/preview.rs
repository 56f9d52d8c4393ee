//! A page's preview: the image OCR read, reduced to fit a square of `save.preview_max_px`
//! and encoded as PNG, so that a person can see the page with its word boxes drawn on it.
//! It shows the page exactly as it was read (turned upright, levelled), so the word boxes,
//! scaled from the source's pixels to the preview's, land on their words.
//!
//! Pages are halved by 2x2 averages while they stay at least the preview's size, then
//! area-averaged the rest of the way (less than half), each step in one pass over plain rows.
//! `image`'s area-averaging thumbnail did the same in 46-65 ms a page, 2% of all of
//! `pagemill run`'s CPU on 300-DPI scans. Leptonica's `pixScaleToSize` (through
//! `render::lept`) took 40-50 ms against 11-16 ms for this on the same 2550x3300 page, and
//! its area map is coarser: one-pixel lines reduced 6.7x came out at 115-139 instead of 128,
//! and 1,049 of the 270,000 pixels at 0 or 255.

use std::io::Cursor;

use image::{DynamicImage, ImageBuffer, ImageFormat, Pixel};

use crate::model::page::PagePixels;

/// The page reduced so that its longer side is at most `max_side` pixels (never enlarged),
/// as PNG.
pub fn preview_png(pixels: &PagePixels, max_side: u32) -> Vec<u8> {
    let (width, height) = pixels.dimensions();
    let longer = width.max(height).max(1);
    let (w, h) = if longer <= max_side {
        (width, height)
    } else {
        let fit = |side: u32| ((side as u64 * max_side as u64 / longer as u64) as u32).max(1);
        (fit(width), fit(height))
    };
    let image = match pixels {
        PagePixels::Gray(g) => DynamicImage::ImageLuma8(reduced(g, w, h)),
        PagePixels::Rgb(c) => DynamicImage::ImageRgb8(reduced(c, w, h)),
    };
    let mut png = Cursor::new(Vec::new());
    image
        .write_to(&mut png, ImageFormat::Png)
        .expect("encoding to memory cannot fail");
    png.into_inner()
}

type Image8<P> = ImageBuffer<P, Vec<u8>>;

/// `image` reduced to `width` x `height` (at most its size): halved while the half is still
/// at least that size, then area-averaged the rest of the way.
fn reduced<P: Pixel<Subpixel = u8> + 'static>(
    image: &Image8<P>,
    width: u32,
    height: u32,
) -> Image8<P> {
    let mut halved_so_far: Option<Image8<P>> = None;
    loop {
        let current = halved_so_far.as_ref().unwrap_or(image);
        if current.width() / 2 < width || current.height() / 2 < height {
            return area_resized(current, width, height);
        }
        halved_so_far = Some(halved(current));
    }
}

/// `image` at half its size, each pixel the rounded mean of a 2x2 block (an odd last row or
/// column is left out).
fn halved<P: Pixel<Subpixel = u8> + 'static>(image: &Image8<P>) -> Image8<P> {
    let channels = P::CHANNEL_COUNT as usize;
    let (width, height) = (image.width() / 2, image.height() / 2);
    let row_len = image.width() as usize * channels;
    let half_row_len = width as usize * channels;
    let mut out = vec![0u8; half_row_len * height as usize];
    if half_row_len == 0 {
        return ImageBuffer::from_raw(width, height, out).expect("empty");
    }
    let rows = image.as_raw().chunks_exact(row_len);
    let row_pairs = rows.clone().step_by(2).zip(rows.skip(1).step_by(2));
    for (out_row, (top, bottom)) in out.chunks_exact_mut(half_row_len).zip(row_pairs) {
        let blocks = top
            .chunks_exact(2 * channels)
            .zip(bottom.chunks_exact(2 * channels));
        for (pixel, (top, bottom)) in out_row.chunks_exact_mut(channels).zip(blocks) {
            for (c, value) in pixel.iter_mut().enumerate() {
                let sum = top[c] as u16
                    + top[c + channels] as u16
                    + bottom[c] as u16
                    + bottom[c + channels] as u16;
                *value = ((sum + 2) / 4) as u8;
            }
        }
    }
    ImageBuffer::from_raw(width, height, out).expect("sized for width x height above")
}

/// `image` reduced to `width` x `height` (each at most its size, more than half of it) by
/// area averaging: each pixel the mean of the source area it covers, the source pixels at its
/// edges counted by the part of them it covers. Rows first, then columns.
fn area_resized<P: Pixel<Subpixel = u8> + 'static>(
    image: &Image8<P>,
    width: u32,
    height: u32,
) -> Image8<P> {
    if (image.width(), image.height()) == (width, height) {
        return image.clone();
    }
    let channels = P::CHANNEL_COUNT as usize;
    let columns = area_weights(image.width(), width);
    let rows = area_weights(image.height(), height);
    let (row_len, out_row_len) = (image.width() as usize * channels, width as usize * channels);
    // Every source row reduced to `width` pixels.
    let mut narrowed = vec![0f32; out_row_len * image.height() as usize];
    for (row, out) in image
        .as_raw()
        .chunks_exact(row_len)
        .zip(narrowed.chunks_exact_mut(out_row_len))
    {
        for (&(sources, weights), pixel) in columns.iter().zip(out.chunks_exact_mut(channels)) {
            for (c, value) in pixel.iter_mut().enumerate() {
                *value = (0..COVERED)
                    .map(|k| row[sources[k] * channels + c] as f32 * weights[k])
                    .sum();
            }
        }
    }
    let mut out = vec![0u8; out_row_len * height as usize];
    for (&(sources, weights), out_row) in rows.iter().zip(out.chunks_exact_mut(out_row_len)) {
        let [a, b, c] = sources.map(|r| &narrowed[r * out_row_len..][..out_row_len]);
        for (i, value) in out_row.iter_mut().enumerate() {
            let sum = a[i] * weights[0] + b[i] * weights[1] + c[i] * weights[2];
            *value = (sum + 0.5) as u8;
        }
    }
    ImageBuffer::from_raw(width, height, out).expect("sized for width x height above")
}

/// Source pixels a reduced pixel covers: at most three while it covers less than two.
const COVERED: usize = 3;

/// For each of `to` pixels along an axis of `from` pixels (`from / 2 < to <= from`): the
/// source pixels it covers and their weights (summing to 1; unused ones weigh 0).
fn area_weights(from: u32, to: u32) -> Vec<([usize; COVERED], [f32; COVERED])> {
    let step = from as f64 / to.max(1) as f64;
    (0..to)
        .map(|i| {
            let (start, end) = (i as f64 * step, ((i + 1) as f64 * step).min(from as f64));
            let first = start.floor() as usize;
            let sources = std::array::from_fn(|k| (first + k).min(from as usize - 1));
            let weights = std::array::from_fn(|k| {
                let j = (first + k) as f64;
                let covered = (end.min(j + 1.0) - start.max(j)).max(0.0);
                (covered / step) as f32
            });
            (sources, weights)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use image::{GrayImage, Luma, RgbImage};

    fn decoded(png: &[u8]) -> DynamicImage {
        image::load_from_memory_with_format(png, ImageFormat::Png).unwrap()
    }

    #[test]
    fn a_large_page_shrinks_to_the_longest_side_keeping_its_shape() {
        let page = PagePixels::Gray(GrayImage::from_pixel(2000, 3000, Luma([200])));
        let preview = decoded(&preview_png(&page, 600));
        assert_eq!((preview.width(), preview.height()), (400, 600));
        assert_eq!(preview.to_luma8().get_pixel(10, 10), &Luma([200]));
    }

    #[test]
    fn a_page_many_times_the_preview_is_averaged_not_sampled() {
        // One-pixel black lines on white, every other column: any sampling would give white
        // or black; averaging gives the mid gray everywhere.
        let lines = GrayImage::from_fn(4000, 3000, |x, _| Luma([if x % 2 == 0 { 0 } else { 255 }]));
        let preview = decoded(&preview_png(&PagePixels::Gray(lines), 600)).to_luma8();
        assert_eq!((preview.width(), preview.height()), (600, 450));
        for pixel in preview.pixels() {
            assert!((126..=129).contains(&pixel.0[0]), "{pixel:?}");
        }
        let colour = RgbImage::from_fn(1001, 801, |x, y| {
            image::Rgb([(x % 256) as u8, (y % 256) as u8, 77])
        });
        let halved = halved(&colour);
        assert_eq!((halved.width(), halved.height()), (500, 400));
        assert_eq!(halved.get_pixel(0, 0).0, [1, 1, 77]);
        assert_eq!(halved.get_pixel(10, 20).0, [21, 41, 77]);
    }

    #[test]
    fn each_reduced_pixel_weighs_the_source_area_it_covers() {
        // 3 pixels into 2: the middle source pixel is shared half and half.
        let weights = area_weights(3, 2);
        assert_eq!(weights[0].0, [0, 1, 2]);
        assert_eq!(weights[1].0, [1, 2, 2]);
        for (w, expected) in weights[0].1.iter().zip([2.0 / 3.0, 1.0 / 3.0, 0.0]) {
            assert!((w - expected).abs() < 1e-6, "{weights:?}");
        }
        for (w, expected) in weights[1].1.iter().zip([1.0 / 3.0, 2.0 / 3.0, 0.0]) {
            assert!((w - expected).abs() < 1e-6, "{weights:?}");
        }
        let row = GrayImage::from_raw(3, 1, vec![0, 90, 180]).unwrap();
        assert_eq!(area_resized(&row, 2, 1).as_raw(), &vec![30, 150]);
    }

    #[test]
    fn a_small_page_keeps_its_size_and_a_colour_page_its_colour() {
        let page = PagePixels::Rgb(RgbImage::from_pixel(300, 120, image::Rgb([200, 30, 10])));
        let preview = decoded(&preview_png(&page, 600));
        assert_eq!((preview.width(), preview.height()), (300, 120));
        assert_eq!(preview.to_rgb8().get_pixel(5, 5).0, [200, 30, 10]);
    }
}
