//! Document type detection from the bytes themselves, never from a file name.

use serde::{Deserialize, Serialize};

use crate::model::error::JobError;

/// The document types pagemill reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum MediaType {
    #[serde(rename = "application/pdf")]
    Pdf,
    #[serde(rename = "image/png")]
    Png,
    #[serde(rename = "image/jpeg")]
    Jpeg,
    #[serde(rename = "image/tiff")]
    Tiff,
}

impl MediaType {
    pub fn as_str(self) -> &'static str {
        match self {
            MediaType::Pdf => "application/pdf",
            MediaType::Png => "image/png",
            MediaType::Jpeg => "image/jpeg",
            MediaType::Tiff => "image/tiff",
        }
    }
}

/// Detects the media type from magic bytes. A PDF header may follow a little junk, as readers
/// allow; anything recognised but unsupported (ZIP, Office files, GIF...) is named in the error.
pub fn detect_media_type(bytes: &[u8]) -> Result<MediaType, JobError> {
    if bytes.is_empty() {
        return Err(JobError::EmptyDocument);
    }
    let head = &bytes[..bytes.len().min(1024)];
    if head.windows(5).any(|w| w == b"%PDF-") {
        return Ok(MediaType::Pdf);
    }
    match infer::get(bytes).map(|t| t.mime_type()) {
        Some("image/png") => Ok(MediaType::Png),
        Some("image/jpeg") => Ok(MediaType::Jpeg),
        Some("image/tiff") => Ok(MediaType::Tiff),
        Some(other) => Err(JobError::UnsupportedType(other.to_string())),
        None => Err(JobError::NotADocument),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn detects_by_magic_bytes() {
        assert_eq!(detect_media_type(b"%PDF-1.7\n..."), Ok(MediaType::Pdf));
        assert_eq!(
            detect_media_type(b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR"),
            Ok(MediaType::Png)
        );
        assert_eq!(
            detect_media_type(b"II*\0\x08\0\0\0\x10\0\xfe\0"),
            Ok(MediaType::Tiff)
        );
        assert_eq!(detect_media_type(b""), Err(JobError::EmptyDocument));
        assert_eq!(
            detect_media_type(b"hello, plain text"),
            Err(JobError::NotADocument)
        );
        assert!(matches!(
            detect_media_type(b"PK\x03\x04\x14\0\0\0\0\0"),
            Err(JobError::UnsupportedType(_))
        ));
    }
}
