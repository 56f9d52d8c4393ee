//! A real PostgreSQL server for the sink tests: Debian's `postgresql` package (installed by
//! `scripts/setup.sh`), a throwaway cluster in a temporary directory, trust authentication,
//! listening on 127.0.0.1 at a port of the test's choosing. Run as the `postgres` user when
//! the tests run as root (the server refuses root).

use std::path::{Path, PathBuf};
use std::process::Command;

use super::free_port;

pub struct Postgres {
    pub port: u16,
    bin: PathBuf,
    data: PathBuf,
    _dir: tempfile::TempDir,
}

/// The newest installed server's programs, e.g. `/usr/lib/postgresql/15/bin`.
fn bin_dir() -> PathBuf {
    let mut found: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .expect("PostgreSQL is not installed: run scripts/setup.sh --install-only")
        .flatten()
        .map(|e| e.path().join("bin"))
        .filter(|bin| bin.join("initdb").is_file())
        .collect();
    found.sort_by_key(|p| {
        p.parent()
            .and_then(|v| v.file_name()?.to_str()?.parse::<u32>().ok())
            .unwrap_or(0)
    });
    found
        .pop()
        .expect("no PostgreSQL server under /usr/lib/postgresql: run scripts/setup.sh")
}

fn running_as_root() -> bool {
    let out = Command::new("id").arg("-u").output().expect("id -u");
    String::from_utf8_lossy(&out.stdout).trim() == "0"
}

/// Runs a PostgreSQL program, as the `postgres` user when we are root.
fn run(program: &Path, args: &[&str]) {
    let mut command = if running_as_root() {
        let mut c = Command::new("runuser");
        c.args(["-u", "postgres", "--"]).arg(program);
        c
    } else {
        Command::new(program)
    };
    let out = command
        .args(args)
        .output()
        .expect("run a PostgreSQL program");
    assert!(
        out.status.success(),
        "{} {args:?} failed: {}{}",
        program.display(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

impl Postgres {
    /// Creates a cluster and starts its server on `port`; returns when it accepts connections.
    pub fn start_on(port: u16) -> Postgres {
        let bin = bin_dir();
        // Under /tmp (not $TMPDIR): the postgres user must be able to reach it.
        let dir = tempfile::Builder::new()
            .prefix("pagemill-pg-")
            .tempdir_in("/tmp")
            .unwrap();
        if running_as_root() {
            let status = Command::new("chown")
                .args(["postgres:postgres"])
                .arg(dir.path())
                .status()
                .unwrap();
            assert!(status.success());
        }
        let data = dir.path().join("data");
        let data_arg = data.to_str().unwrap();
        run(
            &bin.join("initdb"),
            &[
                "-D",
                data_arg,
                "-U",
                "postgres",
                "--auth=trust",
                "-E",
                "UTF8",
                "--locale=C.UTF-8",
                "--no-sync",
            ],
        );
        let options = format!(
            "-p {port} -c listen_addresses=127.0.0.1 -k {} -c fsync=off",
            dir.path().display()
        );
        let log = dir.path().join("server.log");
        run(
            &bin.join("pg_ctl"),
            &[
                "-D",
                data_arg,
                "-l",
                log.to_str().unwrap(),
                "-o",
                &options,
                "-w",
                "start",
            ],
        );
        Postgres {
            port,
            bin,
            data,
            _dir: dir,
        }
    }

    pub fn start() -> Postgres {
        Postgres::start_on(free_port())
    }

    /// A libpq connection string for the server's `postgres` database.
    pub fn url(&self) -> String {
        url_for_port(self.port)
    }

    /// A client connected to the server.
    pub async fn client(&self) -> tokio_postgres::Client {
        let (client, connection) = tokio_postgres::connect(&self.url(), tokio_postgres::NoTls)
            .await
            .unwrap();
        tokio::spawn(connection);
        client
    }
}

pub fn url_for_port(port: u16) -> String {
    format!("host=127.0.0.1 port={port} user=postgres dbname=postgres connect_timeout=5")
}

impl Drop for Postgres {
    fn drop(&mut self) {
        let data = self.data.to_str().unwrap().to_string();
        let _ = std::panic::catch_unwind(|| {
            run(
                &self.bin.join("pg_ctl"),
                &["-D", &data, "-m", "immediate", "stop"],
            )
        });
    }
}
