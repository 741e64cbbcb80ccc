//! Users, refresh tokens, chat groups, group members and messages, with the indexes the
//! queries need.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum Users {
    Table,
    Id,
    Name,
    Email,
    Provider,
    Subject,
    PasswordHash,
    ImageUrl,
    CreatedAt,
}

#[derive(DeriveIden)]
enum RefreshTokens {
    Table,
    Id,
    UserId,
    FamilyId,
    TokenHash,
    ExpiresAt,
    UsedAt,
    RevokedAt,
    CreatedAt,
}

#[derive(DeriveIden)]
enum ChatGroups {
    Table,
    Id,
    OwnerId,
    Title,
    PasscodeHash,
    CreatedAt,
}

#[derive(DeriveIden)]
enum GroupMembers {
    Table,
    Id,
    GroupId,
    Name,
    CreatedAt,
}

#[derive(DeriveIden)]
enum Messages {
    Table,
    Id,
    GroupId,
    RoomOffset,
    SenderId,
    SenderName,
    Body,
    ClientMessageId,
    CreatedAt,
}

fn uuid_pk<T: IntoIden>(col: T) -> ColumnDef {
    ColumnDef::new(col)
        .uuid()
        .not_null()
        .primary_key()
        .to_owned()
}

fn created_at<T: IntoIden>(col: T) -> ColumnDef {
    ColumnDef::new(col)
        .timestamp_with_time_zone()
        .not_null()
        .to_owned()
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(Users::Table)
                    .col(uuid_pk(Users::Id))
                    .col(ColumnDef::new(Users::Name).string_len(64).not_null())
                    .col(
                        ColumnDef::new(Users::Email)
                            .string_len(191)
                            .null()
                            .unique_key(),
                    )
                    .col(ColumnDef::new(Users::Provider).string_len(64).not_null())
                    .col(ColumnDef::new(Users::Subject).string_len(255).null())
                    .col(ColumnDef::new(Users::PasswordHash).string().null())
                    .col(ColumnDef::new(Users::ImageUrl).text().null())
                    .col(created_at(Users::CreatedAt))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("users_provider_subject_key")
                    .table(Users::Table)
                    .col(Users::Provider)
                    .col(Users::Subject)
                    .unique()
                    .to_owned(),
            )
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(RefreshTokens::Table)
                    .col(uuid_pk(RefreshTokens::Id))
                    .col(ColumnDef::new(RefreshTokens::UserId).uuid().not_null())
                    .col(ColumnDef::new(RefreshTokens::FamilyId).uuid().not_null())
                    .col(
                        ColumnDef::new(RefreshTokens::TokenHash)
                            .string_len(64)
                            .not_null()
                            .unique_key(),
                    )
                    .col(
                        ColumnDef::new(RefreshTokens::ExpiresAt)
                            .timestamp_with_time_zone()
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(RefreshTokens::UsedAt)
                            .timestamp_with_time_zone()
                            .null(),
                    )
                    .col(
                        ColumnDef::new(RefreshTokens::RevokedAt)
                            .timestamp_with_time_zone()
                            .null(),
                    )
                    .col(created_at(RefreshTokens::CreatedAt))
                    .foreign_key(
                        ForeignKey::create()
                            .name("refresh_tokens_user_id_fkey")
                            .from(RefreshTokens::Table, RefreshTokens::UserId)
                            .to(Users::Table, Users::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("refresh_tokens_family_id_idx")
                    .table(RefreshTokens::Table)
                    .col(RefreshTokens::FamilyId)
                    .to_owned(),
            )
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(ChatGroups::Table)
                    .col(uuid_pk(ChatGroups::Id))
                    .col(ColumnDef::new(ChatGroups::OwnerId).uuid().not_null())
                    .col(ColumnDef::new(ChatGroups::Title).string_len(191).not_null())
                    .col(ColumnDef::new(ChatGroups::PasscodeHash).string().not_null())
                    .col(created_at(ChatGroups::CreatedAt))
                    .foreign_key(
                        ForeignKey::create()
                            .name("chat_groups_owner_id_fkey")
                            .from(ChatGroups::Table, ChatGroups::OwnerId)
                            .to(Users::Table, Users::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("chat_groups_owner_id_created_at_idx")
                    .table(ChatGroups::Table)
                    .col(ChatGroups::OwnerId)
                    .col(ChatGroups::CreatedAt)
                    .to_owned(),
            )
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(GroupMembers::Table)
                    .col(uuid_pk(GroupMembers::Id))
                    .col(ColumnDef::new(GroupMembers::GroupId).uuid().not_null())
                    .col(ColumnDef::new(GroupMembers::Name).string_len(64).not_null())
                    .col(created_at(GroupMembers::CreatedAt))
                    .foreign_key(
                        ForeignKey::create()
                            .name("group_members_group_id_fkey")
                            .from(GroupMembers::Table, GroupMembers::GroupId)
                            .to(ChatGroups::Table, ChatGroups::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("group_members_group_id_name_key")
                    .table(GroupMembers::Table)
                    .col(GroupMembers::GroupId)
                    .col(GroupMembers::Name)
                    .unique()
                    .to_owned(),
            )
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(Messages::Table)
                    .col(uuid_pk(Messages::Id))
                    .col(ColumnDef::new(Messages::GroupId).uuid().not_null())
                    .col(
                        ColumnDef::new(Messages::RoomOffset)
                            .big_integer()
                            .not_null(),
                    )
                    .col(ColumnDef::new(Messages::SenderId).uuid().not_null())
                    .col(
                        ColumnDef::new(Messages::SenderName)
                            .string_len(64)
                            .not_null(),
                    )
                    .col(ColumnDef::new(Messages::Body).text().not_null())
                    .col(
                        ColumnDef::new(Messages::ClientMessageId)
                            .string_len(64)
                            .null(),
                    )
                    .col(created_at(Messages::CreatedAt))
                    .foreign_key(
                        ForeignKey::create()
                            .name("messages_group_id_fkey")
                            .from(Messages::Table, Messages::GroupId)
                            .to(ChatGroups::Table, ChatGroups::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("messages_group_id_room_offset_key")
                    .table(Messages::Table)
                    .col(Messages::GroupId)
                    .col(Messages::RoomOffset)
                    .unique()
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("messages_group_id_sender_id_client_message_id_key")
                    .table(Messages::Table)
                    .col(Messages::GroupId)
                    .col(Messages::SenderId)
                    .col(Messages::ClientMessageId)
                    .unique()
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for table in [
            Messages::Table.into_iden(),
            GroupMembers::Table.into_iden(),
            ChatGroups::Table.into_iden(),
            RefreshTokens::Table.into_iden(),
            Users::Table.into_iden(),
        ] {
            manager
                .drop_table(Table::drop().table(table).to_owned())
                .await?;
        }
        Ok(())
    }
}
