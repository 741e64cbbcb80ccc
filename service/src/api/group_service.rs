//! `GroupService`: the dashboard (group CRUD for owners) and joining by passcode.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::DateTime;
use quickchat_proto::v1::{self, group_service_server::GroupService};
use tonic::{Request, Response, Status};
use tracing::instrument;
use uuid::Uuid;

use super::{
    ClientAddr, SharedState, ban_to_proto, group_to_proto, locked_out, member_to_proto, parse_id,
    timestamp,
};
use crate::auth::{Principal, UserPrincipal};
use crate::domain::{FieldViolation, GroupTitle, MemberName, Passcode, Violations, name_key};
use crate::error::ApiError;
use crate::rate_limit;
use crate::room::Participant;
use crate::store::{AddMemberError, GroupCursor, GroupWithOwner, NewMember, group_members};

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
        caller: Principal,
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
        let caller = match caller {
            Principal::User(user) => user,
            // A member token lists its own group: one page, one group.
            Principal::Member(member) => {
                let group = self
                    .state
                    .store
                    .group_with_owner(member.group_id)
                    .await?
                    .ok_or_else(group_not_found)?;
                let groups = match cursor {
                    Some(_) => Vec::new(),
                    None => vec![v1::Group {
                        role: v1::MemberRole::Member as i32,
                        ..group_to_proto(&group)
                    }],
                };
                return Ok(v1::ListGroupsResponse {
                    groups,
                    next_page_token: String::new(),
                });
            }
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
        let owner_names = self
            .state
            .store
            .user_names(
                groups
                    .iter()
                    .map(|g| g.owner_id)
                    .filter(|id| *id != caller.user_id),
            )
            .await?;
        Ok(v1::ListGroupsResponse {
            groups: groups
                .into_iter()
                .map(|group| {
                    let owned = group.owner_id == caller.user_id;
                    let owner_name = if owned {
                        caller.name.clone()
                    } else {
                        owner_names
                            .get(&group.owner_id)
                            .cloned()
                            .unwrap_or_default()
                    };
                    v1::Group {
                        role: if owned {
                            v1::MemberRole::Owner
                        } else {
                            v1::MemberRole::Member
                        } as i32,
                        ..group_to_proto(&GroupWithOwner { group, owner_name })
                    }
                })
                .collect(),
            next_page_token,
        })
    }

    async fn update(
        &self,
        caller: UserPrincipal,
        req: v1::UpdateGroupRequest,
    ) -> Result<v1::UpdateGroupResponse, ApiError> {
        let group_id = parse_id("group_id", &req.group_id)?;
        let mut violations = Violations::new();
        if req.revoke_members && req.passcode.is_none() {
            violations.check::<()>(Err(FieldViolation::new(
                "revoke_members",
                "Revoking member tokens needs a new passcode; members would rejoin with the \
                 old one.",
            )));
        }
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
        let (group, revoked) = self
            .state
            .store
            .update_group(
                group,
                title.as_ref().map(GroupTitle::as_str),
                passcode_hash,
                req.revoke_members,
            )
            .await?;
        tracing::info!(%group_id, title_changed = title.is_some(), passcode_changed = passcode.is_some(), revoked, "group updated");
        if req.revoke_members {
            // The store already refuses the old tokens (within the member cache's ttl on
            // nodes that miss the event); the event ends open streams at once.
            if let Err(err) = self.state.chat.members_revoked(group_id).await {
                tracing::warn!(%group_id, error = %err, "could not announce a revocation");
            }
        }
        Ok(v1::UpdateGroupResponse {
            group: Some(group_to_proto(&GroupWithOwner { group, owner_name })),
            revoked_members: u32::try_from(revoked).unwrap_or(u32::MAX),
        })
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

    /// Joins a group by passcode. A caller presenting a member token of this group (even a
    /// revoked one: it still proves who its member is) rejoins as that member, and a
    /// signed-in caller as the member their account became; anyone else becomes a new
    /// member, and a name already taken in the group (by a member or the owner, compared
    /// by `MemberName::key`) or banned is refused: a join can never take over someone
    /// else's identity.
    async fn join(
        &self,
        client: ClientAddr,
        presented: Option<Principal>,
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
        let account = match &presented {
            Some(Principal::User(user)) if user.user_id == group.group.owner_id => {
                return Err(ApiError::FailedPrecondition(
                    "You own this group; open it with your account instead of joining.".into(),
                ));
            }
            Some(Principal::User(user)) => Some(user.user_id),
            _ => None,
        };

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
        let existing = match (&presented, account) {
            (Some(Principal::Member(m)), _) if m.group_id == group_id => {
                store.member(m.member_id).await?
            }
            (_, Some(user_id)) => store.member_of_user(group_id, user_id).await?,
            _ => None,
        };
        let member = match existing {
            Some(member) => member,
            None => self.add_member(&group, &name, account).await?,
        };
        let (member_token, expires_at) = self.state.auth.tokens().issue_member(
            member.id,
            group_id,
            &member.name,
            member.token_version,
        )?;
        tracing::info!(%group_id, member_id = %member.id, linked = member.user_id.is_some(), "member joined");
        Ok(v1::JoinGroupResponse {
            member: Some(member_to_proto(&member)),
            member_token,
            member_token_expires_at: Some(timestamp(expires_at)),
            group: Some(group_to_proto(&group)),
        })
    }

    /// A new member called `name`, linked to `account` if the caller is signed in.
    async fn add_member(
        &self,
        group: &GroupWithOwner,
        name: &MemberName,
        account: Option<Uuid>,
    ) -> Result<group_members::Model, ApiError> {
        let group_id = group.group.id;
        let taken = || {
            ApiError::AlreadyExists(format!(
                "The name {:?} is already taken in this group; choose another.",
                name.as_str()
            ))
        };
        if name_key(&group.owner_name) == name.key() {
            return Err(taken());
        }
        let store = &self.state.store;
        let added = store
            .add_member(
                NewMember {
                    group_id,
                    name,
                    user_id: account,
                },
                self.state.limits.max_members_per_group,
            )
            .await;
        match added {
            Ok(member) => Ok(member),
            Err(AddMemberError::NameTaken) => match account {
                // The same account joining from two devices at once: one of them made the
                // member, the other is that member too.
                Some(user_id) => store
                    .member_of_user(group_id, user_id)
                    .await?
                    .ok_or_else(taken),
                None => Err(taken()),
            },
            Err(AddMemberError::Banned) => {
                tracing::info!(%group_id, "join refused: banned");
                Err(ApiError::permission_denied(
                    "You are banned from this group.",
                ))
            }
            Err(AddMemberError::Full) => Err(ApiError::ResourceExhausted(
                "This group is full; no more members can join.".into(),
            )),
            Err(AddMemberError::GroupGone) => Err(group_not_found()),
            Err(AddMemberError::Db(db)) => Err(db.into()),
        }
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
            online: false,
        };
        let members = self.state.store.list_members(group_id).await?;
        let online: std::collections::HashSet<Uuid> = self
            .state
            .chat
            .online(group_id)
            .await?
            .into_iter()
            .map(|p| p.id)
            .collect();
        Ok(std::iter::once(owner)
            .chain(members.iter().map(member_to_proto))
            .map(|m| v1::Member {
                online: Uuid::parse_str(&m.id).is_ok_and(|id| online.contains(&id)),
                ..m
            })
            .collect())
    }

    /// The caller leaves the group (a member token of it, or the account that joined it).
    async fn leave(&self, caller: Principal, req: v1::LeaveGroupRequest) -> Result<(), ApiError> {
        let group_id = parse_id("group_id", &req.group_id)?;
        let group = self
            .state
            .store
            .group(group_id)
            .await?
            .ok_or_else(group_not_found)?;
        let member_id = match caller {
            Principal::Member(m) if m.group_id == group_id => m.member_id,
            Principal::Member(_) => {
                return Err(ApiError::permission_denied(
                    "This member token is for another group.",
                ));
            }
            Principal::User(u) if u.user_id == group.owner_id => {
                return Err(ApiError::FailedPrecondition(
                    "The owner cannot leave their group; delete it instead.".into(),
                ));
            }
            Principal::User(u) => {
                self.state
                    .store
                    .member_of_user(group_id, u.user_id)
                    .await?
                    .ok_or_else(|| {
                        ApiError::permission_denied("You are not a member of this group.")
                    })?
                    .id
            }
        };
        let removed = self
            .state
            .store
            .remove_member(group_id, member_id, false)
            .await?
            .ok_or_else(|| ApiError::not_found("You are not a member of this group."))?;
        tracing::info!(%group_id, %member_id, "member left");
        self.announce_removal(&removed.member, true).await;
        Ok(())
    }

    /// Tells every node (their caches, the member's streams, the room).
    async fn announce_removal(&self, member: &group_members::Model, left: bool) {
        let who = Participant {
            id: member.id,
            name: member.name.clone(),
        };
        if let Err(err) = self
            .state
            .chat
            .member_removed(member.group_id, who, left)
            .await
        {
            // The store already refuses the member's tokens; only open streams on other
            // nodes wait for their next check.
            tracing::warn!(group_id = %member.group_id, member_id = %member.id, error = %err, "could not announce a removal");
        }
    }

    async fn remove(
        &self,
        caller: UserPrincipal,
        req: v1::RemoveMemberRequest,
    ) -> Result<v1::RemoveMemberResponse, ApiError> {
        let group_id = parse_id("group_id", &req.group_id)?;
        let group = self.owned_group(&caller, group_id).await?;
        let member_id = parse_id("member_id", &req.member_id)?;
        if member_id == group.group.owner_id {
            return Err(ApiError::FailedPrecondition(
                "The owner cannot be removed from their group.".into(),
            ));
        }
        let removed = self
            .state
            .store
            .remove_member(group_id, member_id, req.ban)
            .await?
            .ok_or_else(|| ApiError::not_found("No such member in this group."))?;
        tracing::info!(%group_id, %member_id, banned = req.ban, "member removed");
        self.announce_removal(&removed.member, false).await;
        Ok(v1::RemoveMemberResponse {
            member: Some(member_to_proto(&removed.member)),
            ban: removed.ban.as_ref().map(ban_to_proto),
        })
    }

    async fn unban(
        &self,
        caller: UserPrincipal,
        req: v1::UnbanMemberRequest,
    ) -> Result<(), ApiError> {
        let group_id = parse_id("group_id", &req.group_id)?;
        self.owned_group(&caller, group_id).await?;
        let ban_id = parse_id("ban_id", &req.ban_id)?;
        if !self.state.store.unban(group_id, ban_id).await? {
            return Err(ApiError::not_found("No such ban in this group."));
        }
        tracing::info!(%group_id, %ban_id, "ban lifted");
        Ok(())
    }

    async fn bans(
        &self,
        caller: UserPrincipal,
        req: v1::ListBansRequest,
    ) -> Result<Vec<v1::Ban>, ApiError> {
        let group_id = parse_id("group_id", &req.group_id)?;
        self.owned_group(&caller, group_id).await?;
        let bans = self.state.store.list_bans(group_id).await?;
        Ok(bans.iter().map(ban_to_proto).collect())
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
        let caller = self.state.auth.principal(request.metadata()).await?;
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
        Ok(Response::new(
            self.update(caller, request.into_inner()).await?,
        ))
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
        // A device rejoining presents its member token, a signed-in user their access
        // token; with neither (or a token that is not valid) the caller joins afresh.
        let presented = self.state.auth.claimed(request.metadata()).ok();
        Ok(Response::new(
            self.join(client, presented, request.into_inner()).await?,
        ))
    }

    #[instrument(skip_all, fields(group_id = %request.get_ref().group_id))]
    async fn list_members(
        &self,
        request: Request<v1::ListMembersRequest>,
    ) -> Result<Response<v1::ListMembersResponse>, Status> {
        let caller = self.state.auth.principal(request.metadata()).await?;
        let members = self.members(caller, request.into_inner()).await?;
        Ok(Response::new(v1::ListMembersResponse { members }))
    }

    #[instrument(skip_all, fields(group_id = %request.get_ref().group_id))]
    async fn leave_group(
        &self,
        request: Request<v1::LeaveGroupRequest>,
    ) -> Result<Response<v1::LeaveGroupResponse>, Status> {
        let caller = self.state.auth.principal(request.metadata()).await?;
        self.leave(caller, request.into_inner()).await?;
        Ok(Response::new(v1::LeaveGroupResponse {}))
    }

    #[instrument(skip_all, fields(group_id = %request.get_ref().group_id))]
    async fn remove_member(
        &self,
        request: Request<v1::RemoveMemberRequest>,
    ) -> Result<Response<v1::RemoveMemberResponse>, Status> {
        let caller = self.owner_caller(&request)?;
        Ok(Response::new(
            self.remove(caller, request.into_inner()).await?,
        ))
    }

    #[instrument(skip_all, fields(group_id = %request.get_ref().group_id))]
    async fn unban_member(
        &self,
        request: Request<v1::UnbanMemberRequest>,
    ) -> Result<Response<v1::UnbanMemberResponse>, Status> {
        let caller = self.owner_caller(&request)?;
        self.unban(caller, request.into_inner()).await?;
        Ok(Response::new(v1::UnbanMemberResponse {}))
    }

    #[instrument(skip_all, fields(group_id = %request.get_ref().group_id))]
    async fn list_bans(
        &self,
        request: Request<v1::ListBansRequest>,
    ) -> Result<Response<v1::ListBansResponse>, Status> {
        let caller = self.owner_caller(&request)?;
        let bans = self.bans(caller, request.into_inner()).await?;
        Ok(Response::new(v1::ListBansResponse { bans }))
    }
}

impl GroupApi {
    /// Owner-only calls: a member token is valid but never an owner's, so it is refused with
    /// `PERMISSION_DENIED` rather than `UNAUTHENTICATED`.
    fn owner_caller<T>(&self, request: &Request<T>) -> Result<UserPrincipal, ApiError> {
        match self.state.auth.claimed(request.metadata())? {
            Principal::User(user) => Ok(user),
            Principal::Member(_) => Err(ApiError::permission_denied(
                "Only the group's owner can do that.",
            )),
        }
    }
}
