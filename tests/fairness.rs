//! Sharing OCR between jobs: a small job submitted behind a large one is not queued behind
//! all of its pages. Real rendering and Tesseract on the repository's fixtures; the claims
//! are about order (pages of the large job done meanwhile), not about seconds.

use crate::common;

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use common::*;
use pagemill::pipeline::messages::JobRequest;
use pagemill::pipeline::supervisor::{PipelineHandle, StartOptions};
use pagemill::runtime::pool::CpuPool;

/// Pages of the large job.
const LARGE_PAGES: usize = 40;

/// Most pages of the large job that may finish OCR between the small job's submission and
/// its result. The small page waits for a credit into OCR (the large job may have asked
/// first), for a pool thread to render it and one to recognize it: about six pages of the
/// large job finish meanwhile on two threads. A small job queued behind the large one's
/// rendering would see at least `LARGE_PAGES - edges.ocr_pages - 2` (30) of them.
const MOST_PAGES_MEANWHILE: u32 = 12;

/// A multi-page TIFF of `pages` copies of phototest.tif, at its 200 DPI.
pub(crate) fn multi_page_tiff(path: &Path, pages: usize) {
    use tiff::encoder::{Rational, TiffEncoder, colortype::Gray8};
    use tiff::tags::ResolutionUnit;

    let page = image::open(fixture("phototest.tif")).unwrap().into_luma8();
    let mut file = std::fs::File::create(path).unwrap();
    let mut encoder = TiffEncoder::new(&mut file).unwrap();
    for _ in 0..pages {
        let mut tiff = encoder
            .new_image::<Gray8>(page.width(), page.height())
            .unwrap();
        tiff.resolution(ResolutionUnit::Inch, Rational { n: 200, d: 1 });
        tiff.write_data(page.as_raw()).unwrap();
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_one_page_job_submitted_behind_a_large_one_finishes_first_and_soon() {
    let dir = tempfile::tempdir().unwrap();
    let large = dir.path().join("large.tif");
    multi_page_tiff(&large, LARGE_PAGES);
    let out = tempfile::tempdir().unwrap();
    let p = pipeline(out.path(), &[("threads: 0", "threads: 2")]);
    let pool = CpuPool::new(p.pool.threads).unwrap();
    let (handle, mut finished) = PipelineHandle::start(p, pool, StartOptions::default())
        .await
        .unwrap();
    let handle = Arc::new(handle);
    let ocred = |id: &str| handle.jobs.get(id).map_or(0, |s| s.pages.ocred);

    handle.enqueue(JobRequest::new("large", "large.tif", large), 0);
    // The small job comes once the large one is in full swing: OCR is busy with its pages
    // and the edge into OCR is full of them.
    tokio::time::timeout(Duration::from_secs(300), async {
        while ocred("large") < 2 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("the large job gets going");
    let before = ocred("large");
    handle.enqueue(
        JobRequest::new("small", "phototest.tif", fixture("phototest.tif")),
        0,
    );

    let first = tokio::time::timeout(Duration::from_secs(300), finished.recv())
        .await
        .expect("a job finishes")
        .expect("pipeline running");
    let meanwhile = ocred("large") - before;
    assert_eq!(first.id, "small", "the one-page job finishes first");
    assert!(first.error.is_none(), "{:?}", first.error);
    assert!(
        meanwhile <= MOST_PAGES_MEANWHILE,
        "{meanwhile} pages of the large job were OCRed before the small job was done"
    );

    let second = tokio::time::timeout(Duration::from_secs(600), finished.recv())
        .await
        .expect("the large job finishes")
        .expect("pipeline running");
    assert_eq!(second.id, "large");
    assert!(second.error.is_none(), "{:?}", second.error);
    let result = read_result(second.result_path.as_ref().unwrap());
    assert_eq!(result.pages.len(), LARGE_PAGES);
    assert!(result.pages.iter().all(|p| p.error.is_none()));
}
