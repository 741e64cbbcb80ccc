//! Persistent state: users, refresh tokens, groups, members and messages.
//!
//! One implementation serves both backends: sea-orm over SQLite (the embedded default, a file
//! under the data directory) or PostgreSQL (`--database-url postgres://…`). Queries use the
//! query builder only, so they are portable; the schema comes from `quickchat-migrations`,
//! applied by [`Store::connect`].

pub mod entities;

use chrono::{DateTime, SubsecRound, Utc};
use quickchat_migrations::{Migrator, MigratorTrait};
use sea_orm::sea_query::Expr;
use sea_orm::{
    ActiveModelTrait, ActiveValue::Set, ColumnTrait, Condition, ConnectOptions, Database,
    DatabaseConnection, DbErr, EntityTrait, QueryFilter, QueryOrder, QuerySelect, SqlErr,
    TransactionTrait,
};
use uuid::Uuid;

pub use entities::{chat_groups, group_members, messages, refresh_tokens, users};

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
            "postgres"
        };
        let db = Database::connect(options).await?;
        Migrator::up(&db, None).await?;
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

    /// Marks a refresh token used, if nobody did first. Returns false when the token was
    /// already used or revoked: two concurrent refreshes with one token cannot both win.
    pub async fn claim_refresh_token(&self, id: Uuid) -> Result<bool, DbErr> {
        let result = refresh_tokens::Entity::update_many()
            .col_expr(refresh_tokens::Column::UsedAt, Expr::value(now()))
            .filter(refresh_tokens::Column::Id.eq(id))
            .filter(refresh_tokens::Column::UsedAt.is_null())
            .filter(refresh_tokens::Column::RevokedAt.is_null())
            .exec(&self.db)
            .await?;
        Ok(result.rows_affected == 1)
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

    /// The owner's groups, newest first, starting after `after`. Returns at most `limit`
    /// groups and whether more exist.
    pub async fn list_groups(
        &self,
        owner_id: Uuid,
        after: Option<GroupCursor>,
        limit: u64,
    ) -> Result<(Vec<chat_groups::Model>, bool), DbErr> {
        let mut query =
            chat_groups::Entity::find().filter(chat_groups::Column::OwnerId.eq(owner_id));
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

    pub async fn update_group(
        &self,
        group: chat_groups::Model,
        title: Option<&str>,
        passcode_hash: Option<String>,
    ) -> Result<chat_groups::Model, DbErr> {
        if title.is_none() && passcode_hash.is_none() {
            return Ok(group);
        }
        let mut active: chat_groups::ActiveModel = group.into();
        if let Some(title) = title {
            active.title = Set(title.to_owned());
        }
        if let Some(hash) = passcode_hash {
            active.passcode_hash = Set(hash);
        }
        active.update(&self.db).await
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
        let deleted = chat_groups::Entity::delete_by_id(id)
            .exec(&txn)
            .await?
            .rows_affected
            == 1;
        txn.commit().await?;
        Ok(deleted)
    }

    // ----- members -----

    /// The member of `group_id` called `name`, created if it does not exist yet. Two joins
    /// racing with one name end up with the same member.
    pub async fn join_member(
        &self,
        group_id: Uuid,
        name: &str,
    ) -> Result<group_members::Model, DbErr> {
        group_members::Entity::insert(group_members::ActiveModel {
            id: Set(Uuid::new_v4()),
            group_id: Set(group_id),
            name: Set(name.to_owned()),
            created_at: Set(now()),
        })
        .on_conflict_do_nothing_on([group_members::Column::GroupId, group_members::Column::Name])
        .exec(&self.db)
        .await?;
        group_members::Entity::find()
            .filter(group_members::Column::GroupId.eq(group_id))
            .filter(group_members::Column::Name.eq(name))
            .one(&self.db)
            .await?
            .ok_or_else(|| DbErr::RecordNotFound("member vanished after insert".into()))
    }

    pub async fn member(&self, id: Uuid) -> Result<Option<group_members::Model>, DbErr> {
        group_members::Entity::find_by_id(id).one(&self.db).await
    }

    /// Members in the order they joined.
    pub async fn list_members(&self, group_id: Uuid) -> Result<Vec<group_members::Model>, DbErr> {
        group_members::Entity::find()
            .filter(group_members::Column::GroupId.eq(group_id))
            .order_by_asc(group_members::Column::CreatedAt)
            .order_by_asc(group_members::Column::Id)
            .all(&self.db)
            .await
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

    /// Stores a batch of messages in one statement. A message already stored (same id) is
    /// skipped, so replays are harmless. If the batch is refused, rows are retried one by
    /// one and those that can never be stored (their group was deleted meanwhile, or their
    /// offset is taken) are dropped with a warning; other failures are returned.
    pub async fn insert_messages(
        &self,
        batch: &[std::sync::Arc<ChatMessage>],
    ) -> Result<(), DbErr> {
        if batch.is_empty() {
            return Ok(());
        }
        let rows = batch.iter().map(|m| message_row(m));
        let all = messages::Entity::insert_many(rows)
            .on_conflict_do_nothing_on([messages::Column::Id])
            .exec_without_returning(&self.db)
            .await;
        if all.is_ok() {
            return Ok(());
        }
        for m in batch {
            let one = messages::Entity::insert(message_row(m))
                .on_conflict_do_nothing_on([messages::Column::Id])
                .exec_without_returning(&self.db)
                .await;
            match one {
                Ok(_) => {}
                Err(err)
                    if matches!(
                        err.sql_err(),
                        Some(
                            SqlErr::ForeignKeyConstraintViolation(_)
                                | SqlErr::UniqueConstraintViolation(_)
                        )
                    ) =>
                {
                    tracing::warn!(message_id = %m.id, group_id = %m.group_id, offset = m.offset, error = %err, "dropping a message that cannot be stored");
                }
                Err(err) => return Err(err),
            }
        }
        Ok(())
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
