//! A page's preview: the image OCR read, reduced to fit a square of `save.preview_max_px`
//! and encoded as PNG, so that a person can see the page with its word boxes drawn on it.
//! It shows the page exactly as it was read (turned upright, levelled), so the word boxes,
//! scaled from the source's pixels to the preview's, land on their words.

use std::io::Cursor;

use image::{DynamicImage, ImageFormat};

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
        PagePixels::Gray(g) => DynamicImage::ImageLuma8(image::imageops::thumbnail(g, w, h)),
        PagePixels::Rgb(c) => DynamicImage::ImageRgb8(image::imageops::thumbnail(c, w, h)),
    };
    let mut png = Cursor::new(Vec::new());
    image
        .write_to(&mut png, ImageFormat::Png)
        .expect("encoding to memory cannot fail");
    png.into_inner()
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
    fn a_small_page_keeps_its_size_and_a_colour_page_its_colour() {
        let page = PagePixels::Rgb(RgbImage::from_pixel(300, 120, image::Rgb([200, 30, 10])));
        let preview = decoded(&preview_png(&page, 600));
        assert_eq!((preview.width(), preview.height()), (300, 120));
        assert_eq!(preview.to_rgb8().get_pixel(5, 5).0, [200, 30, 10]);
    }
}
