//! The one error type of the CLI, its exit codes, and the one place a `tonic::Status` becomes
//! a message for the person at the terminal.
//!
//! | exit | meaning |
//! | ---- | ------- |
//! | 0 | success |
//! | 1 | usage or validation error (including the server refusing a value, rate limits, and other server failures) |
//! | 2 | authentication: not logged in, session expired, not a member, wrong passcode |
//! | 3 | not found: unknown group |
//! | 4 | the server cannot be reached (also: its TLS certificate is not trusted) |

use tonic::{Code, Status};

#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// Bad flags or arguments, or a value the server refused.
    #[error("{0}")]
    Usage(String),
    /// Not logged in, not a member, wrong passcode, expired session.
    #[error("{0}")]
    Auth(String),
    /// The group (or other thing asked for) does not exist.
    #[error("{0}")]
    NotFound(String),
    /// The server is down or cannot be reached.
    #[error("cannot reach the QuickChat server{}{}", server_suffix(.server), detail_suffix(.detail))]
    Unreachable {
        server: Option<String>,
        detail: String,
    },
    /// The server answered over TLS with a certificate we do not trust (or no TLS at all).
    #[error("cannot reach the QuickChat server{} over TLS: {detail} (if a private CA signed its certificate, trust it with --ca-cert or QUICKCHAT_CA_CERT)", server_suffix(.server))]
    Untrusted {
        server: Option<String>,
        detail: String,
    },
    /// Anything else the server reported (internal errors, unimplemented calls).
    #[error("{0}")]
    Server(String),
    /// Reading or writing local files (the token store, stdin).
    #[error("{0}")]
    Local(String),
}

fn server_suffix(server: &Option<String>) -> String {
    server
        .as_deref()
        .map(|s| format!(" at {s}"))
        .unwrap_or_default()
}

fn detail_suffix(detail: &str) -> String {
    if detail.is_empty() {
        " (is it running? pick another one with --server or QUICKCHAT_SERVER)".to_owned()
    } else {
        format!(" ({detail}; is it running? pick another one with --server or QUICKCHAT_SERVER)")
    }
}

impl CliError {
    pub fn usage(message: impl Into<String>) -> Self {
        Self::Usage(message.into())
    }

    pub fn auth(message: impl Into<String>) -> Self {
        Self::Auth(message.into())
    }

    pub fn local(message: impl Into<String>) -> Self {
        Self::Local(message.into())
    }

    /// The process exit code for this error.
    pub fn exit_code(&self) -> i32 {
        match self {
            Self::Usage(_) | Self::Server(_) | Self::Local(_) => 1,
            Self::Auth(_) => 2,
            Self::NotFound(_) => 3,
            Self::Unreachable { .. } | Self::Untrusted { .. } => 4,
        }
    }

    /// A stable name for the kind of error, for scripts (`--json`): `usage`, `auth`,
    /// `not_found`, `unreachable`, `untrusted`, `server` or `local`.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Usage(_) => "usage",
            Self::Auth(_) => "auth",
            Self::NotFound(_) => "not_found",
            Self::Unreachable { .. } => "unreachable",
            Self::Untrusted { .. } => "untrusted",
            Self::Server(_) => "server",
            Self::Local(_) => "local",
        }
    }

    /// The error as scripts read it with `--json`: one line,
    /// `{"error":{"code":"not_found","exit":3,"message":"…"}}`.
    pub fn json(&self) -> String {
        serde_json::json!({
            "error": {
                "code": self.kind(),
                "exit": self.exit_code(),
                "message": self.to_string(),
            }
        })
        .to_string()
    }

    /// Names the server in an "unreachable" error that was built without knowing it.
    pub fn with_server(self, url: &str) -> Self {
        match self {
            Self::Unreachable {
                server: None,
                mut detail,
            } => {
                // A plaintext client at a TLS port sees the connection dropped (how, depends
                // on timing: a protocol error or a closed connection); say what may be wrong.
                // A refused connection means nothing listens, and the hint would mislead.
                if url.starts_with("http://")
                    && !detail.contains("https://")
                    && !detail.contains("refused")
                {
                    detail += "; if the server uses TLS, its URL starts with https://";
                }
                Self::Unreachable {
                    server: Some(url.to_owned()),
                    detail,
                }
            }
            Self::Untrusted {
                server: None,
                detail,
            } => Self::Untrusted {
                server: Some(url.to_owned()),
                detail,
            },
            other => other,
        }
    }

    /// True when the connection, not the request, failed: worth retrying after a pause.
    pub fn is_unreachable(&self) -> bool {
        matches!(self, Self::Unreachable { .. })
    }
}

/// True when a status means the transport failed (server down, connection dropped, server
/// shutting down) rather than the server answering.
pub fn is_transport_failure(status: &Status) -> bool {
    match status.code() {
        Code::Unavailable | Code::DeadlineExceeded | Code::Cancelled => true,
        // What tonic reports when the other end does not speak HTTP/2 (say, plaintext to a
        // TLS port); our server never sends it.
        Code::Internal => status.message().starts_with(H2_PROTOCOL_ERROR),
        Code::Unknown => {
            let m = status.message().to_ascii_lowercase();
            [
                "transport",
                "connect",
                "connection",
                "broken pipe",
                "h2 protocol",
                "reading a body",
            ]
            .iter()
            .any(|needle| m.contains(needle))
        }
        _ => false,
    }
}

const H2_PROTOCOL_ERROR: &str = "h2 protocol error";

impl From<Status> for CliError {
    fn from(status: Status) -> Self {
        if is_transport_failure(&status) {
            let mut detail = short_transport_detail(&status);
            if status.code() == Code::Internal {
                detail += "; if the server uses TLS, its URL starts with https://";
            }
            return Self::Unreachable {
                server: None,
                detail,
            };
        }
        let message = server_message(&status);
        match status.code() {
            Code::InvalidArgument
            | Code::AlreadyExists
            | Code::FailedPrecondition
            | Code::OutOfRange
            | Code::ResourceExhausted => Self::Usage(message),
            Code::Unauthenticated | Code::PermissionDenied => Self::Auth(message),
            Code::NotFound => Self::NotFound(message),
            Code::Unimplemented => Self::Server(if status.message().is_empty() {
                "the server does not support this call (it may be older than this quickchat)"
                    .to_owned()
            } else {
                format!(
                    "the server does not support this call: {}",
                    status.message()
                )
            }),
            _ => Self::Server(format!("the server failed: {message}")),
        }
    }
}

impl From<tonic::transport::Error> for CliError {
    fn from(err: tonic::transport::Error) -> Self {
        let mut detail = err.to_string();
        let mut source = std::error::Error::source(&err);
        while let Some(inner) = source {
            detail = inner.to_string();
            source = inner.source();
        }
        // rustls: "invalid peer certificate: UnknownIssuer" and the like. Retrying cannot help.
        if detail.to_ascii_lowercase().contains("certificate") {
            return Self::Untrusted {
                server: None,
                detail,
            };
        }
        Self::Unreachable {
            server: None,
            detail,
        }
    }
}

/// The server's own message (written for people), with a capital letter and no Rust dump.
fn server_message(status: &Status) -> String {
    let message = status.message().trim();
    if message.is_empty() {
        format!("the server refused the request ({:?})", status.code())
    } else {
        message.to_owned()
    }
}

fn short_transport_detail(status: &Status) -> String {
    // Walk to the innermost cause: "Connection refused (os error 111)" beats "transport error".
    let mut detail = status.message().to_owned();
    let mut source = std::error::Error::source(status);
    while let Some(inner) = source {
        detail = inner.to_string();
        source = inner.source();
    }
    detail
}
