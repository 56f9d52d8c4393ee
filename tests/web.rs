//! The web page in a real browser: `tests/tools/web_page.py` drives headless Chromium
//! (selenium, from the test venv) through a daemon with API keys, as a person would, and runs
//! axe-core in every view; this test holds what the page showed to the API's own answers.
//! Screenshots of each view are kept in `target/web-screenshots/`.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use pagemill::service::keys::Scope;
use serde_json::Value;

use crate::common::daemon::*;
use crate::common::fake_llm::{Behaviour, start_fake, valid_extraction};
use crate::common::{corpus, fixture, http_client};

/// A file the daemon cannot read: from the corpus' hostile files, or, without the corpus,
/// the first half of a fixture PDF.
fn hostile_file(scratch: &Path) -> PathBuf {
    if let Some(corpus) = corpus("the web page's hostile file (a truncated fixture instead)") {
        return corpus.join("hostile/truncated-linn-skew.pdf");
    }
    let pdf = std::fs::read(fixture("tagged.pdf")).unwrap();
    let path = scratch.join("truncated-tagged.pdf");
    std::fs::write(&path, &pdf[..pdf.len() / 2]).unwrap();
    path
}

fn run_browser(d: &Daemon, key: &str, hostile: &Path, scratch: &Path) -> Value {
    run_script(
        d,
        key,
        &["--hostile".as_ref(), hostile.as_os_str()],
        scratch,
    )
}

/// Runs `tests/tools/web_page.py` against the daemon with `extra` arguments; returns what it
/// saw, failing the test if it failed.
fn run_script(d: &Daemon, key: &str, extra: &[&std::ffi::OsStr], scratch: &Path) -> Value {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let python = root.join("target/test-venv/bin/python");
    let axe = root.join("target/test-node/node_modules/axe-core/axe.min.js");
    for needed in [&python, &axe] {
        assert!(
            needed.is_file(),
            "{} is missing: run scripts/setup.sh --install-only",
            needed.display()
        );
    }
    let report = scratch.join("report.json");
    let status = Command::new(python)
        .arg(root.join("tests/tools/web_page.py"))
        .args(["--base", &d.base, "--key", key])
        .arg("--scan")
        .arg(fixture("phototest.tif"))
        .args(extra)
        .arg("--axe")
        .arg(axe)
        .arg("--screenshots")
        .arg(root.join("target/web-screenshots"))
        .arg("--downloads")
        .arg(scratch.join("downloads"))
        .arg("--report")
        .arg(&report)
        .stdout(Stdio::inherit())
        .stderr(Stdio::inherit())
        .status()
        .unwrap();
    let seen: Value = std::fs::read(&report)
        .ok()
        .and_then(|r| serde_json::from_slice(&r).ok())
        .unwrap_or(Value::Null);
    assert!(
        status.success(),
        "the browser run failed ({status}); it saw {seen:#}"
    );
    seen
}

#[tokio::test(flavor = "multi_thread")]
async fn a_person_submits_watches_and_reads_a_scan_in_the_browser() {
    let (d, keys) = Daemon::start_with_keys(
        &[(
            "default",
            pipeline_yaml(
                "default",
                &[
                    ("formats: []", "formats: [txt, hocr, tsv]"),
                    // Room for one job at a time: a second one gets 429.
                    ("max_pages_in_system: 1000", "max_pages_in_system: 1"),
                    ("max_pages_per_tenant: 500", "max_pages_per_tenant: 1"),
                ],
            ),
        )],
        &[("person", &[Scope::Submit, Scope::Read])],
        &[],
        Stdio::inherit(),
    );
    let api = Daemon::client_with_key(&keys[0]);
    let scratch = tempfile::tempdir().unwrap();
    let hostile = hostile_file(scratch.path());
    let seen = tokio::task::block_in_place(|| run_browser(&d, &keys[0], &hostile, scratch.path()));

    // The views and what axe-core found in each.
    for path in seen["screenshots"].as_array().unwrap() {
        let path = Path::new(path.as_str().unwrap());
        assert!(path.is_file(), "{}", path.display());
        eprintln!("screenshot: {}", path.display());
    }
    let views = seen["axe"].as_object().unwrap();
    for view in [
        "key prompt",
        "home",
        "job view",
        "job view, narrow",
        "failed job view",
    ] {
        let counts = &views[view]["counts"];
        eprintln!("axe-core violations in {view}: {counts}");
        assert_eq!(
            counts["serious"].as_u64().unwrap() + counts["critical"].as_u64().unwrap(),
            0,
            "serious or critical accessibility violations in {view}: {}",
            views[view]["violations"]
        );
    }

    // 6. The key was asked for, kept for the session only, and asked for again after a 401.
    assert!(!seen["key_prompt"].as_str().unwrap().is_empty(), "{seen}");
    assert_eq!(seen["key_in_session"], true);
    assert_eq!(seen["key_in_local_storage"], false);
    assert!(!seen["reprompt"].as_str().unwrap().is_empty(), "{seen}");
    assert_eq!(seen["pipelines"], serde_json::json!(["default"]));

    // 2. The scan's upload showed its progress from the events and reached done.
    let upload = &seen["scan_upload"];
    let id = upload["id"].as_str().unwrap();
    let status = d.get_json_as(&api, &format!("/v1/jobs/{id}")).await;
    assert_eq!(status["state"], "done", "{status}");
    assert_eq!(upload["state"], "done", "{upload}");
    let shown: Vec<&str> = upload["seen"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s.as_str().unwrap())
        .collect();
    let pages = status["pages"]["total"].as_u64().unwrap();
    assert!(
        shown
            .iter()
            .any(|s| s.contains(&format!("{pages} of {pages} pages rendered, {pages} OCRed"))),
        "the page counts from the events: {shown:?}"
    );
    assert!(shown.first().unwrap().starts_with("uploading"), "{shown:?}");

    // 4. Its view: as many boxes as the result has words, and their text.
    let result = d.get_json_as(&api, &format!("/v1/jobs/{id}/result")).await;
    let words: Vec<&str> = result["pages"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|p| p["words"].as_array().unwrap())
        .map(|w| w["text"].as_str().unwrap())
        .collect();
    assert!(words.len() > 20, "{result}");
    assert_eq!(seen["word_boxes"].as_u64().unwrap(), words.len() as u64);
    assert_eq!(seen["word_spans"].as_u64().unwrap(), words.len() as u64);
    let page_text = seen["page_text"].as_str().unwrap();
    let page_words: Vec<&str> = page_text.split_whitespace().collect();
    assert_eq!(page_words, words, "the text beside the page is its words");
    assert_eq!(seen["overlay_matches_image"], true);
    assert_eq!(seen["word_lights_box"], true);
    assert_eq!(seen["box_lights_word"], true);
    // The last word pointed at was the first; two presses of the right arrow move two words on.
    assert_eq!(seen["keyboard_lit"], serde_json::json!([2]), "{seen}");
    assert!(
        seen["keyboard_status"]
            .as_str()
            .unwrap()
            .contains(&format!("\u{201c}{}\u{201d}", words[2])),
        "{seen}"
    );
    let reached: Vec<&str> = seen["tab_reached"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s.as_str().unwrap())
        .collect();
    for control in ["BUTTON:txt", "BUTTON:json", "DIV.page-text"] {
        assert!(
            reached.contains(&control),
            "Tab reaches {control}: {reached:?}"
        );
    }
    assert_eq!(
        seen["summary_engine"].as_str().unwrap(),
        format!(
            "Written by the {} engine.",
            result["summary"]["engine"].as_str().unwrap()
        )
    );

    // Every format the pipeline writes is offered; the txt download is the result's text.
    assert_eq!(
        seen["downloads_offered"],
        serde_json::json!(["json", "txt", "hocr", "tsv"])
    );
    let downloaded = std::fs::read_to_string(seen["downloaded_txt"].as_str().unwrap()).unwrap();
    assert_eq!(downloaded, result["text"].as_str().unwrap());

    // 7. At a narrow width nothing is wider than the window.
    assert!(seen["narrow_overflow_px"].as_i64().unwrap() <= 0, "{seen}");

    // The hostile file: its upload line and its view show the error code the job ended with.
    let hostile_upload = &seen["hostile_upload"];
    let hostile_id = hostile_upload["id"].as_str().unwrap();
    let hostile_status = d.wait_final_as(&api, hostile_id).await;
    assert_eq!(hostile_status["state"], "failed", "{hostile_status}");
    let code = hostile_status["error"]["code"].as_str().unwrap();
    assert!(
        hostile_upload["text"].as_str().unwrap().contains(code),
        "{hostile_upload} shows {code}"
    );
    assert!(
        seen["hostile_view_error"]
            .as_str()
            .unwrap()
            .starts_with(code),
        "{seen}"
    );

    // Two files at once with room for one job: one waited out a 429, saying when it would
    // try again, and both were read.
    let pair = seen["pair_uploads"].as_object().unwrap();
    assert_eq!(pair.len(), 2, "{seen}");
    for upload in pair.values() {
        assert_eq!(upload["state"], "done", "{upload}");
    }
    let waited: Vec<&Value> = pair
        .values()
        .filter(|u| {
            u["seen"].as_array().unwrap().iter().any(|s| {
                let s = s.as_str().unwrap();
                s.starts_with("waiting | the pipeline is full (")
                    && s.contains("): trying again in ")
                    && s.ends_with(" s")
            })
        })
        .collect();
    assert_eq!(waited.len(), 1, "one upload waited: {pair:?}");

    // 3. The jobs table: both jobs, one per page, oldest first; the filter shows the failed.
    let paged: Vec<&str> = seen["jobs_pages"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|page| page.as_array().unwrap())
        .map(|row| row[0].as_str().unwrap())
        .collect();
    assert_eq!(paged, [id, hostile_id], "{seen}");
    assert_eq!(
        seen["failed_filter"],
        serde_json::json!([[hostile_id, format!("failed ({code})")]])
    );
}

/// A pipeline whose summaries come from the LLM at `base_url`, with `extra` replacements.
fn llm_pipeline(name: &str, base_url: &str, extra: &[(&str, &str)]) -> String {
    let base = format!("base_url: {base_url}");
    let mut replacements = vec![
        ("engine: extractive", "engine: llm"),
        ("base_url: http://127.0.0.1:8000/v1", base.as_str()),
        ("max_retries: 4", "max_retries: 0"),
    ];
    replacements.extend_from_slice(extra);
    pipeline_yaml(name, &replacements)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_job_view_shows_extracted_fields_and_warnings_and_cancels_a_running_job() {
    // The faults a real LLM server cannot be made to produce on cue: a failing one, and one
    // that never answers in time, so that a job is still running when the page cancels it.
    let (fields_llm, failing_llm, held_llm) = (
        start_fake(Behaviour::ExtractInvalidFirst(0)).await,
        start_fake(Behaviour::Broken).await,
        start_fake(Behaviour::Slow(std::time::Duration::from_secs(600))).await,
    );
    let schema = r#"schema: {"type": "object", "properties": {"title": {"type": "string"}, "pages": {"type": "integer"}}, "required": ["title", "pages"], "additionalProperties": false}"#;
    let (d, keys) = Daemon::start_with_keys(
        &[
            (
                "fields",
                llm_pipeline("fields", &fields_llm.base_url, &[("schema: {}", schema)]),
            ),
            ("warned", llm_pipeline("warned", &failing_llm.base_url, &[])),
            ("held", llm_pipeline("held", &held_llm.base_url, &[])),
        ],
        &[("person", &[Scope::Submit, Scope::Read])],
        &[],
        Stdio::inherit(),
    );
    let api = Daemon::client_with_key(&keys[0]);
    let scratch = tempfile::tempdir().unwrap();
    let seen = tokio::task::block_in_place(|| {
        run_script(
            &d,
            &keys[0],
            &[
                "--scenario",
                "llm",
                "--fields-pipeline",
                "fields",
                "--warned-pipeline",
                "warned",
                "--held-pipeline",
                "held",
            ]
            .map(std::ffi::OsStr::new),
            scratch.path(),
        )
    });
    for view in [
        "job view with extracted fields",
        "job view with warnings",
        "running job view",
    ] {
        let counts = &seen["axe"][view]["counts"];
        eprintln!("axe-core violations in {view}: {counts}");
        assert_eq!(
            counts["serious"].as_u64().unwrap() + counts["critical"].as_u64().unwrap(),
            0,
            "serious or critical accessibility violations in {view}: {}",
            seen["axe"][view]["violations"]
        );
    }

    // 4. Extracted fields: each of the result's, with its value.
    let result_path = |id: &Value| format!("/v1/jobs/{}/result", id.as_str().unwrap());
    let fields = d.get_json_as(&api, &result_path(&seen["fields_id"])).await;
    assert_eq!(fields["extracted"], valid_extraction(), "{fields}");
    let shown: serde_json::Map<String, Value> = fields["extracted"]
        .as_object()
        .unwrap()
        .iter()
        .map(|(name, value)| {
            let text = value.as_str().map_or(value.to_string(), str::to_string);
            (name.clone(), Value::String(text))
        })
        .collect();
    assert_eq!(seen["fields"], Value::Object(shown), "{seen}");

    // Warnings: the result's, all of them, beside the engine that wrote the summary.
    let warned = d.get_json_as(&api, &result_path(&seen["warned_id"])).await;
    assert!(
        !warned["warnings"].as_array().unwrap().is_empty(),
        "{warned}"
    );
    assert_eq!(seen["warnings"], warned["warnings"], "{seen}");
    assert_eq!(
        seen["warned_engine"].as_str().unwrap(),
        format!(
            "Written by the {} engine.",
            warned["summary"]["engine"].as_str().unwrap()
        )
    );

    // Cancel while running: the job ends cancelled, and the page says so without the button.
    let held_id = seen["held_id"].as_str().unwrap();
    let status = d.wait_final_as(&api, held_id).await;
    assert_eq!(status["state"], "cancelled", "{status}");
    assert_eq!(seen["held_state"], "cancelled", "{seen}");
    assert!(
        seen["held_error"]
            .as_str()
            .unwrap()
            .starts_with("cancelled"),
        "{seen}"
    );
    assert_eq!(seen["cancel_gone"], true, "{seen}");
    assert!(
        seen["held_progress"]
            .as_str()
            .unwrap()
            .contains("summarizing"),
        "{seen}"
    );
    assert_eq!(
        held_llm.requests.load(std::sync::atomic::Ordering::SeqCst),
        1
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_page_preview_is_served_to_its_tenant_and_lines_up_with_the_word_boxes() {
    let (d, keys) = Daemon::start_with_keys(
        &[(
            "default",
            pipeline_yaml(
                "default",
                &[
                    ("formats: []", "formats: [txt]"),
                    ("preview_max_px: 1600", "preview_max_px: 500"),
                ],
            ),
        )],
        &[
            ("owner", &[Scope::Submit, Scope::Read]),
            ("other", &[Scope::Read]),
        ],
        &[],
        Stdio::inherit(),
    );
    let (owner, other) = (
        Daemon::client_with_key(&keys[0]),
        Daemon::client_with_key(&keys[1]),
    );
    let body = reqwest::multipart::Form::new().part(
        "file",
        reqwest::multipart::Part::bytes(std::fs::read(fixture("phototest.tif")).unwrap())
            .file_name("phototest.tif"),
    );
    let submitted: Value = owner
        .post(d.url("/v1/pipelines/default/jobs"))
        .multipart(body)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let id = submitted["id"].as_str().unwrap();
    assert_eq!(d.wait_final_as(&owner, id).await["state"], "done");
    let result = d
        .get_json_as(&owner, &format!("/v1/jobs/{id}/result"))
        .await;
    let page = &result["pages"][0];
    let size: Vec<u64> = page["size"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_u64().unwrap())
        .collect();

    // Kept beside the result, where retention removes it with the job.
    assert!(
        d.dir
            .path()
            .join(format!("results/default/{id}.previews/1.png"))
            .is_file()
    );
    let response = owner
        .get(d.url(&format!("/v1/jobs/{id}/pages/1/preview")))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), reqwest::StatusCode::OK);
    assert_eq!(response.headers()["content-type"], "image/png");
    let preview = image::load_from_memory(&response.bytes().await.unwrap()).unwrap();
    // Reduced to the pipeline's size, in the shape of the frame the boxes are in.
    assert_eq!(preview.width().max(preview.height()), 500);
    let (frame_ratio, preview_ratio) = (
        size[0] as f64 / size[1] as f64,
        preview.width() as f64 / preview.height() as f64,
    );
    assert!(
        (frame_ratio - preview_ratio).abs() < 0.01,
        "{size:?} vs {}x{}",
        preview.width(),
        preview.height()
    );
    // Word boxes scaled to the preview sit on ink: darker inside than the page around them.
    let gray = preview.to_luma8();
    let scale = preview.width() as f64 / size[0] as f64;
    let mean = |x0: f64, y0: f64, x1: f64, y1: f64| {
        let (mut sum, mut n) = (0u64, 0u64);
        for y in (y0 * scale) as u32..((y1 * scale) as u32).min(gray.height()) {
            for x in (x0 * scale) as u32..((x1 * scale) as u32).min(gray.width()) {
                sum += gray.get_pixel(x, y).0[0] as u64;
                n += 1;
            }
        }
        sum as f64 / n.max(1) as f64
    };
    let (mut inside, mut words) = (0.0, 0.0);
    for word in page["words"].as_array().unwrap() {
        let b: Vec<f64> = word["bbox"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_f64().unwrap())
            .collect();
        inside += mean(b[0], b[1], b[2], b[3]);
        words += 1.0;
    }
    let whole = mean(0.0, 0.0, size[0] as f64, size[1] as f64);
    assert!(
        inside / words < whole - 20.0,
        "boxes on ink ({}) are darker than the page ({whole})",
        inside / words
    );

    // The txt output is the result's text, as a download.
    let txt = owner
        .get(d.url(&format!("/v1/jobs/{id}/outputs/txt")))
        .send()
        .await
        .unwrap();
    assert_eq!(txt.status(), reqwest::StatusCode::OK);
    assert!(
        txt.headers()["content-disposition"]
            .to_str()
            .unwrap()
            .starts_with("attachment")
    );
    assert_eq!(txt.text().await.unwrap(), result["text"].as_str().unwrap());

    // Formats the pipeline does not write, pages without a preview, other tenants: 404.
    for (client, path, code) in [
        (&owner, format!("/v1/jobs/{id}/outputs/hocr"), "no_output"),
        (&owner, format!("/v1/jobs/{id}/outputs/docx"), "no_output"),
        (
            &owner,
            format!("/v1/jobs/{id}/pages/2/preview"),
            "no_preview",
        ),
        (
            &other,
            format!("/v1/jobs/{id}/pages/1/preview"),
            "unknown_job",
        ),
        (&other, format!("/v1/jobs/{id}/outputs/txt"), "unknown_job"),
    ] {
        let response = client.get(d.url(&path)).send().await.unwrap();
        assert_eq!(response.status(), reqwest::StatusCode::NOT_FOUND, "{path}");
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["error"]["code"], code, "{path}");
    }
    // Without a key: 401.
    let response = http_client()
        .get(d.url(&format!("/v1/jobs/{id}/pages/1/preview")))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), reqwest::StatusCode::UNAUTHORIZED);
    // The page itself is open.
    let response = http_client().get(d.url("/")).send().await.unwrap();
    assert_eq!(response.status(), reqwest::StatusCode::OK);
    assert_eq!(
        response.headers()["content-type"],
        "text/html; charset=utf-8"
    );
}
