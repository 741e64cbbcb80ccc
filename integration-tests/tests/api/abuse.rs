//! The abuse suite: each attack that once worked against QuickChat, tried again against the
//! real server, with real concurrent clients where the attack is a race.

use std::time::Duration;

use futures::future::join_all;
use quickchat_proto::v1::{self, chat_service_client::ChatServiceClient};
use tonic::Code;

use crate::helpers::{
    authed, expect_code, field_violations, join_request, rss_mib, spawn_app, spawn_app_with,
};

/// 20 wrong guesses at once against a limit of 5: only 5 are ever checked, the rest are
/// refused before the passcode is looked at, and the lock-out then holds even for the right
/// passcode. (Before the fix all 20 were checked.)
#[tokio::test]
async fn concurrent_wrong_passcodes_cannot_race_past_the_lock_out() {
    let app = spawn_app().await;
    let owner = app.register("Olga").await;
    let group = app.create_group(&owner.access_token, "Raced group").await;

    let guesses = (0..20).map(|i| {
        let mut groups = app.groups();
        let request = join_request(
            &group.id,
            &format!("Guesser {i}"),
            &format!("{:04}", 5000 + i),
        );
        async move { groups.join_group(request).await }
    });
    let results = join_all(guesses).await;
    let checked = results
        .iter()
        .filter(|r| matches!(r, Err(s) if s.code() == Code::PermissionDenied))
        .count();
    let refused = results
        .iter()
        .filter(|r| matches!(r, Err(s) if s.code() == Code::ResourceExhausted))
        .count();
    assert_eq!(checked, 5, "exactly the limit is checked: {results:?}");
    assert_eq!(refused, 15);

    let status = expect_code(
        app.groups()
            .join_group(join_request(&group.id, "Rightful", "1234"))
            .await,
        Code::ResourceExhausted,
    );
    assert!(
        status.message().contains("Too many wrong passcodes"),
        "{status:?}"
    );
}

/// A right passcode does not count towards the lock-out.
#[tokio::test]
async fn right_passcodes_never_lock_anyone_out() {
    let app = spawn_app().await;
    let owner = app.register("Olga").await;
    let group = app.create_group(&owner.access_token, "Busy group").await;
    for i in 0..12 {
        app.join(&group.id, &format!("Member {i}")).await;
    }
}

/// Joining with a taken name never returns the member who has it: the name is refused,
/// whatever its case or spacing, and the owner's name is taken too. The member itself gets
/// back in by presenting its member token.
#[tokio::test]
async fn a_join_cannot_take_over_an_existing_member() {
    let app = spawn_app().await;
    let owner = app.register("Olga").await;
    let group = app.create_group(&owner.access_token, "Identity").await;
    let max = app.join(&group.id, "Max").await;
    let max_id = max.member.clone().unwrap().id;

    for taken in ["Max", "max", " MAX ", "olga", "OLGA"] {
        let status = expect_code(
            app.groups()
                .join_group(join_request(&group.id, taken, "1234"))
                .await,
            Code::AlreadyExists,
        );
        assert!(
            status.message().contains("already taken"),
            "{taken:?}: {status:?}"
        );
    }

    // Max's own device, presenting its token, is Max again (with a fresh token).
    let again = app
        .groups()
        .join_group(authed(
            join_request(&group.id, "Max", "1234"),
            &max.member_token,
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(again.member.unwrap().id, max_id);

    // A member token of another group proves nothing here.
    let other = app.create_group(&owner.access_token, "Elsewhere").await;
    let stranger = app.join(&other.id, "Max").await;
    expect_code(
        app.groups()
            .join_group(authed(
                join_request(&group.id, "Max", "1234"),
                &stranger.member_token,
            ))
            .await,
        Code::AlreadyExists,
    );
}

/// Ten joins racing for one name: exactly one gets it.
#[tokio::test]
async fn concurrent_joins_with_one_name_give_it_to_one_member() {
    let app = spawn_app().await;
    let owner = app.register("Olga").await;
    let group = app
        .create_group(&owner.access_token, "Race for a name")
        .await;
    let joins = (0..10).map(|i| {
        let mut groups = app.groups();
        let name = if i % 2 == 0 { "Sam" } else { "sam" };
        let request = join_request(&group.id, name, "1234");
        async move { groups.join_group(request).await }
    });
    let results = join_all(joins).await;
    let won = results.iter().filter(|r| r.is_ok()).count();
    let taken = results
        .iter()
        .filter(|r| matches!(r, Err(s) if s.code() == Code::AlreadyExists))
        .count();
    assert_eq!((won, taken), (1, 9), "{results:?}");
}

/// Names and titles that could spoof or corrupt what others see are refused with a clear
/// message; bodies with NUL or escape sequences too.
#[tokio::test]
async fn text_that_spoofs_or_jams_is_refused_at_the_door() {
    let app = spawn_app().await;
    let owner = app.register("Olga").await;
    let group = app.create_group(&owner.access_token, "Clean text").await;

    for name in ["Bob\u{202E}gnp", "A\u{200B}nn", "two\nlines", "nul\u{0}"] {
        let status = expect_code(
            app.groups()
                .join_group(join_request(&group.id, name, "1234"))
                .await,
            Code::InvalidArgument,
        );
        assert_eq!(field_violations(&status)[0].0, "name", "{name:?}");
    }
    for title in [
        "Book\u{0}club",
        "Book\nclub",
        "\u{1b}[2JBook club",
        "Book \u{202E}club",
    ] {
        let status = expect_code(
            app.groups()
                .create_group(authed(
                    v1::CreateGroupRequest {
                        title: title.into(),
                        passcode: "1234".into(),
                    },
                    &owner.access_token,
                ))
                .await,
            Code::InvalidArgument,
        );
        assert_eq!(field_violations(&status)[0].0, "title", "{title:?}");
    }
    let status = expect_code(
        app.auth()
            .register(v1::RegisterRequest {
                email: "mallory@example.com".into(),
                password: "correct horse".into(),
                name: "Mal\u{2066}lory".into(),
            })
            .await,
        Code::InvalidArgument,
    );
    assert_eq!(field_violations(&status)[0].0, "name");

    let mut chat = ChatServiceClient::new(app.channel.clone());
    for body in ["poison\u{0}", "\u{1b}[2J", "bell\u{7}"] {
        let status = expect_code(
            chat.send_message(authed(
                v1::SendMessageRequest {
                    group_id: group.id.clone(),
                    body: body.into(),
                    client_message_id: String::new(),
                },
                &owner.access_token,
            ))
            .await,
            Code::InvalidArgument,
        );
        assert_eq!(field_violations(&status)[0].0, "body", "{body:?}");
    }
    // And the room keeps working for everyone.
    let sent = chat
        .send_message(authed(
            v1::SendMessageRequest {
                group_id: group.id.clone(),
                body: "multi\nline\tbody".into(),
                client_message_id: "ok-1".into(),
            },
            &owner.access_token,
        ))
        .await
        .unwrap()
        .into_inner()
        .message
        .unwrap();
    assert_eq!(sent.body, "multi\nline\tbody");
}

/// History offsets beyond what a signed 64-bit column holds are refused, not wrapped into
/// negative numbers.
#[tokio::test]
async fn history_offsets_beyond_i64_are_refused() {
    let app = spawn_app().await;
    let owner = app.register("Olga").await;
    let group = app.create_group(&owner.access_token, "Big numbers").await;
    let mut chat = ChatServiceClient::new(app.channel.clone());
    for (before, after) in [(Some(1u64 << 63), None), (None, Some(u64::MAX))] {
        let status = expect_code(
            chat.list_messages(authed(
                v1::ListMessagesRequest {
                    group_id: group.id.clone(),
                    before_offset: before,
                    after_offset: after,
                    page_size: 10,
                },
                &owner.access_token,
            ))
            .await,
            Code::InvalidArgument,
        );
        assert!(!field_violations(&status).is_empty());
    }
    // The largest valid offset is fine (and finds nothing).
    let page = chat
        .list_messages(authed(
            v1::ListMessagesRequest {
                group_id: group.id.clone(),
                before_offset: Some(i64::MAX as u64),
                after_offset: None,
                page_size: 10,
            },
            &owner.access_token,
        ))
        .await
        .unwrap()
        .into_inner();
    assert!(page.messages.is_empty());
}

/// Bytes that are not a protobuf message are the caller's fault: `INVALID_ARGUMENT`,
/// without the decoder's description of our types.
#[tokio::test]
async fn malformed_protobuf_is_invalid_argument_and_names_nothing() {
    let app = spawn_app().await;
    // A gRPC-web call whose one message is a truncated field (tag 1, length 100, 2 bytes).
    let body: Vec<u8> = [0u8, 0, 0, 0, 4, 0x0a, 100, b'a', b'b'].to_vec();
    let response = reqwest::Client::new()
        .post(format!(
            "http://{}/quickchat.v1.GroupService/GetGroup",
            app.addr
        ))
        .header("content-type", "application/grpc-web+proto")
        .header("x-grpc-web", "1")
        .body(body)
        .send()
        .await
        .unwrap();
    let headers = response.headers().clone();
    let bytes = response.bytes().await.unwrap();
    let trailers = String::from_utf8_lossy(&bytes).to_string();
    let status = headers
        .get("grpc-status")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
        .or_else(|| {
            trailers.lines().find_map(|l| {
                l.trim()
                    .strip_prefix("grpc-status:")
                    .map(|s| s.trim().to_owned())
            })
        })
        .expect("a grpc-status");
    assert_eq!(
        status,
        (Code::InvalidArgument as i32).to_string(),
        "{trailers}"
    );
    let message = format!("{headers:?} {trailers}");
    for leak in ["GetGroupRequest", "group_id", "DecodeError"] {
        assert!(!message.contains(leak), "{leak} leaked: {message}");
    }
}

/// A `Chat` stream that never says which room it wants is closed after the join deadline.
#[tokio::test]
async fn a_chat_stream_that_never_joins_is_closed() {
    let app = spawn_app_with(|s| s.chat.join_deadline = Duration::from_millis(300)).await;
    let owner = app.register("Olga").await;
    let (_keep_open, requests) = tokio::sync::mpsc::channel::<v1::ChatRequest>(1);
    let mut chat = ChatServiceClient::new(app.channel.clone());
    let call = chat.chat(authed(
        tokio_stream::wrappers::ReceiverStream::new(requests),
        &owner.access_token,
    ));
    let result = tokio::time::timeout(Duration::from_secs(5), call)
        .await
        .expect("the server answers without a join");
    expect_code(result, Code::DeadlineExceeded);
}

/// One principal cannot hold more than its share of room streams; closing one frees a slot.
#[tokio::test]
async fn room_streams_per_principal_are_capped() {
    let app = spawn_app_with(|s| s.chat.max_streams_per_participant = 3).await;
    let owner = app.register("Olga").await;
    let group = app.create_group(&owner.access_token, "Capped").await;
    let member = app.join(&group.id, "Max").await;
    let subscribe = |token: String| {
        let mut chat = ChatServiceClient::new(app.channel.clone());
        let group_id = group.id.clone();
        async move {
            chat.subscribe(authed(
                v1::SubscribeRequest {
                    group_id,
                    since: None,
                },
                &token,
            ))
            .await
        }
    };
    let mut open = Vec::new();
    for _ in 0..3 {
        open.push(
            subscribe(member.member_token.clone())
                .await
                .unwrap()
                .into_inner(),
        );
    }
    let status = expect_code(
        subscribe(member.member_token.clone()).await,
        Code::ResourceExhausted,
    );
    assert!(
        status.message().contains("Too many open room streams"),
        "{status:?}"
    );
    // Someone else is not affected.
    let _owner_stream = subscribe(owner.access_token.clone()).await.unwrap();

    drop(open.pop());
    // The server notices the cancelled stream shortly.
    let mut reopened = None;
    for _ in 0..50 {
        match subscribe(member.member_token.clone()).await {
            Ok(stream) => {
                reopened = Some(stream);
                break;
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
    assert!(reopened.is_some(), "a closed stream frees its slot");
}

/// One address cannot join without bound, and a group cannot be filled past its cap.
#[tokio::test]
async fn joins_per_client_and_members_per_group_are_capped() {
    let app = spawn_app_with(|s| {
        s.limits.joins_per_client_per_minute = 6;
        s.limits.max_members_per_group = 3;
    })
    .await;
    let owner = app.register("Olga").await;
    let group = app.create_group(&owner.access_token, "Small room").await;
    for i in 0..3 {
        app.join(&group.id, &format!("Member {i}")).await;
    }
    let status = expect_code(
        app.groups()
            .join_group(join_request(&group.id, "One too many", "1234"))
            .await,
        Code::ResourceExhausted,
    );
    assert!(status.message().contains("full"), "{status:?}");

    let other = app.create_group(&owner.access_token, "Another room").await;
    app.join(&other.id, "Fifth join").await;
    let mut refused = None;
    for i in 0..3 {
        if let Err(status) = app
            .groups()
            .join_group(join_request(&other.id, &format!("Extra {i}"), "1234"))
            .await
        {
            refused = Some(status);
            break;
        }
    }
    let status = refused.expect("the sixth join from one address within a minute is refused");
    assert_eq!(status.code(), Code::ResourceExhausted);
    assert!(status.message().contains("Too many joins"), "{status:?}");
}

/// Secrets are stored only as hashes: nothing in the database holds a password, a
/// passcode or a refresh token as sent.
#[tokio::test]
async fn passwords_passcodes_and_refresh_tokens_are_stored_hashed() {
    use sea_orm::{ConnectionTrait, Statement};
    let app = spawn_app().await;
    let session = app
        .auth()
        .register(v1::RegisterRequest {
            email: "hash@example.com".into(),
            password: "correct horse battery".into(),
            name: "Hana".into(),
        })
        .await
        .unwrap()
        .into_inner()
        .session
        .unwrap();
    app.groups()
        .create_group(authed(
            v1::CreateGroupRequest {
                title: "Hashed".into(),
                passcode: "s3cret-passcode".into(),
            },
            &session.access_token,
        ))
        .await
        .unwrap();
    let store = app.store().await;
    let db = store.connection();
    let text = |sql: &str| {
        let sql = sql.to_owned();
        async move {
            db.query_all_raw(Statement::from_string(db.get_database_backend(), sql))
                .await
                .unwrap()
                .into_iter()
                .map(|row| row.try_get_by_index::<String>(0).unwrap())
                .collect::<Vec<_>>()
        }
    };
    let password_hash = text("SELECT password_hash FROM users").await;
    let passcode_hash = text("SELECT passcode_hash FROM chat_groups").await;
    let token_hash = text("SELECT token_hash FROM refresh_tokens").await;
    assert!(
        password_hash[0].starts_with("$argon2id$"),
        "{password_hash:?}"
    );
    assert!(
        passcode_hash[0].starts_with("$argon2id$"),
        "{passcode_hash:?}"
    );
    assert!(!password_hash[0].contains("correct horse"));
    assert!(!passcode_hash[0].contains("s3cret"));
    assert!(!token_hash.contains(&session.refresh_token));
}

/// One member token opening a thousand `Subscribe` streams, and hundreds of `Chat` streams
/// that never join: the server keeps each person to their share, closes the idle ones,
/// stays within a memory bound and keeps serving others. (Before: 20 000 streams from one
/// token were accepted, +276 MB.)
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_stream_flood_is_bounded_and_the_server_keeps_serving() {
    let app = spawn_app_with(|s| s.chat.join_deadline = Duration::from_millis(500)).await;
    let owner = app.register("Olga").await;
    let group = app.create_group(&owner.access_token, "Flooded").await;
    let member = app.join(&group.id, "Flooder").await;
    let before = rss_mib();

    // Several connections, as a flooding client would open.
    let mut channels = Vec::new();
    for _ in 0..8 {
        channels.push(
            tonic::transport::Channel::from_shared(format!("http://{}", app.addr))
                .unwrap()
                .connect()
                .await
                .unwrap(),
        );
    }
    let subscribes = (0..1000).map(|i| {
        let mut chat = ChatServiceClient::new(channels[i % channels.len()].clone());
        let request = authed(
            v1::SubscribeRequest {
                group_id: group.id.clone(),
                since: None,
            },
            &member.member_token,
        );
        tokio::spawn(async move { chat.subscribe(request).await.map(|r| r.into_inner()) })
    });
    let idle_chats = (0..300).map(|i| {
        let mut chat = ChatServiceClient::new(channels[i % channels.len()].clone());
        let (keep, requests) = tokio::sync::mpsc::channel::<v1::ChatRequest>(1);
        let request = authed(
            tokio_stream::wrappers::ReceiverStream::new(requests),
            &member.member_token,
        );
        tokio::spawn(async move {
            let result = chat.chat(request).await.map(|_| ());
            drop(keep);
            result
        })
    });
    let subscribes = tokio::spawn(join_all(subscribes));
    let idle_chats = tokio::spawn(join_all(idle_chats));

    // Meanwhile the owner opens the room and is served.
    let mut owner_chat = ChatServiceClient::new(app.channel.clone());
    tokio::time::timeout(
        Duration::from_secs(10),
        owner_chat.subscribe(authed(
            v1::SubscribeRequest {
                group_id: group.id.clone(),
                since: None,
            },
            &owner.access_token,
        )),
    )
    .await
    .expect("the owner is answered during the flood")
    .expect("the owner's stream opens");

    let subscribes = subscribes.await.unwrap();
    let open = subscribes.iter().filter(|r| matches!(r, Ok(Ok(_)))).count();
    let refused = subscribes
        .iter()
        .filter(|r| matches!(r, Ok(Err(s)) if s.code() == Code::ResourceExhausted))
        .count();
    assert_eq!(open, 32, "one person's share of streams");
    assert_eq!(open + refused, 1000);
    let idle = idle_chats.await.unwrap();
    assert!(
        idle.iter()
            .all(|r| matches!(r, Ok(Err(s)) if s.code() == Code::DeadlineExceeded)),
        "every stream that never joined is closed"
    );
    let grown = rss_mib().saturating_sub(before);
    assert!(grown < 150, "memory grew by {grown} MiB during the flood");
}

/// One connection gets at most `max_concurrent_streams` calls at once: the server announces
/// the limit, so a further call on that connection waits, while other connections are
/// served.
#[tokio::test]
async fn one_connection_holds_at_most_its_concurrent_streams() {
    let app = spawn_app_with(|s| s.limits.max_concurrent_streams_per_connection = 2).await;
    let owner = app.register("Olga").await;
    let group = app.create_group(&owner.access_token, "Narrow pipe").await;
    let connection = tonic::transport::Channel::from_shared(format!("http://{}", app.addr))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut streams = Vec::new();
    for name in ["Ann", "Bob", "Cat"] {
        let member = app.join(&group.id, name).await;
        let mut chat = ChatServiceClient::new(connection.clone());
        let call = chat.subscribe(authed(
            v1::SubscribeRequest {
                group_id: group.id.clone(),
                since: None,
            },
            &member.member_token,
        ));
        streams.push(tokio::time::timeout(Duration::from_millis(1500), call).await);
    }
    assert!(streams[0].is_ok() && streams[1].is_ok(), "two streams open");
    assert!(
        streams[2].is_err(),
        "the third waits for a free stream on that connection"
    );
    // Another connection is not affected.
    app.groups()
        .get_group(v1::GetGroupRequest {
            group_id: group.id.clone(),
        })
        .await
        .expect("another connection is served");
}

/// Joining under many names does not multiply one address's share of room streams.
#[tokio::test]
async fn room_streams_per_client_address_are_capped_whatever_the_names() {
    let app = spawn_app_with(|s| {
        s.chat.max_streams_per_participant = 2;
        s.chat.max_streams_per_client = 3;
    })
    .await;
    let owner = app.register("Olga").await;
    let group = app.create_group(&owner.access_token, "Many names").await;
    let mut open = Vec::new();
    let mut refused = None;
    for name in ["Alias One", "Alias Two", "Alias Three"] {
        let member = app.join(&group.id, name).await;
        for _ in 0..2 {
            let mut chat = ChatServiceClient::new(app.channel.clone());
            match chat
                .subscribe(authed(
                    v1::SubscribeRequest {
                        group_id: group.id.clone(),
                        since: None,
                    },
                    &member.member_token,
                ))
                .await
            {
                Ok(stream) => open.push(stream),
                Err(status) => {
                    refused.get_or_insert(status);
                }
            }
        }
    }
    assert_eq!(open.len(), 3, "the address's share");
    let status = refused.expect("streams beyond the address's share are refused");
    assert_eq!(status.code(), Code::ResourceExhausted);
    assert!(status.message().contains("from your address"), "{status:?}");
}
