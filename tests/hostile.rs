//! Hostile and malformed inputs: each job fails with a specific error code, without
//! allocating a bomb's size, while a good document in the same run succeeds.

mod common;

use std::path::PathBuf;

use common::*;

/// Expected error code per hostile file; `None` where the file is a valid document.
const EXPECTED: &[(&str, Option<&str>)] = &[
    ("zero-bytes.pdf", Some("empty_document")),
    ("truncated-linn-skew.pdf", Some("truncated")),
    ("invalid-header-eof.pdf", Some("invalid_pdf")),
    ("zip-odt-named.pdf", Some("unsupported_type")),
    ("huge-mediabox-1e7pt.pdf", Some("too_many_pixels")),
    ("enormous-9000px.pdf", Some("too_many_pixels")),
    ("hugemono-35000px-ccitt.pdf", Some("too_many_pixels")),
    ("png-bomb-65536x65536-1bit.png", Some("too_many_pixels")),
    ("png-declared-1000000x1000000.png", Some("too_many_pixels")),
    // Two real pages whose crop box lies inside an oversized media box: a valid PDF. pagemill
    // renders the crop box, as PDF viewers do.
    ("lept-bad_mediabox_input.pdf", None),
];

#[tokio::test(flavor = "multi_thread")]
async fn every_hostile_file_fails_cleanly_while_good_documents_succeed() {
    let Some(corpus) = corpus("every_hostile_file_fails_cleanly") else {
        return;
    };
    let hostile = corpus.join("hostile");
    let mut on_disk: Vec<String> = std::fs::read_dir(&hostile)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    on_disk.sort();
    let mut listed: Vec<String> = EXPECTED.iter().map(|e| e.0.to_string()).collect();
    listed.sort();
    assert_eq!(
        on_disk, listed,
        "every file in hostile/ has an expected outcome here"
    );

    let out = tempfile::tempdir().unwrap();
    // Good documents before, between and after the hostile ones.
    let mut files: Vec<PathBuf> = vec![fixture("phototest.tif")];
    files.extend(EXPECTED.iter().map(|e| hostile.join(e.0)));
    files.push(fixture("tagged.pdf"));
    let events = run_files(pipeline(out.path(), &[]), &files, None).await;

    assert!(events[0].error.is_none(), "{:?}", events[0].error);
    assert!(events.last().unwrap().error.is_none());
    for ((name, expected), event) in EXPECTED.iter().zip(&events[1..]) {
        let got = event.error.as_ref().map(|e| e.code.as_str());
        assert_eq!(got, *expected, "{name}: {:?}", event.error);
        if let Some(e) = &event.error {
            assert!(!e.message.is_empty());
            // The failed job still has a result record saying why.
            let result = read_result(event.result_path.as_ref().unwrap());
            assert_eq!(result.error.as_ref().unwrap().code, e.code);
        }
    }
    // The PNG bomb alone would need 4 GiB decoded; nothing close was ever allocated.
    let peak = peak_rss_bytes("self");
    assert!(peak < 1 << 30, "peak RSS {} MiB", peak >> 20);
}
