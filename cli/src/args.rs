//! The command line: every command, flag and help text (clap derive).

use std::path::PathBuf;

use clap::{ArgGroup, Args, Parser, Subcommand};
use clap_complete::Shell;
use clap_complete::engine::ArgValueCompleter;

pub const DEFAULT_SERVER: &str = "http://127.0.0.1:50051";

const ABOUT: &str = "QuickChat from a terminal: sign in, manage groups, join by link, chat";

const EXAMPLES: &str = "\
Examples:
  quickchat register --email alice@example.com --name Alice
  quickchat group create --title 'Book club' --passcode s3cret
  quickchat join http://127.0.0.1:50051/join/<group-id> --name Bob
  quickchat chat <group-id>

Exit codes: 0 ok, 1 usage or validation, 2 auth (not logged in, not a member, wrong
passcode), 3 not found, 4 server unreachable.";

#[derive(Debug, Parser)]
#[command(name = "quickchat", version, about = ABOUT, after_help = EXAMPLES)]
pub struct Cli {
    /// URL of the QuickChat server [default: the one saved with `quickchat config set
    /// server`, else http://127.0.0.1:50051].
    #[arg(
        long,
        global = true,
        help_heading = "Global options",
        env = "QUICKCHAT_SERVER"
    )]
    pub server: Option<String>,

    /// A CA certificate (PEM) to trust for an https:// server, in addition to the public
    /// roots: for a server whose certificate a private CA signed.
    #[arg(
        long,
        global = true,
        help_heading = "Global options",
        env = "QUICKCHAT_CA_CERT",
        value_name = "PATH"
    )]
    pub ca_cert: Option<PathBuf>,

    /// Print data as JSON, one object per line.
    #[arg(long, global = true, help_heading = "Global options")]
    pub json: bool,

    /// Print only these fields of each record, as JSON (implies --json), e.g.
    /// `--fields id,title`.
    #[arg(
        long,
        global = true,
        help_heading = "Global options",
        value_name = "FIELD,…",
        value_delimiter = ','
    )]
    pub fields: Vec<String>,

    /// Directory for the token store (default: the user's config directory, e.g.
    /// ~/.config/quickchat).
    #[arg(
        long,
        global = true,
        help_heading = "Global options",
        env = "QUICKCHAT_CONFIG_DIR",
        value_name = "DIR"
    )]
    pub config_dir: Option<PathBuf>,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Create an account (email + password) and sign in.
    #[command(
        after_help = "Example:\n  quickchat register --email alice@example.com --name Alice\n  \
        printf '%s\\n' \"$PASSWORD\" | quickchat register --email alice@example.com --name Alice --password-stdin"
    )]
    Register(RegisterArgs),

    /// Sign in with email + password, or with an OpenID Connect ID token.
    #[command(
        after_help = "Example:\n  quickchat login --email alice@example.com\n  \
        quickchat login --id-token \"$GOOGLE_ID_TOKEN\""
    )]
    Login(LoginArgs),

    /// Sign out: end the session on the server and forget its tokens.
    #[command(after_help = "Example:\n  quickchat logout\n  quickchat logout --all")]
    Logout(LogoutArgs),

    /// Show who you are signed in as, and the groups you joined.
    #[command(
        visible_alias = "me",
        after_help = "Example:\n  quickchat whoami --json"
    )]
    Whoami,

    /// Manage your groups: create, list, show, update, delete, members, leave, kick, bans.
    #[command(
        subcommand,
        after_help = "Example:\n  quickchat group create --title 'Book club' --passcode s3cret\n  quickchat group list"
    )]
    Group(GroupCommand),

    /// Join a group with its link (or id) and passcode; no account needed.
    #[command(
        after_help = "Example:\n  quickchat join http://127.0.0.1:50051/join/<group-id> --name Bob\n  \
        echo s3cret | quickchat join <group-id> --name Bob --passcode-stdin"
    )]
    Join(JoinArgs),

    /// Open a group's room: history, who is online, live messages; type to send.
    #[command(after_help = "Example:\n  quickchat chat <group-id>\n\n\
        Type a line and press Enter to send it. Ctrl-D or Ctrl-C leaves the room.")]
    Chat(GroupArg),

    /// Send a message (or each line of stdin as one message).
    #[command(after_help = "Example:\n  quickchat send <group-id> 'Hello, room'\n  \
        printf 'one\\ntwo\\n' | quickchat send <group-id>")]
    Send(SendArgs),

    /// Print a room's latest messages; with --follow, keep printing new ones.
    #[command(
        after_help = "Example:\n  quickchat tail <group-id> --follow --json\n  \
        quickchat tail <group-id> --since 42"
    )]
    Tail(TailArgs),

    /// Page through a room's stored messages (oldest of the page first).
    #[command(after_help = "Example:\n  quickchat history <group-id> --limit 50\n  \
        quickchat history <group-id> --before 120")]
    History(HistoryArgs),

    /// Saved settings: `config set server URL` so that --server is not needed.
    #[command(
        subcommand,
        after_help = "Example:\n  quickchat config set server https://chat.example.com\n  quickchat config list"
    )]
    Config(ConfigCommand),

    /// Print the script that registers shell completion (commands, flags, and the ids of
    /// your groups and the groups you joined).
    #[command(
        after_help = "Example:\n  quickchat completions bash > ~/.local/share/bash-completion/completions/quickchat\n  \
        quickchat completions zsh > ~/.zfunc/_quickchat\n  \
        quickchat completions fish > ~/.config/fish/completions/quickchat.fish\n\n\
        The script calls `quickchat` to complete each word, so it must be on your PATH."
    )]
    Completions {
        /// The shell.
        shell: Shell,
    },
}

#[derive(Debug, Args)]
pub struct RegisterArgs {
    /// Email address of the new account.
    #[arg(long)]
    pub email: String,
    /// Display name.
    #[arg(long)]
    pub name: String,
    /// Read the password from the first line of stdin instead of prompting.
    #[arg(long)]
    pub password_stdin: bool,
}

#[derive(Debug, Args)]
#[command(group(ArgGroup::new("method").required(true).args(["email", "id_token"])))]
pub struct LoginArgs {
    /// Email address of the account.
    #[arg(long)]
    pub email: Option<String>,
    /// Read the password from the first line of stdin instead of prompting.
    #[arg(long, requires = "email")]
    pub password_stdin: bool,
    /// An OpenID Connect ID token (e.g. from Google sign-in) instead of email + password.
    #[arg(long, value_name = "TOKEN")]
    pub id_token: Option<String>,
}

#[derive(Debug, Args)]
pub struct LogoutArgs {
    /// Also forget the member tokens of the groups you joined.
    #[arg(long)]
    pub all: bool,
}

#[derive(Debug, Subcommand)]
pub enum GroupCommand {
    /// Create a group; prints its id and share link.
    #[command(
        after_help = "Example:\n  quickchat group create --title 'Book club' --passcode s3cret"
    )]
    Create {
        /// Title, 4 to 191 characters.
        #[arg(long)]
        title: String,
        /// Passcode people need to join, 4 to 25 characters.
        #[arg(long)]
        passcode: String,
    },
    /// List the groups you own and the groups you joined (signed in, or with a member
    /// token on this device), each with your role.
    #[command(
        visible_alias = "ls",
        after_help = "Example:\n  quickchat group list --json"
    )]
    List,
    /// Show a group's title, owner and share link.
    #[command(after_help = "Example:\n  quickchat group show <group-id>")]
    Show(GroupArg),
    /// Change a group's title and/or passcode (owner only).
    #[command(
        group(ArgGroup::new("change").required(true).multiple(true).args(["title", "passcode"])),
        after_help = "Example:\n  quickchat group update <group-id> --title 'Book club (2025)'"
    )]
    Update {
        /// The group id or share link.
        #[arg(value_name = "GROUP", add = ArgValueCompleter::new(crate::complete::groups))]
        group: String,
        /// New title, 4 to 191 characters.
        #[arg(long)]
        title: Option<String>,
        /// New passcode, 4 to 25 characters.
        #[arg(long)]
        passcode: Option<String>,
        /// With --passcode: every member token issued so far stops working at once (open
        /// rooms end); members join again with the new passcode.
        #[arg(long, requires = "passcode")]
        revoke_members: bool,
    },
    /// Delete a group with its members and messages (owner only).
    #[command(
        visible_alias = "rm",
        after_help = "Example:\n  quickchat group delete <group-id> --yes"
    )]
    Delete {
        /// The group id or share link.
        #[arg(value_name = "GROUP", add = ArgValueCompleter::new(crate::complete::groups))]
        group: String,
        /// Do not ask for confirmation.
        #[arg(long, short = 'y')]
        yes: bool,
    },
    /// List a group's owner and members, with their role and who is online.
    #[command(after_help = "Example:\n  quickchat group members <group-id>")]
    Members(GroupArg),
    /// Leave a group you joined: your member token stops working.
    #[command(after_help = "Example:\n  quickchat group leave <group-id>")]
    Leave(GroupArg),
    /// Remove a member from your group (owner only); with --ban, their name (and account)
    /// cannot join again until `group unban`.
    #[command(
        visible_alias = "remove",
        after_help = "Example:\n  quickchat group kick <group-id> Mallory --ban"
    )]
    Kick {
        /// The group id or share link.
        #[arg(value_name = "GROUP")]
        group: String,
        /// The member's name (as `group members` shows it) or member id.
        #[arg(value_name = "MEMBER")]
        member: String,
        /// Also ban the name (and the account, if they joined signed in).
        #[arg(long)]
        ban: bool,
    },
    /// Lift a ban (owner only).
    #[command(after_help = "Example:\n  quickchat group unban <group-id> Mallory")]
    Unban {
        /// The group id or share link.
        #[arg(value_name = "GROUP")]
        group: String,
        /// The banned name (as `group bans` shows it) or ban id.
        #[arg(value_name = "BAN")]
        ban: String,
    },
    /// List a group's bans, newest first (owner only).
    #[command(after_help = "Example:\n  quickchat group bans <group-id> --json")]
    Bans(GroupArg),
}

#[derive(Debug, Args)]
pub struct GroupArg {
    /// The group id, or its share link.
    #[arg(value_name = "GROUP", add = ArgValueCompleter::new(crate::complete::groups))]
    pub group: String,
}

#[derive(Debug, Args)]
#[command(group(ArgGroup::new("passcode_source").args(["passcode", "passcode_stdin"])))]
pub struct JoinArgs {
    /// The share link, or the bare group id.
    #[arg(value_name = "LINK_OR_ID")]
    pub group: String,
    /// Your display name in the room.
    #[arg(long)]
    pub name: String,
    /// The group's passcode (visible in your shell history: prefer the prompt or
    /// --passcode-stdin).
    #[arg(long)]
    pub passcode: Option<String>,
    /// Read the passcode from the first line of stdin.
    #[arg(long)]
    pub passcode_stdin: bool,
}

#[derive(Debug, Args)]
pub struct SendArgs {
    /// The group id, or its share link.
    #[arg(value_name = "GROUP", add = ArgValueCompleter::new(crate::complete::groups))]
    pub group: String,
    /// The message; without it, every non-empty line of stdin is sent as one message.
    pub text: Option<String>,
}

#[derive(Debug, Args)]
pub struct TailArgs {
    /// The group id, or its share link.
    #[arg(value_name = "GROUP", add = ArgValueCompleter::new(crate::complete::groups))]
    pub group: String,
    /// Print every message after this offset (instead of the latest --lines).
    #[arg(long, value_name = "OFFSET")]
    pub since: Option<u64>,
    /// How many of the latest messages to print first.
    #[arg(long, short = 'n', default_value_t = 20, value_name = "N")]
    pub lines: u32,
    /// Keep running and print new messages as they arrive (reconnects by itself).
    #[arg(long, short = 'f')]
    pub follow: bool,
}

#[derive(Debug, Args)]
pub struct HistoryArgs {
    /// The group id, or its share link.
    #[arg(value_name = "GROUP", add = ArgValueCompleter::new(crate::complete::groups))]
    pub group: String,
    /// How many messages.
    #[arg(long, default_value_t = 20, value_name = "N")]
    pub limit: u32,
    /// Only messages older than this offset (the next page: the smallest offset shown).
    #[arg(long, value_name = "OFFSET")]
    pub before: Option<u64>,
}

#[derive(Debug, Subcommand)]
pub enum ConfigCommand {
    /// Save a setting.
    #[command(after_help = "Example:\n  quickchat config set server https://chat.example.com")]
    Set { key: ConfigKey, value: String },
    /// Print a setting's effective value.
    #[command(after_help = "Example:\n  quickchat config get server")]
    Get { key: ConfigKey },
    /// Forget a saved setting.
    #[command(after_help = "Example:\n  quickchat config unset server")]
    Unset { key: ConfigKey },
    /// Every setting: its effective value and where it comes from.
    #[command(after_help = "Example:\n  quickchat config list --json")]
    List,
}

/// A setting `quickchat config` manages.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ConfigKey {
    /// The server URL (the default for --server).
    Server,
}
