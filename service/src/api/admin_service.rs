//! AdminService: what the nodes are doing, for the operators `--admin-email` names.
//!
//! Each node writes its overview of itself to the store every [`REPORT_EVERY`] (one row per
//! node, in the database every node shares), so whichever node answers can list them all;
//! a report older than [`REPORT_STALE`] is a node that stopped.

use std::time::{Duration, SystemTime};

use quickchat_proto::v1;
use quickchat_proto::v1::admin_service_server::AdminService;
use tonic::{Request, Response, Status};
use tracing::instrument;

use super::SharedState;
use crate::error::ApiError;

/// How often a node reports itself.
pub const REPORT_EVERY: Duration = Duration::from_secs(5);
/// How old a node's last report may be before the node is left out.
pub const REPORT_STALE: Duration = Duration::from_secs(20);

#[derive(Clone)]
pub struct AdminApi {
    state: SharedState,
    admins: Vec<String>,
    description: String,
    started_at: SystemTime,
    node_id: String,
}

/// A node's report of itself, as stored.
#[derive(serde::Serialize, serde::Deserialize)]
struct NodeReport {
    version: String,
    description: String,
    started_at: chrono::DateTime<chrono::Utc>,
    open_streams: u64,
    messages_sent: u64,
    messages_delivered: u64,
    messages_persisted: u64,
    rooms: u64,
}

impl AdminApi {
    /// `admins`: the emails whose accounts may call; `description`: the node's startup line.
    pub fn new(state: SharedState, admins: &[String], description: String) -> Self {
        Self {
            state,
            admins: admins.iter().map(|e| e.trim().to_lowercase()).collect(),
            description,
            started_at: SystemTime::now(),
            node_id: uuid::Uuid::new_v4().simple().to_string(),
        }
    }

    /// Reports this node every [`REPORT_EVERY`] until the hub shuts down; not at all when
    /// no operator is listed (nobody could read the reports).
    pub fn spawn_reporter(&self) {
        if self.admins.is_empty() {
            return;
        }
        let api = self.clone();
        tokio::spawn(async move {
            let mut ticks = tokio::time::interval(REPORT_EVERY);
            ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    _ = api.state.chat.stopped() => return,
                    _ = ticks.tick() => {}
                }
                let report = serde_json::to_string(&api.report()).expect("a report encodes");
                if let Err(err) = api.state.store.report_node(&api.node_id, report).await {
                    tracing::debug!(error = %err, "could not report this node to the operators' view");
                }
            }
        });
    }

    fn report(&self) -> NodeReport {
        let hub = &self.state.chat;
        let counters = hub.metrics().snapshot();
        NodeReport {
            version: env!("CARGO_PKG_VERSION").to_owned(),
            description: self.description.clone(),
            started_at: self.started_at.into(),
            open_streams: counters.open_streams,
            messages_sent: counters.messages_sent,
            messages_delivered: counters.messages_delivered,
            messages_persisted: counters.messages_persisted,
            rooms: hub.local_rooms().len() as u64,
        }
    }

    /// Every node's last report; this node's taken now.
    async fn nodes(&self, this: &v1::NodeOverview) -> Result<Vec<v1::NodeOverview>, ApiError> {
        let since = crate::store::now()
            - chrono::Duration::from_std(REPORT_STALE).expect("a short duration");
        let mut nodes = vec![this.clone()];
        for row in self.state.store.node_reports(since).await? {
            if row.node_id == self.node_id {
                continue;
            }
            let Ok(report) = serde_json::from_str::<NodeReport>(&row.report) else {
                tracing::warn!(node = %row.node_id, "unreadable node report");
                continue;
            };
            nodes.push(node_overview(report, row.node_id, row.reported_at));
        }
        Ok(nodes)
    }

    /// The caller, if an operator: `UNAUTHENTICATED` without a valid access token,
    /// `PERMISSION_DENIED` for anyone not listed.
    async fn authorize<T>(&self, request: &Request<T>) -> Result<(), ApiError> {
        let caller = self.state.auth.user(request.metadata())?;
        let user = self
            .state
            .store
            .user_by_id(caller.user_id)
            .await?
            .ok_or_else(|| ApiError::unauthenticated("This account no longer exists."))?;
        let listed = user
            .email
            .as_deref()
            .is_some_and(|email| self.admins.iter().any(|a| *a == email.to_lowercase()));
        if !listed {
            return Err(ApiError::permission_denied(
                "Only the server's operators (--admin-email) can see this.",
            ));
        }
        Ok(())
    }

    async fn overview(&self) -> Result<v1::GetOverviewResponse, ApiError> {
        let hub = &self.state.chat;
        let mut rooms = Vec::new();
        for (group_id, streams) in hub.local_rooms() {
            let title = self
                .state
                .store
                .group(group_id)
                .await?
                .map(|g| g.title)
                .unwrap_or_default();
            let online = hub.presence().online(group_id).await.unwrap_or_default();
            rooms.push(v1::RoomOverview {
                group_id: group_id.to_string(),
                title,
                local_streams: streams as u64,
                online: online
                    .iter()
                    .map(|p| v1::OnlineMember {
                        id: p.id.to_string(),
                        name: p.name.clone(),
                    })
                    .collect(),
            });
        }
        rooms.sort_by(|a, b| {
            b.local_streams
                .cmp(&a.local_streams)
                .then_with(|| a.title.cmp(&b.title))
        });
        let node = node_overview(self.report(), self.node_id.clone(), chrono::Utc::now());
        let nodes = self.nodes(&node).await?;
        Ok(v1::GetOverviewResponse {
            node: Some(node),
            rooms,
            nodes,
        })
    }
}

/// A node's report as the API shows it.
fn node_overview(
    report: NodeReport,
    node_id: String,
    reported_at: chrono::DateTime<chrono::Utc>,
) -> v1::NodeOverview {
    let timestamp =
        |at: chrono::DateTime<chrono::Utc>| prost_types::Timestamp::from(SystemTime::from(at));
    v1::NodeOverview {
        version: report.version,
        description: report.description,
        started_at: Some(timestamp(report.started_at)),
        open_streams: report.open_streams,
        messages_sent: report.messages_sent,
        messages_delivered: report.messages_delivered,
        messages_persisted: report.messages_persisted,
        node_id,
        reported_at: Some(timestamp(reported_at)),
        rooms: report.rooms,
    }
}

#[tonic::async_trait]
impl AdminService for AdminApi {
    #[instrument(skip_all)]
    async fn get_overview(
        &self,
        request: Request<v1::GetOverviewRequest>,
    ) -> Result<Response<v1::GetOverviewResponse>, Status> {
        self.authorize(&request).await?;
        Ok(Response::new(self.overview().await?))
    }
}
