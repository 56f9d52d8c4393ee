//! Less Tesseract work per page without losing a character, through the whole pipeline with
//! real Tesseract: pages are scaled by the size of their print whatever resolution they
//! declare, blank pages skip recognition, and orientation detection runs only where it pays.

use crate::common;

use std::io::Write;
use std::path::{Path, PathBuf};

use common::*;
use image::GrayImage;
use pagemill::config::OrientationMode;
use pagemill::model::page::{PageImage, PagePixels, PrintStands};
use pagemill::stages::ocr::{Engines, POOR_READING_CONFIDENCE, ocr_page};
use pagemill::stages::render::{PageInput, prepare_page, text_size};

/// Writes `gray` as a PNG declaring `dpi`.
fn write_png(path: &Path, gray: &GrayImage, dpi: u32) {
    let file = std::fs::File::create(path).unwrap();
    let mut encoder = png::Encoder::new(std::io::BufWriter::new(file), gray.width(), gray.height());
    encoder.set_color(png::ColorType::Grayscale);
    encoder.set_depth(png::BitDepth::Eight);
    let per_metre = (dpi as f64 / 0.0254).round() as u32;
    encoder.set_pixel_dims(Some(png::PixelDimensions {
        xppu: per_metre,
        yppu: per_metre,
        unit: png::Unit::Meter,
    }));
    let mut writer = encoder.write_header().unwrap();
    writer.write_image_data(gray.as_raw()).unwrap();
    writer.finish().unwrap();
}

/// The document at `path`, opened within `pipeline`'s limits.
fn open_with(
    path: &Path,
    pipeline: &pagemill::config::Pipeline,
) -> pagemill::model::document::Document {
    pagemill::model::document::open_document(std::fs::read(path).unwrap(), &pipeline.limits)
        .unwrap()
}

/// The page used: linn.png from the corpus (300 DPI, 10-point print), or the phototest fixture
/// (200 DPI) on a fresh clone; with its ground truth and resolution.
fn source_page() -> (GrayImage, String, u32, String) {
    let (path, dpi) = match corpus("low_and_high_resolution_pages (linn.png; phototest.tif used)") {
        Some(corpus) => (corpus.join("linn.png"), 300),
        None => (fixture("phototest.tif"), 200),
    };
    let gray = image::open(&path).unwrap().to_luma8();
    let truth = std::fs::read_to_string(format!("{}.gt.txt", path.display())).unwrap();
    let name = path.file_name().unwrap().to_string_lossy().into_owned();
    (gray, truth, dpi, name)
}

#[tokio::test(flavor = "multi_thread")]
async fn low_and_high_resolution_pages_read_like_the_original() {
    let (page, truth, dpi, name) = source_page();
    let dir = tempfile::tempdir().unwrap();
    // (file, target resolution, declared resolution)
    let mut variants: Vec<(PathBuf, u32, u32)> = Vec::new();
    for (target, declared) in [
        (dpi, dpi),
        (72, 72),
        (72, 300),
        (100, 100),
        (100, 300),
        (2 * dpi, 2 * dpi),
    ] {
        let factor = target as f64 / dpi as f64;
        let (w, h) = (
            (page.width() as f64 * factor).round() as u32,
            (page.height() as f64 * factor).round() as u32,
        );
        let resized = image::imageops::resize(&page, w, h, image::imageops::FilterType::Triangle);
        let path = dir.path().join(format!("{target}dpi-as-{declared}.png"));
        write_png(&path, &resized, declared);
        variants.push((path, target, declared));
    }
    let out = tempfile::tempdir().unwrap();
    let files: Vec<PathBuf> = variants.iter().map(|v| v.0.clone()).collect();
    let events = run_files(pipeline(out.path(), &[]), &files, None).await;
    let mut report = Vec::new();
    let mut results = Vec::new();
    for ((_, target, declared), event) in variants.iter().zip(events) {
        assert!(event.error.is_none(), "{target} dpi: {:?}", event.error);
        let result = read_result(event.result_path.as_ref().unwrap());
        let got = 100.0 * cer(&result.text, &truth);
        let page = &result.pages[0];
        report.push(format!(
            "{name} at {target} DPI declared {declared}: CER {got:.2}%, read at scale {:.2}",
            page.scale
        ));
        results.push((*target, got, page.scale, result));
    }
    eprintln!("{}", report.join("\n"));
    let original = results[0].1;
    for (target, got, _, _) in &results {
        // Within 1 point of the original, at any resolution declared honestly or wrongly
        // (linn.png at 72 DPI: 12.6% before pages were scaled by their print, 3.35% while
        // they were enlarged by linear interpolation).
        assert!(
            *got <= original + 1.0,
            "{target} DPI: CER {got:.2}% is more than 1 point worse than the original's {original:.2}%\n{}",
            report.join("\n")
        );
    }
    // The double-resolution page is reduced to the print size the original is read at, so it
    // costs no more than 1.2x its pixels (and so about its CPU: the bench measures that).
    let (_, _, original_scale, _) = &results[0];
    let (_, _, double_scale, double) = &results[5];
    let pixels = |scale: f32, factor: f32| (scale * factor).powi(2);
    assert!(
        pixels(*double_scale, 2.0) <= 1.2 * pixels(*original_scale, 1.0),
        "the {}-DPI page is read at scale {double_scale}, the original at {original_scale}",
        2 * dpi
    );
    // Word boxes stay in the source page's coordinates: the double-resolution page's boxes are
    // about twice the original's.
    let widest = |r: &pagemill::model::result::JobResult| {
        r.pages[0]
            .words
            .iter()
            .map(|w| w.bbox[2])
            .max()
            .unwrap_or(0) as f64
    };
    let ratio = widest(double) / widest(&results[0].3);
    assert!((1.9..=2.1).contains(&ratio), "box ratio {ratio}");
}

#[tokio::test(flavor = "multi_thread")]
async fn blank_pages_skip_recognition_and_say_why() {
    let dir = tempfile::tempdir().unwrap();
    let mut blank = GrayImage::from_pixel(1700, 2200, image::Luma([246]));
    // Dust: a few specks, none letter-sized.
    for (x, y) in [(100, 100), (900, 1500), (1600, 40)] {
        blank.put_pixel(x, y, image::Luma([30]));
    }
    let path = dir.path().join("blank.png");
    write_png(&path, &blank, 200);
    let out = tempfile::tempdir().unwrap();
    let events = run_files(
        pipeline(out.path(), &[]),
        &[path.clone(), fixture("phototest.tif")],
        None,
    )
    .await;
    assert!(events[0].error.is_none(), "{:?}", events[0].error);
    let result = read_result(events[0].result_path.as_ref().unwrap());
    let json: serde_json::Value =
        serde_json::from_slice(&std::fs::read(events[0].result_path.as_ref().unwrap()).unwrap())
            .unwrap();
    assert_eq!(json["pages"][0]["source"], "skipped");
    assert_eq!(json["pages"][0]["skipped"], "no_text");
    assert!(result.pages[0].text.is_empty());
    // A page with print is still read.
    let text = read_result(events[1].result_path.as_ref().unwrap()).text;
    assert!(text.contains("quick brown dog"), "{text}");

    // With the setting off, the blank page is recognized (and yields nothing).
    let events = run_files(
        pipeline(
            out.path(),
            &[(
                "skip_pages_without_text: true",
                "skip_pages_without_text: false",
            )],
        ),
        &[path],
        None,
    )
    .await;
    let json: serde_json::Value =
        serde_json::from_slice(&std::fs::read(events[0].result_path.as_ref().unwrap()).unwrap())
            .unwrap();
    assert_eq!(json["pages"][0]["source"], "ocr");
}

#[test]
fn orientation_detection_runs_only_where_the_upright_reading_is_poor() {
    let out = tempfile::tempdir().unwrap();
    let cfg = pipeline(out.path(), &[]).ocr;
    assert_eq!(cfg.orientation, OrientationMode::Auto);
    let upright = image::open(fixture("phototest.tif")).unwrap().to_luma8();
    let mut engines = Engines::default();
    let limit = std::time::Duration::from_secs(120);
    let read = |engines: &mut Engines, gray: GrayImage| {
        ocr_page(
            engines,
            PageImage::new(PagePixels::Gray(gray), 200),
            1,
            &cfg,
            limit,
        )
        .unwrap()
    };
    let page = read(&mut engines, upright.clone());
    assert!(!page.orientation_checked, "an upright page needs no OSD");
    assert_eq!(page.rotation, 0);
    assert!(page.text.contains("quick brown dog"), "{}", page.text);
    // Upside down, the upright reading is poor: OSD runs and turns the page.
    let page = read(&mut engines, image::imageops::rotate180(&upright));
    assert!(page.orientation_checked);
    assert_eq!(page.rotation, 180, "{}", page.text);
    assert!(page.text.contains("quick brown dog"), "{}", page.text);
    // On its side, the upright reading is poor, or Tesseract reads the lines as vertical
    // text: either way OSD runs and the page is turned upright.
    for (turned, rotation) in [
        (image::imageops::rotate90(&upright), 270),
        (image::imageops::rotate270(&upright), 90),
    ] {
        let page = read(&mut engines, turned);
        assert!(page.orientation_checked);
        assert_eq!(page.rotation, rotation, "{}", page.text);
        assert!(page.text.contains("quick brown dog"), "{}", page.text);
    }
    // `always` checks every page.
    let always = pagemill::config::OcrConfig {
        orientation: OrientationMode::Always,
        ..cfg.clone()
    };
    let page = ocr_page(
        &mut engines,
        PageImage::new(PagePixels::Gray(upright.clone()), 200),
        1,
        &always,
        limit,
    )
    .unwrap();
    assert!(page.orientation_checked);
    // A poor reading of a page whose print the render stage saw standing upright is taken as
    // it is: here the upside-down page, marked upright, is read upside down and not turned.
    let mut marked_upright =
        PageImage::new(PagePixels::Gray(image::imageops::rotate180(&upright)), 200);
    marked_upright.print_stands = PrintStands::Upright;
    let page = ocr_page(&mut engines, marked_upright, 1, &cfg, limit).unwrap();
    assert!(
        page.confidence < POOR_READING_CONFIDENCE,
        "{}",
        page.confidence
    );
    assert!(!page.orientation_checked);
    assert_eq!(page.rotation, 0);
    // Nor is a page where nothing was read: there is nothing to turn upright.
    let page = read(
        &mut engines,
        GrayImage::from_pixel(640, 480, image::Luma([255])),
    );
    assert!(page.words.is_empty() && page.confidence < POOR_READING_CONFIDENCE);
    assert!(!page.orientation_checked);
    let _ = std::io::stderr().flush();
}

#[test]
fn a_poor_reading_of_print_seen_upright_at_its_reading_size_gets_no_orientation_detection() {
    let Some(corpus) = corpus("a_poor_reading_of_print_seen_upright") else {
        return;
    };
    let out = tempfile::tempdir().unwrap();
    let pipeline = pipeline(out.path(), &[]);
    let doc = open_with(&corpus.join("scans-24p.pdf"), &pipeline);
    // Page 24, Arabic print: English recognition reads it poorly, and at half size (its print
    // is large) the render stage cannot tell which way up it stands.
    let PageInput::Image(page) = prepare_page(&doc, 23, &pipeline).unwrap() else {
        panic!("page 24 is a scan");
    };
    assert_eq!(page.print_stands, PrintStands::NotKnown);
    assert_eq!(
        text_size::upright_at_full_size(&page.pixels).unwrap(),
        Some(true),
        "at the size it is read, Leptonica sees the print upright"
    );
    let mut engines = Engines::default();
    let limit = std::time::Duration::from_secs(120);
    let read = ocr_page(&mut engines, page.clone(), 24, &pipeline.ocr, limit).unwrap();
    assert!(
        read.confidence < POOR_READING_CONFIDENCE,
        "{}",
        read.confidence
    );
    assert!(!read.words.is_empty());
    assert!(!read.orientation_checked);
    assert_eq!(read.rotation, 0);
    // The same page upside down is seen turned: orientation detection runs.
    let mut turned = page;
    turned.pixels = turned.pixels.rotated(180);
    assert_eq!(
        text_size::upright_at_full_size(&turned.pixels).unwrap(),
        Some(false)
    );
    let read = ocr_page(&mut engines, turned, 24, &pipeline.ocr, limit).unwrap();
    assert!(read.orientation_checked);
}

/// The pages the read-out is compared on: the phototest fixture, and from the corpus a
/// multi-column page, a page of German Fraktur-era print and the rotated phototest.
fn read_out_pages() -> Vec<PathBuf> {
    let mut pages = vec![fixture("phototest.tif")];
    if let Some(corpus) = corpus("the linear read-out on corpus pages (phototest.tif only)") {
        for name in [
            "eurotext.tif",
            "unlv-8087_054.3B.tif",
            "kant-aufklaerung-1784-p17.tif",
            "phototest-rotated-R.png",
        ] {
            pages.push(corpus.join(name));
        }
    }
    pages
}

#[test]
fn the_linear_read_out_gives_tesseracts_own_text_and_words() {
    let mut engine = pagemill::stages::ocr::tess::Tesseract::new("eng").unwrap();
    for (name, value) in pagemill::stages::ocr::ENGINE_SETTINGS {
        engine.set_variable(name, value);
    }
    for path in read_out_pages() {
        let gray = image::open(&path).unwrap().to_luma8();
        engine.set_image(&PagePixels::Gray(gray), 300).unwrap();
        engine
            .recognize_within(std::time::Duration::from_secs(120))
            .unwrap();
        let (text, words) = engine.read_page().expect("a left-to-right page");
        let tesseract_text = engine.utf8_text();
        let tesseract_words = pagemill::stages::ocr::parse_tsv_words(&engine.tsv_text());
        engine.clear();
        let name = path.display();
        assert!(words.len() > 10, "{name}: {} words", words.len());
        assert_eq!(text, tesseract_text, "{name}: text");
        assert_eq!(words.len(), tesseract_words.len(), "{name}: word count");
        for (ours, theirs) in words.iter().zip(&tesseract_words) {
            assert_eq!(
                (&ours.text, ours.bbox),
                (&theirs.text, theirs.bbox),
                "{name}"
            );
            // The TSV prints confidences with six decimals.
            assert!(
                (ours.confidence - theirs.confidence).abs() < 1e-3,
                "{name}: {ours:?} against {theirs:?}"
            );
        }
    }
}

#[test]
fn print_turned_by_90_180_or_270_degrees_looks_turned_before_it_is_read() {
    use pagemill::stages::render::text_size::measure;
    let upright = image::open(fixture("phototest.tif")).unwrap().to_luma8();
    let size = measure(&PagePixels::Gray(upright.clone()), true).unwrap();
    assert!(size.upright != Some(false) && !size.sideways, "{size:?}");
    for (turned, degrees) in [
        (image::imageops::rotate90(&upright), 90),
        (image::imageops::rotate270(&upright), 270),
    ] {
        let size = measure(&PagePixels::Gray(turned), true).unwrap();
        assert!(
            size.sideways || size.upright == Some(false),
            "turned by {degrees}: {size:?}"
        );
    }
    // Upside down, phototest's print (18 px, looked at half size) gives no verdict; it must
    // not be taken for upright, so that its poor upright reading still turns it.
    let size = measure(
        &PagePixels::Gray(image::imageops::rotate180(&upright)),
        true,
    )
    .unwrap();
    assert_ne!(size.upright, Some(true), "{size:?}");
    // The corpus's turned pages, as the render stage prepares them: linn-cardinal's first
    // page is upright, the other three are turned by 90, 180 and 270 degrees.
    let Some(corpus) = corpus("turned corpus pages (phototest.tif only)") else {
        return;
    };
    let out = tempfile::tempdir().unwrap();
    let pipeline = pipeline(out.path(), &[]);
    let doc = open_with(&corpus.join("linn-cardinal.pdf"), &pipeline);
    let print_stands: Vec<PrintStands> = (0..doc.page_count)
        .map(|i| match prepare_page(&doc, i, &pipeline).unwrap() {
            PageInput::Image(image) => image.print_stands,
            _ => panic!("linn-cardinal page {} is a scan", i + 1),
        })
        .collect();
    assert_ne!(print_stands[0], PrintStands::Turned);
    assert_eq!(print_stands[1..], [PrintStands::Turned; 3]);
}

#[tokio::test(flavor = "multi_thread")]
async fn pictures_without_text_skip_recognition_when_the_pipeline_says_so() {
    // A photograph, and pages of print: phototest, and with the corpus a camera shot of an
    // old print on dark paper and a scan on textured paper, both full of midtones.
    let mut files = vec![fixture("bear-photo.jpg"), fixture("phototest.tif")];
    if let Some(corpus) = corpus("pictures_without_text (bear-photo and phototest only)") {
        files.push(corpus.join("lept-1555.007.jpg"));
        files.push(corpus.join("kant-aufklaerung-1784-p17.tif"));
    }
    let out = tempfile::tempdir().unwrap();
    let skipping = pipeline(
        out.path(),
        &[(
            "skip_pictures_without_text: false",
            "skip_pictures_without_text: true",
        )],
    );
    assert!(skipping.ocr.skip_pictures_without_text);
    let events = run_files(skipping, &files, None).await;
    let json = |event: &pagemill::pipeline::messages::JobFinished| -> serde_json::Value {
        serde_json::from_slice(&std::fs::read(event.result_path.as_ref().unwrap()).unwrap())
            .unwrap()
    };
    let photo = json(&events[0]);
    assert_eq!(photo["pages"][0]["source"], "skipped", "{photo}");
    assert_eq!(photo["pages"][0]["skipped"], "picture_without_text");
    for (file, event) in files.iter().zip(&events).skip(1) {
        let page = &json(event)["pages"][0];
        assert_eq!(page["source"], "ocr", "{}: {page}", file.display());
        let text = page["text"].as_str().unwrap();
        assert!(text.len() > 200, "{}: {text}", file.display());
    }

    // Off, as by default: the photograph is recognized.
    let out = tempfile::tempdir().unwrap();
    let default = pipeline(out.path(), &[]);
    assert!(!default.ocr.skip_pictures_without_text);
    let events = run_files(default, &files[..1], None).await;
    assert_eq!(json(&events[0])["pages"][0]["source"], "ocr");
}
