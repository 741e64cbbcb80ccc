//! What "members are people" needs from the schema:
//! - `group_members.user_id`: the account a member joined signed in with (none for a member
//!   who joined by link alone), unique per group, so the same account joining from another
//!   device is the same member.
//! - `group_members.token_version`: member tokens carry it; a token is valid only while it
//!   matches, so revoking a group's member tokens is one `UPDATE … + 1`.
//! - `group_bans`: names (folded the way `group_members.name_key` is) and accounts that may
//!   not join a group again until the owner lifts the ban.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum GroupMembers {
    Table,
    GroupId,
    UserId,
    TokenVersion,
}

#[derive(DeriveIden)]
enum ChatGroups {
    Table,
    Id,
}

#[derive(DeriveIden)]
enum GroupBans {
    Table,
    Id,
    GroupId,
    /// The banned member's display name, as it was.
    Name,
    /// The name folded for comparison (`MemberName::key`).
    NameKey,
    /// The banned member's account, if they joined signed in.
    UserId,
    CreatedAt,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        // One column per statement: SQLite alters one thing at a time.
        manager
            .alter_table(
                Table::alter()
                    .table(GroupMembers::Table)
                    .add_column(ColumnDef::new(GroupMembers::UserId).uuid().null())
                    .to_owned(),
            )
            .await?;
        manager
            .alter_table(
                Table::alter()
                    .table(GroupMembers::Table)
                    .add_column(
                        ColumnDef::new(GroupMembers::TokenVersion)
                            .big_integer()
                            .not_null()
                            .default(0),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("group_members_group_id_user_id_key")
                    .table(GroupMembers::Table)
                    .col(GroupMembers::GroupId)
                    .col(GroupMembers::UserId)
                    .unique()
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("group_members_user_id_idx")
                    .table(GroupMembers::Table)
                    .col(GroupMembers::UserId)
                    .to_owned(),
            )
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(GroupBans::Table)
                    .col(
                        ColumnDef::new(GroupBans::Id)
                            .uuid()
                            .not_null()
                            .primary_key(),
                    )
                    .col(ColumnDef::new(GroupBans::GroupId).uuid().not_null())
                    .col(ColumnDef::new(GroupBans::Name).string_len(64).not_null())
                    .col(ColumnDef::new(GroupBans::NameKey).text().not_null())
                    .col(ColumnDef::new(GroupBans::UserId).uuid().null())
                    .col(
                        ColumnDef::new(GroupBans::CreatedAt)
                            .timestamp_with_time_zone()
                            .not_null(),
                    )
                    .foreign_key(
                        ForeignKey::create()
                            .name("group_bans_group_id_fkey")
                            .from(GroupBans::Table, GroupBans::GroupId)
                            .to(ChatGroups::Table, ChatGroups::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("group_bans_group_id_name_key_key")
                    .table(GroupBans::Table)
                    .col(GroupBans::GroupId)
                    .col(GroupBans::NameKey)
                    .unique()
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(GroupBans::Table).to_owned())
            .await?;
        for index in [
            "group_members_user_id_idx",
            "group_members_group_id_user_id_key",
        ] {
            manager
                .drop_index(
                    Index::drop()
                        .name(index)
                        .table(GroupMembers::Table)
                        .to_owned(),
                )
                .await?;
        }
        for column in [GroupMembers::TokenVersion, GroupMembers::UserId] {
            manager
                .alter_table(
                    Table::alter()
                        .table(GroupMembers::Table)
                        .drop_column(column)
                        .to_owned(),
                )
                .await?;
        }
        Ok(())
    }
}
