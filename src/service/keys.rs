//! API keys: who may call the daemon, and as which tenant.
//!
//! A key is 256 random bits, shown once when it is made; the keys file keeps only its SHA-256
//! with the key's name (the tenant it stands for), scopes and creation time. The file is JSON,
//! written atomically (temp file, fsync, rename) with mode 0600. The daemon holds the keys in
//! a [`KeyRing`], which reads the file again when it changes or on SIGHUP, so adding or
//! revoking a key needs no restart. A presented key is compared against every stored hash in
//! constant time.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// Where keys are kept unless `--keys` or `PAGEMILL_KEYS` say otherwise.
pub const DEFAULT_KEYS_FILE: &str = "data/keys.json";
/// Every key starts with this, so a leaked one is easy to recognise in a scan.
const KEY_PREFIX: &str = "pm_";
/// Random bytes in a key.
const KEY_BYTES: usize = 32;
/// How often a serving daemon looks at the keys file for changes.
pub const KEYS_FILE_CHECK: Duration = Duration::from_secs(1);

/// What a key may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Scope {
    /// Submit jobs and cancel its own.
    Submit,
    /// Read its own jobs: status, listings, results, events; the pipelines.
    Read,
    /// Everything, on every tenant's jobs; and `/metrics` when it needs a key.
    Admin,
}

impl Scope {
    pub fn as_str(self) -> &'static str {
        match self {
            Scope::Submit => "submit",
            Scope::Read => "read",
            Scope::Admin => "admin",
        }
    }
}

/// A key as the keys file keeps it: never the key itself.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredKey {
    /// The key's name, which is also its tenant's.
    pub name: String,
    pub scopes: Vec<Scope>,
    /// Hex SHA-256 of the key.
    pub sha256: String,
    /// RFC 3339.
    pub created_at: String,
}

#[derive(Debug, Default, Serialize, Deserialize)]
pub struct KeysFile {
    pub keys: Vec<StoredKey>,
}

/// Why a keys command or the key ring failed.
#[derive(Debug, thiserror::Error)]
pub enum KeysError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: not a keys file: {source}")]
    Malformed {
        path: PathBuf,
        source: serde_json::Error,
    },
    #[error("a key named {0:?} exists already; revoke it first")]
    NameTaken(String),
    #[error("no key named {0:?}")]
    UnknownName(String),
    #[error(
        "a key name is 1 to 64 letters, digits, '-', '_' or '.', not {0:?} (it names the tenant in logs and results)"
    )]
    BadName(String),
}

impl KeysFile {
    /// Reads the keys file; a file that does not exist holds no keys.
    pub fn read(path: &Path) -> Result<KeysFile, KeysError> {
        match std::fs::read(path) {
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(|source| KeysError::Malformed {
                path: path.to_path_buf(),
                source,
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(KeysFile::default()),
            Err(source) => Err(KeysError::Io {
                path: path.to_path_buf(),
                source,
            }),
        }
    }

    /// Writes the keys file atomically, readable by its owner only.
    pub fn write(&self, path: &Path) -> Result<(), KeysError> {
        let io = |source| KeysError::Io {
            path: path.to_path_buf(),
            source,
        };
        let dir = match path.parent() {
            Some(d) if !d.as_os_str().is_empty() => d,
            _ => Path::new("."),
        };
        std::fs::create_dir_all(dir).map_err(io)?;
        // tempfile creates the file with mode 0600.
        let mut file = tempfile::NamedTempFile::new_in(dir).map_err(io)?;
        let json = serde_json::to_vec_pretty(self).expect("keys serialize");
        file.write_all(&json).map_err(io)?;
        file.as_file().sync_all().map_err(io)?;
        file.persist(path).map_err(|e| io(e.error))?;
        std::fs::File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(io)?;
        Ok(())
    }

    /// Adds a key named `name` with `scopes`; returns the key, which is shown once and kept
    /// nowhere.
    pub fn add(&mut self, name: &str, scopes: &[Scope]) -> Result<String, KeysError> {
        let valid = !name.is_empty()
            && name.len() <= 64
            && name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
        if !valid {
            return Err(KeysError::BadName(name.to_string()));
        }
        if self.keys.iter().any(|k| k.name == name) {
            return Err(KeysError::NameTaken(name.to_string()));
        }
        let mut random = [0u8; KEY_BYTES];
        getrandom::fill(&mut random).expect("the system's random source works");
        let key = format!("{KEY_PREFIX}{}", hex(&random));
        let mut scopes = scopes.to_vec();
        scopes.sort_by_key(|s| *s as u8);
        scopes.dedup();
        self.keys.push(StoredKey {
            name: name.to_string(),
            scopes,
            sha256: hex(&Sha256::digest(key.as_bytes())),
            created_at: humantime::format_rfc3339_seconds(SystemTime::now()).to_string(),
        });
        Ok(key)
    }

    /// Removes the key named `name`.
    pub fn revoke(&mut self, name: &str) -> Result<(), KeysError> {
        let before = self.keys.len();
        self.keys.retain(|k| k.name != name);
        if self.keys.len() == before {
            return Err(KeysError::UnknownName(name.to_string()));
        }
        Ok(())
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Who is calling: the tenant of the key presented, and what it may do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    /// The key's name; `None` when the daemon serves without keys.
    pub tenant: Option<String>,
    pub scopes: Vec<Scope>,
}

impl Caller {
    /// The caller of a daemon that serves without keys: one tenant, allowed everything.
    pub fn unauthenticated() -> Caller {
        Caller {
            tenant: None,
            scopes: vec![Scope::Admin],
        }
    }

    /// Whether the caller may do what `scope` allows (`admin` allows everything).
    pub fn may(&self, scope: Scope) -> bool {
        self.scopes.contains(&scope) || self.scopes.contains(&Scope::Admin)
    }

    /// Whether the caller sees every tenant's jobs.
    pub fn sees_every_job(&self) -> bool {
        self.scopes.contains(&Scope::Admin)
    }

    /// Whether the caller may see a job of `tenant`.
    pub fn sees(&self, tenant: Option<&str>) -> bool {
        self.sees_every_job() || self.tenant.as_deref() == tenant
    }
}

/// The keys a serving daemon accepts, kept in step with the keys file.
pub struct KeyRing {
    path: PathBuf,
    keys: RwLock<Arc<Vec<StoredKey>>>,
    /// The keys file's modification time when it was last read.
    read_at: Mutex<Option<SystemTime>>,
}

impl KeyRing {
    /// Reads the keys file at `path` (no file: no keys).
    pub fn open(path: &Path) -> Result<KeyRing, KeysError> {
        let ring = KeyRing {
            path: path.to_path_buf(),
            keys: RwLock::default(),
            read_at: Mutex::default(),
        };
        ring.reload()?;
        Ok(ring)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// How many keys there are.
    pub fn len(&self) -> usize {
        self.keys.read().expect("key ring poisoned").len()
    }

    /// Whether no key is configured.
    pub fn is_empty(&self) -> bool {
        self.keys.read().expect("key ring poisoned").is_empty()
    }

    /// Reads the keys file again. A file that cannot be read or parsed leaves the keys as they
    /// were (and the error is returned), so a half-edited file locks no one out.
    pub fn reload(&self) -> Result<usize, KeysError> {
        let modified = std::fs::metadata(&self.path)
            .and_then(|m| m.modified())
            .ok();
        let file = KeysFile::read(&self.path)?;
        let count = file.keys.len();
        *self.keys.write().expect("key ring poisoned") = Arc::new(file.keys);
        *self.read_at.lock().expect("key ring poisoned") = modified;
        Ok(count)
    }

    /// Reads the keys file again if it changed since it was last read.
    pub fn reload_if_changed(&self) -> Result<Option<usize>, KeysError> {
        let modified = std::fs::metadata(&self.path)
            .and_then(|m| m.modified())
            .ok();
        if modified == *self.read_at.lock().expect("key ring poisoned") {
            return Ok(None);
        }
        self.reload().map(Some)
    }

    /// The caller a presented key stands for, if it is a key of the ring. Every stored hash
    /// is compared, in constant time, whatever matches.
    pub fn authenticate(&self, presented: &str) -> Option<Caller> {
        let digest = Sha256::digest(presented.as_bytes());
        let presented_hex = hex(&digest);
        let keys = self.keys.read().expect("key ring poisoned").clone();
        let mut found = None;
        for key in keys.iter() {
            let equal: bool = key.sha256.as_bytes().ct_eq(presented_hex.as_bytes()).into();
            if equal {
                found = Some(Caller {
                    tenant: Some(key.name.clone()),
                    scopes: key.scopes.clone(),
                });
            }
        }
        found
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_is_shown_once_stored_as_a_hash_and_recognised() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("keys.json");
        let mut file = KeysFile::read(&path).unwrap();
        let key = file.add("acme", &[Scope::Read, Scope::Submit]).unwrap();
        assert!(key.starts_with("pm_") && key.len() == 3 + 2 * KEY_BYTES);
        file.write(&path).unwrap();
        let stored = std::fs::read_to_string(&path).unwrap();
        assert!(!stored.contains(&key[3..]), "the key itself is not kept");
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);

        let ring = KeyRing::open(&path).unwrap();
        let caller = ring.authenticate(&key).unwrap();
        assert_eq!(caller.tenant.as_deref(), Some("acme"));
        assert_eq!(caller.scopes, vec![Scope::Submit, Scope::Read]);
        assert!(caller.may(Scope::Read) && !caller.may(Scope::Admin));
        assert!(ring.authenticate("pm_0000").is_none());
        assert!(ring.authenticate(&key[..key.len() - 1]).is_none());
    }

    #[test]
    fn names_are_unique_and_plain_and_revoking_removes_the_key() {
        let mut file = KeysFile::default();
        file.add("a", &[Scope::Read]).unwrap();
        assert!(matches!(
            file.add("a", &[Scope::Read]),
            Err(KeysError::NameTaken(_))
        ));
        assert!(matches!(
            file.add("a b", &[Scope::Read]),
            Err(KeysError::BadName(_))
        ));
        assert!(matches!(file.add("", &[]), Err(KeysError::BadName(_))));
        file.revoke("a").unwrap();
        assert!(file.keys.is_empty());
        assert!(matches!(file.revoke("a"), Err(KeysError::UnknownName(_))));
    }

    #[test]
    fn a_broken_keys_file_leaves_the_ring_as_it_was() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("keys.json");
        let mut file = KeysFile::default();
        let key = file.add("acme", &[Scope::Admin]).unwrap();
        file.write(&path).unwrap();
        let ring = KeyRing::open(&path).unwrap();
        std::fs::write(&path, "{ half").unwrap();
        assert!(ring.reload().is_err());
        assert!(ring.authenticate(&key).is_some());
    }
}
