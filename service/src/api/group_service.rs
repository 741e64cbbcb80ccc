//! `GroupService`: the dashboard (group CRUD for owners) and joining by passcode.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::DateTime;
use quickchat_proto::v1::{self, group_service_server::GroupService};
use tonic::{Request, Response, Status};
use tracing::instrument;
use uuid::Uuid;

use super::{
    ClientAddr, SharedState, group_to_proto, locked_out, member_to_proto, parse_id, timestamp,
};
use crate::auth::{MemberPrincipal, Principal, UserPrincipal};
use crate::domain::{FieldViolation, GroupTitle, MemberName, Passcode, Violations, name_key};
use crate::error::ApiError;
use crate::rate_limit;
use crate::store::{AddMemberError, GroupCursor, GroupWithOwner};

const DEFAULT_PAGE_SIZE: u64 = 20;
const MAX_PAGE_SIZE: u64 = 100;

pub struct GroupApi {
    state: SharedState,
}

fn group_not_found() -> ApiError {
    ApiError::not_found("Group not found.")
}

fn encode_cursor(c: &GroupCursor) -> String {
    URL_SAFE_NO_PAD.encode(format!("{}:{}", c.created_at.timestamp_micros(), c.id))
}

fn decode_cursor(token: &str) -> Result<GroupCursor, ApiError> {
    let bad = || {
        ApiError::invalid(FieldViolation::new(
            "page_token",
            "page_token is not valid.",
        ))
    };
    let raw =
        String::from_utf8(URL_SAFE_NO_PAD.decode(token).map_err(|_| bad())?).map_err(|_| bad())?;
    let (micros, id) = raw.split_once(':').ok_or_else(bad)?;
    Ok(GroupCursor {
        created_at: DateTime::from_timestamp_micros(micros.parse().map_err(|_| bad())?)
            .ok_or_else(bad)?,
        id: Uuid::parse_str(id).map_err(|_| bad())?,
    })
}

impl GroupApi {
    pub fn new(state: SharedState) -> Self {
        Self { state }
    }

    /// The group, if `caller` owns it: `NOT_FOUND` before `PERMISSION_DENIED`.
    async fn owned_group(
        &self,
        caller: &UserPrincipal,
        group_id: Uuid,
    ) -> Result<GroupWithOwner, ApiError> {
        let group = self
            .state
            .store
            .group_with_owner(group_id)
            .await?
            .ok_or_else(group_not_found)?;
        if group.group.owner_id != caller.user_id {
            return Err(ApiError::permission_denied(
                "Only the group's owner can do that.",
            ));
        }
        Ok(group)
    }

    async fn create(
        &self,
        caller: UserPrincipal,
        req: v1::CreateGroupRequest,
    ) -> Result<v1::Group, ApiError> {
        let mut violations = Violations::new();
        let title = violations.check(GroupTitle::parse(&req.title));
        let passcode = violations.check(Passcode::parse(&req.passcode));
        violations.finish()?;
        let (title, passcode) = (title.unwrap(), passcode.unwrap());

        let owner = self
            .state
            .store
            .user_by_id(caller.user_id)
            .await?
            .ok_or_else(|| ApiError::unauthenticated("This account no longer exists."))?;
        let hash = self.state.hasher.hash(passcode.secret()).await?;
        let group = self
            .state
            .store
            .create_group(owner.id, title.as_str(), hash)
            .await?;
        tracing::info!(group_id = %group.id, "group created");
        Ok(group_to_proto(&GroupWithOwner {
            group,
            owner_name: owner.name,
        }))
    }

    async fn list(
        &self,
        caller: UserPrincipal,
        req: v1::ListGroupsRequest,
    ) -> Result<v1::ListGroupsResponse, ApiError> {
        let page_size = match req.page_size {
            0 => DEFAULT_PAGE_SIZE,
            n if n < 0 => {
                return Err(ApiError::invalid(FieldViolation::new(
                    "page_size",
                    "page_size must not be negative.",
                )));
            }
            n => (n as u64).min(MAX_PAGE_SIZE),
        };
        let cursor = match req.page_token.trim() {
            "" => None,
            token => Some(decode_cursor(token)?),
        };
        let (groups, more) = self
            .state
            .store
            .list_groups(caller.user_id, cursor, page_size)
            .await?;
        let next_page_token = match (more, groups.last()) {
            (true, Some(last)) => encode_cursor(&GroupCursor {
                created_at: last.created_at,
                id: last.id,
            }),
            _ => String::new(),
        };
        let owner_name = caller.name;
        Ok(v1::ListGroupsResponse {
            groups: groups
                .into_iter()
                .map(|group| {
                    group_to_proto(&GroupWithOwner {
                        group,
                        owner_name: owner_name.clone(),
                    })
                })
                .collect(),
            next_page_token,
        })
    }

    async fn update(
        &self,
        caller: UserPrincipal,
        req: v1::UpdateGroupRequest,
    ) -> Result<v1::Group, ApiError> {
        let group_id = parse_id("group_id", &req.group_id)?;
        let mut violations = Violations::new();
        let title = req
            .title
            .as_deref()
            .and_then(|t| violations.check(GroupTitle::parse(t)));
        let passcode = req
            .passcode
            .as_deref()
            .and_then(|p| violations.check(Passcode::parse(p)));
        violations.finish()?;

        let GroupWithOwner { group, owner_name } = self.owned_group(&caller, group_id).await?;
        let passcode_hash = match &passcode {
            Some(p) => Some(self.state.hasher.hash(p.secret()).await?),
            None => None,
        };
        let group = self
            .state
            .store
            .update_group(group, title.as_ref().map(GroupTitle::as_str), passcode_hash)
            .await?;
        tracing::info!(%group_id, title_changed = title.is_some(), passcode_changed = passcode.is_some(), "group updated");
        Ok(group_to_proto(&GroupWithOwner { group, owner_name }))
    }

    async fn delete(
        &self,
        caller: UserPrincipal,
        req: v1::DeleteGroupRequest,
    ) -> Result<(), ApiError> {
        let group_id = parse_id("group_id", &req.group_id)?;
        self.owned_group(&caller, group_id).await?;
        if !self.state.store.delete_group(group_id).await? {
            return Err(group_not_found());
        }
        self.state.chat.close_room(group_id).await;
        tracing::info!(%group_id, "group deleted");
        Ok(())
    }

    /// Joins a group by passcode. A rejoin from a device that holds a member token of this
    /// group returns that member; otherwise a new member is created, and a name already
    /// taken in the group (by a member or the owner, ignoring case) is refused: a join can
    /// never take over someone else's identity.
    async fn join(
        &self,
        client: ClientAddr,
        rejoining: Option<MemberPrincipal>,
        req: v1::JoinGroupRequest,
    ) -> Result<v1::JoinGroupResponse, ApiError> {
        let group_id = parse_id("group_id", &req.group_id)?;
        let name = MemberName::parse(&req.name).map_err(ApiError::invalid)?;
        if !self.state.guards.joins.try_acquire(&client) {
            tracing::warn!(%client, "join refused: too many joins from this client");
            return Err(ApiError::ResourceExhausted(
                "Too many joins from your address; try again in a minute.".into(),
            ));
        }
        let group = self
            .state
            .store
            .group_with_owner(group_id)
            .await?
            .ok_or_else(group_not_found)?;

        // At most the limit's worth of guesses is ever being checked at once (see
        // `rate_limit`); a right passcode costs nothing.
        let attempt_key = format!("{group_id}:{client}");
        let attempt = match rate_limit::begin(&self.state.guards.passcode, &attempt_key).await {
            Ok(attempt) => attempt,
            Err(wait) => {
                tracing::warn!(%group_id, %client, "join refused: passcode lock-out");
                return Err(locked_out("Too many wrong passcodes for this group.", wait));
            }
        };
        // An impossible passcode cannot match; it counts as a wrong one.
        let matches = match Passcode::parse(&req.passcode) {
            Ok(passcode) => match self
                .state
                .hasher
                .verify(passcode.secret(), Some(&group.group.passcode_hash))
                .await
            {
                Ok(matches) => matches,
                Err(err) => {
                    // Never checked (the server is busy): no attempt spent.
                    attempt.succeeded().await;
                    return Err(err.into());
                }
            },
            Err(_) => false,
        };
        if !matches {
            attempt.failed().await;
            tracing::info!(%group_id, %client, "wrong group passcode");
            return Err(ApiError::permission_denied("Wrong passcode."));
        }
        attempt.succeeded().await;

        let store = &self.state.store;
        let existing = match rejoining.filter(|m| m.group_id == group_id) {
            Some(m) => store.member(m.member_id).await?,
            None => None,
        };
        let member = match existing {
            Some(member) => member,
            None => {
                let taken = || {
                    ApiError::AlreadyExists(format!(
                        "The name {:?} is already taken in this group; choose another.",
                        name.as_str()
                    ))
                };
                if name_key(&group.owner_name) == name.key() {
                    return Err(taken());
                }
                store
                    .add_member(group_id, &name, self.state.limits.max_members_per_group)
                    .await
                    .map_err(|err| match err {
                        AddMemberError::NameTaken => taken(),
                        AddMemberError::Full => ApiError::ResourceExhausted(
                            "This group is full; no more members can join.".into(),
                        ),
                        AddMemberError::GroupGone => group_not_found(),
                        AddMemberError::Db(db) => db.into(),
                    })?
            }
        };
        let (member_token, expires_at) =
            self.state
                .auth
                .tokens()
                .issue_member(member.id, group_id, &member.name)?;
        tracing::info!(%group_id, member_id = %member.id, "member joined");
        Ok(v1::JoinGroupResponse {
            member: Some(member_to_proto(&member)),
            member_token,
            member_token_expires_at: Some(timestamp(expires_at)),
            group: Some(group_to_proto(&group)),
        })
    }

    async fn members(
        &self,
        caller: Principal,
        req: v1::ListMembersRequest,
    ) -> Result<Vec<v1::Member>, ApiError> {
        let group_id = parse_id("group_id", &req.group_id)?;
        let group = self
            .state
            .store
            .group_with_owner(group_id)
            .await?
            .ok_or_else(group_not_found)?;
        let allowed = match &caller {
            Principal::User(u) => u.user_id == group.group.owner_id,
            Principal::Member(m) => m.group_id == group_id,
        };
        if !allowed {
            return Err(ApiError::permission_denied(
                "Only the group's owner and members can see its members.",
            ));
        }
        let owner = v1::Member {
            id: group.group.owner_id.to_string(),
            group_id: group_id.to_string(),
            name: group.owner_name.clone(),
            joined_at: Some(timestamp(group.group.created_at)),
            role: v1::MemberRole::Owner as i32,
        };
        let members = self.state.store.list_members(group_id).await?;
        Ok(std::iter::once(owner)
            .chain(members.iter().map(member_to_proto))
            .collect())
    }
}

#[tonic::async_trait]
impl GroupService for GroupApi {
    #[instrument(skip_all)]
    async fn create_group(
        &self,
        request: Request<v1::CreateGroupRequest>,
    ) -> Result<Response<v1::CreateGroupResponse>, Status> {
        let caller = self.state.auth.user(request.metadata())?;
        let group = self.create(caller, request.into_inner()).await?;
        Ok(Response::new(v1::CreateGroupResponse {
            group: Some(group),
        }))
    }

    #[instrument(skip_all)]
    async fn list_groups(
        &self,
        request: Request<v1::ListGroupsRequest>,
    ) -> Result<Response<v1::ListGroupsResponse>, Status> {
        let caller = self.state.auth.user(request.metadata())?;
        Ok(Response::new(
            self.list(caller, request.into_inner()).await?,
        ))
    }

    #[instrument(skip_all, fields(group_id = %request.get_ref().group_id))]
    async fn get_group(
        &self,
        request: Request<v1::GetGroupRequest>,
    ) -> Result<Response<v1::GetGroupResponse>, Status> {
        let group_id = parse_id("group_id", &request.get_ref().group_id)?;
        let group = self
            .state
            .store
            .group_with_owner(group_id)
            .await
            .map_err(ApiError::from)?
            .ok_or_else(group_not_found)?;
        Ok(Response::new(v1::GetGroupResponse {
            group: Some(group_to_proto(&group)),
        }))
    }

    #[instrument(skip_all, fields(group_id = %request.get_ref().group_id))]
    async fn update_group(
        &self,
        request: Request<v1::UpdateGroupRequest>,
    ) -> Result<Response<v1::UpdateGroupResponse>, Status> {
        let caller = self.owner_caller(&request)?;
        let group = self.update(caller, request.into_inner()).await?;
        Ok(Response::new(v1::UpdateGroupResponse {
            group: Some(group),
        }))
    }

    #[instrument(skip_all, fields(group_id = %request.get_ref().group_id))]
    async fn delete_group(
        &self,
        request: Request<v1::DeleteGroupRequest>,
    ) -> Result<Response<v1::DeleteGroupResponse>, Status> {
        let caller = self.owner_caller(&request)?;
        self.delete(caller, request.into_inner()).await?;
        Ok(Response::new(v1::DeleteGroupResponse {}))
    }

    #[instrument(skip_all, fields(group_id = %request.get_ref().group_id))]
    async fn join_group(
        &self,
        request: Request<v1::JoinGroupRequest>,
    ) -> Result<Response<v1::JoinGroupResponse>, Status> {
        let client = ClientAddr::of(&request, self.state.client_ip_header.as_deref());
        // A device rejoining presents its member token; anything else joins afresh.
        let rejoining = match self.state.auth.principal(request.metadata()) {
            Ok(Principal::Member(member)) => Some(member),
            _ => None,
        };
        Ok(Response::new(
            self.join(client, rejoining, request.into_inner()).await?,
        ))
    }

    #[instrument(skip_all, fields(group_id = %request.get_ref().group_id))]
    async fn list_members(
        &self,
        request: Request<v1::ListMembersRequest>,
    ) -> Result<Response<v1::ListMembersResponse>, Status> {
        let caller = self.state.auth.principal(request.metadata())?;
        let members = self.members(caller, request.into_inner()).await?;
        Ok(Response::new(v1::ListMembersResponse { members }))
    }
}

impl GroupApi {
    /// Owner-only calls: a member token is valid but never an owner's, so it is refused with
    /// `PERMISSION_DENIED` rather than `UNAUTHENTICATED`.
    fn owner_caller<T>(&self, request: &Request<T>) -> Result<UserPrincipal, ApiError> {
        match self.state.auth.principal(request.metadata())? {
            Principal::User(user) => Ok(user),
            Principal::Member(_) => Err(ApiError::permission_denied(
                "Only the group's owner can do that.",
            )),
        }
    }
}
