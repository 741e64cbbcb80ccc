//! Promises of the README's CLI walkthrough that the other CLI tests do not pin down.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Instant;

use crate::helpers::{TestServer, User, WAIT};

/// "Ctrl-D, Ctrl-C or `/quit` leaves": an interrupt (SIGINT, what Ctrl-C sends at a
/// terminal) leaves the room cleanly — exit 0, "you left the room" — and the others see the
/// person go offline.
#[test]
fn ctrl_c_leaves_the_room_and_the_others_see_it() {
    let server = TestServer::start();
    let alice = User::new(&server);
    alice.register("alice@example.com", "Alice");
    let (id, link) = alice.create_group("Book club", "s3cret");
    let bob = User::new(&server);
    bob.join(&link, "Bob", "s3cret");

    let mut a = alice.spawn(&["chat", &id]);
    a.expect("you are Alice");
    let mut b = bob
        .command()
        .args(["chat", &id])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("quickchat starts");
    // Bob's stdin stays open: only the interrupt can end his chat.
    let _stdin = b.stdin.take().unwrap();
    let (tx, lines) = mpsc::channel();
    let stdout = b.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let mut seen = Vec::new();
    let deadline = Instant::now() + WAIT;
    let wait_for = |text: &str, seen: &mut Vec<String>| {
        while !seen.iter().any(|l| l.contains(text)) {
            let left = deadline.saturating_duration_since(Instant::now());
            seen.push(lines.recv_timeout(left).expect(text));
        }
    };
    // Ctrl-C as soon as the room shows, while it still loads history: it leaves the room
    // like any other (the handler is in place before the room opens).
    wait_for("you are Bob", &mut seen);

    let sent = Command::new("kill")
        .args(["-INT", &b.id().to_string()])
        .status()
        .expect("kill runs");
    assert!(sent.success());
    let deadline = Instant::now() + WAIT;
    let status = loop {
        if let Some(status) = b.try_wait().expect("wait") {
            break status;
        }
        assert!(Instant::now() < deadline, "Ctrl-C did not end the chat");
        std::thread::sleep(std::time::Duration::from_millis(50));
    };
    // The reader thread ends with the process's stdout.
    seen.extend(lines.iter());
    assert!(status.success(), "{status:?}, stdout: {seen:#?}");
    assert!(
        seen.last().is_some_and(|l| l.contains("you left the room")),
        "{seen:#?}"
    );
    a.expect("Bob went offline");
    assert!(a.finish().success());
}

/// "`logout --all` also forgets joined groups": a plain `logout` keeps the member tokens of
/// the groups one joined, `--all` forgets them, and the room then turns the person away.
#[test]
fn logout_all_forgets_the_joined_groups_and_plain_logout_keeps_them() {
    let server = TestServer::start();
    let alice = User::new(&server);
    alice.register("alice@example.com", "Alice");
    let (id, link) = alice.create_group("Book club", "s3cret");
    let bob = User::new(&server);
    bob.join(&link, "Bob", "s3cret");

    bob.ok(&["logout"]);
    bob.ok(&["send", &id, "still a member"]);

    let out = bob.ok(&["logout", "--all"]);
    assert!(out.contains("forgot 1 group membership"), "{out}");
    let err = bob.fails(&["send", &id, "not any more"], 2);
    assert!(!err.is_empty());
    let history = alice.json(&["history", &id]);
    let bodies: Vec<&str> = history
        .iter()
        .map(|m| m["body"].as_str().unwrap())
        .collect();
    assert_eq!(bodies, ["still a member"]);
}

/// "Message records (`--json`) carry `offset`, `id`, `group_id`, `sender_name`,
/// `sender_id`, `body`, `client_message_id` and `created_at`": each of them, filled in.
#[test]
fn json_message_records_carry_every_documented_field() {
    let server = TestServer::start();
    let alice = User::new(&server);
    alice.register("alice@example.com", "Alice");
    let (id, _link) = alice.create_group("Book club", "s3cret");
    let sent = alice.json(&["send", &id, "hello"]);
    let history = alice.json(&["history", &id]);
    for record in [&sent[0], &history[0]] {
        let mut keys: Vec<&str> = record
            .as_object()
            .expect("a JSON object")
            .keys()
            .map(String::as_str)
            .collect();
        keys.sort_unstable();
        assert_eq!(
            keys,
            [
                "body",
                "client_message_id",
                "created_at",
                "group_id",
                "id",
                "offset",
                "sender_id",
                "sender_name"
            ],
            "{record}"
        );
        assert_eq!(record["group_id"], id.as_str());
        assert_eq!(record["sender_name"], "Alice");
        assert_eq!(record["body"], "hello");
        assert_eq!(record["offset"], 1);
        for field in ["id", "sender_id", "client_message_id", "created_at"] {
            assert!(
                record[field].as_str().is_some_and(|v| !v.is_empty()),
                "{field} is filled in: {record}"
            );
        }
    }
}
