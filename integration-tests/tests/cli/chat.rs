//! The room: `send`, `tail --follow`, `history`, and the interactive `chat` (driven through
//! piped stdin), including a server restart and a dropped connection in the middle of a
//! conversation.

use std::time::{Duration, Instant};

use serde_json::Value;

use crate::helpers::{Proxy, TestServer, User, WAIT};

const UNKNOWN: &str = "0190a7a4-6b5e-7000-8000-000000000000";

fn bodies(messages: &[Value]) -> Vec<&str> {
    messages
        .iter()
        .map(|m| m["body"].as_str().unwrap())
        .collect()
}

/// Alice owns "Book club"; Bob joined it from his own config dir.
fn room(server: &TestServer) -> (User, User, String) {
    let alice = User::new(server);
    alice.register("alice@example.com", "Alice");
    let (id, link) = alice.create_group("Book club", "s3cret");
    let bob = User::new(server);
    bob.join(&link, "Bob", "s3cret");
    (alice, bob, id)
}

#[test]
fn send_tail_follow_and_history() {
    let server = TestServer::start();
    let (alice, bob, id) = room(&server);

    let mut tail = bob.spawn(&["--json", "tail", &id, "--follow"]);

    let sent = alice.json(&["send", &id, "hello from alice"]);
    assert_eq!(sent[0]["offset"], 1);
    assert_eq!(sent[0]["sender_name"], "Alice");

    let line = tail.expect("hello from alice");
    let received: Value = serde_json::from_str(&line).expect("tail --json prints JSON lines");
    assert_eq!(received["sender_name"], "Alice");
    assert_eq!(received["offset"], 1);

    // One message per non-empty line of stdin.
    let sent = bob.ok_with_stdin(&["--json", "send", &id], "one\ntwo\n\nthree\n");
    assert_eq!(sent.lines().count(), 3, "{sent}");
    for body in ["\"one\"", "\"two\"", "\"three\""] {
        let line = tail.expect(body);
        assert!(line.contains("\"sender_name\":\"Bob\""), "{line}");
    }

    let all = alice.json(&["history", &id]);
    assert_eq!(bodies(&all), ["hello from alice", "one", "two", "three"]);
    let offsets: Vec<_> = all.iter().map(|m| m["offset"].as_u64().unwrap()).collect();
    assert_eq!(offsets, [1, 2, 3, 4]);
    // Each record carries its idempotency key, and its time in ISO 8601.
    assert!(
        all.iter().all(|m| !m["client_message_id"]
            .as_str()
            .unwrap_or_default()
            .is_empty()),
        "{all:?}"
    );
    let created_at = all[0]["created_at"].as_str().unwrap();
    assert!(
        chrono::DateTime::parse_from_rfc3339(created_at).is_ok(),
        "{created_at}"
    );
    assert_eq!(
        bodies(&bob.json(&["history", &id, "--limit", "2"])),
        ["two", "three"]
    );
    assert_eq!(
        bodies(&bob.json(&["history", &id, "--limit", "2", "--before", "3"])),
        ["hello from alice", "one"]
    );
    let human = alice.ok(&["history", &id]);
    assert!(human.lines().next().unwrap().starts_with("#1 ["), "{human}");
    assert!(human.contains("Alice: hello from alice"), "{human}");

    assert_eq!(
        bodies(&bob.json(&["tail", &id, "--since", "2"])),
        ["two", "three"]
    );
    assert_eq!(bodies(&bob.json(&["tail", &id, "-n", "1"])), ["three"]);
    // Nothing was printed twice while following.
    assert_eq!(tail.count("hello from alice"), 1);
}

#[test]
fn room_commands_fail_clearly() {
    let server = TestServer::start();
    let (alice, _bob, id) = room(&server);

    let err = alice.fails(&["send", &id, "   "], 1);
    assert!(!err.contains("Status"), "{err}");
    alice.fails(&["history", UNKNOWN], 3);
    alice.fails(&["send", UNKNOWN, "hello"], 3);

    let stranger = User::new(&server);
    let err = stranger.fails(&["send", &id, "hello"], 2);
    assert!(err.contains("join"), "{err}");
    stranger.fails(&["chat", &id], 2);
    let mallory = User::new(&server);
    mallory.register("mallory@example.com", "Mallory");
    mallory.fails(&["history", &id], 2);
}

#[test]
fn chat_both_sides_see_the_conversation_across_a_server_restart() {
    let mut server = TestServer::start();
    let (alice, bob, id) = room(&server);
    alice.ok(&["send", &id, "before anyone came"]);

    let mut a = alice.spawn(&["chat", &id]);
    a.expect("Book club");
    a.expect("Alice: before anyone came");

    let mut b = bob.spawn(&["chat", &id]);
    let online = b.expect("online:");
    assert!(online.contains("Alice"), "Bob sees Alice online: {online}");
    b.expect("Alice: before anyone came");

    a.write_line("hi bob");
    b.expect("Alice: hi bob");
    a.expect("Alice: hi bob");
    b.write_line("hi alice");
    a.expect("Bob: hi alice");
    b.expect("Bob: hi alice");

    // The server goes away; what Alice types meanwhile waits and is sent after the reconnect.
    server.stop();
    a.expect("connection lost; reconnecting");
    b.expect("connection lost; reconnecting");
    a.write_line("typed while the server was down");
    // It comes back; a message is sent before the rooms reconnect.
    server.restart();
    alice.ok(&["send", &id, "sent while you were reconnecting"]);
    a.expect("reconnected");
    b.expect("reconnected");
    for chat in [&mut a, &mut b] {
        chat.expect_unordered(&[
            "Alice: sent while you were reconnecting",
            "Alice: typed while the server was down",
        ]);
    }

    // The conversation goes on.
    b.write_line("still here");
    a.expect("Bob: still here");
    a.write_line("me too");
    b.expect("Alice: me too");

    // Ctrl-D leaves cleanly.
    assert!(a.finish().success(), "stderr: {:#?}", a.stderr);
    assert!(
        a.stdout.last().unwrap().contains("you left the room"),
        "{:#?}",
        a.stdout
    );
    assert!(b.finish().success(), "stderr: {:#?}", b.stderr);

    // No gaps, no duplicates.
    for chat in [&a, &b] {
        for line in [
            "Alice: before anyone came",
            "Alice: hi bob",
            "Bob: hi alice",
            "Alice: sent while you were reconnecting",
            "Alice: typed while the server was down",
            "Bob: still here",
            "Alice: me too",
        ] {
            assert_eq!(
                chat.count(line),
                1,
                "{line:?} exactly once in {:#?}",
                chat.stdout
            );
        }
        assert_eq!(chat.count("connection lost; reconnecting"), 1);
    }
    // And in the same order on both sides.
    let messages = |chat: &crate::helpers::Running| -> Vec<String> {
        chat.stdout
            .iter()
            .filter(|l| l.starts_with('['))
            .cloned()
            .collect()
    };
    assert_eq!(messages(&a), messages(&b));
}

#[test]
fn chat_json_events_parse() {
    let server = TestServer::start();
    let (alice, _bob, id) = room(&server);
    let mut a = alice.spawn(&["--json", "chat", &id]);
    let joined: Value = serde_json::from_str(&a.expect("\"event\":\"joined\"")).unwrap();
    assert_eq!(joined["title"], "Book club");
    assert_eq!(joined["you"], "Alice");
    a.write_line("hello json");
    let message: Value = serde_json::from_str(&a.expect("hello json")).unwrap();
    assert_eq!(message["event"], "message");
    assert_eq!(message["sender_name"], "Alice");
    assert!(a.finish().success());
    for line in &a.stdout {
        serde_json::from_str::<Value>(line).unwrap_or_else(|e| panic!("{e}: {line}"));
    }
}

#[test]
fn tail_follow_keeps_going_across_a_server_restart() {
    let mut server = TestServer::start();
    let (alice, bob, id) = room(&server);
    alice.ok(&["send", &id, "first"]);
    let mut tail = bob.spawn(&["tail", &id, "--follow"]);
    let line = tail.expect("Alice: first");
    assert!(line.starts_with("#1 ["), "{line}");

    server.restart();
    alice.ok(&["send", &id, "second"]);
    tail.expect("Alice: second");
    alice.ok(&["send", &id, "third"]);
    tail.expect("Alice: third");
    for body in ["Alice: first", "Alice: second", "Alice: third"] {
        assert_eq!(tail.count(body), 1, "{body:?} once in {:#?}", tail.stdout);
    }
    // The notices go to stderr, so stdout stays data.
    assert!(
        tail.stdout.iter().all(|l| l.starts_with('#')),
        "{:#?}",
        tail.stdout
    );
}

#[test]
fn chat_shows_a_resent_line_once_when_its_first_send_was_stored() {
    let server = TestServer::start();
    let proxy = Proxy::start(&server);
    // Alice talks to the server through the proxy; Bob directly.
    let alice = User::with_url(&proxy.url());
    alice.register("alice@example.com", "Alice");
    let (id, link) = alice.create_group("Book club", "s3cret");
    let bob = User::new(&server);
    bob.join(&link, "Bob", "s3cret");
    bob.ok(&["send", &id, "before the gap"]);

    let mut a = alice.spawn(&["chat", &id]);
    a.expect("Bob: before the gap");

    // Alice's line reaches the room, but its ack never reaches her.
    proxy.hold_replies();
    a.write_line("did this arrive?");
    let deadline = Instant::now() + WAIT;
    while !bodies(&bob.json(&["history", &id])).contains(&"did this arrive?") {
        assert!(Instant::now() < deadline, "the line was not stored");
        std::thread::sleep(Duration::from_millis(50));
    }

    // The connection breaks; the server keeps running, so the stream is resumed: it replays
    // the stored line, and the chat resends it (not acknowledged), which is answered with an
    // ack of the same message.
    proxy.cut();
    a.expect("connection lost; reconnecting");
    a.expect("reconnected; nothing was missed");
    a.expect("Alice: did this arrive?");
    // The resend went out before this line, and the server answers a stream's sends one
    // after another: once this line shows, the resend's ack has been handled too.
    a.write_line("after the gap");
    a.expect("Alice: after the gap");
    assert!(a.finish().success(), "stderr: {:#?}", a.stderr);

    assert_eq!(
        a.count("Alice: did this arrive?"),
        1,
        "shown once: {:#?}",
        a.stdout
    );
    assert!(
        a.stdout.last().unwrap().contains("you left the room") && a.count("not confirmed") == 0,
        "{:#?}",
        a.stdout
    );
    assert_eq!(
        bodies(&bob.json(&["history", &id])),
        ["before the gap", "did this arrive?", "after the gap"],
        "stored once"
    );
}

#[test]
fn slash_commands_are_commands_not_messages() {
    let server = TestServer::start();
    let (alice, bob, id) = room(&server);
    alice.ok(&["send", &id, "before the room opened"]);
    let mut b = bob.spawn(&["chat", &id]);
    b.expect("Alice: before the room opened");
    let mut a = alice.spawn(&["chat", &id]);
    b.expect("Alice is online");

    b.write_line("/who");
    let who = b.expect("* online:");
    assert!(who.contains("Alice") && who.contains("Bob (you)"), "{who}");
    b.write_line("/help");
    b.expect("* commands:");
    b.expect("/history [N]");
    b.write_line("/shout hello");
    b.expect("unknown command /shout hello (not sent)");
    b.write_line("//shrug");
    a.expect("Bob: /shrug");
    b.write_line("/history 2");
    b.expect("the last 2 message(s):");
    b.expect("Bob: /shrug");
    // /quit leaves while stdin is still open.
    b.write_line("/quit");
    b.expect("you left the room");

    // Only the literal reached the room: commands were never sent.
    let history = alice.json(&["history", &id]);
    let bodies: Vec<&str> = history
        .iter()
        .map(|m| m["body"].as_str().unwrap())
        .collect();
    assert_eq!(bodies, ["before the room opened", "/shrug"]);
    assert!(a.finish().success());
}

#[test]
fn the_chat_ends_by_itself_when_the_group_is_deleted() {
    let server = TestServer::start();
    let (alice, bob, id) = room(&server);
    let mut b = bob.spawn(&["chat", &id]);
    b.expect("you are Bob");
    alice.ok(&["group", "delete", &id, "--yes"]);
    let status = b.exits_by_itself();
    assert_eq!(status.code(), Some(3), "not found: {:#?}", b.stderr);
    assert!(
        b.stderr
            .iter()
            .any(|l| l.contains("The group was deleted.")),
        "{:#?}",
        b.stderr
    );
}
