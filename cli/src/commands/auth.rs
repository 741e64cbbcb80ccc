//! `register`, `login`, `logout`, `whoami`.

use quickchat_proto::v1;
use serde::Serialize;
use tonic::transport::Certificate;

use super::{prompt_secret, read_secret_from_stdin};
use crate::args::{LoginArgs, LogoutArgs, RegisterArgs};
use quickchat_proto::v1::auth_service_client::AuthServiceClient;

use crate::client::{Client, open_channel, with_token};
use crate::config::TokenStore;
use crate::error::CliError;
use crate::output::{Output, UserView};

#[derive(Serialize)]
struct SignedIn {
    user: UserView,
}

fn password(stdin: bool, confirm_twice: bool) -> Result<String, CliError> {
    if stdin {
        return read_secret_from_stdin("password");
    }
    let password = prompt_secret("Password: ", "password", "--password-stdin")?;
    if confirm_twice {
        let again = prompt_secret("Repeat the password: ", "password", "--password-stdin")?;
        if again != password {
            return Err(CliError::usage("the passwords do not match"));
        }
    }
    Ok(password)
}

fn session_of(session: Option<v1::Session>) -> Result<v1::Session, CliError> {
    session.ok_or_else(|| CliError::Server("the server sent no session".into()))
}

pub async fn register(
    client: &mut Client,
    args: RegisterArgs,
    output: Output,
) -> Result<(), CliError> {
    let password = password(args.password_stdin, true)?;
    let response = client
        .auth()
        .register(v1::RegisterRequest {
            email: args.email,
            password,
            name: args.name,
        })
        .await?
        .into_inner();
    signed_in(
        client,
        session_of(response.session)?,
        output,
        "Registered and signed in",
    )
}

pub async fn login(client: &mut Client, args: LoginArgs, output: Output) -> Result<(), CliError> {
    let session = match (args.email, args.id_token) {
        (_, Some(id_token)) => {
            client
                .auth()
                .login_with_id_token(v1::LoginWithIdTokenRequest { id_token })
                .await?
                .into_inner()
                .session
        }
        (Some(email), None) => {
            let password = password(args.password_stdin, false)?;
            client
                .auth()
                .login(v1::LoginRequest { email, password })
                .await?
                .into_inner()
                .session
        }
        (None, None) => return Err(CliError::usage("pass --email or --id-token")),
    };
    signed_in(client, session_of(session)?, output, "Signed in")
}

fn signed_in(
    client: &mut Client,
    session: v1::Session,
    output: Output,
    verb: &str,
) -> Result<(), CliError> {
    let user = UserView::from(session.user.clone().unwrap_or_default());
    client.save_session(session)?;
    output.emit(&SignedIn { user }, || {
        let user = client.store().session().expect("just saved");
        format!("{verb} as {} <{}>.", user.name, user.email)
    });
    Ok(())
}

#[derive(Serialize)]
struct LoggedOut {
    logged_out: bool,
    forgot_memberships: usize,
}

pub async fn logout(
    server: &str,
    ca_cert: Option<&Certificate>,
    mut store: TokenStore,
    args: &LogoutArgs,
    output: Output,
) -> Result<(), CliError> {
    let creds = store.get();
    let memberships = if args.all { creds.memberships.len() } else { 0 };
    let Some(session) = creds.session else {
        if memberships > 0 {
            store.update(|c| c.memberships.clear())?;
        }
        output.emit(
            &LoggedOut {
                logged_out: false,
                forgot_memberships: memberships,
            },
            || {
                if memberships > 0 {
                    format!("Not signed in; forgot {memberships} group membership(s).")
                } else {
                    "Not signed in.".to_owned()
                }
            },
        );
        return Ok(());
    };
    // End the session on the server too, so a stolen refresh token stops working. The local
    // tokens are forgotten even when the server cannot be reached.
    let ended = match open_channel(server, ca_cert).await {
        Ok(channel) => AuthServiceClient::new(channel)
            .logout(v1::LogoutRequest {
                refresh_token: session.refresh_token.clone(),
            })
            .await
            .map(drop)
            .map_err(CliError::from),
        Err(err) => Err(err),
    };
    store.update(|c| {
        c.session = None;
        if args.all {
            c.memberships.clear();
        }
    })?;
    if let Err(err) = ended {
        output.note(format!(
            "warning: signed out here, but the server was not told: {}",
            err.with_server(server)
        ));
    }
    output.emit(
        &LoggedOut {
            logged_out: true,
            forgot_memberships: memberships,
        },
        || format!("Signed out {} <{}>.", session.name, session.email),
    );
    Ok(())
}

#[derive(Serialize)]
struct MembershipView {
    group_id: String,
    group_title: String,
    member_id: String,
    name: String,
}

#[derive(Serialize)]
struct WhoAmI {
    /// The signed-in user; `null` on a device that only joined groups by link.
    user: Option<UserView>,
    memberships: Vec<MembershipView>,
}

/// Who we are: the signed-in user (asked of the server), and who we are in each group this
/// device joined. Works without signing in when the device holds member tokens.
pub async fn whoami(client: &mut Client, output: Output) -> Result<(), CliError> {
    let member_only =
        client.store().session().is_none() && !client.store().get().memberships.is_empty();
    let user = if member_only {
        None
    } else {
        let auth = client.auth();
        let response = client
            .as_user(|token| {
                let mut auth = auth.clone();
                async move { auth.get_me(with_token(v1::GetMeRequest {}, &token)).await }
            })
            .await?
            .into_inner();
        Some(UserView::from(response.user.unwrap_or_default()))
    };
    let memberships: Vec<MembershipView> = client
        .store()
        .get()
        .memberships
        .into_iter()
        .map(|(group_id, m)| MembershipView {
            group_id,
            group_title: m.group_title,
            member_id: m.member_id,
            name: m.name,
        })
        .collect();
    let me = WhoAmI { user, memberships };
    output.emit(&me, || {
        let mut text = match &me.user {
            Some(user) => format!("Signed in as {}", user.human()),
            None => "Not signed in; on this device you joined:".to_owned(),
        };
        for m in &me.memberships {
            text.push_str(&format!(
                "\nMember of {:?} ({}) as {}",
                m.group_title, m.group_id, m.name
            ));
        }
        text
    });
    Ok(())
}
