//! The dashboard (group CRUD) and joining by share link.

use crate::helpers::{TestServer, User};

const UNKNOWN: &str = "0190a7a4-6b5e-7000-8000-000000000000";

#[test]
fn group_crud() {
    let server = TestServer::start();
    let alice = User::new(&server);
    alice.register("alice@example.com", "Alice");

    let out = alice.ok(&[
        "group",
        "create",
        "--title",
        "Book club",
        "--passcode",
        "s3cret",
    ]);
    assert!(out.contains("Created group \"Book club\""), "{out}");
    let link_line = out.lines().find(|l| l.contains("share link:")).unwrap();
    let link = link_line.split_whitespace().last().unwrap();
    assert!(
        link.starts_with(&format!("{}/join/", server.url())),
        "{link}"
    );
    let id = link.rsplit('/').next().unwrap().to_owned();

    let (second, _) = alice.create_group("Climbing", "r0pe!");
    let listed = alice.json(&["group", "list"]);
    let titles: Vec<_> = listed
        .iter()
        .map(|g| g["title"].as_str().unwrap())
        .collect();
    assert_eq!(titles, ["Climbing", "Book club"], "newest first");
    assert_eq!(listed[1]["id"], id.as_str());
    assert!(alice.ok(&["group", "ls"]).contains("Book club"));

    let out = alice.ok(&["group", "show", &id]);
    assert!(
        out.contains("Book club") && out.contains("owner:      Alice"),
        "{out}"
    );
    let shown = alice.json(&["group", "show", link]);
    assert_eq!(
        shown[0]["id"],
        id.as_str(),
        "a share link works as well as the id"
    );

    let updated = alice.json(&["group", "update", &id, "--title", "Book club 2025"]);
    assert_eq!(updated[0]["title"], "Book club 2025");
    assert!(alice.ok(&["group", "show", &id]).contains("Book club 2025"));

    let err = alice.fails(&["group", "update", &id, "--title", "Bo"], 1);
    assert_eq!(
        err.trim(),
        "error: Chat title must be at least 4 characters long."
    );
    let err = alice.fails(
        &["group", "create", "--title", "Book", "--passcode", "abc"],
        1,
    );
    assert!(
        err.contains("Chat passcode must be at least 4 characters long."),
        "{err}"
    );

    // No terminal to confirm on: deleting needs --yes.
    let err = alice.fails(&["group", "delete", &id], 1);
    assert!(err.contains("--yes"), "{err}");
    let deleted = alice.json(&["group", "delete", &id, "--yes"]);
    assert_eq!(deleted[0]["deleted"], true);
    let err = alice.fails(&["group", "show", &id], 3);
    assert!(err.contains("not found"), "{err}");
    let remaining = alice.json(&["group", "list"]);
    assert_eq!(remaining.len(), 1);
    assert_eq!(remaining[0]["id"], second.as_str());
}

#[test]
fn join_with_a_share_link_from_another_config_dir() {
    let server = TestServer::start();
    let alice = User::new(&server);
    alice.register("alice@example.com", "Alice");
    let (id, link) = alice.create_group("Book club", "s3cret");

    let bob = User::new(&server);
    // Not a member yet.
    let err = bob.fails(&["group", "members", &id], 2);
    assert!(err.contains("join"), "{err}");

    let wrong = bob.run_with_stdin(
        &["join", &link, "--name", "Bob", "--passcode-stdin"],
        "nope!\n",
    );
    assert_eq!(wrong.code, 2, "{wrong:#?}");
    assert_eq!(wrong.stderr.trim(), "error: Wrong passcode.");

    let out = bob.ok_with_stdin(
        &["join", &link, "--name", "Bob", "--passcode-stdin"],
        "s3cret\n",
    );
    assert!(out.contains("Joined \"Book club\" as Bob"), "{out}");
    assert!(out.contains(&format!("quickchat chat {id}")), "{out}");

    // The member token is kept, so later commands work without an account.
    let members = bob.json(&["group", "members", &id]);
    let names: Vec<_> = members
        .iter()
        .map(|m| (m["name"].as_str().unwrap(), m["role"].as_str().unwrap()))
        .collect();
    assert_eq!(names, [("Alice", "owner"), ("Bob", "member")]);
    let out = alice.ok(&["group", "members", &id]);
    assert!(out.contains("Alice") && out.contains("Bob"), "{out}");

    // A member cannot manage the group.
    bob.fails(&["group", "delete", &id, "--yes"], 2);

    // Any URL whose last segment is the id works, and so does --passcode.
    let carol = User::new(&server);
    let joined = carol.json(&[
        "join",
        &format!("https://chat.example.com/rooms/{id}/"),
        "--name",
        "Carol",
        "--passcode",
        "s3cret",
    ]);
    assert_eq!(joined[0]["group"]["id"], id.as_str());
    assert_eq!(joined[0]["name"], "Carol");
}

#[test]
fn unknown_groups_exit_3() {
    let server = TestServer::start();
    let alice = User::new(&server);
    alice.register("alice@example.com", "Alice");
    let err = alice.fails(&["group", "show", UNKNOWN], 3);
    assert_eq!(err.trim(), "error: Group not found.");
    alice.fails(&["group", "delete", UNKNOWN, "--yes"], 3);
    alice.fails(&["group", "update", UNKNOWN, "--title", "Whatever"], 3);
    let bob = User::new(&server);
    let out = bob.run_with_stdin(
        &["join", UNKNOWN, "--name", "Bob", "--passcode-stdin"],
        "s3cret\n",
    );
    assert_eq!(out.code, 3, "{out:#?}");
    // Not an id at all: a usage error.
    let err = bob.fails(&["group", "show", "not-a-group"], 1);
    assert!(err.contains("not a group id or share link"), "{err}");

    // Scripts get the error as one JSON object, with the same exit code.
    let err = alice.fails(&["--json", "group", "show", UNKNOWN], 3);
    let parsed: serde_json::Value =
        serde_json::from_str(err.trim()).unwrap_or_else(|e| panic!("not JSON ({e}): {err}"));
    assert_eq!(
        parsed,
        serde_json::json!({"error": {"code": "not_found", "exit": 3, "message": "Group not found."}})
    );
    let err = bob.fails(&["--json", "group", "show", "not-a-group"], 1);
    let parsed: serde_json::Value = serde_json::from_str(err.trim()).unwrap();
    assert_eq!(parsed["error"]["code"], "usage", "{err}");
    // So is a command line the parser refuses.
    let err = bob.fails(&["--json", "group", "frobnicate"], 1);
    let parsed: serde_json::Value = serde_json::from_str(err.trim()).unwrap();
    assert_eq!(parsed["error"]["code"], "usage", "{err}");
    assert!(
        parsed["error"]["message"]
            .as_str()
            .unwrap()
            .contains("frobnicate"),
        "{err}"
    );
}

#[test]
fn only_the_owner_manages_a_group() {
    let server = TestServer::start();
    let alice = User::new(&server);
    alice.register("alice@example.com", "Alice");
    let (id, _) = alice.create_group("Book club", "s3cret");
    let mallory = User::new(&server);
    mallory.register("mallory@example.com", "Mallory");
    let err = mallory.fails(&["group", "update", &id, "--title", "Mine now"], 2);
    assert!(err.contains("owner"), "{err}");
    mallory.fails(&["group", "delete", &id, "--yes"], 2);
    mallory.fails(&["group", "members", &id], 2);
    assert!(mallory.json(&["group", "list"]).is_empty());
}

#[test]
fn fields_picks_what_each_record_shows_and_names_the_ones_it_has() {
    let server = TestServer::start();
    let alice = User::new(&server);
    alice.register("alice@example.com", "Alice");
    let (first, _) = alice.create_group("Book club", "s3cret");
    let (second, _) = alice.create_group("Chess night", "s3cret");

    // --fields implies --json: each line is an object with exactly those keys.
    let out = alice.ok(&["group", "list", "--fields", "id,title"]);
    let records: Vec<serde_json::Value> = out
        .lines()
        .map(|l| serde_json::from_str(l).expect("a JSON line"))
        .collect();
    assert_eq!(
        records,
        [
            serde_json::json!({"id": second, "title": "Chess night"}),
            serde_json::json!({"id": first, "title": "Book club"}),
        ]
    );

    // A field the records do not have is a usage error that lists the ones they have.
    let err = alice.fails(&["group", "list", "--fields", "id,colour"], 1);
    let err: serde_json::Value = serde_json::from_str(err.trim()).expect("a JSON error");
    let message = err["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("\"colour\"")
            && message.contains("title")
            && message.contains("share_link"),
        "{message}"
    );
}
