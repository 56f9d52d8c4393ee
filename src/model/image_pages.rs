//! Pages of image documents. PNG and JPEG files are one page; a TIFF is as many pages as its
//! chain of image directories (IFDs) is long.
//!
//! Image decoders read the first directory only, so page *i* of a TIFF is read through a
//! [`PageReader`] that shows the file with the header's first-directory offset pointing at
//! directory *i*: no copy of the file, and every decoder works on any page.

use std::io::{BufRead, Read, Seek, SeekFrom};

/// Offsets of a classic TIFF's image directories, in order, at most `max_pages` + 1 of them
/// (so that "too many pages" can be told). `None` when the bytes are not a classic TIFF
/// (BigTIFF, or not TIFF at all) or the chain is malformed: then the file is one page.
pub fn tiff_directory_offsets(bytes: &[u8], max_pages: u32) -> Option<Vec<u32>> {
    let read_u16 = |at: usize, le: bool| -> Option<u16> {
        let b: [u8; 2] = bytes.get(at..at + 2)?.try_into().ok()?;
        Some(if le {
            u16::from_le_bytes(b)
        } else {
            u16::from_be_bytes(b)
        })
    };
    let read_u32 = |at: usize, le: bool| -> Option<u32> {
        let b: [u8; 4] = bytes.get(at..at + 4)?.try_into().ok()?;
        Some(if le {
            u32::from_le_bytes(b)
        } else {
            u32::from_be_bytes(b)
        })
    };
    let le = match bytes.get(0..2)? {
        b"II" => true,
        b"MM" => false,
        _ => return None,
    };
    if read_u16(2, le)? != 42 {
        return None;
    }
    let mut offsets = Vec::new();
    let mut next = read_u32(4, le)?;
    while next != 0 && offsets.len() <= max_pages as usize {
        if offsets.contains(&next) {
            return None; // a loop in the chain
        }
        offsets.push(next);
        let entries = read_u16(next as usize, le)? as usize;
        next = read_u32(next as usize + 2 + entries * 12, le)?;
    }
    Some(offsets)
}

/// The bytes of an image file as one of its pages: identical to the file, except that for a
/// TIFF page the header's first-directory offset names that page's directory.
#[derive(Debug, Clone)]
pub struct PageReader<'a> {
    bytes: &'a [u8],
    header: [u8; 8],
    pos: u64,
}

impl<'a> PageReader<'a> {
    /// The file as it is (`directory: None`) or as TIFF page at `directory`.
    pub fn new(bytes: &'a [u8], directory: Option<u32>) -> Self {
        let mut header = [0u8; 8];
        let n = bytes.len().min(8);
        header[..n].copy_from_slice(&bytes[..n]);
        if let Some(offset) = directory {
            let encoded = if &header[0..2] == b"II" {
                offset.to_le_bytes()
            } else {
                offset.to_be_bytes()
            };
            header[4..8].copy_from_slice(&encoded);
        }
        PageReader {
            bytes,
            header,
            pos: 0,
        }
    }

    fn remaining(&self) -> &[u8] {
        let pos = self.pos.min(self.bytes.len() as u64) as usize;
        if pos < self.header.len().min(self.bytes.len()) {
            &self.header[pos..self.header.len().min(self.bytes.len())]
        } else {
            &self.bytes[pos..]
        }
    }
}

impl Read for PageReader<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let available = self.remaining();
        let n = available.len().min(buf.len());
        buf[..n].copy_from_slice(&available[..n]);
        self.pos += n as u64;
        Ok(n)
    }
}

impl BufRead for PageReader<'_> {
    fn fill_buf(&mut self) -> std::io::Result<&[u8]> {
        Ok(self.remaining())
    }

    fn consume(&mut self, amount: usize) {
        self.pos += amount as u64;
    }
}

impl Seek for PageReader<'_> {
    fn seek(&mut self, to: SeekFrom) -> std::io::Result<u64> {
        let len = self.bytes.len() as i128;
        let target = match to {
            SeekFrom::Start(n) => n as i128,
            SeekFrom::End(d) => len + d as i128,
            SeekFrom::Current(d) => self.pos as i128 + d as i128,
        };
        if target < 0 {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                "seek before the start",
            ));
        }
        self.pos = target as u64;
        Ok(self.pos)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_page_reader_patches_only_the_first_directory_offset() {
        let bytes = b"II*\0\x08\0\0\0payload".to_vec();
        let mut page = PageReader::new(&bytes, Some(0x0102_0304));
        let mut out = Vec::new();
        page.read_to_end(&mut out).unwrap();
        assert_eq!(&out[..8], b"II*\0\x04\x03\x02\x01");
        assert_eq!(&out[8..], b"payload");
        page.seek(SeekFrom::Start(9)).unwrap();
        let mut one = [0u8; 1];
        page.read_exact(&mut one).unwrap();
        assert_eq!(&one, b"a");
    }

    #[test]
    fn directory_chains_are_followed_and_loops_refused() {
        // Header -> IFD at 8 (0 entries) -> IFD at 14 (0 entries) -> end.
        let mut bytes = b"II*\0\x08\0\0\0".to_vec();
        bytes.extend_from_slice(&[0, 0, 14, 0, 0, 0]);
        bytes.extend_from_slice(&[0, 0, 0, 0, 0, 0]);
        assert_eq!(tiff_directory_offsets(&bytes, 10), Some(vec![8, 14]));
        bytes[16..20].copy_from_slice(&[8, 0, 0, 0]);
        assert_eq!(tiff_directory_offsets(&bytes, 10), None);
        assert_eq!(tiff_directory_offsets(b"\x89PNG", 10), None);
    }
}
