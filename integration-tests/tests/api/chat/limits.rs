//! What a stream will not take: bad or too fast sends, a reader that falls behind,
//! oversized requests.

use super::*;

#[tokio::test]
async fn bad_and_too_fast_sends_are_rejected_and_the_stream_stays_open() {
    let app = spawn_app_with(|s| {
        s.chat.send_rate = 1.0;
        s.chat.send_burst = 3;
    })
    .await;
    let room = room(&app).await;
    let mut ann = ChatClient::open(&app, &room.ann, &room.group.id, None)
        .await
        .unwrap();

    ann.send("too-long", &"x".repeat(4001)).await;
    let rejected = ann.next_answer().await.unwrap_err();
    assert_eq!(
        (rejected.client_message_id.as_str(), rejected.code),
        ("too-long", Code::InvalidArgument as i32)
    );
    assert_eq!(
        rejected.message,
        "Message must be at most 4000 characters long."
    );
    ann.send("blank", "   ").await;
    assert_eq!(
        ann.next_answer().await.unwrap_err().message,
        "Message must not be blank."
    );

    for i in 0..3 {
        ann.send_and_ack(&format!("ok-{i}"), "within the burst")
            .await;
    }
    ann.send("over", "over the limit").await;
    let limited = ann.next_answer().await.unwrap_err();
    assert_eq!(limited.code, Code::ResourceExhausted as i32, "{limited:?}");

    tokio::time::sleep(Duration::from_millis(1100)).await;
    let after = ann.send_and_ack("later", "a second later").await;
    assert_eq!(after.offset, 4, "rejected sends took no offset");

    // The unary path maps the same rules to status codes.
    let mut chat = ChatServiceClient::new(app.channel.clone());
    let status = expect_code(
        chat.send_message(authed(
            v1::SendMessageRequest {
                group_id: room.group.id.clone(),
                client_message_id: String::new(),
                body: String::new(),
            },
            &room.ann,
        ))
        .await,
        Code::InvalidArgument,
    );
    assert_eq!(status.message(), "Message must not be blank.");
}

/// A stream that falls further behind its room's feed than the feed holds is ended with
/// `RESOURCE_EXHAUSTED`, never left with a silent gap. Here Ann's stream waits for the
/// answer to her own send (the store is broken, so it comes only after the append
/// timeout) while Bob's sends pile into a four-event feed.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_stream_that_falls_behind_its_room_feed_is_ended_not_left_with_a_gap() {
    let app = spawn_app_with(|s| {
        s.room_feed_capacity = 4;
        s.chat.append_timeout = Duration::from_secs(2);
        s.persister_drain_timeout = Duration::from_secs(1);
    })
    .await;
    let room = room(&app).await;
    let mut ann = ChatClient::open(&app, &room.ann, &room.group.id, None)
        .await
        .unwrap();
    app.break_message_storage().await;
    ann.send("a1", "waiting for my ack").await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let sends = (0..10).map(|i| {
        let mut chat = ChatServiceClient::new(app.channel.clone());
        let request = authed(
            v1::SendMessageRequest {
                group_id: room.group.id.clone(),
                body: format!("flood {i}"),
                client_message_id: format!("b{i}"),
            },
            &room.bob,
        );
        tokio::spawn(async move { chat.send_message(request).await })
    });
    futures::future::join_all(sends).await;
    let status = ann.end_status().await;
    assert_eq!(status.code(), Code::ResourceExhausted, "{status:?}");
    assert!(
        status.message().contains("fell too far behind"),
        "{status:?}"
    );
}

#[tokio::test]
async fn a_client_that_does_not_read_is_disconnected_as_a_slow_consumer() {
    let app = spawn_app_with(|s| {
        s.chat.outbound_capacity = 16;
        s.chat.send_rate = 10_000.0;
        s.chat.send_burst = 10_000;
    })
    .await;
    let room = room(&app).await;
    // The slow client has its own connection with HTTP/2's minimum windows, so its
    // transport buffers fill after a few messages, as a stalled phone's would.
    let slow_connection = tonic::transport::Endpoint::from_shared(format!("http://{}", app.addr))
        .unwrap()
        .initial_stream_window_size(65_535)
        .initial_connection_window_size(65_535)
        .connect()
        .await
        .unwrap();
    let mut slow = ChatClient::open_on(slow_connection, &room.ann, &room.group.id, None)
        .await
        .unwrap();
    let mut fast = ChatClient::open(&app, &room.owner.access_token, &room.group.id, None)
        .await
        .unwrap();

    // Big messages fill the transport's window quickly; then the server-side queue of 16.
    let body = "y".repeat(3900);
    let total = 400u64;
    let sender = tokio::spawn({
        let channel = app.channel.clone();
        let (group_id, token) = (room.group.id.clone(), room.bob.clone());
        async move {
            let mut chat = ChatServiceClient::new(channel);
            for i in 0..total {
                chat.send_message(authed(
                    v1::SendMessageRequest {
                        group_id: group_id.clone(),
                        client_message_id: format!("m{i}"),
                        body: body.clone(),
                    },
                    &token,
                ))
                .await
                .unwrap();
            }
        }
    });
    // The fast reader gets every message while the slow one reads nothing.
    for offset in 1..=total {
        assert_eq!(fast.next_message().await.offset, offset);
    }
    sender.await.unwrap();

    let mut received = 0u64;
    let status = loop {
        match tokio::time::timeout(Duration::from_secs(5), slow_next(&mut slow))
            .await
            .expect("slow stream ends")
        {
            Ok(()) => received += 1,
            Err(status) => break status,
        }
    };
    assert_eq!(status.code(), Code::ResourceExhausted, "{status:?}");
    assert!(
        status.message().contains("slow consumer"),
        "{}",
        status.message()
    );
    assert!(
        received < total,
        "the slow client was cut off, not buffered without bound"
    );
}

async fn slow_next(client: &mut ChatClient) -> Result<(), tonic::Status> {
    client.end_or_event().await
}

#[tokio::test]
async fn an_oversized_request_is_refused_before_it_is_decoded() {
    let app = spawn_app().await;
    let room = room(&app).await;
    let mut chat = ChatServiceClient::new(app.channel.clone());
    let send = |body: String| {
        authed(
            v1::SendMessageRequest {
                group_id: room.group.id.clone(),
                client_message_id: String::new(),
                body,
            },
            &room.ann,
        )
    };
    // The longest valid body, in 4-byte characters, is accepted ...
    let longest = "𝄞".repeat(4000);
    let sent = chat
        .send_message(send(longest.clone()))
        .await
        .unwrap()
        .into_inner()
        .message
        .unwrap();
    assert_eq!(sent.body, longest);
    // ... a megabyte is refused at the door, and the server carries on.
    let status = expect_code(
        chat.send_message(send("x".repeat(1 << 20))).await,
        Code::OutOfRange,
    );
    assert!(
        status.message().contains("too large"),
        "{}",
        status.message()
    );
    chat.send_message(send("still here".into())).await.unwrap();
}

/// An operator sets the send rate limit and the stream queue with flags: a server started
/// with `--send-rate 0.5 --send-burst 2` takes two sends, refuses the third with that rate in
/// its message, and a value that could never work is refused at startup with a clear error.
#[tokio::test]
async fn the_send_limit_and_queue_flags_reach_the_running_server() {
    use quickchat_integration_tests::app::{create_group_on, register_on};
    use quickchat_integration_tests::process::ServerProcess;

    let data = tempfile::tempdir().unwrap();
    let args = |extra: &[&str]| -> Vec<String> {
        ["--listen", "127.0.0.1:0", "--data-dir"]
            .iter()
            .map(|s| s.to_string())
            .chain([data.path().join("data").display().to_string()])
            .chain(extra.iter().map(|s| s.to_string()))
            .collect()
    };
    let node = ServerProcess::start(&args(&[
        "--send-rate",
        "0.5",
        "--send-burst",
        "2",
        "--stream-queue",
        "64",
    ]));
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{}", node.addr.unwrap()))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let owner = register_on(&channel, "Olga").await;
    let group = create_group_on(&channel, &owner.access_token, "Flags").await;
    let mut olga = ChatClient::open_on(channel, &owner.access_token, &group.id, None)
        .await
        .unwrap();
    olga.send_and_ack("one", "first").await;
    olga.send_and_ack("two", "second").await;
    olga.send("three", "over the burst").await;
    let limited = olga.next_answer().await.unwrap_err();
    assert_eq!(limited.code, Code::ResourceExhausted as i32, "{limited:?}");
    assert_eq!(
        limited.message,
        "Sending too fast: at most 0.5 messages per second."
    );
    drop(node);

    for (flag, value, says) in [
        ("--stream-queue", "0", "must be at least 1"),
        ("--send-rate", "0", "must be a number above 0"),
    ] {
        // A server that accepted the value would keep running: give it 30 s to exit.
        let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_qc-node"))
            .args(args(&[flag, value]))
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        let status = loop {
            if let Some(status) = child.try_wait().unwrap() {
                break Some(status);
            }
            if std::time::Instant::now() > deadline {
                child.kill().unwrap();
                break None;
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        let mut stderr = String::new();
        std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut stderr).unwrap();
        assert!(
            status.is_some_and(|s| !s.success()),
            "{flag} {value} was accepted: {stderr}"
        );
        assert!(
            stderr.contains(&format!("invalid value '{value}' for '{flag}"))
                && stderr.contains(says),
            "{stderr}"
        );
    }
}
