//! Removal and revocation across nodes: the member's streams end on every node at once,
//! and every node refuses the token from then on (its cache cleared by the relay event).

use std::time::Duration;

use quickchat_proto::v1::{
    self, chat_response::Event, chat_service_client::ChatServiceClient,
    group_service_client::GroupServiceClient,
};
use tonic::Code;

use crate::chat_client::ChatClient;
use crate::helpers::{authed, create_group_on, join_on, register_on};
use crate::nodes::ClusterEnv;

/// How soon a removal must reach a stream on another node.
const AT_ONCE: Duration = Duration::from_secs(1);

#[tokio::test]
async fn removal_ends_the_members_streams_on_another_node_within_a_second() {
    let env = ClusterEnv::new().await;
    let nodes = env.nodes(3).await;
    let owner = register_on(&nodes[0].channel, "Olga").await;
    let group = create_group_on(&nodes[0].channel, &owner.access_token, "Across nodes").await;
    let max = join_on(&nodes[1].channel, &group.id, "Max").await;
    let ann = join_on(&nodes[2].channel, &group.id, "Ann").await;
    let max_id = max.member.clone().unwrap().id;

    let mut max_chat =
        ChatClient::open_on(nodes[1].channel.clone(), &max.member_token, &group.id, None)
            .await
            .unwrap();
    let mut ann_chat =
        ChatClient::open_on(nodes[2].channel.clone(), &ann.member_token, &group.id, None)
            .await
            .unwrap();
    // Node 2 has just checked (and cached) Max's token.
    let send = |token: &str, id: &str| {
        let mut chat = ChatServiceClient::new(nodes[2].channel.clone());
        let request = authed(
            v1::SendMessageRequest {
                group_id: group.id.clone(),
                client_message_id: id.into(),
                body: "hello".into(),
            },
            token,
        );
        async move { chat.send_message(request).await }
    };
    send(&max.member_token, "m-1").await.expect("Max may send");

    GroupServiceClient::new(nodes[0].channel.clone())
        .remove_member(authed(
            v1::RemoveMemberRequest {
                group_id: group.id.clone(),
                member_id: max_id.clone(),
                ban: false,
            },
            &owner.access_token,
        ))
        .await
        .unwrap();
    let ended = tokio::time::timeout(AT_ONCE, max_chat.end_status())
        .await
        .expect("Max's stream on node 1 ends within a second of the removal");
    assert_eq!(
        (ended.code(), ended.message()),
        (Code::PermissionDenied, "removed from the group")
    );
    let seen = tokio::time::timeout(
        AT_ONCE,
        ann_chat.next_where(|e| match e {
            Event::MemberRemoved(r) => Some(r),
            _ => None,
        }),
    )
    .await
    .expect("Ann on node 2 is told within a second");
    assert_eq!(seen.member.unwrap().id, max_id);
    // Ann's stream on node 2 has seen the event, so node 2's cache has let go of Max.
    let refused = send(&max.member_token, "m-2").await.unwrap_err();
    assert_eq!(refused.code(), Code::PermissionDenied, "{refused:?}");
}

#[tokio::test]
async fn revocation_ends_member_streams_on_every_node() {
    let env = ClusterEnv::new().await;
    let nodes = env.nodes(2).await;
    let owner = register_on(&nodes[0].channel, "Olga").await;
    let group = create_group_on(&nodes[0].channel, &owner.access_token, "Across nodes").await;
    let max = join_on(&nodes[1].channel, &group.id, "Max").await;
    let mut max_chat =
        ChatClient::open_on(nodes[1].channel.clone(), &max.member_token, &group.id, None)
            .await
            .unwrap();
    GroupServiceClient::new(nodes[0].channel.clone())
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
    let ended = tokio::time::timeout(AT_ONCE, max_chat.end_status())
        .await
        .expect("Max's stream on node 1 ends within a second of the revocation");
    assert_eq!(ended.code(), Code::Unauthenticated, "{ended:?}");
}
