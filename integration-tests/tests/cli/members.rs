//! Members from the command line: kick with a ban, unban, bans, leave, revoking member
//! tokens, and "groups I'm in" with and without an account.

use crate::helpers::{TestServer, User};

#[test]
fn an_owner_kicks_bans_and_unbans() {
    let server = TestServer::start();
    let alice = User::new(&server);
    alice.register("alice@example.com", "Alice");
    let (id, _) = alice.create_group("Book club", "s3cret");
    let bob = User::new(&server);
    bob.join(&id, "Bob", "s3cret");
    let carol = User::new(&server);
    carol.join(&id, "Carol", "s3cret");

    let members = bob.json(&["group", "members", &id]);
    let listed: Vec<_> = members
        .iter()
        .map(|m| {
            (
                m["name"].as_str().unwrap(),
                m["role"].as_str().unwrap(),
                m["online"].as_bool().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        listed,
        [
            ("Alice", "owner", false),
            ("Bob", "member", false),
            ("Carol", "member", false)
        ]
    );
    assert!(alice.ok(&["group", "members", &id]).contains("offline"));

    // A member cannot kick anyone; nobody can kick the owner or someone who is not there.
    carol.fails(&["group", "kick", &id, "Bob"], 2);
    alice.fails(&["group", "kick", &id, "Alice"], 1);
    let err = alice.fails(&["group", "kick", &id, "Nobody"], 3);
    assert!(err.contains("no member called Nobody"), "{err}");

    // By name, in any case.
    let kicked = alice.json(&["group", "kick", &id, "bob", "--ban"]);
    assert_eq!(kicked[0]["member"]["name"], "Bob");
    assert_eq!(kicked[0]["ban"]["name"], "Bob");
    assert_eq!(kicked[0]["ban"]["account_banned"], false);

    let err = bob.fails(&["group", "members", &id], 2);
    assert!(err.contains("no longer a member"), "{err}");
    let again = bob.run_with_stdin(
        &["join", &id, "--name", "BOB", "--passcode-stdin"],
        "s3cret\n",
    );
    assert_eq!(again.code, 2, "{again:#?}");
    assert_eq!(
        again.stderr.trim(),
        "error: You are banned from this group."
    );

    let bans = alice.json(&["group", "bans", &id]);
    assert_eq!(bans.len(), 1);
    assert_eq!(bans[0]["name"], "Bob");
    carol.fails(&["group", "bans", &id], 2);
    alice.fails(&["group", "unban", &id, "Carol"], 3);

    let unbanned = alice.json(&["group", "unban", &id, "BOB"]);
    assert_eq!(unbanned[0]["unbanned"], true);
    assert!(alice.json(&["group", "bans", &id]).is_empty());
    let out = bob.ok_with_stdin(
        &["join", &id, "--name", "Bob", "--passcode-stdin"],
        "s3cret\n",
    );
    assert!(out.contains("Joined"), "{out}");
}

#[test]
fn a_member_without_an_account_sees_and_leaves_their_groups() {
    let server = TestServer::start();
    let alice = User::new(&server);
    alice.register("alice@example.com", "Alice");
    let (first, _) = alice.create_group("Book club", "s3cret");
    let (second, _) = alice.create_group("Climbing", "r0pe!");
    let bob = User::new(&server);
    bob.join(&first, "Bob", "s3cret");
    bob.join(&second, "Bob", "r0pe!");

    let me = bob.json(&["whoami"]);
    assert!(me[0]["user"].is_null(), "{me:?}");
    assert_eq!(me[0]["memberships"].as_array().unwrap().len(), 2);
    assert!(bob.ok(&["whoami"]).contains("Member of \"Climbing\""));

    let listed = bob.json(&["group", "list"]);
    let groups: Vec<_> = listed
        .iter()
        .map(|g| (g["title"].as_str().unwrap(), g["role"].as_str().unwrap()))
        .collect();
    assert_eq!(groups, [("Climbing", "member"), ("Book club", "member")]);

    let left = bob.json(&["group", "leave", &first]);
    assert_eq!(left[0]["left"], true);
    let listed = bob.json(&["group", "list"]);
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0]["id"], second.as_str());
    assert_eq!(
        bob.json(&["whoami"])[0]["memberships"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
    // Left for good: the group is not Bob's any more.
    bob.fails(&["group", "leave", &first], 2);

    // Removed from the other: the list says so and shows what is left (nothing).
    alice.ok(&["group", "kick", &second, "Bob"]);
    let outcome = bob.run(&["--json", "group", "list"]);
    assert_eq!(outcome.code, 0, "{outcome:#?}");
    assert!(outcome.stdout.trim().is_empty(), "{outcome:#?}");
    assert!(
        outcome.stderr.contains("no longer in \"Climbing\""),
        "{outcome:#?}"
    );

    // Nothing at all on this device and not signed in: exit 2.
    let carol = User::new(&server);
    carol.fails(&["group", "list"], 2);
    carol.fails(&["whoami"], 2);
}

#[test]
fn revoking_member_tokens_makes_members_join_again_with_the_new_passcode() {
    let server = TestServer::start();
    let alice = User::new(&server);
    alice.register("alice@example.com", "Alice");
    let (id, _) = alice.create_group("Book club", "s3cret");
    let bob = User::new(&server);
    bob.join(&id, "Bob", "s3cret");
    bob.ok(&["send", &id, "hello"]);

    // Revoking without a new passcode would let members back in with the old one.
    let refused = alice.run(&[
        "group",
        "update",
        &id,
        "--title",
        "Book club",
        "--revoke-members",
    ]);
    assert_eq!(refused.code, 1, "{refused:#?}");
    assert!(refused.stderr.contains("--passcode"), "{refused:#?}");
    let updated = alice.json(&[
        "group",
        "update",
        &id,
        "--passcode",
        "n3w-pass",
        "--revoke-members",
    ]);
    assert_eq!(updated[0]["revoked_members"], 1);
    assert_eq!(updated[0]["id"], id.as_str());

    let err = bob.fails(&["send", &id, "still here?"], 2);
    assert!(err.contains("join again"), "{err}");
    let old = bob.run_with_stdin(
        &["join", &id, "--name", "Bob", "--passcode-stdin"],
        "s3cret\n",
    );
    assert_eq!(old.code, 2, "{old:#?}");
    bob.join(&id, "Bob", "n3w-pass");
    bob.ok(&["send", &id, "back again"]);
    // The same member: still one Bob.
    let names: Vec<_> = alice
        .json(&["group", "members", &id])
        .iter()
        .map(|m| m["name"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(names, ["Alice", "Bob"]);
}

#[test]
fn a_signed_in_member_lists_owned_and_joined_groups_with_roles() {
    let server = TestServer::start();
    let alice = User::new(&server);
    alice.register("alice@example.com", "Alice");
    let (hers, _) = alice.create_group("Book club", "s3cret");
    let dave = User::new(&server);
    dave.register("dave@example.com", "Dave");
    let (his, _) = dave.create_group("Chess", "k1ng!");
    dave.join(&hers, "Dave", "s3cret");

    let listed = dave.json(&["group", "list"]);
    let groups: Vec<_> = listed
        .iter()
        .map(|g| (g["id"].as_str().unwrap(), g["role"].as_str().unwrap()))
        .collect();
    assert_eq!(groups, [(his.as_str(), "owner"), (hers.as_str(), "member")]);
    let out = dave.ok(&["group", "list"]);
    assert!(out.contains("member  Book club"), "{out}");

    // Another device of the same account is the same member, whatever name it types.
    let laptop = User::new(&server);
    laptop.ok_with_stdin(
        &["login", "--email", "dave@example.com", "--password-stdin"],
        &format!("{}\n", crate::helpers::PASSWORD),
    );
    let joined = laptop.json_with_stdin(
        &["join", &hers, "--name", "David", "--passcode-stdin"],
        "s3cret\n",
    );
    assert_eq!(joined[0]["name"], "Dave");
    assert_eq!(alice.json(&["group", "members", &hers]).len(), 2);
}
