//! The operators' view of a cluster: whichever node answers, it lists every node with what
//! that node is doing, and a node that stops drops out.

use std::time::Duration;

use quickchat_proto::v1::{self, admin_service_client::AdminServiceClient};
use tokio::time::Instant;

use crate::helpers::{authed, create_group_on, join_on};
use crate::nodes::ClusterEnv;
use crate::process::ServerProcess;
use crate::traffic::channel_to;

/// Two report intervals and some.
const WITHIN: Duration = Duration::from_secs(15);

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn any_node_shows_every_node_and_a_stopped_one_drops_out() {
    let env = ClusterEnv::new().await;
    let mut args = env.args();
    args.extend(["--admin-email".to_owned(), "ops@example.com".to_owned()]);
    let a = ServerProcess::start(&args);
    let mut b = ServerProcess::start(&args);
    let (on_a, on_b) = (channel_to(&a).await, channel_to(&b).await);

    let ops = quickchat_proto::v1::auth_service_client::AuthServiceClient::new(on_a.clone())
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
    // A stream open on node B only.
    let owner = crate::helpers::register_on(&on_b, "Olga").await;
    let group = create_group_on(&on_b, &owner.access_token, "Ops room").await;
    let ann = join_on(&on_b, &group.id, "Ann").await;
    let _stream =
        crate::chat_client::ChatClient::open_on(on_b.clone(), &ann.member_token, &group.id, None)
            .await
            .unwrap();

    let overview_from_a = || {
        let (channel, token) = (on_a.clone(), ops.access_token.clone());
        async move {
            AdminServiceClient::new(channel)
                .get_overview(authed(v1::GetOverviewRequest {}, &token))
                .await
                .unwrap()
                .into_inner()
        }
    };
    let deadline = Instant::now() + WITHIN;
    let nodes = loop {
        let overview = overview_from_a().await;
        let nodes = overview.nodes;
        let b_busy = nodes.iter().any(|n| n.open_streams == 1 && n.rooms == 1);
        if nodes.len() == 2 && b_busy {
            assert_eq!(
                nodes[0].node_id,
                overview.node.unwrap().node_id,
                "the answering node comes first"
            );
            break nodes;
        }
        assert!(
            Instant::now() < deadline,
            "node A never showed both nodes with B's stream: {nodes:?}"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    assert_ne!(nodes[0].node_id, nodes[1].node_id);
    assert!(nodes.iter().all(|n| n.description.contains("listening on")));

    // Node B stops: it leaves the list once its last report is stale.
    b.stop();
    let stopped = Instant::now();
    let deadline =
        stopped + quickchat_service::api::REPORT_STALE + quickchat_service::api::REPORT_EVERY;
    while overview_from_a().await.nodes.len() != 1 {
        assert!(
            Instant::now() < deadline,
            "node B still listed {:?} after it stopped",
            stopped.elapsed()
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}
