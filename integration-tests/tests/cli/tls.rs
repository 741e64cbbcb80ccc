//! `quickchat` against a server that speaks only TLS, with a certificate from a private CA.

use crate::helpers::{PASSWORD, TestServer, User};

#[test]
fn with_the_servers_ca_the_cli_works_over_tls_and_without_it_says_why_not() {
    let server = TestServer::start_tls();
    let url = server.url();
    assert!(url.starts_with("https://"), "{url}");
    let ca = server.ca_cert().expect("a TLS server has a CA");
    let ca = ca.to_str().unwrap();
    let alice = User::new(&server);
    let register = |extra: &[&str]| {
        let mut args = extra.to_vec();
        args.extend([
            "register",
            "--email",
            "alice@example.com",
            "--name",
            "Alice",
            "--password-stdin",
        ]);
        alice.run_with_stdin(&args, &format!("{PASSWORD}\n"))
    };

    // The CA is not one of the public roots: the certificate is not trusted.
    let refused = register(&[]);
    assert_eq!(refused.code, 4, "{refused:#?}");
    assert!(
        refused.stderr.starts_with("error: ") && refused.stderr.trim_end().lines().count() == 1,
        "{refused:#?}"
    );
    for expected in [url.as_str(), "certificate", "--ca-cert"] {
        assert!(refused.stderr.contains(expected), "{refused:#?}");
    }

    let registered = register(&["--ca-cert", ca]);
    assert_eq!(registered.code, 0, "{registered:#?}");
    let created = alice.json(&[
        "--ca-cert",
        ca,
        "group",
        "create",
        "--title",
        "Over TLS",
        "--passcode",
        "s3cret",
    ]);
    let link = created[0]["share_link"].as_str().unwrap();
    assert!(link.starts_with(&format!("{url}/join/")), "{link}");
    let listed = alice.json(&["--ca-cert", ca, "group", "list"]);
    assert_eq!(listed[0]["title"], "Over TLS");

    // Plaintext to a TLS-only port: unreachable, whatever the CA.
    let plaintext = User::with_url(&url.replacen("https://", "http://", 1));
    let group = created[0]["id"].as_str().unwrap();
    let err = plaintext.fails(&["--ca-cert", ca, "group", "show", group], 4);
    assert!(err.contains("cannot reach the QuickChat server"), "{err}");
    assert!(err.contains("https://"), "{err}");
}

#[test]
fn a_ca_file_that_is_not_a_certificate_is_a_usage_error() {
    let server = TestServer::start_tls();
    let dir = tempfile::tempdir().unwrap();
    let not_pem = dir.path().join("ca.pem");
    std::fs::write(&not_pem, "hello").unwrap();
    let err = User::new(&server).fails(&["--ca-cert", not_pem.to_str().unwrap(), "whoami"], 1);
    assert!(err.contains("--ca-cert"), "{err}");
}
