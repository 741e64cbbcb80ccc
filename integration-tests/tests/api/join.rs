//! Joining by passcode without an account, member tokens, and the passcode lock-out.

use quickchat_proto::v1;
use tonic::Code;
use uuid::Uuid;

use crate::helpers::{authed, expect_code, join_request, spawn_app};

#[tokio::test]
async fn joining_returns_a_member_and_a_token_for_that_group() {
    let app = spawn_app().await;
    let owner = app.register("Olga").await;
    let group = app.create_group(&owner.access_token, "Rustaceans").await;

    let joined = app.join(&group.id, "  Max  ").await;
    let member = joined.member.clone().unwrap();
    assert_eq!(member.name, "Max");
    assert_eq!(member.group_id, group.id);
    assert_eq!(member.role, v1::MemberRole::Member as i32);
    assert_eq!(joined.group.unwrap(), group);
    assert!(!joined.member_token.is_empty());

    // Joining again from the same device (presenting the member token) is the same member.
    let again = app
        .groups()
        .join_group(authed(
            join_request(&group.id, "Max", "1234"),
            &joined.member_token,
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(again.member.unwrap().id, member.id);

    let members = app
        .groups()
        .list_members(authed(
            v1::ListMembersRequest {
                group_id: group.id.clone(),
            },
            &joined.member_token,
        ))
        .await
        .unwrap()
        .into_inner()
        .members;
    let listed: Vec<(String, i32)> = members.iter().map(|m| (m.name.clone(), m.role)).collect();
    assert_eq!(
        listed,
        [
            ("Olga".to_owned(), v1::MemberRole::Owner as i32),
            ("Max".to_owned(), v1::MemberRole::Member as i32)
        ]
    );
    assert!(members.iter().all(|m| m.joined_at.is_some()));

    // The owner's access token opens the member list too.
    app.groups()
        .list_members(authed(
            v1::ListMembersRequest {
                group_id: group.id.clone(),
            },
            &owner.access_token,
        ))
        .await
        .unwrap();
}

#[tokio::test]
async fn a_member_token_opens_its_group_and_no_other() {
    let app = spawn_app().await;
    let owner = app.register("Olga").await;
    let a = app.create_group(&owner.access_token, "Group A").await;
    let b = app.create_group(&owner.access_token, "Group B").await;
    let member_of_a = app.join(&a.id, "Max").await;
    let stranger = app.register("Sam").await;

    expect_code(
        app.groups()
            .list_members(authed(
                v1::ListMembersRequest {
                    group_id: b.id.clone(),
                },
                &member_of_a.member_token,
            ))
            .await,
        Code::PermissionDenied,
    );
    expect_code(
        app.groups()
            .list_members(authed(
                v1::ListMembersRequest {
                    group_id: a.id.clone(),
                },
                &stranger.access_token,
            ))
            .await,
        Code::PermissionDenied,
    );
    expect_code(
        app.groups()
            .list_members(v1::ListMembersRequest {
                group_id: a.id.clone(),
            })
            .await,
        Code::Unauthenticated,
    );
}

#[tokio::test]
async fn bad_join_requests_are_rejected_clearly() {
    let app = spawn_app().await;
    let owner = app.register("Olga").await;
    let group = app.create_group(&owner.access_token, "Rustaceans").await;

    expect_code(
        app.groups()
            .join_group(join_request(&Uuid::new_v4().to_string(), "Max", "1234"))
            .await,
        Code::NotFound,
    );
    let status = expect_code(
        app.groups()
            .join_group(join_request(&group.id, " ", "1234"))
            .await,
        Code::InvalidArgument,
    );
    assert_eq!(status.message(), "Name must not be empty.");
    expect_code(
        app.groups()
            .join_group(join_request("not-a-uuid", "Max", "1234"))
            .await,
        Code::InvalidArgument,
    );
    let status = expect_code(
        app.groups()
            .join_group(join_request(&group.id, "Max", "4321"))
            .await,
        Code::PermissionDenied,
    );
    assert_eq!(status.message(), "Wrong passcode.");
}

#[tokio::test]
async fn five_wrong_passcodes_lock_the_group_for_that_client() {
    let app = spawn_app().await;
    let owner = app.register("Olga").await;
    let group = app.create_group(&owner.access_token, "Rustaceans").await;
    let other = app.create_group(&owner.access_token, "Other group").await;

    for _ in 0..5 {
        expect_code(
            app.groups()
                .join_group(join_request(&group.id, "Max", "0000"))
                .await,
            Code::PermissionDenied,
        );
    }
    // Locked out now, even with the right passcode.
    let status = expect_code(
        app.groups()
            .join_group(join_request(&group.id, "Max", "1234"))
            .await,
        Code::ResourceExhausted,
    );
    assert!(
        status.message().contains("Too many wrong passcodes"),
        "{}",
        status.message()
    );
    // Other groups are unaffected.
    app.groups()
        .join_group(join_request(&other.id, "Max", "1234"))
        .await
        .unwrap();
}

fn join_from(
    group_id: &str,
    passcode: &str,
    forwarded_for: &str,
) -> tonic::Request<v1::JoinGroupRequest> {
    let mut request = tonic::Request::new(join_request(group_id, "Max", passcode));
    request
        .metadata_mut()
        .insert("x-forwarded-for", forwarded_for.parse().unwrap());
    request
}

#[tokio::test]
async fn behind_a_trusted_proxy_the_lock_out_is_per_client_not_per_proxy() {
    let app =
        crate::helpers::spawn_app_with(|s| s.client_ip_header = Some("x-forwarded-for".into()))
            .await;
    let owner = app.register("Olga").await;
    let group = app.create_group(&owner.access_token, "Rustaceans").await;

    for _ in 0..5 {
        expect_code(
            app.groups()
                .join_group(join_from(&group.id, "0000", "198.51.100.7"))
                .await,
            Code::PermissionDenied,
        );
    }
    expect_code(
        app.groups()
            .join_group(join_from(&group.id, "1234", "198.51.100.7"))
            .await,
        Code::ResourceExhausted,
    );
    // A client cannot escape by prepending an address of its choice: the proxy's entry is last.
    expect_code(
        app.groups()
            .join_group(join_from(&group.id, "1234", "203.0.113.9, 198.51.100.7"))
            .await,
        Code::ResourceExhausted,
    );
    // Everyone else behind the same proxy can still join.
    app.groups()
        .join_group(join_from(&group.id, "1234", "203.0.113.9"))
        .await
        .unwrap();
}

#[tokio::test]
async fn without_a_trusted_proxy_forwarded_headers_are_ignored() {
    let app = spawn_app().await;
    let owner = app.register("Olga").await;
    let group = app.create_group(&owner.access_token, "Rustaceans").await;
    for i in 0..5 {
        let spoofed = format!("198.51.100.{i}");
        expect_code(
            app.groups()
                .join_group(join_from(&group.id, "0000", &spoofed))
                .await,
            Code::PermissionDenied,
        );
    }
    expect_code(
        app.groups()
            .join_group(join_from(&group.id, "1234", "203.0.113.9"))
            .await,
        Code::ResourceExhausted,
    );
}
