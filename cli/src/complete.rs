//! Shell completion. The shells call `quickchat` itself to complete a word
//! (`COMPLETE=<shell> quickchat -- <words>`, registered by `quickchat completions <shell>`),
//! so besides commands and flags it completes group ids: the groups this machine holds a
//! member token for and the groups the signed-in user owns (as `group create` and
//! `group list` last saw them), each with its title as the description. It reads only the
//! local token store: completing must be instant and work with the server down.

use std::ffi::OsStr;

use clap::CommandFactory as _;
use clap_complete::engine::CompletionCandidate;
use clap_complete::env::{CompleteEnv, Shells};

use crate::args::Cli;
use crate::config::TokenStore;

/// The environment variable the shell sets when it asks for completions.
const VAR: &str = "COMPLETE";

/// Answers a completion request and exits, if this run is one; returns otherwise.
pub fn answer_if_asked() {
    CompleteEnv::with_factory(Cli::command).var(VAR).complete();
}

/// Prints the script that registers `quickchat`'s completions with `shell`.
pub fn print_registration(shell: clap_complete::Shell) -> std::io::Result<()> {
    let name = shell.to_string();
    let shells = Shells::builtins();
    let Some(completer) = shells.completer(&name) else {
        return Err(std::io::Error::other(format!("no completions for {name}")));
    };
    completer.write_registration(
        VAR,
        "quickchat",
        "quickchat",
        "quickchat",
        &mut std::io::stdout(),
    )
}

/// Group ids starting with what was typed so far, with their titles.
pub fn groups(current: &OsStr) -> Vec<CompletionCandidate> {
    let typed = current.to_string_lossy();
    let config_dir = std::env::var_os("QUICKCHAT_CONFIG_DIR").map(std::path::PathBuf::from);
    let Ok(dir) = crate::config::config_dir_or_default(config_dir.as_deref()) else {
        return Vec::new();
    };
    let server = std::env::var("QUICKCHAT_SERVER").ok();
    let Ok((server, _)) = crate::effective_server(server.as_deref(), &dir) else {
        return Vec::new();
    };
    let Ok(server) = crate::client::normalize_server(&server) else {
        return Vec::new();
    };
    let Ok(store) = TokenStore::open(Some(&dir), &server) else {
        return Vec::new();
    };
    let known = store.get();
    let joined = known
        .memberships
        .iter()
        .map(|(id, m)| (id, format!("{} (joined as {})", m.group_title, m.name)));
    let owned = known
        .owned_groups
        .iter()
        .filter(|(id, _)| !known.memberships.contains_key(*id))
        .map(|(id, title)| (id, format!("{title} (yours)")));
    joined
        .chain(owned)
        .filter(|(id, _)| id.starts_with(typed.as_ref()))
        .map(|(id, help)| CompletionCandidate::new(id.clone()).help(Some(help.into())))
        .collect()
}
