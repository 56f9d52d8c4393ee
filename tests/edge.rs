//! The hardened HTTP edge, black-box on a real port: HTTPS with a throwaway certificate (read
//! again on SIGHUP), a client trickling its headers cut off and its connection slot freed,
//! too many or too large headers refused, an oversized chunked upload stopped at the limit
//! with nothing left in the spool, and a stalled upload dropped.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::rustls::pki_types::{CertificateDer, ServerName};
use tokio_rustls::rustls::{ClientConfig, RootCertStore};

use crate::common::daemon::*;

/// A certificate for `localhost` and 127.0.0.1, as (certificate PEM, key PEM, certificate DER).
fn throwaway_certificate() -> (String, String, Vec<u8>) {
    let made =
        rcgen::generate_simple_self_signed(vec!["localhost".into(), "127.0.0.1".into()]).unwrap();
    (
        made.cert.pem(),
        made.signing_key.serialize_pem(),
        made.cert.der().to_vec(),
    )
}

fn address(d: &Daemon) -> String {
    d.base
        .trim_start_matches("https://")
        .trim_start_matches("http://")
        .to_string()
}

/// Sends one HTTP/1.1 request over TLS trusting only `trusted`; returns the status line and
/// the certificate the server showed.
async fn https_get(addr: &str, trusted: &[u8], path: &str) -> (String, Vec<u8>) {
    let mut roots = RootCertStore::empty();
    roots.add(CertificateDer::from(trusted.to_vec())).unwrap();
    let provider = Arc::new(tokio_rustls::rustls::crypto::aws_lc_rs::default_provider());
    let config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let tcp = TcpStream::connect(addr).await.unwrap();
    let mut tls = connector
        .connect(ServerName::try_from("localhost").unwrap(), tcp)
        .await
        .unwrap();
    let shown = tls.get_ref().1.peer_certificates().unwrap()[0].to_vec();
    tls.write_all(
        format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n").as_bytes(),
    )
    .await
    .unwrap();
    let mut response = Vec::new();
    let _ = tls.read_to_end(&mut response).await;
    let text = String::from_utf8_lossy(&response);
    (text.lines().next().unwrap_or("").to_string(), shown)
}

/// Sends raw bytes on a plain connection and reads the status line of the answer, if any.
async fn raw_status(addr: &str, request: &[u8]) -> String {
    let mut tcp = TcpStream::connect(addr).await.unwrap();
    tcp.write_all(request).await.unwrap();
    let mut response = vec![0; 4096];
    let n = tokio::time::timeout(Duration::from_secs(10), tcp.read(&mut response))
        .await
        .expect("an answer")
        .unwrap_or(0);
    String::from_utf8_lossy(&response[..n])
        .lines()
        .next()
        .unwrap_or("")
        .to_string()
}

#[tokio::test(flavor = "multi_thread")]
async fn https_with_a_generated_certificate_read_again_on_sighup() {
    let (cert, key, der) = throwaway_certificate();
    let d = Daemon::start_prepared(
        &[("default", pipeline_yaml("default", &[]))],
        &["--tls-cert", "cert.pem", "--tls-key", "key.pem"],
        &[],
        std::process::Stdio::inherit(),
        |dir| {
            std::fs::write(dir.join("cert.pem"), &cert).unwrap();
            std::fs::write(dir.join("key.pem"), &key).unwrap();
        },
    );
    assert!(d.base.starts_with("https://"), "{}", d.base);
    let addr = address(&d);

    let (status, shown) = https_get(&addr, &der, "/healthz").await;
    assert_eq!(status, "HTTP/1.1 200 OK");
    assert_eq!(shown, der);
    let (status, _) = https_get(&addr, &der, "/v1/jobs").await;
    assert_eq!(status, "HTTP/1.1 200 OK");
    // Plain HTTP to the TLS port gets no HTTP answer.
    let plain = raw_status(&addr, b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n").await;
    assert!(!plain.starts_with("HTTP/1.1 200"), "{plain}");

    // A new certificate in place of the old, then SIGHUP: new connections see the new one.
    let (cert2, key2, der2) = throwaway_certificate();
    std::fs::write(d.dir.path().join("cert.pem"), &cert2).unwrap();
    std::fs::write(d.dir.path().join("key.pem"), &key2).unwrap();
    unsafe { libc::kill(d.child.id() as i32, libc::SIGHUP) };
    let mut seen = Vec::new();
    for _ in 0..50 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let (status, shown) = https_get(&addr, &der2, "/healthz").await;
        if status == "HTTP/1.1 200 OK" {
            seen = shown;
            break;
        }
    }
    assert_eq!(seen, der2, "the certificate read again on SIGHUP is served");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_client_trickling_its_headers_is_cut_off_and_its_slot_freed() {
    let d = Daemon::start_with(
        &[("default", pipeline_yaml("default", &[]))],
        &["--header-read-timeout", "1s", "--max-connections", "1"],
        std::process::Stdio::inherit(),
    );
    let addr = address(&d);

    // The slow client takes the only connection slot and sends a byte every 200 ms.
    let mut slow = TcpStream::connect(&addr).await.unwrap();
    let started = Instant::now();
    let trickle = async {
        for byte in b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: "
            .iter()
            .cycle()
        {
            if slow.write_all(&[*byte]).await.is_err() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
            if started.elapsed() > Duration::from_secs(20) {
                break;
            }
        }
        let mut rest = Vec::new();
        let _ = slow.read_to_end(&mut rest).await;
        started.elapsed()
    };
    // A well-behaved client behind it is served once the slow one is cut off.
    let waiting = async {
        tokio::time::sleep(Duration::from_millis(300)).await;
        let asked = Instant::now();
        let status = raw_status(
            &addr,
            b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        )
        .await;
        (status, asked.elapsed())
    };
    let (cut_after, (status, waited)) = tokio::join!(trickle, waiting);
    assert!(
        cut_after < Duration::from_secs(5),
        "the trickling client was cut off after {cut_after:?}"
    );
    assert_eq!(status, "HTTP/1.1 200 OK");
    assert!(
        waited >= Duration::from_millis(300),
        "the second client waited for the slot: {waited:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn too_many_or_too_large_headers_are_refused_and_the_daemon_keeps_serving() {
    let d = Daemon::start(&[("default", pipeline_yaml("default", &[]))]);
    let addr = address(&d);
    let many: String = (0..200).map(|i| format!("X-H{i}: v\r\n")).collect();
    let status = raw_status(
        &addr,
        format!("GET /healthz HTTP/1.1\r\nHost: x\r\n{many}\r\n").as_bytes(),
    )
    .await;
    assert!(status.starts_with("HTTP/1.1 431"), "{status}");
    let large = "v".repeat(64 * 1024);
    let status = raw_status(
        &addr,
        format!("GET /healthz HTTP/1.1\r\nHost: x\r\nX-Large: {large}\r\n\r\n").as_bytes(),
    )
    .await;
    assert!(status.starts_with("HTTP/1.1 431"), "{status}");
    assert_eq!(d.get("/healthz").await.status(), reqwest::StatusCode::OK);
}

#[tokio::test(flavor = "multi_thread")]
async fn an_oversized_chunked_upload_stops_at_the_limit_and_leaves_no_spool_file() {
    let d = Daemon::start(&[(
        "tiny",
        pipeline_yaml(
            "tiny",
            &[("max_document_bytes: 50MiB", "max_document_bytes: 1KiB")],
        ),
    )]);
    let addr = address(&d);
    let mut tcp = TcpStream::connect(&addr).await.unwrap();
    tcp.write_all(
        b"POST /v1/pipelines/tiny/jobs HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n",
    )
    .await
    .unwrap();
    // A PDF header, then far more than the limit, 512 bytes a chunk, for as long as the
    // daemon reads.
    let mut sent = 0usize;
    let chunk = [b'%'; 512];
    let mut answer = vec![0; 4096];
    let status = loop {
        let write = async {
            tcp.write_all(format!("{:x}\r\n", chunk.len()).as_bytes())
                .await?;
            tcp.write_all(&chunk).await?;
            tcp.write_all(b"\r\n").await
        };
        if write.await.is_err() || sent > 16 * 1024 * 1024 {
            break None;
        }
        sent += chunk.len();
        if let Ok(Ok(n)) =
            tokio::time::timeout(Duration::from_millis(5), tcp.read(&mut answer)).await
            && n > 0
        {
            break Some(String::from_utf8_lossy(&answer[..n]).into_owned());
        }
    };
    let status = match status {
        Some(s) => s,
        None => {
            let n = tcp.read(&mut answer).await.unwrap_or(0);
            String::from_utf8_lossy(&answer[..n]).into_owned()
        }
    };
    assert!(status.starts_with("HTTP/1.1 413"), "{status}");
    assert!(status.contains("too_large"), "{status}");
    assert!(
        sent < 1024 * 1024,
        "the daemon stopped reading soon after the limit, not after {sent} bytes"
    );
    let spool: Vec<_> = std::fs::read_dir(d.dir.path().join("data/spool"))
        .map(|entries| entries.flatten().map(|e| e.file_name()).collect())
        .unwrap_or_default();
    assert!(spool.is_empty(), "left in the spool: {spool:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_stalled_upload_is_dropped_with_408_and_leaves_no_spool_file() {
    let d = Daemon::start_with(
        &[("default", pipeline_yaml("default", &[]))],
        &["--upload-idle-timeout", "1s"],
        std::process::Stdio::inherit(),
    );
    let addr = address(&d);
    let mut tcp = TcpStream::connect(&addr).await.unwrap();
    tcp.write_all(
        b"POST /v1/pipelines/default/jobs HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\n%PDF-1.4\n",
    )
    .await
    .unwrap();
    let mut answer = vec![0; 4096];
    let n = tokio::time::timeout(Duration::from_secs(10), tcp.read(&mut answer))
        .await
        .expect("an answer within the idle timeout and some")
        .unwrap();
    let answer = String::from_utf8_lossy(&answer[..n]);
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(answer.contains("upload_timeout"), "{answer}");
    let spool: Vec<_> = std::fs::read_dir(d.dir.path().join("data/spool"))
        .map(|entries| entries.flatten().map(|e| e.file_name()).collect())
        .unwrap_or_default();
    assert!(spool.is_empty(), "left in the spool: {spool:?}");
    assert_eq!(d.get("/healthz").await.status(), reqwest::StatusCode::OK);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_tenant_holds_at_most_its_share_of_event_streams() {
    use pagemill::service::keys::Scope;
    let (d, keys) = Daemon::start_with_keys(
        &[("default", pipeline_yaml("default", &[]))],
        &[
            ("watcher", &[Scope::Submit, Scope::Read]),
            ("other", &[Scope::Submit, Scope::Read]),
        ],
        &["--max-event-streams-per-tenant", "2"],
        std::process::Stdio::inherit(),
    );
    let (watcher, other) = (
        Daemon::client_with_key(&keys[0]),
        Daemon::client_with_key(&keys[1]),
    );
    // Jobs long enough to watch for a while.
    let big = d.dir.path().join("big.tif");
    crate::fairness::multi_page_tiff(&big, 12);
    let submit = |client: &reqwest::Client| {
        client
            .post(d.url("/v1/pipelines/default/jobs"))
            .body(std::fs::read(&big).unwrap())
            .send()
    };
    let job = |response: reqwest::Response| async move {
        assert_eq!(response.status(), reqwest::StatusCode::ACCEPTED);
        let body: serde_json::Value = response.json().await.unwrap();
        body["id"].as_str().unwrap().to_string()
    };
    let watched = job(submit(&watcher).await.unwrap()).await;
    let others = job(submit(&other).await.unwrap()).await;
    let events = |client: &reqwest::Client, id: &str| {
        client.get(d.url(&format!("/v1/jobs/{id}/events"))).send()
    };

    let first = events(&watcher, &watched).await.unwrap();
    let second = events(&watcher, &watched).await.unwrap();
    assert_eq!(first.status(), reqwest::StatusCode::OK);
    assert_eq!(second.status(), reqwest::StatusCode::OK);
    let third = events(&watcher, &watched).await.unwrap();
    assert_eq!(third.status(), reqwest::StatusCode::TOO_MANY_REQUESTS);
    let body: serde_json::Value = third.json().await.unwrap();
    assert_eq!(body["error"]["code"], "too_many_event_streams");
    // Another tenant's streams are its own.
    let theirs = events(&other, &others).await.unwrap();
    assert_eq!(theirs.status(), reqwest::StatusCode::OK);

    // A stream closed frees its place.
    drop(first);
    let mut reopened = false;
    for _ in 0..50 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let again = events(&watcher, &watched).await.unwrap();
        if again.status() == reqwest::StatusCode::OK {
            reopened = true;
            break;
        }
    }
    assert!(reopened, "the closed stream's place is free again");
    drop(second);
}
