//! AdminService: what this node is doing, for the operators `--admin-email` names.

use std::time::SystemTime;

use quickchat_proto::v1;
use quickchat_proto::v1::admin_service_server::AdminService;
use tonic::{Request, Response, Status};
use tracing::instrument;

use super::SharedState;
use crate::error::ApiError;

#[derive(Clone)]
pub struct AdminApi {
    state: SharedState,
    admins: Vec<String>,
    description: String,
    started_at: SystemTime,
}

impl AdminApi {
    /// `admins`: the emails whose accounts may call; `description`: the node's startup line.
    pub fn new(state: SharedState, admins: &[String], description: String) -> Self {
        Self {
            state,
            admins: admins.iter().map(|e| e.trim().to_lowercase()).collect(),
            description,
            started_at: SystemTime::now(),
        }
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
        let counters = hub.metrics().snapshot();
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
        Ok(v1::GetOverviewResponse {
            node: Some(v1::NodeOverview {
                version: env!("CARGO_PKG_VERSION").to_owned(),
                description: self.description.clone(),
                started_at: Some(prost_types::Timestamp::from(self.started_at)),
                open_streams: counters.open_streams,
                messages_sent: counters.messages_sent,
                messages_delivered: counters.messages_delivered,
                messages_persisted: counters.messages_persisted,
            }),
            rooms,
        })
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
