//! Persistent state: users, refresh tokens, groups, members and messages.
//!
//! One implementation serves both backends: sea-orm over SQLite (the embedded default, a file
//! under the data directory) or PostgreSQL (`--database-url postgres://…`). Queries use the
//! query builder only, so they are portable; the schema comes from `quickchat-migrations`,
//! applied by [`Store::connect`].

pub mod entities;
mod members;

use chrono::{DateTime, SubsecRound, Utc};
use quickchat_migrations::{Migrator, MigratorTrait};
use sea_orm::sea_query::{Expr, ExprTrait};
use sea_orm::{
    ActiveModelTrait, ActiveValue::Set, ColumnTrait, Condition, ConnectOptions, ConnectionTrait,
    Database, DatabaseConnection, DbErr, EntityTrait, QueryFilter, QueryOrder, QuerySelect, SqlErr,
    TransactionTrait,
};
use uuid::Uuid;

pub use entities::{
    chat_groups, dead_letters, group_bans, group_members, messages, node_reports, refresh_tokens,
    users,
};
pub use members::{AddMemberError, NewMember, RemovedMember};

use crate::room::ChatMessage;

/// The current time as stored: truncated to microseconds, the precision of PostgreSQL's
/// `timestamptz`, so a value read back compares equal to the value written.
pub fn now() -> DateTime<Utc> {
    Utc::now().trunc_subsecs(6)
}

/// Errors a caller can act on; everything else is [`StoreError::Db`].
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// A unique constraint refused the write (e.g. an email already registered).
    #[error("a row with the same unique key already exists")]
    Conflict,
    #[error(transparent)]
    Db(#[from] DbErr),
}

fn classify(err: DbErr) -> StoreError {
    match err.sql_err() {
        Some(SqlErr::UniqueConstraintViolation(_)) => StoreError::Conflict,
        _ => StoreError::Db(err),
    }
}

/// A new account to create.
pub struct NewUser<'a> {
    pub name: &'a str,
    pub email: Option<&'a str>,
    pub provider: &'a str,
    pub subject: Option<&'a str>,
    pub password_hash: Option<String>,
    pub image_url: Option<&'a str>,
}

/// A group together with its owner's display name, which every public view shows.
#[derive(Debug, Clone)]
pub struct GroupWithOwner {
    pub group: chat_groups::Model,
    pub owner_name: String,
}

/// Keyset position in a newest-first listing of groups.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GroupCursor {
    pub created_at: DateTime<Utc>,
    pub id: Uuid,
}

#[derive(Clone)]
pub struct Store {
    db: DatabaseConnection,
    backend: &'static str,
}

impl Store {
    /// Connects to `url` (`sqlite://…?mode=rwc` or `postgres://…`) and applies every pending
    /// migration.
    pub async fn connect(url: &str) -> Result<Self, DbErr> {
        let mut options = ConnectOptions::new(url.to_owned());
        options.sqlx_logging(false);
        let backend = if url.starts_with("sqlite:") {
            // One writer at a time is all SQLite allows; a small pool avoids lock contention.
            // An in-memory database exists per connection, so it gets exactly one.
            options.max_connections(if url.contains(":memory:") { 1 } else { 4 });
            // WAL with synchronous=NORMAL: a commit survives the process crashing (not the
            // machine losing power) and does not wait for an fsync, which would otherwise
            // cap a room at a few dozen acknowledged messages per second.
            options.map_sqlx_sqlite_opts(|opts| {
                opts.journal_mode(sea_orm::sqlx::sqlite::SqliteJournalMode::Wal)
                    .synchronous(sea_orm::sqlx::sqlite::SqliteSynchronous::Normal)
                    .busy_timeout(std::time::Duration::from_secs(5))
            });
            "sqlite"
        } else {
            // A database that cannot be reached makes a request fail with UNAVAILABLE in a
            // few seconds instead of hanging for sqlx's default 30.
            options
                .connect_timeout(std::time::Duration::from_secs(3))
                .acquire_timeout(std::time::Duration::from_secs(3));
            "postgres"
        };
        let db = Database::connect(options).await?;
        if backend == "postgres" {
            migrate_exclusively(url).await?;
        } else {
            // SQLite: one writer at a time already, and an in-memory database is private.
            Migrator::up(&db, None).await?;
        }
        Ok(Self { db, backend })
    }

    /// `"sqlite"` or `"postgres"`.
    pub fn backend(&self) -> &'static str {
        self.backend
    }

    pub fn connection(&self) -> &DatabaseConnection {
        &self.db
    }

    pub async fn close(self) -> Result<(), DbErr> {
        self.db.close().await
    }

    // ----- users -----

    pub async fn create_user(&self, new: NewUser<'_>) -> Result<users::Model, StoreError> {
        users::ActiveModel {
            id: Set(Uuid::new_v4()),
            name: Set(new.name.to_owned()),
            email: Set(new.email.map(str::to_owned)),
            provider: Set(new.provider.to_owned()),
            subject: Set(new.subject.map(str::to_owned)),
            password_hash: Set(new.password_hash),
            image_url: Set(new.image_url.map(str::to_owned)),
            created_at: Set(now()),
        }
        .insert(&self.db)
        .await
        .map_err(classify)
    }

    pub async fn user_by_id(&self, id: Uuid) -> Result<Option<users::Model>, DbErr> {
        users::Entity::find_by_id(id).one(&self.db).await
    }

    pub async fn user_by_email(&self, email: &str) -> Result<Option<users::Model>, DbErr> {
        users::Entity::find()
            .filter(users::Column::Email.eq(email))
            .one(&self.db)
            .await
    }

    pub async fn user_by_subject(
        &self,
        provider: &str,
        subject: &str,
    ) -> Result<Option<users::Model>, DbErr> {
        users::Entity::find()
            .filter(users::Column::Provider.eq(provider))
            .filter(users::Column::Subject.eq(subject))
            .one(&self.db)
            .await
    }

    /// Refreshes the profile fields an identity provider owns.
    pub async fn update_profile(
        &self,
        user: users::Model,
        name: &str,
        email: Option<&str>,
        image_url: Option<&str>,
    ) -> Result<users::Model, StoreError> {
        let mut active: users::ActiveModel = user.into();
        active.name = Set(name.to_owned());
        active.email = Set(email.map(str::to_owned));
        active.image_url = Set(image_url.map(str::to_owned));
        active.update(&self.db).await.map_err(classify)
    }

    // ----- refresh tokens -----

    pub async fn insert_refresh_token(
        &self,
        user_id: Uuid,
        family_id: Uuid,
        token_hash: String,
        expires_at: DateTime<Utc>,
    ) -> Result<refresh_tokens::Model, DbErr> {
        refresh_token_row(user_id, family_id, token_hash, expires_at)
            .insert(&self.db)
            .await
    }

    pub async fn refresh_token_by_hash(
        &self,
        token_hash: &str,
    ) -> Result<Option<refresh_tokens::Model>, DbErr> {
        refresh_tokens::Entity::find()
            .filter(refresh_tokens::Column::TokenHash.eq(token_hash))
            .one(&self.db)
            .await
    }

    /// Trades the refresh token `used` for a new one in the same family, in one
    /// transaction: the old token is marked used only if nobody did first, and nothing is
    /// issued into a family that has been revoked (by a logout, or by a reuse detected in a
    /// concurrent call). Two concurrent refreshes with one token cannot both win, and a
    /// token issued by the winner dies with its family.
    pub async fn rotate_refresh_token(
        &self,
        used: &refresh_tokens::Model,
        new_hash: String,
        expires_at: DateTime<Utc>,
    ) -> Result<Rotation, DbErr> {
        // The claiming UPDATE comes first: it takes the write lock at once (on SQLite a
        // transaction that read first could not upgrade while the persister writes).
        let txn = self.db.begin().await?;
        let claimed = refresh_tokens::Entity::update_many()
            .col_expr(refresh_tokens::Column::UsedAt, Expr::value(now()))
            .filter(refresh_tokens::Column::Id.eq(used.id))
            .filter(refresh_tokens::Column::UsedAt.is_null())
            .filter(refresh_tokens::Column::RevokedAt.is_null())
            .exec(&txn)
            .await?
            .rows_affected
            == 1;
        if !claimed {
            return Ok(Rotation::AlreadyUsed);
        }
        if family_revoked(&txn, used.family_id).await? {
            // Dropping the transaction takes the claim back.
            return Ok(Rotation::FamilyRevoked);
        }
        refresh_token_row(used.user_id, used.family_id, new_hash, expires_at)
            .insert(&txn)
            .await?;
        txn.commit().await?;
        Ok(Rotation::Rotated)
    }

    /// True when any token of the family has been revoked: the whole sign-in is over.
    pub async fn refresh_family_revoked(&self, family_id: Uuid) -> Result<bool, DbErr> {
        family_revoked(&self.db, family_id).await
    }

    /// Revokes every token of a sign-in (a token family). Idempotent.
    pub async fn revoke_refresh_family(&self, family_id: Uuid) -> Result<(), DbErr> {
        refresh_tokens::Entity::update_many()
            .col_expr(refresh_tokens::Column::RevokedAt, Expr::value(now()))
            .filter(refresh_tokens::Column::FamilyId.eq(family_id))
            .filter(refresh_tokens::Column::RevokedAt.is_null())
            .exec(&self.db)
            .await?;
        Ok(())
    }

    // ----- groups -----

    pub async fn create_group(
        &self,
        owner_id: Uuid,
        title: &str,
        passcode_hash: String,
    ) -> Result<chat_groups::Model, DbErr> {
        chat_groups::ActiveModel {
            id: Set(Uuid::new_v4()),
            owner_id: Set(owner_id),
            title: Set(title.to_owned()),
            passcode_hash: Set(passcode_hash),
            created_at: Set(now()),
        }
        .insert(&self.db)
        .await
    }

    pub async fn group(&self, id: Uuid) -> Result<Option<chat_groups::Model>, DbErr> {
        chat_groups::Entity::find_by_id(id).one(&self.db).await
    }

    pub async fn group_with_owner(&self, id: Uuid) -> Result<Option<GroupWithOwner>, DbErr> {
        let Some(group) = self.group(id).await? else {
            return Ok(None);
        };
        let owner_name = self
            .user_by_id(group.owner_id)
            .await?
            .map(|u| u.name)
            .unwrap_or_default();
        Ok(Some(GroupWithOwner { group, owner_name }))
    }

    /// The groups `user_id` owns or joined as a member (signed in), newest first, starting
    /// after `after`. Returns at most `limit` groups and whether more exist.
    pub async fn list_groups(
        &self,
        user_id: Uuid,
        after: Option<GroupCursor>,
        limit: u64,
    ) -> Result<(Vec<chat_groups::Model>, bool), DbErr> {
        let joined = sea_orm::sea_query::Query::select()
            .column(group_members::Column::GroupId)
            .from(group_members::Entity)
            .and_where(group_members::Column::UserId.eq(user_id))
            .to_owned();
        let mut query = chat_groups::Entity::find().filter(
            Condition::any()
                .add(chat_groups::Column::OwnerId.eq(user_id))
                .add(chat_groups::Column::Id.in_subquery(joined)),
        );
        if let Some(cursor) = after {
            query = query.filter(
                Condition::any()
                    .add(chat_groups::Column::CreatedAt.lt(cursor.created_at))
                    .add(
                        Condition::all()
                            .add(chat_groups::Column::CreatedAt.eq(cursor.created_at))
                            .add(chat_groups::Column::Id.lt(cursor.id)),
                    ),
            );
        }
        let mut groups = query
            .order_by_desc(chat_groups::Column::CreatedAt)
            .order_by_desc(chat_groups::Column::Id)
            .limit(limit + 1)
            .all(&self.db)
            .await?;
        let more = groups.len() as u64 > limit;
        groups.truncate(limit as usize);
        Ok((groups, more))
    }

    /// Changes a group's title and/or passcode hash; with `revoke_members`, in the same
    /// transaction, every member token issued so far stops matching its member's
    /// `token_version`. Returns the group and how many members were revoked.
    pub async fn update_group(
        &self,
        group: chat_groups::Model,
        title: Option<&str>,
        passcode_hash: Option<String>,
        revoke_members: bool,
    ) -> Result<(chat_groups::Model, u64), DbErr> {
        if title.is_none() && passcode_hash.is_none() && !revoke_members {
            return Ok((group, 0));
        }
        let group_id = group.id;
        let txn = self.db.begin().await?;
        let mut active: chat_groups::ActiveModel = group.into();
        if let Some(title) = title {
            active.title = Set(title.to_owned());
        }
        if let Some(hash) = passcode_hash {
            active.passcode_hash = Set(hash);
        }
        let group = active.update(&txn).await?;
        let revoked = if revoke_members {
            group_members::Entity::update_many()
                .col_expr(
                    group_members::Column::TokenVersion,
                    Expr::col(group_members::Column::TokenVersion).add(1),
                )
                .filter(group_members::Column::GroupId.eq(group_id))
                .exec(&txn)
                .await?
                .rows_affected
        } else {
            0
        };
        txn.commit().await?;
        Ok((group, revoked))
    }

    /// The display names of these users, by id (for groups listed with their owners).
    pub async fn user_names(
        &self,
        ids: impl IntoIterator<Item = Uuid>,
    ) -> Result<std::collections::HashMap<Uuid, String>, DbErr> {
        let ids: Vec<Uuid> = ids.into_iter().collect();
        if ids.is_empty() {
            return Ok(Default::default());
        }
        Ok(users::Entity::find()
            .filter(users::Column::Id.is_in(ids))
            .all(&self.db)
            .await?
            .into_iter()
            .map(|u| (u.id, u.name))
            .collect())
    }

    /// Deletes a group with its members and messages (explicitly, in one transaction, so the
    /// result does not depend on the backend enforcing foreign-key cascades).
    pub async fn delete_group(&self, id: Uuid) -> Result<bool, DbErr> {
        let txn = self.db.begin().await?;
        messages::Entity::delete_many()
            .filter(messages::Column::GroupId.eq(id))
            .exec(&txn)
            .await?;
        group_members::Entity::delete_many()
            .filter(group_members::Column::GroupId.eq(id))
            .exec(&txn)
            .await?;
        group_bans::Entity::delete_many()
            .filter(group_bans::Column::GroupId.eq(id))
            .exec(&txn)
            .await?;
        let deleted = chat_groups::Entity::delete_by_id(id)
            .exec(&txn)
            .await?
            .rows_affected
            == 1;
        txn.commit().await?;
        Ok(deleted)
    }

    /// Replaces `node_id`'s report of itself (see `api::admin_service`).
    pub async fn report_node(&self, node_id: &str, report: String) -> Result<(), DbErr> {
        node_reports::Entity::insert(node_reports::ActiveModel {
            node_id: Set(node_id.to_owned()),
            report: Set(report),
            reported_at: Set(now()),
        })
        .on_conflict(
            sea_orm::sea_query::OnConflict::column(node_reports::Column::NodeId)
                .update_columns([
                    node_reports::Column::Report,
                    node_reports::Column::ReportedAt,
                ])
                .to_owned(),
        )
        .exec_without_returning(&self.db)
        .await?;
        Ok(())
    }

    /// The reports written since `since`, oldest node first; older ones are deleted (their
    /// nodes stopped reporting).
    pub async fn node_reports(
        &self,
        since: DateTime<Utc>,
    ) -> Result<Vec<node_reports::Model>, DbErr> {
        node_reports::Entity::delete_many()
            .filter(node_reports::Column::ReportedAt.lt(since))
            .exec(&self.db)
            .await?;
        node_reports::Entity::find()
            .order_by_asc(node_reports::Column::NodeId)
            .all(&self.db)
            .await
    }

    /// Whether the database answers (a round trip).
    pub async fn ping(&self) -> Result<(), DbErr> {
        self.db.ping().await
    }

    // ----- messages -----

    /// Offset of the newest stored message of a room (0 when there is none).
    pub async fn last_offset(&self, group_id: Uuid) -> Result<u64, DbErr> {
        let newest = messages::Entity::find()
            .filter(messages::Column::GroupId.eq(group_id))
            .order_by_desc(messages::Column::RoomOffset)
            .one(&self.db)
            .await?;
        Ok(newest.map(|m| m.room_offset as u64).unwrap_or(0))
    }

    /// Stores a batch of messages in one transaction (on PostgreSQL in one statement, the
    /// columns bound as arrays: see [`INSERT_MESSAGES_UNNEST`]). A message already stored
    /// (same id) is skipped, so replays are harmless. If the batch is refused, rows are
    /// retried one by one: a row the database itself refuses (its group was deleted
    /// meanwhile, its offset is taken, or a value it cannot hold) is reported in the result
    /// — and, unless its group is gone, kept in `dead_letters` with the reason — so that one
    /// bad row never blocks the rows after it. Only failures to reach the database are returned as
    /// errors (the caller retries the batch).
    pub async fn insert_messages(
        &self,
        batch: &[std::sync::Arc<ChatMessage>],
    ) -> Result<Vec<Unstored>, DbErr> {
        if batch.is_empty() {
            return Ok(Vec::new());
        }
        let all = if self.backend == "postgres" {
            insert_unnest(self.db.get_postgres_connection_pool(), batch).await
        } else {
            self.insert_chunked(batch).await
        };
        if all.is_ok() {
            return Ok(Vec::new());
        }
        let mut unstored = Vec::new();
        for m in batch {
            let one = messages::Entity::insert(message_row(m))
                .on_conflict_do_nothing_on([messages::Column::Id])
                .exec_without_returning(&self.db)
                .await;
            let err = match one {
                Ok(_) => continue,
                Err(err) if refused_by_database(&err) => err,
                Err(err) => return Err(err),
            };
            let fate = match err.sql_err() {
                Some(SqlErr::ForeignKeyConstraintViolation(_)) => Fate::GroupGone,
                Some(SqlErr::UniqueConstraintViolation(_)) if self.resent(m).await? => Fate::Resent,
                _ => {
                    let reason = printable(&err.to_string());
                    self.dead_letter(m, &reason).await?;
                    Fate::DeadLettered(reason)
                }
            };
            unstored.push(Unstored {
                message_id: m.id,
                group_id: m.group_id,
                offset: m.offset,
                fate,
            });
        }
        Ok(unstored)
    }

    /// The batch insert of the portable path, in one transaction: multi-row statements of
    /// at most [`ROWS_PER_STATEMENT`] rows, which keeps each under SQLite's limit on bound
    /// parameters whatever the batch size. Nothing is stored if any row is refused.
    async fn insert_chunked(&self, batch: &[std::sync::Arc<ChatMessage>]) -> Result<(), DbErr> {
        let txn = self.db.begin().await?;
        for chunk in batch.chunks(ROWS_PER_STATEMENT) {
            messages::Entity::insert_many(chunk.iter().map(|m| message_row(m)))
                .on_conflict_do_nothing_on([messages::Column::Id])
                .exec_without_returning(&txn)
                .await?;
        }
        txn.commit().await
    }

    /// True when the sender already has a stored message with `m`'s idempotency key: `m` is
    /// a resend that came after the relay had forgotten the first one.
    async fn resent(&self, m: &ChatMessage) -> Result<bool, DbErr> {
        if m.client_message_id.is_empty() {
            return Ok(false);
        }
        Ok(messages::Entity::find()
            .filter(messages::Column::GroupId.eq(m.group_id))
            .filter(messages::Column::SenderId.eq(m.sender_id))
            .filter(messages::Column::ClientMessageId.eq(m.client_message_id.as_str()))
            .one(&self.db)
            .await?
            .is_some())
    }

    /// Keeps a message the database refused, escaped as JSON so that it can be stored
    /// whatever it holds. Idempotent (a replayed batch refuses the same message again).
    async fn dead_letter(&self, m: &ChatMessage, reason: &str) -> Result<(), DbErr> {
        let payload = serde_json::json!({
            "id": m.id,
            "group_id": m.group_id,
            "offset": m.offset,
            "sender_id": m.sender_id,
            "sender_name": m.sender_name,
            "body": m.body,
            "client_message_id": m.client_message_id,
            "created_at": m.created_at,
        });
        dead_letters::Entity::insert(dead_letters::ActiveModel {
            id: Set(m.id),
            group_id: Set(m.group_id),
            room_offset: Set(m.offset as i64),
            // serde_json escapes every control character, NUL included.
            payload: Set(payload.to_string()),
            reason: Set(reason.to_owned()),
            created_at: Set(now()),
        })
        .on_conflict_do_nothing_on([dead_letters::Column::Id])
        .exec_without_returning(&self.db)
        .await?;
        Ok(())
    }

    /// Messages the persister could not store, oldest first.
    pub async fn dead_letters(&self, limit: u64) -> Result<Vec<dead_letters::Model>, DbErr> {
        dead_letters::Entity::find()
            .order_by_asc(dead_letters::Column::CreatedAt)
            .limit(limit)
            .all(&self.db)
            .await
    }

    /// A page of a room's history, newest first: at most `limit` messages with
    /// `offset < before` and/or `offset > after`. With only `after`, the page is the oldest
    /// `limit` messages after it. Also says whether more messages lie beyond the page.
    pub async fn list_messages(
        &self,
        group_id: Uuid,
        before: Option<u64>,
        after: Option<u64>,
        limit: u64,
    ) -> Result<(Vec<ChatMessage>, bool), DbErr> {
        let mut query = messages::Entity::find().filter(messages::Column::GroupId.eq(group_id));
        if let Some(before) = before {
            query = query.filter(messages::Column::RoomOffset.lt(before as i64));
        }
        if let Some(after) = after {
            query = query.filter(messages::Column::RoomOffset.gt(after as i64));
        }
        let catch_up = after.is_some() && before.is_none();
        query = if catch_up {
            query.order_by_asc(messages::Column::RoomOffset)
        } else {
            query.order_by_desc(messages::Column::RoomOffset)
        };
        let mut rows = query.limit(limit + 1).all(&self.db).await?;
        let more = rows.len() as u64 > limit;
        rows.truncate(limit as usize);
        if catch_up {
            rows.reverse();
        }
        Ok((rows.into_iter().map(chat_message).collect(), more))
    }

    /// A room's messages with `after < offset <= up_to`, oldest first.
    pub async fn messages_between(
        &self,
        group_id: Uuid,
        after: u64,
        up_to: u64,
    ) -> Result<Vec<ChatMessage>, DbErr> {
        let rows = messages::Entity::find()
            .filter(messages::Column::GroupId.eq(group_id))
            .filter(messages::Column::RoomOffset.gt(after as i64))
            .filter(messages::Column::RoomOffset.lte(up_to as i64))
            .order_by_asc(messages::Column::RoomOffset)
            .all(&self.db)
            .await?;
        Ok(rows.into_iter().map(chat_message).collect())
    }
}

/// The advisory lock key every QuickChat process takes while migrating a PostgreSQL
/// database (an arbitrary constant: "qchat" in ASCII).
const MIGRATION_LOCK: i64 = 0x71_63_68_61_74;

/// Applies pending migrations holding a PostgreSQL advisory lock, so that nodes starting at
/// the same moment on an empty database take turns instead of racing each other's
/// `CREATE TABLE`s (one of them used to die with a duplicate key in `pg_type`). A session
/// lock belongs to one connection, so this uses a dedicated one; it is released when the
/// connection closes even if migrating fails.
async fn migrate_exclusively(url: &str) -> Result<(), DbErr> {
    let mut options = ConnectOptions::new(url.to_owned());
    options
        .sqlx_logging(false)
        .max_connections(1)
        .min_connections(1);
    let session = Database::connect(options).await?;
    session
        .execute_unprepared(&format!("SELECT pg_advisory_lock({MIGRATION_LOCK})"))
        .await?;
    let migrated = Migrator::up(&session, None).await;
    let _ = session
        .execute_unprepared(&format!("SELECT pg_advisory_unlock({MIGRATION_LOCK})"))
        .await;
    session.close().await?;
    migrated
}

/// Rows per multi-row `INSERT` of [`Store::insert_chunked`]: eight parameters each, well
/// under SQLite's 32 766.
const ROWS_PER_STATEMENT: usize = 500;

/// The batch insert on PostgreSQL: every column bound as one array, so a batch of any size
/// is one prepared statement (cached per connection) and one round trip, and the server
/// parses eight parameters instead of eight per row. The same `ON CONFLICT (id) DO NOTHING`
/// as the portable insert: a replayed message keeps its one row.
const INSERT_MESSAGES_UNNEST: &str = "INSERT INTO messages \
     (id, group_id, room_offset, sender_id, sender_name, body, client_message_id, created_at) \
     SELECT * FROM UNNEST($1::uuid[], $2::uuid[], $3::int8[], $4::uuid[], $5::text[], \
     $6::text[], $7::text[], $8::timestamptz[]) \
     ON CONFLICT (id) DO NOTHING";

async fn insert_unnest(
    pool: &sea_orm::sqlx::PgPool,
    batch: &[std::sync::Arc<ChatMessage>],
) -> Result<(), DbErr> {
    let n = batch.len();
    let mut ids = Vec::with_capacity(n);
    let mut group_ids = Vec::with_capacity(n);
    let mut offsets = Vec::with_capacity(n);
    let mut sender_ids = Vec::with_capacity(n);
    let mut sender_names = Vec::with_capacity(n);
    let mut bodies = Vec::with_capacity(n);
    let mut client_ids = Vec::with_capacity(n);
    let mut created = Vec::with_capacity(n);
    for m in batch {
        ids.push(m.id);
        group_ids.push(m.group_id);
        offsets.push(m.offset as i64);
        sender_ids.push(m.sender_id);
        sender_names.push(m.sender_name.as_str());
        bodies.push(m.body.as_str());
        client_ids.push(Some(m.client_message_id.as_str()).filter(|c| !c.is_empty()));
        created.push(m.created_at);
    }
    sea_orm::sqlx::query(INSERT_MESSAGES_UNNEST)
        .bind(ids)
        .bind(group_ids)
        .bind(offsets)
        .bind(sender_ids)
        .bind(sender_names)
        .bind(bodies)
        .bind(client_ids)
        .bind(created)
        .execute(pool)
        .await
        .map_err(|err| DbErr::Exec(sea_orm::RuntimeErr::SqlxError(err.into())))?;
    Ok(())
}

/// A message of a batch that was not stored, and what became of it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unstored {
    pub message_id: Uuid,
    pub group_id: Uuid,
    pub offset: u64,
    pub fate: Fate,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fate {
    /// Its group was deleted: dropping it is the intent.
    GroupGone,
    /// The database refused it for this reason; it is in `dead_letters`.
    DeadLettered(String),
    /// The sender's earlier message with the same `client_message_id` is stored: this one
    /// is a resend the relay no longer recognised (it was past the relay window).
    Resent,
}

/// True when the database refused this row for what it holds — a constraint (unique,
/// foreign key, not null, check) or a value it cannot store (PostgreSQL's data exceptions,
/// SQLSTATE class 22, e.g. NUL in text; SQLite's `TOOBIG`/`MISMATCH`) — so that retrying
/// the same row can never help. Anything else (unreachable, a missing table, out of disk)
/// may pass and is retried.
fn refused_by_database(err: &DbErr) -> bool {
    let (DbErr::Exec(sea_orm::RuntimeErr::SqlxError(e))
    | DbErr::Query(sea_orm::RuntimeErr::SqlxError(e))) = err
    else {
        return false;
    };
    let sea_orm::sqlx::Error::Database(db) = &**e else {
        return false;
    };
    if !matches!(db.kind(), sea_orm::sqlx::error::ErrorKind::Other) {
        return true;
    }
    let code = db.code().unwrap_or_default();
    code.starts_with("22") || code.starts_with("23") || matches!(&*code, "18" | "20")
}

/// `text` without control characters, at most 1000 characters: safe to store and log.
fn printable(text: &str) -> String {
    text.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .take(1000)
        .collect()
}

/// What [`Store::rotate_refresh_token`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rotation {
    /// The old token is used up; the new one is stored.
    Rotated,
    /// Someone used the token first: a rotated token came back.
    AlreadyUsed,
    /// The family was revoked; nothing was issued.
    FamilyRevoked,
}

fn refresh_token_row(
    user_id: Uuid,
    family_id: Uuid,
    token_hash: String,
    expires_at: DateTime<Utc>,
) -> refresh_tokens::ActiveModel {
    refresh_tokens::ActiveModel {
        id: Set(Uuid::new_v4()),
        user_id: Set(user_id),
        family_id: Set(family_id),
        token_hash: Set(token_hash),
        expires_at: Set(expires_at),
        used_at: Set(None),
        revoked_at: Set(None),
        created_at: Set(now()),
    }
}

async fn family_revoked(db: &impl ConnectionTrait, family_id: Uuid) -> Result<bool, DbErr> {
    Ok(refresh_tokens::Entity::find()
        .filter(refresh_tokens::Column::FamilyId.eq(family_id))
        .filter(refresh_tokens::Column::RevokedAt.is_not_null())
        .one(db)
        .await?
        .is_some())
}

fn message_row(m: &ChatMessage) -> messages::ActiveModel {
    messages::ActiveModel {
        id: Set(m.id),
        group_id: Set(m.group_id),
        room_offset: Set(m.offset as i64),
        sender_id: Set(m.sender_id),
        sender_name: Set(m.sender_name.clone()),
        body: Set(m.body.clone()),
        client_message_id: Set(Some(m.client_message_id.clone()).filter(|c| !c.is_empty())),
        created_at: Set(m.created_at),
    }
}

fn chat_message(row: messages::Model) -> ChatMessage {
    ChatMessage {
        id: row.id,
        group_id: row.group_id,
        offset: row.room_offset as u64,
        sender_id: row.sender_id,
        sender_name: row.sender_name,
        body: row.body,
        client_message_id: row.client_message_id.unwrap_or_default(),
        created_at: row.created_at,
        wire: Default::default(),
    }
}

/// A store on a new, empty PostgreSQL database of the server at
/// `QUICKCHAT_TEST_DATABASE_URL` (default: the local one), for tests whose claims are about
/// the production database.
#[cfg(test)]
pub(crate) async fn test_postgres() -> Store {
    let admin_url = std::env::var("QUICKCHAT_TEST_DATABASE_URL")
        .ok()
        .filter(|u| !u.is_empty())
        .unwrap_or_else(|| "postgres://postgres@127.0.0.1:5432/postgres".into());
    let name = format!("quickchat_test_{}", Uuid::new_v4().simple());
    let admin = Database::connect(&admin_url)
        .await
        .expect("PostgreSQL at QUICKCHAT_TEST_DATABASE_URL");
    admin
        .execute_unprepared(&format!("CREATE DATABASE {name}"))
        .await
        .expect("create a test database");
    admin.close().await.ok();
    let mut url = url::Url::parse(&admin_url).expect("QUICKCHAT_TEST_DATABASE_URL is a URL");
    url.set_path(&name);
    Store::connect(url.as_str()).await.expect("test database")
}

/// A user-owned group to hang test messages on (messages need an existing group).
#[cfg(test)]
pub(crate) async fn test_group(store: &Store) -> Uuid {
    let owner = store
        .create_user(NewUser {
            name: "Owner",
            email: Some(&format!("{}@example.com", Uuid::new_v4())),
            provider: "local",
            subject: None,
            password_hash: None,
            image_url: None,
        })
        .await
        .expect("test user");
    store
        .create_group(owner.id, "Test group", "hash".into())
        .await
        .expect("test group")
        .id
}

#[cfg(test)]
mod tests;
