//! Members are people: leaving, removal with bans, revocation of member tokens, accounts
//! linked to members, presence and roles in the member list, and "groups I'm in".

use quickchat_proto::v1::{
    self, chat_response::Event, chat_service_client::ChatServiceClient,
    group_service_client::GroupServiceClient,
};
use tonic::transport::Channel;
use tonic::{Code, Status};
use uuid::Uuid;

use crate::chat_client::{ChatClient, WAIT};
use crate::helpers::{TestApp, authed, expect_code, join_request, spawn_app};

fn chat(app: &TestApp) -> ChatServiceClient<Channel> {
    ChatServiceClient::new(app.channel.clone())
}

async fn remove(
    app: &TestApp,
    owner: &str,
    group_id: &str,
    member_id: &str,
    ban: bool,
) -> Result<v1::RemoveMemberResponse, Status> {
    app.groups()
        .remove_member(authed(
            v1::RemoveMemberRequest {
                group_id: group_id.into(),
                member_id: member_id.into(),
                ban,
            },
            owner,
        ))
        .await
        .map(|r| r.into_inner())
}

async fn members(app: &TestApp, token: &str, group_id: &str) -> Result<Vec<v1::Member>, Status> {
    app.groups()
        .list_members(authed(
            v1::ListMembersRequest {
                group_id: group_id.into(),
            },
            token,
        ))
        .await
        .map(|r| r.into_inner().members)
}

async fn join_as(
    app: &TestApp,
    token: Option<&str>,
    group_id: &str,
    name: &str,
    passcode: &str,
) -> Result<v1::JoinGroupResponse, Status> {
    let request = join_request(group_id, name, passcode);
    let request = match token {
        Some(token) => authed(request, token),
        None => tonic::Request::new(request),
    };
    app.groups()
        .join_group(request)
        .await
        .map(|r| r.into_inner())
}

/// Every call a member token opens, with the code each gives for `token`.
async fn codes_for(app: &TestApp, token: &str, group_id: &str) -> Vec<(&'static str, Code)> {
    let code = |r: Result<(), Status>| r.err().map_or(Code::Ok, |s| s.code());
    let mut chat = chat(app);
    let mut groups = app.groups();
    vec![
        (
            "SendMessage",
            code(
                chat.send_message(authed(
                    v1::SendMessageRequest {
                        group_id: group_id.into(),
                        client_message_id: Uuid::new_v4().to_string(),
                        body: "still here?".into(),
                    },
                    token,
                ))
                .await
                .map(|_| ()),
            ),
        ),
        (
            "ListMessages",
            code(
                chat.list_messages(authed(
                    v1::ListMessagesRequest {
                        group_id: group_id.into(),
                        ..Default::default()
                    },
                    token,
                ))
                .await
                .map(|_| ()),
            ),
        ),
        (
            "SendTyping",
            code(
                chat.send_typing(authed(
                    v1::SendTypingRequest {
                        group_id: group_id.into(),
                    },
                    token,
                ))
                .await
                .map(|_| ()),
            ),
        ),
        (
            "Subscribe",
            code(
                chat.subscribe(authed(
                    v1::SubscribeRequest {
                        group_id: group_id.into(),
                        since: None,
                    },
                    token,
                ))
                .await
                .map(|_| ()),
            ),
        ),
        (
            "Chat",
            code(
                ChatClient::open(app, token, group_id, None)
                    .await
                    .map(|_| ()),
            ),
        ),
        (
            "ListMembers",
            code(members(app, token, group_id).await.map(|_| ())),
        ),
        (
            "ListGroups",
            code(
                groups
                    .list_groups(authed(v1::ListGroupsRequest::default(), token))
                    .await
                    .map(|_| ()),
            ),
        ),
        (
            "LeaveGroup",
            code(
                groups
                    .leave_group(authed(
                        v1::LeaveGroupRequest {
                            group_id: group_id.into(),
                        },
                        token,
                    ))
                    .await
                    .map(|_| ()),
            ),
        ),
    ]
}

fn all(code: Code) -> Vec<(&'static str, Code)> {
    [
        "SendMessage",
        "ListMessages",
        "SendTyping",
        "Subscribe",
        "Chat",
        "ListMembers",
        "ListGroups",
        "LeaveGroup",
    ]
    .into_iter()
    .map(|rpc| (rpc, code))
    .collect()
}

#[tokio::test]
async fn removing_a_member_ends_their_streams_at_once_and_refuses_their_token_everywhere() {
    let app = spawn_app().await;
    let owner = app.register("Olga").await;
    let group = app.create_group(&owner.access_token, "Rustaceans").await;
    let max = app.join(&group.id, "Max").await;
    let ann = app.join(&group.id, "Ann").await;
    let max_id = max.member.clone().unwrap().id;

    let mut max_chat = ChatClient::open(&app, &max.member_token, &group.id, None)
        .await
        .unwrap();
    let mut max_sub = chat(&app)
        .subscribe(authed(
            v1::SubscribeRequest {
                group_id: group.id.clone(),
                since: None,
            },
            &max.member_token,
        ))
        .await
        .unwrap()
        .into_inner();
    let mut ann_chat = ChatClient::open(&app, &ann.member_token, &group.id, None)
        .await
        .unwrap();

    let removed = remove(&app, &owner.access_token, &group.id, &max_id, false)
        .await
        .unwrap();
    assert_eq!(removed.member.unwrap().id, max_id);
    assert!(removed.ban.is_none());

    let ended = max_chat.end_status().await;
    assert_eq!(ended.code(), Code::PermissionDenied, "{ended:?}");
    assert_eq!(ended.message(), "removed from the group");
    let ended = loop {
        match tokio::time::timeout(WAIT, max_sub.message())
            .await
            .expect("the subscription ends within 5 s")
        {
            Ok(Some(_)) => continue,
            Ok(None) => panic!("ended without a status"),
            Err(status) => break status,
        }
    };
    assert_eq!(ended.code(), Code::PermissionDenied, "{ended:?}");

    let seen = ann_chat
        .next_where(|e| match e {
            Event::MemberRemoved(r) => Some(r),
            _ => None,
        })
        .await;
    assert_eq!(seen.member.unwrap().id, max_id);
    assert!(!seen.left);

    assert_eq!(
        codes_for(&app, &max.member_token, &group.id).await,
        all(Code::PermissionDenied)
    );
    let names: Vec<String> = members(&app, &owner.access_token, &group.id)
        .await
        .unwrap()
        .into_iter()
        .map(|m| m.name)
        .collect();
    assert_eq!(names, ["Olga", "Ann"]);
    // Ann is untouched.
    ann_chat.send_and_ack("a-1", "still here").await;

    // Removing someone who is not a member (any more) is NOT_FOUND; the owner cannot go.
    expect_code(
        remove(&app, &owner.access_token, &group.id, &max_id, false).await,
        Code::NotFound,
    );
    let owner_id = owner.user.unwrap().id;
    expect_code(
        remove(&app, &owner.access_token, &group.id, &owner_id, false).await,
        Code::FailedPrecondition,
    );
    // Without a ban, the person may come back, as a new member.
    let back = app.join(&group.id, "Max").await;
    assert_ne!(back.member.unwrap().id, max_id);
}

#[tokio::test]
async fn a_ban_holds_across_rejoins_in_any_case_spelling_or_token() {
    let app = spawn_app().await;
    let owner = app.register("Olga").await;
    let group = app.create_group(&owner.access_token, "Rustaceans").await;
    // Precomposed ë.
    let zoe = app.join(&group.id, "Zo\u{eb}").await;
    let zoe_id = zoe.member.clone().unwrap().id;
    let removed = remove(&app, &owner.access_token, &group.id, &zoe_id, true)
        .await
        .unwrap();
    let ban = removed.ban.expect("a ban");
    assert_eq!(ban.name, "Zo\u{eb}");
    assert!(!ban.account_banned);

    for name in [
        "Zo\u{eb}",
        "ZO\u{cb}",
        "  zo\u{eb}  ",
        // e + combining diaeresis (NFD).
        "Zoe\u{308}",
        // Full-width letters.
        "\u{ff3a}\u{ff4f}\u{eb}",
    ] {
        let refused = expect_code(
            join_as(&app, None, &group.id, name, "1234").await,
            Code::PermissionDenied,
        );
        assert_eq!(
            refused.message(),
            "You are banned from this group.",
            "{name:?}"
        );
    }
    // Her old member token does not bring her back either.
    expect_code(
        join_as(&app, Some(&zoe.member_token), &group.id, "Zo\u{eb}", "1234").await,
        Code::PermissionDenied,
    );

    let bans = app
        .groups()
        .list_bans(authed(
            v1::ListBansRequest {
                group_id: group.id.clone(),
            },
            &owner.access_token,
        ))
        .await
        .unwrap()
        .into_inner()
        .bans;
    assert_eq!(bans, std::slice::from_ref(&ban));

    // A member cannot see or lift bans.
    let other = app.join(&group.id, "Max").await;
    expect_code(
        app.groups()
            .unban_member(authed(
                v1::UnbanMemberRequest {
                    group_id: group.id.clone(),
                    ban_id: ban.id.clone(),
                },
                &other.member_token,
            ))
            .await,
        Code::PermissionDenied,
    );
    app.groups()
        .unban_member(authed(
            v1::UnbanMemberRequest {
                group_id: group.id.clone(),
                ban_id: ban.id.clone(),
            },
            &owner.access_token,
        ))
        .await
        .unwrap();
    join_as(&app, None, &group.id, "Zoe\u{308}", "1234")
        .await
        .expect("unbanned");
}

#[tokio::test]
async fn a_banned_account_cannot_rejoin_under_another_name() {
    let app = spawn_app().await;
    let owner = app.register("Olga").await;
    let group = app.create_group(&owner.access_token, "Rustaceans").await;
    let sam = app.register("Sam").await;
    let joined = join_as(&app, Some(&sam.access_token), &group.id, "Sam", "1234")
        .await
        .unwrap();
    let ban = remove(
        &app,
        &owner.access_token,
        &group.id,
        &joined.member.unwrap().id,
        true,
    )
    .await
    .unwrap()
    .ban
    .unwrap();
    assert!(ban.account_banned);
    let refused = expect_code(
        join_as(&app, Some(&sam.access_token), &group.id, "Samuel", "1234").await,
        Code::PermissionDenied,
    );
    assert_eq!(refused.message(), "You are banned from this group.");
}

#[tokio::test]
async fn revoking_member_tokens_ends_member_streams_and_needs_the_new_passcode() {
    let app = spawn_app().await;
    let owner = app.register("Olga").await;
    let group = app.create_group(&owner.access_token, "Rustaceans").await;
    let max = app.join(&group.id, "Max").await;
    let max_id = max.member.clone().unwrap().id;
    let mut max_chat = ChatClient::open(&app, &max.member_token, &group.id, None)
        .await
        .unwrap();
    let mut owner_chat = ChatClient::open(&app, &owner.access_token, &group.id, None)
        .await
        .unwrap();

    let update = |revoke_members, passcode: Option<&str>| {
        let mut groups = app.groups();
        let request = authed(
            v1::UpdateGroupRequest {
                group_id: group.id.clone(),
                title: None,
                passcode: passcode.map(str::to_owned),
                revoke_members,
            },
            &owner.access_token,
        );
        async move { groups.update_group(request).await.map(|r| r.into_inner()) }
    };
    expect_code(update(true, None).await, Code::InvalidArgument);
    let updated = update(true, Some("5678")).await.unwrap();
    assert_eq!(updated.revoked_members, 1);

    let ended = max_chat.end_status().await;
    assert_eq!(ended.code(), Code::Unauthenticated, "{ended:?}");
    assert_eq!(
        codes_for(&app, &max.member_token, &group.id).await,
        all(Code::Unauthenticated)
    );
    // The owner's stream stays open.
    owner_chat.send_and_ack("o-1", "still open").await;

    // Back in with the new passcode, as the same member.
    expect_code(
        join_as(&app, Some(&max.member_token), &group.id, "Max", "1234").await,
        Code::PermissionDenied,
    );
    let again = join_as(&app, Some(&max.member_token), &group.id, "Max", "5678")
        .await
        .unwrap();
    assert_eq!(again.member.unwrap().id, max_id);
    chat(&app)
        .send_message(authed(
            v1::SendMessageRequest {
                group_id: group.id.clone(),
                client_message_id: "m-1".into(),
                body: "back".into(),
            },
            &again.member_token,
        ))
        .await
        .expect("the new token works");
}

#[tokio::test]
async fn leaving_ends_the_members_streams_and_tells_the_room() {
    let app = spawn_app().await;
    let owner = app.register("Olga").await;
    let group = app.create_group(&owner.access_token, "Rustaceans").await;
    let max = app.join(&group.id, "Max").await;
    let mut max_chat = ChatClient::open(&app, &max.member_token, &group.id, None)
        .await
        .unwrap();
    let mut owner_chat = ChatClient::open(&app, &owner.access_token, &group.id, None)
        .await
        .unwrap();

    app.groups()
        .leave_group(authed(
            v1::LeaveGroupRequest {
                group_id: group.id.clone(),
            },
            &max.member_token,
        ))
        .await
        .unwrap();
    let ended = max_chat.end_status().await;
    assert_eq!(
        (ended.code(), ended.message()),
        (Code::PermissionDenied, "you left the group")
    );
    let seen = owner_chat
        .next_where(|e| match e {
            Event::MemberRemoved(r) => Some(r),
            _ => None,
        })
        .await;
    assert!(seen.left);
    assert_eq!(seen.member.unwrap().name, "Max");
    assert_eq!(
        codes_for(&app, &max.member_token, &group.id).await,
        all(Code::PermissionDenied)
    );
    expect_code(
        app.groups()
            .leave_group(authed(
                v1::LeaveGroupRequest {
                    group_id: group.id.clone(),
                },
                &owner.access_token,
            ))
            .await,
        Code::FailedPrecondition,
    );
}

#[tokio::test]
async fn a_signed_in_user_is_one_member_on_every_device_and_lists_owned_and_joined_groups() {
    let app = spawn_app().await;
    let owner = app.register("Olga").await;
    let group = app.create_group(&owner.access_token, "Rustaceans").await;
    let sam = app.register("Sam").await;
    let own = app.create_group(&sam.access_token, "Sam's own").await;

    let first = join_as(&app, Some(&sam.access_token), &group.id, "Sam", "1234")
        .await
        .unwrap();
    // Another device: a new session of the same account, another name typed.
    let sam_email = sam.user.clone().unwrap().email;
    let second_session =
        quickchat_proto::v1::auth_service_client::AuthServiceClient::new(app.channel.clone())
            .login(v1::LoginRequest {
                email: sam_email,
                password: "correct horse".into(),
            })
            .await
            .unwrap()
            .into_inner()
            .session
            .unwrap();
    let second = join_as(
        &app,
        Some(&second_session.access_token),
        &group.id,
        "Samuel",
        "1234",
    )
    .await
    .unwrap();
    let (a, b) = (first.member.unwrap(), second.member.unwrap());
    assert_eq!(a.id, b.id, "the same member");
    assert_eq!(b.name, "Sam", "under the name it first joined with");
    assert_eq!(
        members(&app, &owner.access_token, &group.id)
            .await
            .unwrap()
            .len(),
        2
    );

    let listed: Vec<(String, i32)> = app
        .groups()
        .list_groups(authed(v1::ListGroupsRequest::default(), &sam.access_token))
        .await
        .unwrap()
        .into_inner()
        .groups
        .into_iter()
        .map(|g| (g.id, g.role))
        .collect();
    assert_eq!(
        listed,
        [
            (own.id.clone(), v1::MemberRole::Owner as i32),
            (group.id.clone(), v1::MemberRole::Member as i32),
        ]
    );
    // A member token lists its own group.
    let anon = app.join(&group.id, "Max").await;
    let listed = app
        .groups()
        .list_groups(authed(v1::ListGroupsRequest::default(), &anon.member_token))
        .await
        .unwrap()
        .into_inner()
        .groups;
    assert_eq!(listed.len(), 1);
    assert_eq!(
        (
            listed[0].id.as_str(),
            listed[0].role,
            listed[0].owner_name.as_str()
        ),
        (group.id.as_str(), v1::MemberRole::Member as i32, "Olga")
    );
    // The owner does not join their own group.
    expect_code(
        join_as(&app, Some(&owner.access_token), &group.id, "Olga2", "1234").await,
        Code::FailedPrecondition,
    );
}

#[tokio::test]
async fn list_members_says_who_is_online_and_each_ones_role() {
    let app = spawn_app().await;
    let owner = app.register("Olga").await;
    let group = app.create_group(&owner.access_token, "Rustaceans").await;
    let max = app.join(&group.id, "Max").await;
    app.join(&group.id, "Ann").await;
    let _max_chat = ChatClient::open(&app, &max.member_token, &group.id, None)
        .await
        .unwrap();
    let listed: Vec<(String, i32, bool)> = members(&app, &max.member_token, &group.id)
        .await
        .unwrap()
        .into_iter()
        .map(|m| (m.name, m.role, m.online))
        .collect();
    assert_eq!(
        listed,
        [
            ("Olga".to_owned(), v1::MemberRole::Owner as i32, false),
            ("Max".to_owned(), v1::MemberRole::Member as i32, true),
            ("Ann".to_owned(), v1::MemberRole::Member as i32, false),
        ]
    );
}

#[tokio::test]
async fn a_removed_member_racing_rejoins_never_keeps_access() {
    let app = spawn_app().await;
    let owner = app.register("Olga").await;
    let group = app.create_group(&owner.access_token, "Rustaceans").await;
    let max = app.join(&group.id, "Max").await;
    let max_id = max.member.clone().unwrap().id;

    // Rejoins with Max's token while the owner removes and bans him.
    let rejoins: Vec<_> = (0..8)
        .map(|_| {
            let channel = app.channel.clone();
            let (token, group_id) = (max.member_token.clone(), group.id.clone());
            tokio::spawn(async move {
                GroupServiceClient::new(channel)
                    .join_group(authed(join_request(&group_id, "Max", "1234"), &token))
                    .await
                    .map(|r| r.into_inner().member_token)
            })
        })
        .collect();
    remove(&app, &owner.access_token, &group.id, &max_id, true)
        .await
        .unwrap();
    let mut tokens = vec![max.member_token.clone()];
    for rejoin in rejoins {
        if let Ok(token) = rejoin.await.unwrap() {
            tokens.push(token);
        }
    }
    // Whatever each rejoin got, nothing it got opens the group now.
    for token in &tokens {
        assert_eq!(
            codes_for(&app, token, &group.id).await,
            all(Code::PermissionDenied)
        );
    }
    let names: Vec<String> = members(&app, &owner.access_token, &group.id)
        .await
        .unwrap()
        .into_iter()
        .map(|m| m.name)
        .collect();
    assert_eq!(names, ["Olga"]);
}

#[tokio::test]
async fn a_revocation_racing_streams_being_opened_leaves_none_open() {
    let app = spawn_app().await;
    let owner = app.register("Olga").await;
    let group = app.create_group(&owner.access_token, "Rustaceans").await;
    let max = app.join(&group.id, "Max").await;

    let opens: Vec<_> = (0..8)
        .map(|_| {
            let channel = app.channel.clone();
            let (token, group_id) = (max.member_token.clone(), group.id.clone());
            tokio::spawn(async move { ChatClient::open_on(channel, &token, &group_id, None).await })
        })
        .collect();
    app.groups()
        .update_group(authed(
            v1::UpdateGroupRequest {
                group_id: group.id.clone(),
                title: None,
                passcode: Some("5678".into()),
                revoke_members: true,
            },
            &owner.access_token,
        ))
        .await
        .unwrap();
    for open in opens {
        match open.await.unwrap() {
            // Opened before the revocation: it ends.
            Ok(mut stream) => {
                let ended = stream.end_status().await;
                assert_eq!(ended.code(), Code::Unauthenticated, "{ended:?}");
            }
            Err(status) => assert_eq!(status.code(), Code::Unauthenticated, "{status:?}"),
        }
    }
}
