//! The QuickChat schema as sea-orm migrations, applied on startup to SQLite (embedded
//! default) and PostgreSQL alike. Every table uses portable column types; ids are UUIDs.

pub use sea_orm_migration::prelude::*;

mod m20261125_000001_initial;
mod m20261126_000002_abuse_limits;
mod m20261127_000003_member_identity;
mod m20261127_000004_node_reports;

/// Runs every migration in order; `Migrator::up(&db, None)` brings a database up to date.
pub struct Migrator;

#[async_trait::async_trait]
impl MigratorTrait for Migrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        vec![
            Box::new(m20261125_000001_initial::Migration),
            Box::new(m20261126_000002_abuse_limits::Migration),
            Box::new(m20261127_000003_member_identity::Migration),
            Box::new(m20261127_000004_node_reports::Migration),
        ]
    }
}
