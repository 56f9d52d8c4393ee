//! How a node reaches NATS: the servers named by `--cluster`, the node's name, and the usual
//! NATS credentials (a credentials file, user and password or a token from the environment, a
//! CA file for TLS), turned into async-nats connection options.
//!
//! Secrets come from the environment only ([`USER_ENV`], [`PASSWORD_ENV`], [`TOKEN_ENV`]), so
//! that they never show in the process list.

use std::path::PathBuf;
use std::time::Duration;

use super::error::ClusterError;

/// The NATS user name, with [`PASSWORD_ENV`].
pub const USER_ENV: &str = "PAGEMILL_NATS_USER";
/// The NATS password, with [`USER_ENV`].
pub const PASSWORD_ENV: &str = "PAGEMILL_NATS_PASSWORD";
/// A NATS token (instead of a user and password).
pub const TOKEN_ENV: &str = "PAGEMILL_NATS_TOKEN";
/// Longest wait for one server to accept the connection.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// How this node joins the cluster.
#[derive(Debug, Clone)]
pub struct ClusterOptions {
    /// NATS server URLs (`nats://HOST:PORT` or `tls://HOST:PORT`), tried in turn.
    pub servers: Vec<String>,
    /// This node's name: in its connection name and in the leases of the jobs it runs.
    pub node_name: String,
    /// A NATS credentials file (JWT and NKey seed).
    pub credentials_file: Option<PathBuf>,
    /// A PEM file of the CA that signed the servers' certificates; TLS is then required.
    pub tls_ca_file: Option<PathBuf>,
    /// User and password, from [`USER_ENV`] and [`PASSWORD_ENV`].
    pub user_password: Option<(String, String)>,
    /// A token, from [`TOKEN_ENV`].
    pub token: Option<String>,
}

impl ClusterOptions {
    /// Options from `--cluster` (comma-separated URLs) and the environment; `node_name`
    /// defaults to the host name.
    pub fn new(
        servers: &str,
        node_name: Option<String>,
        credentials_file: Option<PathBuf>,
        tls_ca_file: Option<PathBuf>,
    ) -> Result<ClusterOptions, ClusterError> {
        let servers = parse_servers(servers)?;
        let node_name = match node_name {
            Some(name) => name,
            None => host_name()?,
        };
        if node_name.is_empty() || node_name.chars().any(|c| c.is_whitespace() || c == '.') {
            return Err(ClusterError::Options(format!(
                "--node-name {node_name:?}: a node name must be non-empty, without spaces or dots"
            )));
        }
        let env = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
        let user_password = match (env(USER_ENV), env(PASSWORD_ENV)) {
            (Some(user), Some(password)) => Some((user, password)),
            (None, None) => None,
            _ => {
                return Err(ClusterError::Options(format!(
                    "set both {USER_ENV} and {PASSWORD_ENV}, or neither"
                )));
            }
        };
        let token = env(TOKEN_ENV);
        if token.is_some() && (user_password.is_some() || credentials_file.is_some()) {
            return Err(ClusterError::Options(format!(
                "{TOKEN_ENV} excludes a user and password and a credentials file: use one of them"
            )));
        }
        Ok(ClusterOptions {
            servers,
            node_name,
            credentials_file,
            tls_ca_file,
            user_password,
            token,
        })
    }

    /// The servers, as the log and errors name them.
    pub fn servers_text(&self) -> String {
        self.servers.join(",")
    }

    /// The async-nats options these stand for.
    pub(crate) async fn connect_options(&self) -> Result<async_nats::ConnectOptions, ClusterError> {
        let mut options = match &self.credentials_file {
            Some(path) => async_nats::ConnectOptions::with_credentials_file(path)
                .await
                .map_err(|e| {
                    ClusterError::Options(format!(
                        "cannot read the NATS credentials file {}: {e}",
                        path.display()
                    ))
                })?,
            None => async_nats::ConnectOptions::new(),
        };
        if let Some((user, password)) = &self.user_password {
            options = options.user_and_password(user.clone(), password.clone());
        }
        if let Some(token) = &self.token {
            options = options.token(token.clone());
        }
        if let Some(ca) = &self.tls_ca_file {
            if !ca.is_file() {
                return Err(ClusterError::Options(format!(
                    "the TLS CA file {} does not exist",
                    ca.display()
                )));
            }
            options = options.add_root_certificates(ca.clone()).require_tls(true);
        }
        Ok(options
            .name(format!("pagemill {}", self.node_name))
            .connection_timeout(CONNECT_TIMEOUT)
            // A node keeps trying for ever once it has joined: requests made meanwhile fail
            // fast (503), they do not wait for the reconnection.
            .max_reconnects(None::<usize>))
    }
}

/// `nats://a:4222,nats://b:4222` as a list, each checked for a scheme and a host.
fn parse_servers(text: &str) -> Result<Vec<String>, ClusterError> {
    let servers: Vec<String> = text
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .collect();
    if servers.is_empty() {
        return Err(ClusterError::Options(
            "--cluster needs at least one NATS URL, e.g. nats://127.0.0.1:4222".into(),
        ));
    }
    for server in &servers {
        let Some((scheme, rest)) = server.split_once("://") else {
            return Err(ClusterError::Options(format!(
                "--cluster {server:?}: expected nats://HOST:PORT"
            )));
        };
        if !["nats", "tls"].contains(&scheme) || rest.is_empty() {
            return Err(ClusterError::Options(format!(
                "--cluster {server:?}: expected nats://HOST:PORT or tls://HOST:PORT"
            )));
        }
    }
    Ok(servers)
}

/// This machine's host name.
fn host_name() -> Result<String, ClusterError> {
    let mut buffer = [0u8; 256];
    // SAFETY: the buffer is valid for its length; gethostname writes at most that many bytes.
    let rc = unsafe { libc::gethostname(buffer.as_mut_ptr().cast(), buffer.len()) };
    if rc != 0 {
        return Err(ClusterError::Options(format!(
            "cannot read the host name ({}); pass --node-name",
            std::io::Error::last_os_error()
        )));
    }
    let end = buffer.iter().position(|&b| b == 0).unwrap_or(buffer.len());
    let name = String::from_utf8_lossy(&buffer[..end]).into_owned();
    // A fully qualified name's first label: dots separate subject tokens.
    Ok(name.split('.').next().unwrap_or_default().to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn servers_are_a_comma_separated_list_of_nats_urls() {
        assert_eq!(
            parse_servers("nats://a:4222, nats://b:4222").unwrap(),
            ["nats://a:4222", "nats://b:4222"]
        );
        assert!(parse_servers("").is_err());
        assert!(parse_servers("a:4222").is_err());
        assert!(parse_servers("http://a:4222").is_err());
    }

    #[test]
    fn the_node_name_defaults_to_the_host_name() {
        let options = ClusterOptions::new("nats://127.0.0.1:4222", None, None, None).unwrap();
        assert!(!options.node_name.is_empty());
        assert!(!options.node_name.contains('.'));
        assert!(ClusterOptions::new("nats://x:1", Some("a b".into()), None, None).is_err());
    }
}
