//! `pagemill keys`: add, list and revoke the API keys a daemon accepts. A serving daemon sees
//! the change within a second (or at once on SIGHUP); no restart.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Subcommand};

use crate::service::keys::{DEFAULT_KEYS_FILE, KeysFile, Scope};

/// The keys file option every command that reads keys shares.
#[derive(Debug, Clone, Args)]
pub struct KeysFileArg {
    /// The keys file (JSON; holds only the keys' hashes).
    #[arg(long = "keys", env = "PAGEMILL_KEYS", default_value = DEFAULT_KEYS_FILE, global = true)]
    pub path: PathBuf,
}

#[derive(Debug, Args)]
pub struct KeysArgs {
    #[command(flatten)]
    pub file: KeysFileArg,
    #[command(subcommand)]
    pub command: KeysCommand,
}

#[derive(Debug, Subcommand)]
pub enum KeysCommand {
    /// Make a key for tenant NAME and print it (once: only its hash is kept).
    Add {
        name: String,
        /// What the key may do, comma-separated.
        #[arg(long = "scope", value_enum, value_delimiter = ',', default_values_t = [Scope::Submit, Scope::Read])]
        scopes: Vec<Scope>,
    },
    /// List the keys: name, scopes, creation time (never the keys).
    List,
    /// Remove the key named NAME.
    Revoke { name: String },
}

impl std::fmt::Display for Scope {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

pub fn keys(args: KeysArgs) -> anyhow::Result<ExitCode> {
    let path = &args.file.path;
    let mut file = match KeysFile::read(path) {
        Ok(f) => f,
        Err(e) => {
            eprintln!("error: {e}");
            return Ok(ExitCode::from(1));
        }
    };
    let outcome = match args.command {
        KeysCommand::Add { name, scopes } => file.add(&name, &scopes).and_then(|key| {
            file.write(path)?;
            eprintln!(
                "key {name:?} added to {}; it is shown this once:",
                path.display()
            );
            println!("{key}");
            Ok(())
        }),
        KeysCommand::List => {
            for key in &file.keys {
                let scopes: Vec<&str> = key.scopes.iter().map(|s| s.as_str()).collect();
                println!("{}\t{}\t{}", key.name, scopes.join(","), key.created_at);
            }
            Ok(())
        }
        KeysCommand::Revoke { name } => file.revoke(&name).and_then(|()| {
            file.write(path)?;
            eprintln!("key {name:?} revoked");
            Ok(())
        }),
    };
    match outcome {
        Ok(()) => Ok(ExitCode::SUCCESS),
        Err(e) => {
            eprintln!("error: {e}");
            Ok(ExitCode::from(1))
        }
    }
}
