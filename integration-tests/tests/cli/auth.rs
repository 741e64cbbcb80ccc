//! Signing in and out, the token store, refresh, errors, help and completions.

use crate::helpers::{PASSWORD, TestServer, User};

#[test]
fn register_whoami_logout_login() {
    let server = TestServer::start();
    let alice = User::new(&server);

    let out = alice.ok_with_stdin(
        &[
            "register",
            "--email",
            "alice@example.com",
            "--name",
            "Alice",
            "--password-stdin",
        ],
        &format!("{PASSWORD}\n"),
    );
    assert!(
        out.contains("Registered and signed in as Alice <alice@example.com>"),
        "{out}"
    );

    let out = alice.ok(&["whoami"]);
    assert!(out.contains("Alice <alice@example.com>"), "{out}");
    let me = alice.json(&["whoami"]);
    assert_eq!(me.len(), 1);
    assert_eq!(me[0]["user"]["email"], "alice@example.com");
    assert_eq!(me[0]["user"]["provider"], "local");

    let out = alice.ok(&["logout"]);
    assert!(out.contains("Signed out Alice"), "{out}");
    let err = alice.fails(&["whoami"], 2);
    assert!(err.contains("not logged in"), "{err}");

    let err = alice.run_with_stdin(
        &["login", "--email", "alice@example.com", "--password-stdin"],
        "wrong password\n",
    );
    assert_eq!(err.code, 2, "{err:#?}");

    let out = alice.json_with_stdin(
        &["login", "--email", "alice@example.com", "--password-stdin"],
        &format!("{PASSWORD}\n"),
    );
    assert_eq!(out[0]["user"]["name"], "Alice");
    assert!(alice.ok(&["whoami"]).contains("Alice"));
}

#[test]
fn the_token_store_is_private_and_per_user() {
    let server = TestServer::start();
    let alice = User::new(&server);
    alice.register("alice@example.com", "Alice");
    let file = alice.config_dir().join("credentials.json");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&file).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600, "credentials.json mode is {mode:o}");
    }
    // Another config dir is another person.
    let bob = User::new(&server);
    bob.fails(&["whoami"], 2);
}

#[test]
fn an_expired_access_token_is_refreshed_transparently() {
    let server = TestServer::start();
    let alice = User::new(&server);
    alice.register("alice@example.com", "Alice");
    let file = alice.config_dir().join("credentials.json");
    let original: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&file).unwrap()).unwrap();

    // A genuinely expired access token, signed by the server's own key, that the CLI still
    // believes valid (its recorded expiry is in the future): the server refuses it, and the
    // CLI must trade the refresh token for a new session, save it, and carry on.
    let secret = std::fs::read_to_string(server.data_dir().join("jwt-secret")).unwrap();
    let issuer = quickchat_service::auth::TokenIssuer::new(
        &secret.trim().to_owned().into(),
        &[],
        std::time::Duration::ZERO,
        std::time::Duration::ZERO,
    );
    let user_id: uuid::Uuid = original["servers"][server.url()]["session"]["user_id"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    let (expired, _) = issuer.issue_access(user_id, "Alice").unwrap();
    // Past the server's clock-skew leeway (5 s).
    std::thread::sleep(std::time::Duration::from_secs(6));
    let mut broken = original.clone();
    let session = broken["servers"][server.url()]["session"]
        .as_object_mut()
        .unwrap();
    session.insert("access_token".into(), expired.clone().into());
    session.insert(
        "access_expires_at".into(),
        (chrono::Utc::now() + chrono::Duration::hours(1))
            .to_rfc3339()
            .into(),
    );
    std::fs::write(&file, serde_json::to_string(&broken).unwrap()).unwrap();

    let out = alice.ok(&["whoami"]);
    assert!(out.contains("Alice"), "{out}");
    let saved: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&file).unwrap()).unwrap();
    let saved = &saved["servers"][server.url()]["session"];
    assert_ne!(saved["access_token"], expired.as_str());
    assert_ne!(
        saved["refresh_token"],
        original["servers"][server.url()]["session"]["refresh_token"],
        "the rotated refresh token is saved"
    );

    // With the refresh token gone too, the user is told to log in again.
    let mut dead = saved.clone();
    dead["access_token"] = "no-longer-valid".into();
    dead["refresh_token"] = "also-invalid".into();
    let mut file_value: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&file).unwrap()).unwrap();
    file_value["servers"][server.url()]["session"] = dead;
    std::fs::write(&file, serde_json::to_string(&file_value).unwrap()).unwrap();
    let err = alice.fails(&["group", "list"], 2);
    assert!(err.contains("log in again"), "{err}");
}

#[test]
fn registering_a_taken_email_or_a_bad_password_is_a_usage_error() {
    let server = TestServer::start();
    let alice = User::new(&server);
    alice.register("alice@example.com", "Alice");
    let again = User::new(&server);
    let out = again.run_with_stdin(
        &[
            "register",
            "--email",
            "alice@example.com",
            "--name",
            "Other",
            "--password-stdin",
        ],
        &format!("{PASSWORD}\n"),
    );
    assert_eq!(out.code, 1, "{out:#?}");
    let out = again.run_with_stdin(
        &[
            "register",
            "--email",
            "short@example.com",
            "--name",
            "Short",
            "--password-stdin",
        ],
        "short\n",
    );
    assert_eq!(out.code, 1, "{out:#?}");
    assert!(out.stderr.starts_with("error: "), "{out:#?}");
}

#[test]
fn a_server_that_is_down_exits_4() {
    let mut server = TestServer::start();
    let url = server.url();
    server.stop();
    let alice = User::with_url(&url);
    for args in [
        &["whoami"][..],
        &["group", "list"],
        &["group", "show", "0190a7a4-6b5e-7000-8000-000000000000"],
    ] {
        let err = alice.fails(args, 4);
        assert!(err.contains("cannot reach the QuickChat server"), "{err}");
        assert!(err.contains(&url), "{err}");
    }
    let out = alice.run_with_stdin(
        &[
            "register",
            "--email",
            "a@example.com",
            "--name",
            "A",
            "--password-stdin",
        ],
        &format!("{PASSWORD}\n"),
    );
    assert_eq!(out.code, 4, "{out:#?}");
}

#[test]
fn usage_errors_exit_1_and_every_command_has_help_with_an_example() {
    let user = User::with_url("http://127.0.0.1:9");
    assert_eq!(user.run(&["no-such-command"]).code, 1);
    assert_eq!(
        user.run(&["group", "update", "x"]).code,
        1,
        "needs --title or --passcode"
    );
    assert_eq!(user.run(&["login"]).code, 1, "needs --email or --id-token");

    let commands: &[&[&str]] = &[
        &[],
        &["register"],
        &["login"],
        &["logout"],
        &["whoami"],
        &["group"],
        &["group", "create"],
        &["group", "list"],
        &["group", "show"],
        &["group", "update"],
        &["group", "delete"],
        &["group", "members"],
        &["join"],
        &["chat"],
        &["send"],
        &["tail"],
        &["history"],
        &["completions"],
        &["config"],
        &["config", "set"],
    ];
    for command in commands {
        let mut args = command.to_vec();
        args.push("--help");
        let out = user.run(&args);
        assert_eq!(out.code, 0, "{args:?}: {out:#?}");
        assert!(
            out.stdout.contains("Example") && out.stdout.contains("quickchat "),
            "`quickchat {}` shows an example: {}",
            args.join(" "),
            out.stdout
        );
        // The global flags once, under their own heading, not among the command's own.
        let global = out
            .stdout
            .find("Global options:")
            .unwrap_or_else(|| panic!("`quickchat {}`: no global options section", args.join(" ")));
        assert_eq!(
            out.stdout.matches("--server <SERVER>").count(),
            1,
            "{}",
            out.stdout
        );
        assert!(
            out.stdout.find("--server <SERVER>").unwrap() > global,
            "{}",
            out.stdout
        );
    }
}

#[test]
fn shell_completions() {
    let user = User::with_url("http://127.0.0.1:9");
    for shell in ["bash", "zsh", "fish"] {
        let out = user.ok(&["completions", shell]);
        assert!(
            out.contains("COMPLETE=") && out.contains("quickchat"),
            "{shell} registers quickchat as its own completer: {out}"
        );
    }
    // What the registered script asks: the commands, and a subcommand's flags.
    let words = complete(&user, &["quickchat", "gr"]);
    assert!(words.lines().any(|l| l.starts_with("group")), "{words}");
    let words = complete(&user, &["quickchat", "tail", "x", "--fo"]);
    assert!(words.lines().any(|l| l.starts_with("--follow")), "{words}");
}

/// What `quickchat` answers when fish asks it to complete `words` (the last one being the
/// word under the cursor), with `user`'s config directory and server in the environment,
/// as in the user's shell.
fn complete(user: &User, words: &[&str]) -> String {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_qc-cli"))
        .env("COMPLETE", "fish")
        .env("QUICKCHAT_CONFIG_DIR", user.config_dir())
        .env("QUICKCHAT_SERVER", user.server_url())
        .arg("--")
        .args(words)
        .output()
        .expect("quickchat runs");
    assert!(out.status.success(), "{out:?}");
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn completion_offers_my_groups_and_the_groups_i_joined_offline() {
    let mut server = TestServer::start();
    let alice = User::new(&server);
    alice.register("alice@example.com", "Alice");
    let (book_club, link) = alice.create_group("Book club", "s3cret");
    let bob = User::new(&server);
    bob.register("bob@example.com", "Bob");
    let (chess, _) = bob.create_group("Chess night", "s3cret");
    let (quiz, _) = bob.create_group("Quiz", "s3cret");
    bob.join(&link, "Bobby", "s3cret");

    // Completion never calls the server: it works with the server down.
    server.stop();
    let offered = complete(&bob, &["quickchat", "chat", ""]);
    // (the flags are offered too)
    let mut lines: Vec<&str> = offered.lines().filter(|l| !l.starts_with('-')).collect();
    lines.sort();
    let mut expected = vec![
        format!("{book_club}\tBook club (joined as Bobby)"),
        format!("{chess}\tChess night (yours)"),
        format!("{quiz}\tQuiz (yours)"),
    ];
    expected.sort();
    assert_eq!(lines, expected);
    let prefix = &quiz[..8];
    let starting = [&book_club, &chess, &quiz]
        .iter()
        .filter(|id| id.starts_with(prefix))
        .count();
    let offered = complete(&bob, &["quickchat", "history", prefix]);
    assert_eq!(
        offered.lines().count(),
        starting,
        "only ids starting with what was typed: {offered}"
    );
    assert!(offered.contains(&quiz));
    let groups = |words: &[&str], user: &User| -> Vec<String> {
        complete(user, words)
            .lines()
            .filter(|l| !l.starts_with('-'))
            .map(str::to_owned)
            .collect()
    };
    assert_eq!(
        groups(&["quickchat", "group", "show", ""], &alice),
        [format!("{book_club}\tBook club (yours)")]
    );

    // A deleted group and a signed-out account's groups are not offered any more.
    server.restart();
    bob.ok(&["group", "delete", &quiz, "--yes"]);
    assert!(!complete(&bob, &["quickchat", "chat", ""]).contains(&quiz));
    bob.ok(&["logout"]);
    assert_eq!(
        groups(&["quickchat", "chat", ""], &bob),
        [format!("{book_club}\tBook club (joined as Bobby)")],
        "the member token stays on this machine; the account's groups go with it"
    );
}

#[test]
fn id_token_sign_in_reports_what_the_server_says() {
    // The embedded default has no OpenID Connect issuer configured.
    let server = TestServer::start();
    let user = User::new(&server);
    let err = user.fails(&["login", "--id-token", "eyJhbGciOiJSUzI1NiJ9.e30.c2ln"], 1);
    assert_eq!(
        err.trim(),
        "error: Sign-in with an identity provider is not configured on this server."
    );
}

#[test]
fn a_saved_server_replaces_the_server_flag() {
    let server = TestServer::start();
    let alice = User::new(&server);
    alice.register("alice@example.com", "Alice");
    let bare = |args: &[&str], env: Option<&str>| {
        let mut command = alice.command_without_server();
        if let Some(url) = env {
            command.env("QUICKCHAT_SERVER", url);
        }
        let out = command.args(args).output().expect("quickchat runs");
        (
            out.status.code(),
            String::from_utf8(out.stdout).unwrap(),
            String::from_utf8(out.stderr).unwrap(),
        )
    };
    let (_, out, _) = bare(&["config", "get", "server"], None);
    assert_eq!(out.trim(), "http://127.0.0.1:50051", "the default");
    // Alice's tokens belong to the test server, not the default one.
    let (code, _, err) = bare(&["whoami"], None);
    assert_ne!(code, Some(0), "{err}");

    let (code, out, err) = bare(&["config", "set", "server", &server.url()], None);
    assert_eq!(code, Some(0), "{err}");
    assert!(out.contains(&server.url()), "{out}");
    let (code, out, err) = bare(&["whoami"], None);
    assert_eq!(code, Some(0), "{err}");
    assert!(out.contains("Alice"), "{out}");
    let (_, out, _) = bare(&["--json", "config", "list"], None);
    let listed: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(listed["value"], server.url().as_str());
    assert_eq!(listed["source"], "config_file");
    assert!(listed["file"].as_str().unwrap().ends_with("settings.json"));

    // The environment and the flag still win, and say so.
    let (_, out, _) = bare(&["--json", "config", "list"], Some("http://10.9.8.7:1"));
    let listed: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(
        (listed["value"].as_str(), listed["source"].as_str()),
        (Some("http://10.9.8.7:1"), Some("env"))
    );
    let (_, out, _) = bare(&["--server", "http://10.9.8.7:2", "config", "list"], None);
    assert!(out.contains("http://10.9.8.7:2  (from --server)"), "{out}");

    bare(&["config", "unset", "server"], None);
    let (_, out, _) = bare(&["config", "list"], None);
    assert!(out.contains("(default)"), "{out}");
}
