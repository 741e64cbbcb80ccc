//! `group create|list|show|update|delete|members` (the dashboard) and `join`.

use std::io::IsTerminal;

use quickchat_proto::v1;
use serde::Serialize;

use super::{confirm, parse_group_ref, prompt_secret, read_secret_from_stdin};
use crate::args::{GroupArg, GroupCommand, JoinArgs};
use crate::client::{Client, shell_word, to_datetime, with_token};
use crate::config::Membership;
use crate::error::CliError;
use crate::output::{GroupView, MemberView, Output};

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
        } => update(client, &group, title, passcode, output).await,
        GroupCommand::Delete { group, yes } => delete(client, &group, yes, output).await,
        GroupCommand::Members(GroupArg { group }) => members(client, &group, output).await,
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
    output.emit(&group, || {
        format!(
            "Created group {:?}\n  id:         {}\n  share link: {}\nShare the link and the passcode; open the room with `quickchat chat {}`.",
            group.title, group.id, group.share_link, group.id
        )
    });
    Ok(())
}

async fn list(client: &mut Client, output: Output) -> Result<(), CliError> {
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
    if all.is_empty() && !output.is_json() {
        output.note(
            "You own no groups yet. Create one: quickchat group create --title 'Book club' --passcode s3cret",
        );
    }
    for group in &all {
        output.emit(group, || group.row());
    }
    Ok(())
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
                revoke_members: false,
            };
            async move { groups.update_group(with_token(request, &token)).await }
        })
        .await?
        .into_inner();
    let group = group_of(response.group, client)?;
    output.emit(&group, || {
        let mut changed = Vec::new();
        if title.is_some() {
            changed.push("title");
        }
        if passcode.is_some() {
            changed.push("passcode");
        }
        format!(
            "Updated the {} of {}.\n{}",
            changed.join(" and "),
            group.id,
            group.card()
        )
    });
    Ok(())
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
    if client.store().membership(&group_id).is_some() {
        client.store_mut().update(|c| {
            c.memberships.remove(&group_id);
        })?;
    }
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
    // alone never does; the server refuses a taken name).
    let request = match client.store().membership(&group_id) {
        Some(membership) => with_token(request, &membership.token),
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
