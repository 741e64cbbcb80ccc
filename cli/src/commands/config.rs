//! `config`: settings saved beside the token store, so a user stops passing `--server`.

use std::path::Path;

use serde::Serialize;

use crate::args::{ConfigCommand, ConfigKey};
use crate::client::normalize_server;
use crate::config::SavedSettings;
use crate::error::CliError;
use crate::output::Output;
use crate::{Source, effective_server};

/// One setting as `config get` and `config list` show it.
#[derive(Serialize)]
struct Setting {
    key: &'static str,
    value: String,
    source: Source,
    /// The settings file, when the value comes from it.
    #[serde(skip_serializing_if = "Option::is_none")]
    file: Option<String>,
}

impl Setting {
    fn human(&self) -> String {
        let from = match (self.source, &self.file) {
            (Source::Flag, _) => "from --server".to_owned(),
            (Source::Env, _) => "from QUICKCHAT_SERVER".to_owned(),
            (Source::ConfigFile, Some(file)) => format!("from {file}"),
            (Source::ConfigFile, None) => "from the settings file".to_owned(),
            (Source::Default, _) => "default".to_owned(),
        };
        format!("{} = {}  ({from})", self.key, self.value)
    }
}

pub fn run(
    command: ConfigCommand,
    given_server: Option<&str>,
    config_dir: &Path,
    output: Output,
) -> Result<(), CliError> {
    let file = SavedSettings::path(config_dir).display().to_string();
    match command {
        ConfigCommand::Set {
            key: ConfigKey::Server,
            value,
        } => {
            let server = normalize_server(&value)?;
            let mut saved = SavedSettings::load(config_dir)?;
            saved.server = Some(server.clone());
            saved.save(config_dir)?;
            let setting = Setting {
                key: "server",
                value: server,
                source: Source::ConfigFile,
                file: Some(file),
            };
            output.emit(&setting, || format!("saved {}", setting.human()));
        }
        ConfigCommand::Unset {
            key: ConfigKey::Server,
        } => {
            let mut saved = SavedSettings::load(config_dir)?;
            saved.server = None;
            saved.save(config_dir)?;
            output.note(format!("forgot the saved server ({file})"));
        }
        ConfigCommand::Get {
            key: ConfigKey::Server,
        } => {
            let setting = effective(given_server, config_dir, file)?;
            // The bare value, for `$(quickchat config get server)`.
            output.emit(&setting, || setting.value.clone());
        }
        ConfigCommand::List => {
            let setting = effective(given_server, config_dir, file)?;
            output.emit(&setting, || setting.human());
        }
    }
    Ok(())
}

fn effective(
    given_server: Option<&str>,
    config_dir: &Path,
    file: String,
) -> Result<Setting, CliError> {
    let (value, source) = effective_server(given_server, config_dir)?;
    Ok(Setting {
        key: "server",
        value,
        file: (source == Source::ConfigFile).then_some(file),
        source,
    })
}
