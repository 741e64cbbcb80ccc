//! `group create|list|show|update|delete|members|leave|kick|unban|bans` (the dashboard)
//! and `join`.

use std::io::IsTerminal;

use quickchat_proto::v1;
use serde::Serialize;

use super::{confirm, parse_group_ref, prompt_secret, read_secret_from_stdin};
use crate::args::{GroupArg, GroupCommand, JoinArgs};
use crate::client::{Client, shell_word, to_datetime, with_token};
use crate::config::Membership;
use crate::error::CliError;
use crate::output::{BanView, GroupView, MemberView, Output};

pub async fn run(
    client: &mut Client,
    command: GroupCommand,
    output: Output,
) -> Result<(), CliError> {
    match command {
        GroupCommand::Create { title, passcode } => create(client, title, passcode, output).await,
        GroupCommand::List => list(client, output).await,
        GroupCommand::Show(GroupArg { group }) => show(client, &group, output).await,
        GroupCommand::Update {
            group,
            title,
            passcode,
            revoke_members,
        } => update(client, &group, title, passcode, revoke_members, output).await,
        GroupCommand::Delete { group, yes } => delete(client, &group, yes, output).await,
        GroupCommand::Members(GroupArg { group }) => members(client, &group, output).await,
        GroupCommand::Leave(GroupArg { group }) => leave(client, &group, output).await,
        GroupCommand::Kick { group, member, ban } => {
            kick(client, &group, &member, ban, output).await
        }
        GroupCommand::Unban { group, ban } => unban(client, &group, &ban, output).await,
        GroupCommand::Bans(GroupArg { group }) => bans(client, &group, output).await,
    }
}

fn group_of(group: Option<v1::Group>, client: &Client) -> Result<GroupView, CliError> {
    let group = group.ok_or_else(|| CliError::Server("the server sent no group".into()))?;
    let link = client.share_link(&group.id);
    Ok(GroupView::new(group, link))
}

async fn create(
    client: &mut Client,
    title: String,
    passcode: String,
    output: Output,
) -> Result<(), CliError> {
    let groups = client.groups();
    let response = client
        .as_user(|token| {
            let mut groups = groups.clone();
            let request = v1::CreateGroupRequest {
                title: title.clone(),
                passcode: passcode.clone(),
            };
            async move { groups.create_group(with_token(request, &token)).await }
        })
        .await?
        .into_inner();
    let group = group_of(response.group, client)?;
    client.store_mut().update(|c| {
        c.owned_groups.insert(group.id.clone(), group.title.clone());
    })?;
    output.emit(&group, || {
        format!(
            "Created group {:?}\n  id:         {}\n  share link: {}\nShare the link and the passcode; open the room with `quickchat chat {}`.",
            group.title, group.id, group.share_link, group.id
        )
    });
    Ok(())
}

/// The groups we own or joined: the signed-in account's (owned and joined), then those
/// this device holds a member token of.
async fn list(client: &mut Client, output: Output) -> Result<(), CliError> {
    let mut all = Vec::new();
    let memberships = client.store().get().memberships;
    // Signed in, or with nothing else to show (then the "not logged in" error says what
    // to do).
    if client.store().session().is_some() || memberships.is_empty() {
        all = account_groups(client).await?;
    }
    for (group_id, membership) in memberships {
        if all.iter().any(|g: &GroupView| g.id == group_id) {
            continue;
        }
        let request = v1::ListGroupsRequest {
            page_size: 1,
            page_token: String::new(),
        };
        match client
            .groups()
            .list_groups(with_token(request, &membership.token))
            .await
        {
            Ok(response) => {
                for group in response.into_inner().groups {
                    all.push(group_of(Some(group), client)?);
                }
            }
            Err(status) => match CliError::from(status) {
                // A member who left, was removed or revoked: say so, list the rest.
                err @ (CliError::Auth(_) | CliError::NotFound(_)) => output.note(format!(
                    "warning: you are no longer in {:?} ({group_id}): {err}",
                    membership.group_title
                )),
                err => return Err(err),
            },
        }
    }
    all.sort_by(|a, b| b.created_at.cmp(&a.created_at).then(b.id.cmp(&a.id)));
    if all.is_empty() && !output.is_json() {
        output.note(
            "You have no groups yet. Create one: quickchat group create --title 'Book club' --passcode s3cret",
        );
    }
    for group in &all {
        output.emit(group, || group.row());
    }
    Ok(())
}

/// Every group the signed-in account owns or joined, with its role.
async fn account_groups(client: &mut Client) -> Result<Vec<GroupView>, CliError> {
    let groups = client.groups();
    let mut page_token = String::new();
    let mut all = Vec::new();
    loop {
        let response = client
            .as_user(|token| {
                let mut groups = groups.clone();
                let request = v1::ListGroupsRequest {
                    page_size: 100,
                    page_token: page_token.clone(),
                };
                async move { groups.list_groups(with_token(request, &token)).await }
            })
            .await?
            .into_inner();
        for group in response.groups {
            all.push(group_of(Some(group), client)?);
        }
        if response.next_page_token.is_empty() {
            break;
        }
        page_token = response.next_page_token;
    }
    client.store_mut().update(|c| {
        c.owned_groups = all
            .iter()
            .filter(|g| g.role == Some("owner"))
            .map(|g| (g.id.clone(), g.title.clone()))
            .collect();
    })?;
    Ok(all)
}

async fn get_group(client: &Client, group_id: &str) -> Result<GroupView, CliError> {
    let response = client
        .groups()
        .get_group(v1::GetGroupRequest {
            group_id: group_id.to_owned(),
        })
        .await?
        .into_inner();
    group_of(response.group, client)
}

async fn show(client: &mut Client, group: &str, output: Output) -> Result<(), CliError> {
    let group_id = parse_group_ref(group)?;
    let group = get_group(client, &group_id).await?;
    output.emit(&group, || group.card());
    Ok(())
}

async fn update(
    client: &mut Client,
    group: &str,
    title: Option<String>,
    passcode: Option<String>,
    revoke_members: bool,
    output: Output,
) -> Result<(), CliError> {
    let group_id = parse_group_ref(group)?;
    let groups = client.groups();
    let response = client
        .as_user(|token| {
            let mut groups = groups.clone();
            let request = v1::UpdateGroupRequest {
                group_id: group_id.clone(),
                title: title.clone(),
                passcode: passcode.clone(),
                revoke_members,
            };
            async move { groups.update_group(with_token(request, &token)).await }
        })
        .await?
        .into_inner();
    let group = group_of(response.group, client)?;
    let updated = Updated {
        group,
        revoked_members: response.revoked_members,
    };
    let group = &updated.group;
    output.emit(&updated, || {
        let mut changed = Vec::new();
        if title.is_some() {
            changed.push("title");
        }
        if passcode.is_some() {
            changed.push("passcode");
        }
        let revoked = if revoke_members {
            format!(
                "\nRevoked the member tokens of {} member(s): they join again with the new passcode.",
                updated.revoked_members
            )
        } else {
            String::new()
        };
        format!(
            "Updated the {} of {}.{revoked}\n{}",
            changed.join(" and "),
            group.id,
            group.card()
        )
    });
    Ok(())
}

#[derive(Serialize)]
struct Updated {
    #[serde(flatten)]
    group: GroupView,
    revoked_members: u32,
}

#[derive(Serialize)]
struct Deleted {
    id: String,
    deleted: bool,
}

async fn delete(
    client: &mut Client,
    group: &str,
    yes: bool,
    output: Output,
) -> Result<(), CliError> {
    let group_id = parse_group_ref(group)?;
    if !yes {
        if !std::io::stdin().is_terminal() {
            return Err(CliError::usage(
                "refusing to delete without confirmation: pass --yes",
            ));
        }
        let card = get_group(client, &group_id).await?;
        let question = format!(
            "Delete {:?} ({}) with all its members and messages?",
            card.title, card.id
        );
        if !confirm(&question)? {
            return Err(CliError::usage("not deleted"));
        }
    }
    let groups = client.groups();
    client
        .as_user(|token| {
            let mut groups = groups.clone();
            let request = v1::DeleteGroupRequest {
                group_id: group_id.clone(),
            };
            async move { groups.delete_group(with_token(request, &token)).await }
        })
        .await?;
    client.store_mut().update(|c| {
        c.memberships.remove(&group_id);
        c.owned_groups.remove(&group_id);
    })?;
    output.emit(
        &Deleted {
            id: group_id.clone(),
            deleted: true,
        },
        || format!("Deleted group {group_id}."),
    );
    Ok(())
}

async fn members(client: &mut Client, group: &str, output: Output) -> Result<(), CliError> {
    let group_id = parse_group_ref(group)?;
    let groups = client.groups();
    let response = client
        .as_group(&group_id, |token| {
            let mut groups = groups.clone();
            let request = v1::ListMembersRequest {
                group_id: group_id.clone(),
            };
            async move { groups.list_members(with_token(request, &token)).await }
        })
        .await?
        .into_inner();
    for member in response.members {
        let member = MemberView::from(member);
        output.emit(&member, || member.row());
    }
    Ok(())
}

#[derive(Serialize)]
struct Left {
    group_id: String,
    left: bool,
}

async fn leave(client: &mut Client, group: &str, output: Output) -> Result<(), CliError> {
    let group_id = parse_group_ref(group)?;
    let groups = client.groups();
    client
        .as_group(&group_id, |token| {
            let mut groups = groups.clone();
            let request = v1::LeaveGroupRequest {
                group_id: group_id.clone(),
            };
            async move { groups.leave_group(with_token(request, &token)).await }
        })
        .await?;
    if client.store().membership(&group_id).is_some() {
        client.store_mut().update(|c| {
            c.memberships.remove(&group_id);
        })?;
    }
    output.emit(
        &Left {
            group_id: group_id.clone(),
            left: true,
        },
        || format!("Left group {group_id}."),
    );
    Ok(())
}

/// A member id, or the member called `member` (ignoring case), as the owner sees the list.
async fn resolve_member(
    client: &mut Client,
    group_id: &str,
    member: &str,
) -> Result<String, CliError> {
    if uuid::Uuid::parse_str(member).is_ok() {
        return Ok(member.to_owned());
    }
    let groups = client.groups();
    let listed = client
        .as_user(|token| {
            let mut groups = groups.clone();
            let request = v1::ListMembersRequest {
                group_id: group_id.to_owned(),
            };
            async move { groups.list_members(with_token(request, &token)).await }
        })
        .await?
        .into_inner()
        .members;
    let wanted = fold(member);
    let found = listed
        .into_iter()
        .find(|m| fold(&m.name) == wanted)
        .ok_or_else(|| {
            CliError::NotFound(format!(
                "no member called {} in group {group_id} (see `quickchat group members {group_id}`)",
                shell_word(member)
            ))
        })?;
    if found.role == v1::MemberRole::Owner as i32 {
        return Err(CliError::usage(
            "that is the group's owner, who cannot be removed",
        ));
    }
    Ok(found.id)
}

/// A name as names are compared: case and spacing ignored.
fn fold(name: &str) -> String {
    name.split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
        .to_lowercase()
}

#[derive(Serialize)]
struct Kicked {
    member: MemberView,
    #[serde(skip_serializing_if = "Option::is_none")]
    ban: Option<BanView>,
}

async fn kick(
    client: &mut Client,
    group: &str,
    member: &str,
    ban: bool,
    output: Output,
) -> Result<(), CliError> {
    let group_id = parse_group_ref(group)?;
    let member_id = resolve_member(client, &group_id, member).await?;
    let groups = client.groups();
    let response = client
        .as_user(|token| {
            let mut groups = groups.clone();
            let request = v1::RemoveMemberRequest {
                group_id: group_id.clone(),
                member_id: member_id.clone(),
                ban,
            };
            async move { groups.remove_member(with_token(request, &token)).await }
        })
        .await?
        .into_inner();
    let kicked = Kicked {
        member: MemberView::from(response.member.unwrap_or_default()),
        ban: response.ban.map(BanView::from),
    };
    output.emit(&kicked, || {
        let mut text = format!("Removed {} from group {group_id}.", kicked.member.name);
        if let Some(ban) = &kicked.ban {
            text.push_str(&format!(
                " Banned {}: they cannot join again until `quickchat group unban {group_id} {}`.",
                if ban.account_banned {
                    "the name and the account"
                } else {
                    "the name"
                },
                shell_word(&ban.name)
            ));
        }
        text
    });
    Ok(())
}

async fn list_bans(client: &mut Client, group_id: &str) -> Result<Vec<v1::Ban>, CliError> {
    let groups = client.groups();
    Ok(client
        .as_user(|token| {
            let mut groups = groups.clone();
            let request = v1::ListBansRequest {
                group_id: group_id.to_owned(),
            };
            async move { groups.list_bans(with_token(request, &token)).await }
        })
        .await?
        .into_inner()
        .bans)
}

async fn bans(client: &mut Client, group: &str, output: Output) -> Result<(), CliError> {
    let group_id = parse_group_ref(group)?;
    let bans = list_bans(client, &group_id).await?;
    if bans.is_empty() && !output.is_json() {
        output.note("Nobody is banned from this group.");
    }
    for ban in bans {
        let ban = BanView::from(ban);
        output.emit(&ban, || ban.row());
    }
    Ok(())
}

#[derive(Serialize)]
struct Unbanned {
    ban: BanView,
    unbanned: bool,
}

async fn unban(
    client: &mut Client,
    group: &str,
    ban: &str,
    output: Output,
) -> Result<(), CliError> {
    let group_id = parse_group_ref(group)?;
    let wanted = fold(ban);
    let found = list_bans(client, &group_id)
        .await?
        .into_iter()
        .find(|b| b.id == ban || fold(&b.name) == wanted)
        .ok_or_else(|| {
            CliError::NotFound(format!(
                "no ban of {} in group {group_id} (see `quickchat group bans {group_id}`)",
                shell_word(ban)
            ))
        })?;
    let groups = client.groups();
    client
        .as_user(|token| {
            let mut groups = groups.clone();
            let request = v1::UnbanMemberRequest {
                group_id: group_id.clone(),
                ban_id: found.id.clone(),
            };
            async move { groups.unban_member(with_token(request, &token)).await }
        })
        .await?;
    let unbanned = Unbanned {
        ban: BanView::from(found),
        unbanned: true,
    };
    output.emit(&unbanned, || {
        format!(
            "Lifted the ban of {} in group {group_id}.",
            unbanned.ban.name
        )
    });
    Ok(())
}

#[derive(Serialize)]
struct Joined {
    group: GroupView,
    member_id: String,
    name: String,
    token_expires_at: Option<chrono::DateTime<chrono::Utc>>,
}

pub async fn join(client: &mut Client, args: JoinArgs, output: Output) -> Result<(), CliError> {
    let group_id = parse_group_ref(&args.group)?;
    let passcode = match (args.passcode, args.passcode_stdin) {
        (Some(passcode), _) => passcode,
        (None, true) => read_secret_from_stdin("passcode")?,
        (None, false) => prompt_secret("Passcode: ", "passcode", "--passcode-stdin or --passcode")?,
    };
    let request = v1::JoinGroupRequest {
        group_id: group_id.clone(),
        name: args.name,
        passcode,
    };
    // Rejoining from this device: the member token proves we are that member (a name
    // alone never does; the server refuses a taken name). Signed in: the member is linked
    // to the account, and the same account is the same member on every device.
    let request = match client.store().membership(&group_id) {
        Some(membership) => with_token(request, &membership.token),
        None if client.store().session().is_some() => {
            with_token(request, &client.access_token().await?)
        }
        None => tonic::Request::new(request),
    };
    let response = client.groups().join_group(request).await?.into_inner();
    let member = response.member.unwrap_or_default();
    let group = group_of(response.group, client)?;
    let expires_at = to_datetime(response.member_token_expires_at.as_ref());
    let membership = Membership {
        member_id: member.id.clone(),
        name: member.name.clone(),
        group_title: group.title.clone(),
        token: response.member_token,
        expires_at,
    };
    client.store_mut().update(|c| {
        c.memberships.insert(group_id.clone(), membership);
    })?;
    let joined = Joined {
        group,
        member_id: member.id,
        name: member.name,
        token_expires_at: expires_at,
    };
    output.emit(&joined, || {
        format!(
            "Joined {:?} as {}.\nOpen the room with: quickchat chat {}",
            joined.group.title,
            shell_word(&joined.name),
            joined.group.id
        )
    });
    Ok(())
}
