//! The real path on the repository's own fixtures: runs without the shared corpus.

use crate::common;

use common::*;
use pagemill::model::result::PageSource;

#[tokio::test(flavor = "multi_thread")]
async fn a_tiff_is_ocred_and_a_born_digital_pdf_takes_its_text_layer() {
    let out = tempfile::tempdir().unwrap();
    let files = [fixture("phototest.tif"), fixture("tagged.pdf")];
    let events = run_files(pipeline(out.path(), &[]), &files, None).await;
    for e in &events {
        assert!(e.error.is_none(), "{}: {:?}", e.name, e.error);
    }

    let tif = read_result(events[0].result_path.as_ref().unwrap());
    assert_eq!(tif.source.media_type.as_deref(), Some("image/tiff"));
    assert_eq!(
        tif.source.bytes,
        std::fs::metadata(&files[0]).unwrap().len()
    );
    assert_eq!(tif.source.sha256.len(), 64);
    let page = &tif.pages[0];
    assert_eq!(page.source, PageSource::Ocr);
    assert!(page.confidence.unwrap() > 80.0);
    let quick = page
        .words
        .iter()
        .find(|w| w.text == "quick")
        .expect("a word 'quick'");
    assert!(quick.bbox[2] > quick.bbox[0] && quick.bbox[3] > quick.bbox[1]);
    let gt = std::fs::read_to_string(fixture("phototest.tif.gt.txt")).unwrap();
    assert!(cer(&tif.text, &gt) <= 0.01, "CER {}", cer(&tif.text, &gt));
    let summary = tif.summary.unwrap();
    assert_eq!(summary.engine, "extractive");
    assert!(summary.text.contains("quick brown dog"));

    let pdf = read_result(events[1].result_path.as_ref().unwrap());
    assert_eq!(pdf.pages.len(), 2);
    assert!(pdf.pages.iter().all(|p| p.source == PageSource::TextLayer));
    let gt = std::fs::read_to_string(fixture("tagged.pdf.gt.txt")).unwrap();
    assert!(cer(&pdf.text, &gt) <= 0.02, "CER {}", cer(&pdf.text, &gt));
}

#[tokio::test(flavor = "multi_thread")]
async fn text_layer_ignore_renders_and_ocrs_born_digital_pages() {
    let out = tempfile::tempdir().unwrap();
    let p = pipeline(out.path(), &[("text_layer: auto", "text_layer: ignore")]);
    let events = run_files(p, &[fixture("tagged.pdf")], None).await;
    let pdf = read_result(events[0].result_path.as_ref().unwrap());
    assert!(pdf.pages.iter().all(|p| p.source == PageSource::Ocr));
    assert!(
        pdf.pages[1].text.contains("Body text"),
        "{}",
        pdf.pages[1].text
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn every_page_of_a_multi_page_tiff_is_read() {
    use tiff::encoder::{Rational, TiffEncoder, colortype::Gray8};
    use tiff::tags::ResolutionUnit;

    // Two pages made from phototest.tif: upright, and turned upside down.
    let page = image::open(fixture("phototest.tif")).unwrap().into_luma8();
    let turned = image::imageops::rotate180(&page);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("two-pages.tif");
    let mut file = std::fs::File::create(&path).unwrap();
    let mut encoder = TiffEncoder::new(&mut file).unwrap();
    for image in [&page, &turned] {
        let mut tiff = encoder
            .new_image::<Gray8>(image.width(), image.height())
            .unwrap();
        tiff.resolution(ResolutionUnit::Inch, Rational { n: 200, d: 1 });
        tiff.write_data(image.as_raw()).unwrap();
    }
    drop(file);

    let out = tempfile::tempdir().unwrap();
    let events = run_files(pipeline(out.path(), &[]), &[path], None).await;
    assert!(events[0].error.is_none(), "{:?}", events[0].error);
    let result = read_result(events[0].result_path.as_ref().unwrap());
    assert_eq!(result.pages.len(), 2);
    let rotations: Vec<u32> = result.pages.iter().map(|p| p.rotation).collect();
    assert_eq!(rotations, vec![0, 180]);
    let gt = std::fs::read_to_string(fixture("phototest.tif.gt.txt")).unwrap();
    for p in &result.pages {
        assert!(cer(&p.text, &gt) <= 0.02, "page {}: {}", p.number, p.text);
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_page_over_its_ocr_time_limit_fails_and_the_worker_goes_on() {
    let out = tempfile::tempdir().unwrap();
    let p = pipeline(
        out.path(),
        &[("max_ocr_time_per_page: 120s", "max_ocr_time_per_page: 5ms")],
    );
    let files = [fixture("phototest.tif"), fixture("tagged.pdf")];
    let events = run_files(p, &files, None).await;
    let error = events[0].error.as_ref().expect("the OCRed page timed out");
    assert_eq!(error.code, "ocr_timeout", "{error:?}");
    let result = read_result(events[0].result_path.as_ref().unwrap());
    assert_eq!(
        result.pages[0].error.as_ref().map(|e| e.code.as_str()),
        Some("ocr_timeout")
    );
    // The pool thread came back: the text-layer document after it is done.
    assert!(events[1].error.is_none(), "{:?}", events[1].error);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_job_over_its_time_limit_fails_with_job_timeout() {
    let out = tempfile::tempdir().unwrap();
    let p = pipeline(out.path(), &[("max_job_time: 1h", "max_job_time: 1ms")]);
    let events = run_files(p, &[fixture("phototest.tif")], None).await;
    let error = events[0].error.as_ref().expect("the job ran out of time");
    assert_eq!(error.code, "job_timeout", "{error:?}");
}
