//! GroupService dashboard calls: create, list, get, update, delete, and who may do each.

use quickchat_proto::v1;
use quickchat_service::store::{group_members, messages};
use sea_orm::{
    ActiveModelTrait, ActiveValue::Set, ColumnTrait, EntityTrait, PaginatorTrait, QueryFilter,
};
use tonic::Code;
use uuid::Uuid;

use crate::helpers::{authed, expect_code, field_violations, spawn_app};

#[tokio::test]
async fn create_validates_with_the_original_messages() {
    let app = spawn_app().await;
    let owner = app.register("Olga").await;
    let status = expect_code(
        app.groups()
            .create_group(authed(
                v1::CreateGroupRequest {
                    title: "abc".into(),
                    passcode: "12".into(),
                },
                &owner.access_token,
            ))
            .await,
        Code::InvalidArgument,
    );
    assert_eq!(
        field_violations(&status),
        [
            (
                "title".to_owned(),
                "Chat title must be at least 4 characters long.".to_owned()
            ),
            (
                "passcode".to_owned(),
                "Chat passcode must be at least 4 characters long.".to_owned()
            ),
        ]
    );
    let too_long = "x".repeat(192);
    let status = expect_code(
        app.groups()
            .create_group(authed(
                v1::CreateGroupRequest {
                    title: too_long,
                    passcode: "p".repeat(26),
                },
                &owner.access_token,
            ))
            .await,
        Code::InvalidArgument,
    );
    assert_eq!(field_violations(&status).len(), 2);
}

#[tokio::test]
async fn creating_a_group_needs_a_signed_in_user() {
    let app = spawn_app().await;
    let request = v1::CreateGroupRequest {
        title: "Rustaceans".into(),
        passcode: "1234".into(),
    };
    expect_code(
        app.groups().create_group(request.clone()).await,
        Code::Unauthenticated,
    );

    // A member token (no account) cannot create groups either.
    let owner = app.register("Olga").await;
    let group = app.create_group(&owner.access_token, "Rustaceans").await;
    let member = app.join(&group.id, "Max").await;
    expect_code(
        app.groups()
            .create_group(authed(request, &member.member_token))
            .await,
        Code::Unauthenticated,
    );
}

#[tokio::test]
async fn a_group_has_a_random_id_and_a_public_card() {
    let app = spawn_app().await;
    let owner = app.register("Olga").await;
    let group = app
        .create_group(&owner.access_token, "  Rustaceans  ")
        .await;
    assert_eq!(group.title, "Rustaceans");
    assert_eq!(group.owner_name, "Olga");
    let id: Uuid = group.id.parse().unwrap();
    assert_eq!(id.get_version_num(), 4, "share links must not be guessable");

    // Anyone may read the card; it is exactly what was created.
    let card = app
        .groups()
        .get_group(v1::GetGroupRequest {
            group_id: group.id.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(card.group.unwrap(), group);

    expect_code(
        app.groups()
            .get_group(v1::GetGroupRequest {
                group_id: Uuid::new_v4().to_string(),
            })
            .await,
        Code::NotFound,
    );
    expect_code(
        app.groups()
            .get_group(v1::GetGroupRequest {
                group_id: "nope".into(),
            })
            .await,
        Code::InvalidArgument,
    );
}

#[tokio::test]
async fn list_shows_only_my_groups_newest_first_in_pages() {
    let app = spawn_app().await;
    let me = app.register("Olga").await;
    let someone_else = app.register("Pete").await;
    app.create_group(&someone_else.access_token, "Not mine")
        .await;
    let mut created = Vec::new();
    for i in 0..5 {
        created.push(
            app.create_group(&me.access_token, &format!("Group {i}"))
                .await
                .id,
        );
    }
    created.reverse();

    let mut seen = Vec::new();
    let mut page_token = String::new();
    loop {
        let page = app
            .groups()
            .list_groups(authed(
                v1::ListGroupsRequest {
                    page_size: 2,
                    page_token: page_token.clone(),
                },
                &me.access_token,
            ))
            .await
            .unwrap()
            .into_inner();
        assert!(page.groups.len() <= 2);
        seen.extend(page.groups.into_iter().map(|g| g.id));
        if page.next_page_token.is_empty() {
            break;
        }
        page_token = page.next_page_token;
    }
    assert_eq!(seen, created);

    expect_code(
        app.groups()
            .list_groups(authed(
                v1::ListGroupsRequest {
                    page_size: 2,
                    page_token: "garbage".into(),
                },
                &me.access_token,
            ))
            .await,
        Code::InvalidArgument,
    );
}

#[tokio::test]
async fn only_the_owner_can_update_a_group() {
    let app = spawn_app().await;
    let owner = app.register("Olga").await;
    let intruder = app.register("Ivan").await;
    let group = app.create_group(&owner.access_token, "Rustaceans").await;
    let member = app.join(&group.id, "Max").await;

    let rename = |token: &str| {
        authed(
            v1::UpdateGroupRequest {
                group_id: group.id.clone(),
                title: Some("Hijacked".into()),
                passcode: None,
                revoke_members: false,
            },
            token,
        )
    };
    expect_code(
        app.groups()
            .update_group(rename(&intruder.access_token))
            .await,
        Code::PermissionDenied,
    );
    expect_code(
        app.groups()
            .update_group(rename(&member.member_token))
            .await,
        Code::PermissionDenied,
    );
    expect_code(
        app.groups()
            .update_group(v1::UpdateGroupRequest {
                group_id: group.id.clone(),
                title: Some("Nope".into()),
                passcode: None,
                revoke_members: false,
            })
            .await,
        Code::Unauthenticated,
    );

    let updated = app
        .groups()
        .update_group(authed(
            v1::UpdateGroupRequest {
                group_id: group.id.clone(),
                title: Some("Crabs".into()),
                passcode: Some("9999".into()),
                revoke_members: false,
            },
            &owner.access_token,
        ))
        .await
        .unwrap()
        .into_inner()
        .group
        .unwrap();
    assert_eq!(updated.title, "Crabs");

    // The new passcode is the one that works now.
    expect_code(
        app.groups()
            .join_group(v1::JoinGroupRequest {
                group_id: group.id.clone(),
                name: "Zed".into(),
                passcode: "1234".into(),
            })
            .await,
        Code::PermissionDenied,
    );
    app.groups()
        .join_group(v1::JoinGroupRequest {
            group_id: group.id.clone(),
            name: "Zed".into(),
            passcode: "9999".into(),
        })
        .await
        .unwrap();

    let status = expect_code(
        app.groups()
            .update_group(authed(
                v1::UpdateGroupRequest {
                    group_id: group.id.clone(),
                    title: Some("no".into()),
                    passcode: None,
                    revoke_members: false,
                },
                &owner.access_token,
            ))
            .await,
        Code::InvalidArgument,
    );
    assert_eq!(
        status.message(),
        "Chat title must be at least 4 characters long."
    );
    expect_code(
        app.groups()
            .update_group(authed(
                v1::UpdateGroupRequest {
                    group_id: Uuid::new_v4().to_string(),
                    title: Some("Crabs".into()),
                    passcode: None,
                    revoke_members: false,
                },
                &owner.access_token,
            ))
            .await,
        Code::NotFound,
    );
}

#[tokio::test]
async fn only_the_owner_can_delete_and_delete_cascades() {
    let app = spawn_app().await;
    let owner = app.register("Olga").await;
    let intruder = app.register("Ivan").await;
    let group = app.create_group(&owner.access_token, "Rustaceans").await;
    let member = app.join(&group.id, "Max").await;
    let group_id: Uuid = group.id.parse().unwrap();

    // A stored message, as the chat service will write them.
    let store = app.store().await;
    messages::ActiveModel {
        id: Set(Uuid::now_v7()),
        group_id: Set(group_id),
        room_offset: Set(1),
        sender_id: Set(member.member.as_ref().unwrap().id.parse().unwrap()),
        sender_name: Set("Max".into()),
        body: Set("hello".into()),
        client_message_id: Set(None),
        created_at: Set(chrono::Utc::now()),
    }
    .insert(store.connection())
    .await
    .unwrap();

    let delete = |token: &str| {
        authed(
            v1::DeleteGroupRequest {
                group_id: group.id.clone(),
            },
            token,
        )
    };
    expect_code(
        app.groups()
            .delete_group(delete(&intruder.access_token))
            .await,
        Code::PermissionDenied,
    );
    expect_code(
        app.groups()
            .delete_group(delete(&member.member_token))
            .await,
        Code::PermissionDenied,
    );

    app.groups()
        .delete_group(delete(&owner.access_token))
        .await
        .unwrap();

    expect_code(
        app.groups()
            .get_group(v1::GetGroupRequest {
                group_id: group.id.clone(),
            })
            .await,
        Code::NotFound,
    );
    expect_code(
        app.groups().delete_group(delete(&owner.access_token)).await,
        Code::NotFound,
    );
    expect_code(
        app.groups()
            .list_members(authed(
                v1::ListMembersRequest {
                    group_id: group.id.clone(),
                },
                &member.member_token,
            ))
            .await,
        Code::NotFound,
    );
    let db = store.connection();
    let members = group_members::Entity::find()
        .filter(group_members::Column::GroupId.eq(group_id))
        .count(db)
        .await
        .unwrap();
    let stored = messages::Entity::find()
        .filter(messages::Column::GroupId.eq(group_id))
        .count(db)
        .await
        .unwrap();
    assert_eq!(
        (members, stored),
        (0, 0),
        "members and messages go with the group"
    );
}
