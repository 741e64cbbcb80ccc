//! `node_reports`: each server node writes what it is doing (its AdminService overview of
//! itself) every few seconds, so that any node can show operators the whole cluster. One row
//! per node, replaced in place; a node that stopped reporting is left out once its row is
//! older than a few intervals.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum NodeReports {
    Table,
    NodeId,
    /// The node's overview of itself, as JSON.
    Report,
    ReportedAt,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(NodeReports::Table)
                    .if_not_exists()
                    .col(
                        ColumnDef::new(NodeReports::NodeId)
                            .string_len(64)
                            .not_null()
                            .primary_key(),
                    )
                    .col(ColumnDef::new(NodeReports::Report).text().not_null())
                    .col(
                        ColumnDef::new(NodeReports::ReportedAt)
                            .timestamp_with_time_zone()
                            .not_null(),
                    )
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(NodeReports::Table).to_owned())
            .await
    }
}
