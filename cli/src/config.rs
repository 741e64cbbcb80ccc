//! The token store: one JSON file, `credentials.json`, in the user's config directory (or
//! `--config-dir`), readable by the user only (mode 0600, directory 0700).
//!
//! Credentials are kept per server URL, so signing in to two servers never mixes tokens.
//! For each server the file holds the signed-in user's session (access + refresh token) and
//! the member token of every group joined with a passcode.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::error::CliError;

const FILE_NAME: &str = "credentials.json";

/// Everything stored, for every server.
#[derive(Debug, Default, Serialize, Deserialize)]
struct StoredFile {
    #[serde(default)]
    servers: BTreeMap<String, ServerCredentials>,
}

/// What we hold for one server.
#[derive(Debug, Default, Clone, Serialize, Deserialize)]
pub struct ServerCredentials {
    /// The signed-in user, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session: Option<StoredSession>,
    /// Member tokens by group id.
    #[serde(default)]
    pub memberships: BTreeMap<String, Membership>,
    /// Groups the signed-in user owns (id → title), as `group create`, `group list` and
    /// `group delete` last left them: shell completion offers them without a server call.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub owned_groups: BTreeMap<String, String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StoredSession {
    pub access_token: String,
    pub access_expires_at: Option<DateTime<Utc>>,
    pub refresh_token: String,
    pub refresh_expires_at: Option<DateTime<Utc>>,
    pub user_id: String,
    pub name: String,
    pub email: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Membership {
    pub member_id: String,
    pub name: String,
    pub group_title: String,
    pub token: String,
    pub expires_at: Option<DateTime<Utc>>,
}

/// The token store opened for one server.
#[derive(Debug)]
pub struct TokenStore {
    path: PathBuf,
    server: String,
    file: StoredFile,
}

impl TokenStore {
    /// Opens the store in `config_dir`, or in the user's config directory
    /// (`$XDG_CONFIG_HOME/quickchat` on Linux).
    pub fn open(config_dir: Option<&Path>, server: &str) -> Result<Self, CliError> {
        let path = config_dir_or_default(config_dir)?.join(FILE_NAME);
        let file = match std::fs::read_to_string(&path) {
            Ok(text) => serde_json::from_str(&text).map_err(|err| {
                CliError::local(format!(
                    "{} is damaged ({err}); delete it and log in again",
                    path.display()
                ))
            })?,
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => StoredFile::default(),
            Err(err) => {
                return Err(CliError::local(format!(
                    "cannot read {}: {err}",
                    path.display()
                )));
            }
        };
        Ok(Self {
            path,
            server: server.to_owned(),
            file,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// This server's credentials.
    pub fn get(&self) -> ServerCredentials {
        self.file
            .servers
            .get(&self.server)
            .cloned()
            .unwrap_or_default()
    }

    pub fn session(&self) -> Option<&StoredSession> {
        self.file
            .servers
            .get(&self.server)
            .and_then(|c| c.session.as_ref())
    }

    pub fn membership(&self, group_id: &str) -> Option<&Membership> {
        self.file
            .servers
            .get(&self.server)
            .and_then(|c| c.memberships.get(group_id))
    }

    /// Changes this server's credentials and writes the file.
    pub fn update(&mut self, change: impl FnOnce(&mut ServerCredentials)) -> Result<(), CliError> {
        let entry = self.file.servers.entry(self.server.clone()).or_default();
        change(entry);
        if entry.session.is_none() {
            // They are the account's, not this machine's.
            entry.owned_groups.clear();
        }
        if entry.session.is_none() && entry.memberships.is_empty() {
            self.file.servers.remove(&self.server);
        }
        self.save()
    }

    fn save(&self) -> Result<(), CliError> {
        let fail = |what: &str, err: std::io::Error| {
            CliError::local(format!("cannot {what} {}: {err}", self.path.display()))
        };
        let dir = self.path.parent().unwrap_or(Path::new("."));
        create_private_dir(dir).map_err(|e| fail("create the directory of", e))?;
        let text = serde_json::to_string_pretty(&self.file)
            .map_err(|e| CliError::local(format!("cannot encode the token store: {e}")))?;
        let tmp = self.path.with_extension("json.tmp");
        let _ = std::fs::remove_file(&tmp);
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create_new(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            options.mode(0o600);
        }
        let mut file = options.open(&tmp).map_err(|e| fail("write", e))?;
        file.write_all(text.as_bytes())
            .and_then(|_| file.sync_all())
            .map_err(|e| fail("write", e))?;
        std::fs::rename(&tmp, &self.path).map_err(|e| fail("replace", e))?;
        Ok(())
    }
}

fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    if dir.is_dir() {
        return Ok(());
    }
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt;
        builder.mode(0o700);
    }
    builder.create(dir)
}

/// `config_dir`, or the user's config directory (`$XDG_CONFIG_HOME/quickchat` on Linux).
pub fn config_dir_or_default(config_dir: Option<&Path>) -> Result<PathBuf, CliError> {
    match config_dir {
        Some(dir) => Ok(dir.to_path_buf()),
        None => directories::ProjectDirs::from("", "", "quickchat")
            .map(|d| d.config_dir().to_path_buf())
            .ok_or_else(|| {
                CliError::local("cannot find a home directory for the settings; pass --config-dir")
            }),
    }
}

/// Settings saved with `quickchat config set`, in `settings.json` beside the token store.
#[derive(Debug, Default, Clone, Serialize, Deserialize)]
pub struct SavedSettings {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server: Option<String>,
}

impl SavedSettings {
    pub fn path(dir: &Path) -> PathBuf {
        dir.join("settings.json")
    }

    /// The saved settings (none if the file does not exist yet).
    pub fn load(dir: &Path) -> Result<Self, CliError> {
        let path = Self::path(dir);
        match std::fs::read_to_string(&path) {
            Ok(text) => serde_json::from_str(&text).map_err(|err| {
                CliError::local(format!(
                    "{} is damaged ({err}); fix or delete it",
                    path.display()
                ))
            }),
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => Ok(Self::default()),
            Err(err) => Err(CliError::local(format!(
                "cannot read {}: {err}",
                path.display()
            ))),
        }
    }

    pub fn save(&self, dir: &Path) -> Result<(), CliError> {
        let path = Self::path(dir);
        let write = || -> std::io::Result<()> {
            create_private_dir(dir)?;
            let text = serde_json::to_string_pretty(self).map_err(std::io::Error::other)?;
            std::fs::write(&path, text + "\n")
        };
        write().map_err(|err| CliError::local(format!("cannot write {}: {err}", path.display())))
    }
}
