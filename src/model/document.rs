//! An opened document: its bytes, its type and its pages, checked against the pipeline limits.
//!
//! Opening is cheap and safe: a PDF's cross-reference table and page tree are parsed, an
//! image's header (each page's, for a multi-page TIFF) is read, and nothing is decoded. Pages are rendered or decoded later, one at a time,
//! when OCR has room for them.

use std::io::{BufRead, Seek};
use std::sync::Arc;

use hayro::hayro_syntax::{LoadPdfError, Pdf};
use image::ImageDecoder;

use crate::config::LimitsConfig;
use crate::model::error::JobError;
use crate::model::image_pages::{PageReader, tiff_directory_offsets};
use crate::model::media_type::{MediaType, detect_media_type};

/// A document ready to be rendered page by page.
#[derive(Clone)]
pub struct Document {
    pub media_type: MediaType,
    pub page_count: u32,
    pub content: Content,
}

/// The parsed form of the document, shared by the pool threads that render its pages.
#[derive(Clone)]
pub enum Content {
    Pdf(Arc<Pdf>),
    /// An image file: one page, or one per directory of a multi-page TIFF.
    Image {
        bytes: Arc<Vec<u8>>,
        pages: Vec<ImagePage>,
    },
}

/// One page of an image file, as its header describes it.
#[derive(Debug, Clone, Copy)]
pub struct ImagePage {
    /// The page's TIFF directory; `None` for the file's only (or first) image.
    pub directory: Option<u32>,
    pub width: u32,
    pub height: u32,
}

impl std::fmt::Debug for Document {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Document")
            .field("media_type", &self.media_type)
            .field("page_count", &self.page_count)
            .finish()
    }
}

const _: () = {
    const fn shared_across_threads<T: Send + Sync>() {}
    shared_across_threads::<Document>();
};

/// Detects the type, opens the document and checks the byte and page limits.
pub fn open_document(bytes: Vec<u8>, limits: &LimitsConfig) -> Result<Document, JobError> {
    let media_type = detect_media_type(&bytes)?;
    open_document_as(bytes, media_type, limits)
}

/// Opens a document whose type is already known and checks the byte and page limits.
pub fn open_document_as(
    bytes: Vec<u8>,
    media_type: MediaType,
    limits: &LimitsConfig,
) -> Result<Document, JobError> {
    let len = bytes.len() as u64;
    if len > limits.max_document_bytes {
        return Err(JobError::TooLarge {
            bytes: len,
            limit: limits.max_document_bytes,
        });
    }
    let doc = match media_type {
        MediaType::Pdf => open_pdf(bytes)?,
        MediaType::Png | MediaType::Jpeg | MediaType::Tiff => {
            open_image(bytes, media_type, limits.max_pages)?
        }
    };
    if doc.page_count == 0 {
        return Err(JobError::InvalidPdf("the document has no pages".into()));
    }
    if doc.page_count > limits.max_pages {
        return Err(JobError::TooManyPages {
            pages: doc.page_count as u64,
            limit: limits.max_pages,
        });
    }
    Ok(doc)
}

fn open_pdf(bytes: Vec<u8>) -> Result<Document, JobError> {
    // A PDF ends with %%EOF (possibly followed by a little whitespace or junk). Without one the
    // file was cut short; hayro could still reconstruct the objects, but pages would be missing
    // or their images half-empty, and a silent partial result is worse than a clear error.
    let tail = &bytes[bytes.len().saturating_sub(4096)..];
    if !tail.windows(5).any(|w| w == b"%%EOF") {
        return Err(JobError::Truncated(
            "no %%EOF marker at the end of the PDF".into(),
        ));
    }
    let pdf = Pdf::new(bytes).map_err(|e| match e {
        LoadPdfError::Decryption(_) => JobError::Encrypted,
        LoadPdfError::Invalid => {
            JobError::InvalidPdf("no readable cross-reference table or page tree".into())
        }
    })?;
    let page_count = pdf.pages().len() as u32;
    Ok(Document {
        media_type: MediaType::Pdf,
        page_count,
        content: Content::Pdf(Arc::new(pdf)),
    })
}

fn open_image(bytes: Vec<u8>, media_type: MediaType, max_pages: u32) -> Result<Document, JobError> {
    let directories: Vec<Option<u32>> = match media_type {
        MediaType::Tiff => tiff_directory_offsets(&bytes, max_pages)
            .filter(|offsets| !offsets.is_empty())
            .map(|offsets| offsets.into_iter().map(Some).collect())
            .unwrap_or(vec![None]),
        _ => vec![None],
    };
    if directories.len() > max_pages as usize {
        return Err(JobError::TooManyPages {
            pages: directories.len() as u64,
            limit: max_pages,
        });
    }
    let pages = directories
        .into_iter()
        .map(|directory| {
            let (width, height) = image_dimensions(PageReader::new(&bytes, directory), media_type)?;
            Ok(ImagePage {
                directory,
                width,
                height,
            })
        })
        .collect::<Result<Vec<_>, JobError>>()?;
    Ok(Document {
        media_type,
        page_count: pages.len() as u32,
        content: Content::Image {
            bytes: Arc::new(bytes),
            pages,
        },
    })
}

/// Reads only the image header: a decompression bomb declares its size here.
fn image_dimensions(
    cursor: impl BufRead + Seek,
    media_type: MediaType,
) -> Result<(u32, u32), JobError> {
    let invalid = |e: image::ImageError| JobError::InvalidImage(e.to_string());
    let dims = match media_type {
        MediaType::Png => {
            image::codecs::png::PngDecoder::with_limits(cursor, image::Limits::no_limits())
                .map_err(invalid)?
                .dimensions()
        }
        MediaType::Jpeg => image::codecs::jpeg::JpegDecoder::new(cursor)
            .map_err(invalid)?
            .dimensions(),
        MediaType::Tiff => image::codecs::tiff::TiffDecoder::new(cursor)
            .map_err(invalid)?
            .dimensions(),
        MediaType::Pdf => unreachable!("PDFs are not images"),
    };
    Ok(dims)
}

/// A PDF of `objects`, numbered from 1 (the first is the catalog), with the cross-reference
/// table that finds them: test documents built in memory.
#[cfg(test)]
pub(crate) fn pdf_of_objects(objects: &[&[u8]]) -> Vec<u8> {
    let mut out = b"%PDF-1.4\n".to_vec();
    let mut offsets = Vec::new();
    for (i, object) in objects.iter().enumerate() {
        offsets.push(out.len());
        out.extend_from_slice(format!("{} 0 obj\n", i + 1).as_bytes());
        out.extend_from_slice(object);
        out.extend_from_slice(b"\nendobj\n");
    }
    let xref = out.len();
    let size = objects.len() + 1;
    out.extend_from_slice(format!("xref\n0 {size}\n0000000000 65535 f \n").as_bytes());
    for offset in offsets {
        out.extend_from_slice(format!("{offset:010} 00000 n \n").as_bytes());
    }
    out.extend_from_slice(
        format!("trailer\n<< /Size {size} /Root 1 0 R >>\nstartxref\n{xref}\n%%EOF\n").as_bytes(),
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A one-page PDF whose page dictionary holds `value`.
    fn pdf_with(value: &[u8]) -> Vec<u8> {
        let mut page = b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Foo ".to_vec();
        page.extend_from_slice(value);
        page.extend_from_slice(b" >>");
        pdf_of_objects(&[
            b"<< /Type /Catalog /Pages 2 0 R >>",
            b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
            &page,
        ])
    }

    #[test]
    fn deeply_nested_objects_are_an_error_not_a_stack_overflow() {
        let limits = crate::config::parse_pipeline(
            std::path::Path::new("default.yaml"),
            crate::config::DEFAULT_PIPELINE_YAML,
        )
        .unwrap()
        .limits;
        assert_eq!(
            open_document(pdf_with(b"[[]]"), &limits)
                .unwrap()
                .page_count,
            1
        );
        let n = 200_000;
        let arrays = [b"[".repeat(n), b"]".repeat(n)].concat();
        let dicts = [b"<< /A ".repeat(n), b">>".repeat(n)].concat();
        for nested in [arrays, dicts] {
            let refused = open_document(pdf_with(&nested), &limits).unwrap_err();
            assert_eq!(refused.code(), "invalid_pdf");
        }
    }
}
