//! What the abuse limits need from the schema:
//! - `dead_letters`: messages the persister could not store, kept with the reason instead of
//!   being retried forever (one poison row must not jam storage for every room) or dropped.
//! - `group_members.name_key`: a member's name folded for comparison (case-insensitive,
//!   whitespace collapsed), unique per group, so a join can never take over an existing
//!   member by typing the same name in another case.

use sea_orm_migration::prelude::*;
use sea_orm_migration::sea_orm::prelude::Uuid;
use sea_orm_migration::sea_orm::{ConnectionTrait, FromQueryResult, Statement};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum DeadLetters {
    Table,
    /// The message's id.
    Id,
    GroupId,
    RoomOffset,
    /// The whole message as JSON (escaped, so it can be stored whatever it holds).
    Payload,
    /// Why the database refused it.
    Reason,
    CreatedAt,
}

#[derive(DeriveIden)]
enum GroupMembers {
    Table,
    Id,
    GroupId,
    NameKey,
}

/// The comparison form of a member name, as `quickchat_service::domain::name_key` makes
/// it (that one also folds compatibility forms; names stored before it were checked
/// against this simpler form only).
fn name_key(name: &str) -> String {
    name.split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
        .to_lowercase()
}

#[derive(FromQueryResult)]
struct MemberRow {
    id: Uuid,
    group_id: Uuid,
    name: String,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(DeadLetters::Table)
                    .col(
                        ColumnDef::new(DeadLetters::Id)
                            .uuid()
                            .not_null()
                            .primary_key(),
                    )
                    .col(ColumnDef::new(DeadLetters::GroupId).uuid().not_null())
                    .col(
                        ColumnDef::new(DeadLetters::RoomOffset)
                            .big_integer()
                            .not_null(),
                    )
                    .col(ColumnDef::new(DeadLetters::Payload).text().not_null())
                    .col(ColumnDef::new(DeadLetters::Reason).text().not_null())
                    .col(
                        ColumnDef::new(DeadLetters::CreatedAt)
                            .timestamp_with_time_zone()
                            .not_null(),
                    )
                    .to_owned(),
            )
            .await?;

        manager
            .alter_table(
                Table::alter()
                    .table(GroupMembers::Table)
                    .add_column(ColumnDef::new(GroupMembers::NameKey).text().null())
                    .to_owned(),
            )
            .await?;
        // Existing members get their key; of names that now collide (only their case
        // differed) the first keeps it and the others keep a key of their own.
        let db = manager.get_connection();
        let backend = manager.get_database_backend();
        let members = MemberRow::find_by_statement(Statement::from_string(
            backend,
            "SELECT id, group_id, name FROM group_members ORDER BY created_at, id",
        ))
        .all(db)
        .await?;
        let mut seen = std::collections::HashSet::new();
        for m in members {
            let mut key = name_key(&m.name);
            if !seen.insert((m.group_id, key.clone())) {
                // Unique by the member's id, whatever the name's length.
                key = format!(
                    "{}#{}",
                    key.chars().take(31).collect::<String>(),
                    m.id.simple()
                );
            }
            let update = Query::update()
                .table(GroupMembers::Table)
                .value(GroupMembers::NameKey, key)
                .and_where(Expr::col(GroupMembers::Id).eq(m.id))
                .to_owned();
            db.execute(&update).await?;
        }
        manager
            .create_index(
                Index::create()
                    .name("group_members_group_id_name_key_key")
                    .table(GroupMembers::Table)
                    .col(GroupMembers::GroupId)
                    .col(GroupMembers::NameKey)
                    .unique()
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_index(
                Index::drop()
                    .name("group_members_group_id_name_key_key")
                    .table(GroupMembers::Table)
                    .to_owned(),
            )
            .await?;
        manager
            .alter_table(
                Table::alter()
                    .table(GroupMembers::Table)
                    .drop_column(GroupMembers::NameKey)
                    .to_owned(),
            )
            .await?;
        manager
            .drop_table(Table::drop().table(DeadLetters::Table).to_owned())
            .await
    }
}
