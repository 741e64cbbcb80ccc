//! The abuse suite, sign-in side: password guessing, sign-in floods, refresh-token races,
//! and where the lock-outs think a client is.

use std::time::Duration;

use futures::future::join_all;
use quickchat_proto::v1;
use tonic::{Code, Request};

use crate::helpers::{expect_code, rss_mib, spawn_app_with};

fn login(email: &str, password: &str) -> v1::LoginRequest {
    v1::LoginRequest {
        email: email.into(),
        password: password.into(),
    }
}

async fn register(app: &crate::helpers::TestApp, email: &str) {
    app.auth()
        .register(v1::RegisterRequest {
            email: email.into(),
            password: "correct horse".into(),
            name: "Ann".into(),
        })
        .await
        .expect("register");
}

/// Guessing one account's password is stopped after the per-account limit, even for the
/// right password, while other accounts are unaffected. (Before: ~23 guesses/s, forever.)
#[tokio::test]
async fn guessing_one_accounts_password_is_throttled() {
    let app = spawn_app_with(|s| s.limits.sign_in_max_failures_per_account = 4).await;
    register(&app, "ann@example.com").await;
    register(&app, "bob@example.com").await;
    for i in 0..4 {
        expect_code(
            app.auth()
                .login(login("ann@example.com", &format!("guess-{i:04}")))
                .await,
            Code::Unauthenticated,
        );
    }
    let status = expect_code(
        app.auth()
            .login(login("ANN@example.com", "correct horse"))
            .await,
        Code::ResourceExhausted,
    );
    assert!(status.message().contains("this account"), "{status:?}");
    app.auth()
        .login(login("bob@example.com", "correct horse"))
        .await
        .expect("another account still signs in");
}

/// Concurrent guesses cannot slip past the per-account limit either.
#[tokio::test]
async fn concurrent_password_guesses_are_counted_before_checking() {
    let app = spawn_app_with(|s| s.limits.sign_in_max_failures_per_account = 3).await;
    register(&app, "ann@example.com").await;
    let guesses = (0..12).map(|i| {
        let mut auth = app.auth();
        async move {
            auth.login(login("ann@example.com", &format!("guess-{i:04}")))
                .await
        }
    });
    let results = join_all(guesses).await;
    let checked = results
        .iter()
        .filter(|r| matches!(r, Err(s) if s.code() == Code::Unauthenticated))
        .count();
    assert_eq!(checked, 3, "{results:?}");
}

/// One client trying many accounts is stopped by the per-client limit.
#[tokio::test]
async fn one_client_trying_many_accounts_is_throttled() {
    let app = spawn_app_with(|s| s.limits.sign_in_max_failures_per_client = 5).await;
    for i in 0..5 {
        expect_code(
            app.auth()
                .login(login(&format!("user{i}@example.com"), "correct horse"))
                .await,
            Code::Unauthenticated,
        );
    }
    let status = expect_code(
        app.auth()
            .login(login("user9@example.com", "correct horse"))
            .await,
        Code::ResourceExhausted,
    );
    assert!(status.message().contains("your address"), "{status:?}");
}

/// A successful sign-in gives its attempt back: a user who signs in often is never locked
/// out by their own successes.
#[tokio::test]
async fn successful_sign_ins_do_not_count() {
    let app = spawn_app_with(|s| {
        s.limits.sign_in_max_failures_per_account = 2;
        s.limits.sign_in_max_failures_per_client = 2;
    })
    .await;
    register(&app, "ann@example.com").await;
    for _ in 0..6 {
        app.auth()
            .login(login("ann@example.com", "correct horse"))
            .await
            .expect("sign in");
    }
}

/// 400 anonymous sign-ins at once (argon2 takes ~19 MiB each): the server computes a few at
/// a time, turns the overflow away with `RESOURCE_EXHAUSTED` at once, stays within a memory
/// bound, and keeps answering a well-behaved client meanwhile. (Before: ~10 GB.)
///
/// The lock-outs are raised out of the way so that the flood reaches the hashing gate.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_anonymous_sign_in_flood_is_bounded_and_the_server_keeps_serving() {
    let app = spawn_app_with(|s| {
        s.limits.sign_in_max_failures_per_account = 100_000;
        s.limits.sign_in_max_failures_per_client = 100_000;
    })
    .await;
    let owner = app.register("Olga").await;
    let group = app.create_group(&owner.access_token, "Still here").await;
    let before = rss_mib();

    let flood = (0..400).map(|i| {
        let mut auth = app.auth();
        tokio::spawn(async move {
            auth.login(login(&format!("nobody{i}@example.com"), "wrong password"))
                .await
        })
    });
    let flood = tokio::spawn(join_all(flood));

    // Meanwhile an ordinary visitor opens a share link.
    let visitor = tokio::time::timeout(
        Duration::from_secs(10),
        app.groups().get_group(Request::new(v1::GetGroupRequest {
            group_id: group.id.clone(),
        })),
    )
    .await
    .expect("the visitor is answered during the flood");
    visitor.expect("the visitor sees the group");

    let results = flood.await.unwrap();
    let busy = results
        .iter()
        .filter(|r| matches!(r, Ok(Err(s)) if s.code() == Code::ResourceExhausted))
        .count();
    let refused = results
        .iter()
        .filter(|r| matches!(r, Ok(Err(s)) if s.code() == Code::Unauthenticated))
        .count();
    assert_eq!(busy + refused, 400, "every caller got an answer");
    assert!(
        busy > 0,
        "the overflow is turned away rather than queued without bound"
    );
    let grown = rss_mib().saturating_sub(before);
    assert!(grown < 256, "memory grew by {grown} MiB during the flood");
}

/// Two refreshes racing with one token: at most one wins, and if the reuse is detected the
/// winner's new token dies with the family. (Before: about half the time the winner's
/// token kept working and rotating after the family was revoked.)
#[tokio::test]
async fn racing_refreshes_cannot_keep_a_revoked_session_alive() {
    let app = spawn_app_with(|s| s.limits.registrations_per_client_per_minute = 100).await;
    for _ in 0..10 {
        let session = app.register("Ann").await;
        let refresh = || {
            let mut auth = app.auth();
            let token = session.refresh_token.clone();
            async move {
                auth.refresh_session(v1::RefreshSessionRequest {
                    refresh_token: token,
                })
                .await
            }
        };
        let (a, b) = tokio::join!(refresh(), refresh());
        let winners: Vec<_> = [&a, &b]
            .into_iter()
            .filter_map(|r| r.as_ref().ok())
            .collect();
        assert!(winners.len() <= 1, "one token, one rotation: {a:?} {b:?}");
        let reuse_detected = [&a, &b]
            .into_iter()
            .any(|r| matches!(r, Err(s) if s.message().contains("already used")));
        for winner in winners {
            let new_token = winner.get_ref().session.clone().unwrap().refresh_token;
            let next = app
                .auth()
                .refresh_session(v1::RefreshSessionRequest {
                    refresh_token: new_token,
                })
                .await;
            if reuse_detected {
                expect_code(next, Code::Unauthenticated);
            } else {
                next.expect("an undisputed rotation keeps working");
            }
        }
    }
}

/// The passcode lock-out counts a client once however its address is written: an IPv4
/// address and its IPv6-mapped form are one client, every address of an IPv6 /64 is one
/// client, an entry with a port is that address, and only the balancer's own (last) header
/// line counts.
#[tokio::test]
async fn the_lock_out_key_cannot_be_moved_by_rewriting_the_address() {
    let app = spawn_app_with(|s| {
        s.client_ip_header = Some("x-forwarded-for".into());
        s.limits.passcode_max_failures = 2;
    })
    .await;
    let owner = app.register("Olga").await;
    let group = app.create_group(&owner.access_token, "Proxied").await;
    let attempt = |lines: &'static [&'static str], passcode: &'static str| {
        let mut groups = app.groups();
        let group_id = group.id.clone();
        async move {
            let mut request = Request::new(v1::JoinGroupRequest {
                group_id,
                name: format!("Guest {}", uuid::Uuid::new_v4().simple()),
                passcode: passcode.into(),
            });
            for line in lines {
                request
                    .metadata_mut()
                    .append("x-forwarded-for", line.parse().unwrap());
            }
            groups.join_group(request).await.map(|_| ())
        }
    };

    for (first, second, third) in [
        (
            &["1.2.3.4"][..],
            &["1.2.3.4:5678"][..],
            &["::ffff:1.2.3.4"][..],
        ),
        (
            &["2001:db8:0:1::1"],
            &["2001:db8:0:1::2"],
            &["[2001:db8:0:1:ffff::9]:443"],
        ),
        (&["9.9.9.9"], &["6.6.6.6", "9.9.9.9"], &["7.7.7.7, 9.9.9.9"]),
    ] {
        expect_code(attempt(first, "0000").await, Code::PermissionDenied);
        expect_code(attempt(second, "0000").await, Code::PermissionDenied);
        expect_code(attempt(third, "1234").await, Code::ResourceExhausted);
    }
    // Somebody else behind the same balancer is not locked out.
    attempt(&["5.5.5.5"], "1234")
        .await
        .expect("another client joins");
}

/// Each new account costs a password hash: one address cannot create them without bound,
/// and a taken email is refused (before any hashing).
#[tokio::test]
async fn registrations_per_client_are_capped() {
    let app = spawn_app_with(|s| s.limits.registrations_per_client_per_minute = 3).await;
    register(&app, "one@example.com").await;
    let taken = expect_code(
        app.auth()
            .register(v1::RegisterRequest {
                email: "ONE@example.com".into(),
                password: "correct horse".into(),
                name: "Again".into(),
            })
            .await,
        Code::AlreadyExists,
    );
    assert!(taken.message().contains("already exists"), "{taken:?}");
    register(&app, "two@example.com").await;
    let status = expect_code(
        app.auth()
            .register(v1::RegisterRequest {
                email: "four@example.com".into(),
                password: "correct horse".into(),
                name: "Four".into(),
            })
            .await,
        Code::ResourceExhausted,
    );
    assert!(
        status.message().contains("Too many new accounts"),
        "{status:?}"
    );
}
