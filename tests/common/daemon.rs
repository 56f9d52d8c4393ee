//! A `pagemill serve` process on a real port, for black-box tests.
#![allow(dead_code)]

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use reqwest::StatusCode;
use serde_json::Value;

/// A daemon started on port 0 in a temporary directory; killed when dropped.
pub struct Daemon {
    pub child: Child,
    pub base: String,
    pub dir: tempfile::TempDir,
    pub http: reqwest::Client,
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The shipped default pipeline under another name, with `(from, to)` replacements.
pub fn pipeline_yaml(name: &str, replacements: &[(&str, &str)]) -> String {
    let mut yaml = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("pipelines/default.yaml"),
    )
    .unwrap()
    .replace("version: 1\n", &format!("version: 1\nname: {name}\n"))
    .replace("directory: results", &format!("directory: results/{name}"));
    for (from, to) in replacements {
        assert!(yaml.contains(from), "{from}");
        yaml = yaml.replace(from, to);
    }
    yaml
}

/// Starts `pagemill serve` in `dir` on the pipelines in `dir/pipelines`; returns the process
/// and its base URL.
fn spawn_in(dir: &Path, args: &[&str], env: &[(&str, &str)], stderr: Stdio) -> (Child, String) {
    // Quiet unless a test looks at the logs, or `PAGEMILL_TEST_LOG` names a level to see.
    let level = std::env::var("PAGEMILL_TEST_LOG").unwrap_or_else(|_| "warn".to_string());
    let quiet: Vec<&str> = if args.iter().any(|a| a.starts_with("--log")) {
        vec![]
    } else {
        vec!["--log-level", &level]
    };
    let shutdown: &[&str] = if args.contains(&"--shutdown-timeout") {
        &[]
    } else {
        &["--shutdown-timeout", "60s"]
    };
    let mut child = Command::new(env!("CARGO_BIN_EXE_pagemill"))
        .args(["serve", "--listen", "127.0.0.1:0"])
        .args(shutdown)
        .arg("--pipelines")
        .arg(dir.join("pipelines"))
        .args(&quiet)
        .args(args)
        .envs(env.iter().copied())
        .current_dir(dir)
        .stdout(Stdio::piped())
        .stderr(stderr)
        .spawn()
        .unwrap();
    let line = super::first_line(&mut child, "pagemill serve");
    let base = line
        .trim()
        .strip_prefix("pagemill listening on ")
        .unwrap_or_else(|| panic!("unexpected first line {line:?}"))
        .to_string();
    (child, base)
}

impl Daemon {
    pub fn start(pipelines: &[(&str, String)]) -> Daemon {
        Daemon::start_with(pipelines, &[], Stdio::inherit())
    }

    /// Starts with extra command-line arguments, sending the daemon's stderr (its logs) to
    /// `stderr`.
    pub fn start_with(pipelines: &[(&str, String)], args: &[&str], stderr: Stdio) -> Daemon {
        Daemon::start_with_env(pipelines, args, &[], stderr)
    }

    /// Starts with extra arguments and environment variables.
    pub fn start_with_env(
        pipelines: &[(&str, String)],
        args: &[&str],
        env: &[(&str, &str)],
        stderr: Stdio,
    ) -> Daemon {
        Daemon::start_prepared(pipelines, args, env, stderr, |_| {})
    }

    /// Starts in a new directory after `prepare` has put files in it (a database, a spool).
    pub fn start_prepared(
        pipelines: &[(&str, String)],
        args: &[&str],
        env: &[(&str, &str)],
        stderr: Stdio,
        prepare: impl FnOnce(&Path),
    ) -> Daemon {
        let dir = tempfile::tempdir().unwrap();
        prepare(dir.path());
        let pipeline_dir = dir.path().join("pipelines");
        std::fs::create_dir(&pipeline_dir).unwrap();
        for (name, yaml) in pipelines {
            std::fs::write(pipeline_dir.join(format!("{name}.yaml")), yaml).unwrap();
        }
        let (child, base) = spawn_in(dir.path(), args, env, stderr);
        Daemon {
            child,
            base,
            dir,
            http: super::http_client(),
        }
    }

    /// Starts with API keys in the daemon's default keys file (`data/keys.json`), one per
    /// `(name, scopes)`; returns the daemon and the keys, in order.
    pub fn start_with_keys(
        pipelines: &[(&str, String)],
        keys: &[(&str, &[pagemill::service::keys::Scope])],
        args: &[&str],
        stderr: Stdio,
    ) -> (Daemon, Vec<String>) {
        let mut made = Vec::new();
        let daemon = Daemon::start_prepared(pipelines, args, &[], stderr, |dir| {
            let path = dir.join(pagemill::service::keys::DEFAULT_KEYS_FILE);
            let mut file = pagemill::service::keys::KeysFile::default();
            for (name, scopes) in keys {
                made.push(file.add(name, scopes).unwrap());
            }
            file.write(&path).unwrap();
        });
        (daemon, made)
    }

    /// A client that sends `key` with every request.
    pub fn client_with_key(key: &str) -> reqwest::Client {
        let mut headers = reqwest::header::HeaderMap::new();
        headers.insert(
            reqwest::header::AUTHORIZATION,
            format!("Bearer {key}").parse().unwrap(),
        );
        super::http_client_builder()
            .default_headers(headers)
            .build()
            .unwrap()
    }

    /// Kills the daemon with SIGKILL (no chance to clean up) and starts a new one in the same
    /// directory, on the same pipelines, spool and journal.
    pub fn kill_and_restart(&mut self) {
        let _ = self.child.kill();
        self.child.wait().unwrap();
        let (child, base) = spawn_in(self.dir.path(), &[], &[], Stdio::inherit());
        self.child = child;
        self.base = base;
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    pub async fn post_file(&self, pipeline: &str, file: &Path) -> reqwest::Response {
        self.http
            .post(self.url(&format!("/v1/pipelines/{pipeline}/jobs")))
            .header("x-filename", file.file_name().unwrap().to_str().unwrap())
            .body(std::fs::read(file).unwrap())
            .send()
            .await
            .unwrap()
    }

    /// Submits a file that must be accepted; returns the job id.
    pub async fn submit(&self, pipeline: &str, file: &Path) -> String {
        let response = self.post_file(pipeline, file).await;
        assert_eq!(response.status(), StatusCode::ACCEPTED);
        let accepted: Value = response.json().await.unwrap();
        accepted["id"].as_str().unwrap().to_string()
    }

    pub async fn get(&self, path: &str) -> reqwest::Response {
        self.http.get(self.url(path)).send().await.unwrap()
    }

    pub async fn get_json(&self, path: &str) -> Value {
        self.get(path).await.json().await.unwrap()
    }

    /// `get_json` with another client (e.g. one sending an API key).
    pub async fn get_json_as(&self, client: &reqwest::Client, path: &str) -> Value {
        client
            .get(self.url(path))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }

    /// Polls a job until it is done, failed or cancelled.
    pub async fn wait_final(&self, id: &str) -> Value {
        self.wait_final_as(&self.http, id).await
    }

    /// [`Daemon::wait_final`] asking with `client` (e.g. one that sends a tenant's key);
    /// fails after [`super::PATIENCE`].
    pub async fn wait_final_as(&self, client: &reqwest::Client, id: &str) -> Value {
        let deadline = tokio::time::Instant::now() + super::PATIENCE;
        while tokio::time::Instant::now() < deadline {
            let response = client.get(self.url(&format!("/v1/jobs/{id}"))).send();
            let response = response.await.unwrap();
            // A cluster node answers 503 while its NATS servers fail over: asked again.
            if response.status() == reqwest::StatusCode::SERVICE_UNAVAILABLE {
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
            let status: Value = response.json().await.unwrap();
            if ["done", "failed", "cancelled"].contains(&status["state"].as_str().unwrap()) {
                return status;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("job {id} did not finish within {:?}", super::PATIENCE);
    }
}
