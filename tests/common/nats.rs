//! A real NATS server with JetStream for the cluster tests: Debian's `nats-server` package
//! (installed by `scripts/setup.sh`), on a free loopback port (`-p -1`, read back from its
//! ports file), its JetStream store in a temporary directory. Killed when dropped.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct NatsServer {
    child: Option<Child>,
    dir: tempfile::TempDir,
    /// `nats://127.0.0.1:PORT`.
    pub url: String,
}

impl NatsServer {
    /// Starts a server; returns once it accepts connections.
    pub fn start() -> NatsServer {
        let dir = tempfile::tempdir().unwrap();
        let (child, url) = spawn(dir.path(), "-1");
        NatsServer {
            child: Some(child),
            dir,
            url,
        }
    }

    /// Stops the server (SIGKILL).
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts the server again on the same port and store.
    pub fn restart(&mut self) {
        self.stop();
        let port = self.url.rsplit(':').next().unwrap().to_string();
        let (child, url) = spawn(self.dir.path(), &port);
        assert_eq!(url, self.url);
        self.child = Some(child);
    }
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        self.stop();
    }
}

fn spawn(dir: &Path, port: &str) -> (Child, String) {
    let ports = dir.join("ports");
    let _ = std::fs::remove_dir_all(&ports);
    std::fs::create_dir_all(&ports).unwrap();
    let child = Command::new("nats-server")
        .args(["-js", "-a", "127.0.0.1", "-p", port, "--ports_file_dir"])
        .arg(&ports)
        .arg("-sd")
        .arg(dir.join("jetstream"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("nats-server is not installed: run scripts/setup.sh --install-only");
    let mut child = child;
    let file: PathBuf = ports.join(format!("nats-server_{}.ports", child.id()));
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut listening = None;
    while listening.is_none() && Instant::now() < deadline {
        if let Ok(text) = std::fs::read_to_string(&file)
            && let Ok(value) = serde_json::from_str::<serde_json::Value>(&text)
            && let Some(url) = value["nats"][0].as_str()
        {
            let address = url.trim_start_matches("nats://").to_string();
            if std::net::TcpStream::connect(&address).is_ok() {
                listening = Some(url.to_string());
            }
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    match listening {
        Some(url) => (child, url),
        None => {
            let _ = child.kill();
            let _ = child.wait();
            panic!("nats-server did not start listening within 20 s");
        }
    }
}
