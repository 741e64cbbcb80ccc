//! The operators' overview (AdminService): only the accounts `--admin-email` lists see it,
//! and it shows the rooms with streams open on this node.

use std::time::Duration;

use quickchat_proto::v1::{
    self, admin_service_client::AdminServiceClient, chat_service_client::ChatServiceClient,
};
use tonic::Code;

use crate::helpers::{authed, expect_code, spawn_app_with};

#[tokio::test]
async fn operators_see_the_rooms_with_open_streams_and_nobody_else_does() {
    let app = spawn_app_with(|s| s.admin_emails = vec!["Ops@Example.com".into()]).await;
    let mut auth = app.auth();
    let ops = auth
        .register(v1::RegisterRequest {
            email: "ops@example.com".into(),
            password: "correct horse".into(),
            name: "Ops".into(),
        })
        .await
        .unwrap()
        .into_inner()
        .session
        .unwrap();
    let owner = app.register("Olga").await;
    let group = app.create_group(&owner.access_token, "Rustaceans").await;
    let ann = app.join(&group.id, "Ann").await;
    let mut admin = AdminServiceClient::new(app.channel.clone());

    // Not an operator: the group's owner, a member, nobody.
    expect_code(
        admin
            .get_overview(authed(v1::GetOverviewRequest {}, &owner.access_token))
            .await,
        Code::PermissionDenied,
    );
    expect_code(
        admin
            .get_overview(authed(v1::GetOverviewRequest {}, &ann.member_token))
            .await,
        Code::Unauthenticated,
    );
    expect_code(
        admin.get_overview(v1::GetOverviewRequest {}).await,
        Code::Unauthenticated,
    );

    // No streams yet: no rooms.
    let overview = admin
        .get_overview(authed(v1::GetOverviewRequest {}, &ops.access_token))
        .await
        .unwrap()
        .into_inner();
    assert!(overview.rooms.is_empty(), "{:?}", overview.rooms);
    let node = overview.node.unwrap();
    assert!(node.description.contains("listening on"));
    // Alone, the node is the whole list.
    assert_eq!(overview.nodes.len(), 1, "{:?}", overview.nodes);
    assert_eq!(overview.nodes[0].node_id, node.node_id);

    // Two streams of Ann's open (two tabs): the room shows them and her online.
    let mut streams = Vec::new();
    for _ in 0..2 {
        let mut stream = ChatServiceClient::new(app.channel.clone())
            .subscribe(authed(
                v1::SubscribeRequest {
                    group_id: group.id.clone(),
                    since: None,
                },
                &ann.member_token,
            ))
            .await
            .unwrap()
            .into_inner();
        let first = stream.message().await.unwrap().unwrap();
        assert!(matches!(
            first.event,
            Some(v1::subscribe_response::Event::Joined(_))
        ));
        streams.push(stream);
    }
    let overview = admin
        .get_overview(authed(v1::GetOverviewRequest {}, &ops.access_token))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(overview.rooms.len(), 1);
    let room = &overview.rooms[0];
    assert_eq!(room.group_id, group.id);
    assert_eq!(room.title, "Rustaceans");
    assert_eq!(room.local_streams, 2);
    assert_eq!(
        room.online
            .iter()
            .map(|m| m.name.as_str())
            .collect::<Vec<_>>(),
        ["Ann"]
    );
    assert_eq!(overview.node.unwrap().open_streams, 2);

    // The streams close: the room leaves the overview.
    drop(streams);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        let overview = admin
            .get_overview(authed(v1::GetOverviewRequest {}, &ops.access_token))
            .await
            .unwrap()
            .into_inner();
        if overview.rooms.is_empty() {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "closed streams still listed: {:?}",
            overview.rooms
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
