//! Real NATS servers with JetStream for the cluster tests: Debian's `nats-server` package
//! (installed by `scripts/setup.sh`). [`NatsServer`] is one server on a free loopback port
//! (`-p -1`, read back from its ports file), its JetStream store in a temporary directory.
//! [`NatsCluster`] is three servers forming a JetStream cluster from the sample configuration
//! `deploy/nats/cluster.conf`, their client and cluster ports chosen beforehand. Killed when
//! dropped.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::free_port;

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
        reap(&mut self.child);
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

/// Three `nats-server`s in one JetStream cluster on loopback, started from
/// `deploy/nats/cluster.conf` with their names, ports, routes and stores given on the command
/// line.
pub struct NatsCluster {
    servers: Vec<ClusterServer>,
    _dir: tempfile::TempDir,
}

struct ClusterServer {
    name: String,
    url: String,
    child: Option<Child>,
}

impl NatsCluster {
    /// Starts three servers; returns once JetStream answers on every one of them.
    pub async fn start() -> NatsCluster {
        let dir = tempfile::tempdir().unwrap();
        let config = Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/nats/cluster.conf");
        let ports: Vec<(u16, u16)> = (0..3).map(|_| (free_port(), free_port())).collect();
        let routes = ports
            .iter()
            .map(|(_, cluster)| format!("nats://127.0.0.1:{cluster}"))
            .collect::<Vec<_>>()
            .join(",");
        let mut servers = Vec::new();
        for (i, (client, cluster)) in ports.iter().enumerate() {
            let name = format!("nats-{}", i + 1);
            let child = Command::new("nats-server")
                .arg("-c")
                .arg(&config)
                .args(["-a", "127.0.0.1", "-p", &client.to_string(), "-m", "-1"])
                .args(["--cluster", &format!("nats://127.0.0.1:{cluster}")])
                .args(["--routes", &routes])
                .env("NATS_SERVER_NAME", &name)
                .env("NATS_STORE_DIR", dir.path().join(&name))
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("nats-server is not installed: run scripts/setup.sh --install-only");
            servers.push(ClusterServer {
                name,
                url: format!("nats://127.0.0.1:{client}"),
                child: Some(child),
            });
        }
        let cluster = NatsCluster { servers, _dir: dir };
        for server in &cluster.servers {
            wait_for_jetstream(&server.url).await;
        }
        wait_for_three_peers(&cluster.servers[0].url).await;
        cluster
    }

    /// Every server's URL, comma-separated, as `--cluster` takes them.
    pub fn urls(&self) -> String {
        self.servers
            .iter()
            .map(|s| s.url.as_str())
            .collect::<Vec<_>>()
            .join(",")
    }

    /// Kills (SIGKILL) the server named `name`.
    pub fn kill(&mut self, name: &str) {
        let server = self
            .servers
            .iter_mut()
            .find(|s| s.name == name)
            .unwrap_or_else(|| panic!("no server {name}"));
        reap(&mut server.child);
    }

    /// The name of the server leading `stream`, asked through any live server.
    pub async fn stream_leader(&self, stream: &str) -> String {
        let url = self
            .servers
            .iter()
            .find(|s| s.child.is_some())
            .map(|s| s.url.clone())
            .unwrap();
        let client = async_nats::connect(url).await.unwrap();
        let js = async_nats::jetstream::new(client);
        let mut stream = js.get_stream(stream).await.unwrap();
        let info = stream.info().await.unwrap();
        info.cluster
            .as_ref()
            .and_then(|c| c.leader.clone())
            .expect("a clustered stream has a leader")
    }
}

impl Drop for NatsCluster {
    fn drop(&mut self) {
        for server in &mut self.servers {
            reap(&mut server.child);
        }
    }
}

/// Waits until the server at `url` answers JetStream requests (its cluster has elected a
/// meta leader): asked for a stream that does not exist, it says so.
async fn wait_for_jetstream(url: &str) {
    use async_nats::jetstream::context::GetStreamErrorKind;
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        if let Ok(client) = async_nats::connect(url).await {
            let js = async_nats::jetstream::new(client);
            match js.get_stream("PAGEMILL_READY_CHECK").await {
                Err(e) if matches!(e.kind(), GetStreamErrorKind::JetStream(_)) => return,
                Ok(_) => return,
                Err(_) => {}
            }
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    panic!("the NATS cluster at {url} did not answer JetStream requests within 30 s");
}

/// Waits until the cluster behind `url` places a stream with three copies: a meta leader
/// that answers may not know every peer yet ("no suitable peers for placement").
async fn wait_for_three_peers(url: &str) {
    let client = async_nats::connect(url).await.unwrap();
    let js = async_nats::jetstream::new(client);
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        let probe = async_nats::jetstream::stream::Config {
            name: "PAGEMILL_READY_CHECK".into(),
            subjects: vec!["pagemill.ready-check".into()],
            num_replicas: 3,
            storage: async_nats::jetstream::stream::StorageType::Memory,
            ..Default::default()
        };
        if js.create_stream(probe).await.is_ok() {
            let _ = js.delete_stream("PAGEMILL_READY_CHECK").await;
            return;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    panic!("the NATS cluster at {url} did not place a stream on three servers within 30 s");
}

/// Kills (SIGKILL) and waits for a server process, if it still runs.
fn reap(child: &mut Option<Child>) {
    if let Some(mut child) = child.take() {
        let _ = child.kill();
        let _ = child.wait();
    }
}
