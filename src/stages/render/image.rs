//! Image documents (PNG, JPEG, TIFF): decoding to grayscale and reading their resolution.

use std::io::{BufRead, Seek};

use image::{ImageReader, Limits};

use crate::limits::{CREDIBLE_DPI, FALLBACK_IMAGE_DPI};
use crate::model::error::JobError;
use crate::model::media_type::MediaType;
use crate::model::page::PagePixels;

/// Decodes an image into 8-bit grayscale, or 8-bit RGB if it has colour. `max_pixels` bounds
/// the decoder's allocation as a second line of defence behind the header check done at
/// ingest.
pub fn decode_page(
    page: impl BufRead + Seek,
    media_type: MediaType,
    max_pixels: u64,
) -> Result<PagePixels, JobError> {
    let format = match media_type {
        MediaType::Png => image::ImageFormat::Png,
        MediaType::Jpeg => image::ImageFormat::Jpeg,
        MediaType::Tiff => image::ImageFormat::Tiff,
        MediaType::Pdf => unreachable!("PDF pages are rendered, not decoded"),
    };
    let mut reader = ImageReader::with_format(page, format);
    let mut limits = Limits::default();
    // Up to 4 channels of 16 bits while decoding, plus the grayscale copy.
    limits.max_alloc = Some(max_pixels.saturating_mul(9));
    reader.limits(limits);
    let image = reader.decode().map_err(|e| match e {
        image::ImageError::Decoding(d) if d.to_string().contains("end of") => {
            JobError::Truncated(d.to_string())
        }
        image::ImageError::IoError(io) if io.kind() == std::io::ErrorKind::UnexpectedEof => {
            JobError::Truncated("the image data ends early".into())
        }
        other => JobError::InvalidImage(other.to_string()),
    })?;
    Ok(if image.color().has_color() {
        PagePixels::Rgb(image.into_rgb8())
    } else {
        PagePixels::Gray(image.into_luma8())
    })
}

/// The image's resolution from its own metadata, or [`FALLBACK_IMAGE_DPI`] when it has none or
/// an implausible one (Tesseract would otherwise assume 70 DPI and read small print badly).
/// `page` is the page to read (TIFF files hold one resolution per page).
pub fn image_dpi(bytes: &[u8], page: impl BufRead + Seek, media_type: MediaType) -> u32 {
    let declared = match media_type {
        MediaType::Png => png_dpi(page),
        MediaType::Jpeg => jfif_dpi(bytes),
        MediaType::Tiff => tiff_dpi(page),
        MediaType::Pdf => None,
    };
    match declared {
        Some(dpi) if CREDIBLE_DPI.contains(&dpi) => dpi,
        _ => FALLBACK_IMAGE_DPI,
    }
}

fn png_dpi(page: impl BufRead + Seek) -> Option<u32> {
    let decoder = png::Decoder::new(page);
    let reader = decoder.read_info().ok()?;
    let dims = reader.info().pixel_dims?;
    match dims.unit {
        png::Unit::Meter => Some((dims.xppu as f64 * 0.0254).round() as u32),
        png::Unit::Unspecified => None,
    }
}

/// Reads the density of a JPEG's JFIF APP0 segment.
fn jfif_dpi(bytes: &[u8]) -> Option<u32> {
    // SOI, then APP0: FF E0 len(2) "JFIF\0" version(2) units(1) xdensity(2) ydensity(2)
    let app0 = bytes.get(2..20)?;
    if app0[0..2] != [0xFF, 0xE0] || &app0[4..9] != b"JFIF\0" {
        return None;
    }
    let units = app0[11];
    let x = u16::from_be_bytes([app0[12], app0[13]]) as f64;
    match units {
        1 => Some(x as u32),
        2 => Some((x * 2.54).round() as u32),
        _ => None,
    }
}

fn tiff_dpi(page: impl BufRead + Seek) -> Option<u32> {
    use tiff::tags::Tag;
    let mut decoder = tiff::decoder::Decoder::new(page).ok()?;
    let res = decoder.get_tag(Tag::XResolution).ok()?;
    let value = match res {
        tiff::decoder::ifd::Value::Rational(n, d) if d != 0 => n as f64 / d as f64,
        other => other.into_f64().ok()?,
    };
    // ResolutionUnit: 1 = none, 2 = inch (default), 3 = centimetre.
    let unit = decoder.get_tag_u32(Tag::ResolutionUnit).unwrap_or(2);
    match unit {
        2 => Some(value.round() as u32),
        3 => Some((value * 2.54).round() as u32),
        _ => None,
    }
}
