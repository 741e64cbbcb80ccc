//! Members and bans: who is in a group, under which name and account, and who may not
//! join it again.
//!
//! Every write that decides who is in a group (a join, a removal with or without a ban)
//! is one transaction that takes the write lock first (PostgreSQL: the group's row; SQLite:
//! its first statement is a write, which takes the database's one write lock), so a join
//! and a removal or ban of the same name never interleave: a banned name cannot slip in
//! between a member's removal and its ban.

use sea_orm::sea_query::{Expr, ExprTrait};
use sea_orm::{
    ActiveModelTrait, ActiveValue::Set, ColumnTrait, Condition, DbErr, EntityTrait, PaginatorTrait,
    QueryFilter, QueryOrder, QuerySelect, SqlErr, TransactionTrait,
};
use uuid::Uuid;

use super::{Store, chat_groups, group_bans, group_members, now};
use crate::domain::MemberName;

/// Why [`Store::add_member`] did not add a member.
#[derive(Debug, thiserror::Error)]
pub enum AddMemberError {
    /// Another member has a name with the same key (or, for `user_id`, the account is
    /// already a member: the caller looks that member up).
    #[error("the name is taken in this group")]
    NameTaken,
    /// The name or the account is banned from the group.
    #[error("banned from this group")]
    Banned,
    #[error("the group is full")]
    Full,
    #[error("the group does not exist")]
    GroupGone,
    #[error(transparent)]
    Db(#[from] DbErr),
}

/// A member to add.
pub struct NewMember<'a> {
    pub group_id: Uuid,
    pub name: &'a MemberName,
    /// The account joining, if the caller is signed in.
    pub user_id: Option<Uuid>,
}

/// What [`Store::remove_member`] removed.
#[derive(Debug, Clone)]
pub struct RemovedMember {
    pub member: group_members::Model,
    /// The ban made with the removal, if one was asked for.
    pub ban: Option<group_bans::Model>,
}

impl Store {
    /// In a transaction: takes the group's write lock (see the module docs); `false` if the
    /// group is gone. On SQLite the caller's first statement must be a write.
    async fn lock_group(
        &self,
        txn: &sea_orm::DatabaseTransaction,
        group_id: Uuid,
    ) -> Result<bool, DbErr> {
        if self.backend != "postgres" {
            return Ok(true);
        }
        Ok(chat_groups::Entity::find_by_id(group_id)
            .lock_exclusive()
            .one(txn)
            .await?
            .is_some())
    }

    /// Adds a member called `name` to the group, unless its name is taken (another member
    /// has a name with the same key, `MemberName::key`), the name or account is banned, or
    /// the group already has `max_members`. The insert, the ban check and the count are
    /// one transaction holding the group's write lock, so concurrent joins can neither
    /// share a name nor overfill the group, and no join passes a ban made meanwhile.
    pub async fn add_member(
        &self,
        new: NewMember<'_>,
        max_members: u64,
    ) -> Result<group_members::Model, AddMemberError> {
        let NewMember {
            group_id,
            name,
            user_id,
        } = new;
        let txn = self.db.begin().await?;
        if !self.lock_group(&txn, group_id).await? {
            return Err(AddMemberError::GroupGone);
        }
        let member = group_members::ActiveModel {
            id: Set(Uuid::new_v4()),
            group_id: Set(group_id),
            name: Set(name.as_str().to_owned()),
            name_key: Set(Some(name.key())),
            created_at: Set(now()),
            user_id: Set(user_id),
            token_version: Set(0),
        }
        .insert(&txn)
        .await
        .map_err(|err| match err.sql_err() {
            Some(SqlErr::UniqueConstraintViolation(_)) => AddMemberError::NameTaken,
            Some(SqlErr::ForeignKeyConstraintViolation(_)) => AddMemberError::GroupGone,
            _ => AddMemberError::Db(err),
        })?;
        let mut banned = Condition::any().add(group_bans::Column::NameKey.eq(name.key()));
        if let Some(user_id) = user_id {
            banned = banned.add(group_bans::Column::UserId.eq(user_id));
        }
        let bans = group_bans::Entity::find()
            .filter(group_bans::Column::GroupId.eq(group_id))
            .filter(banned)
            .count(&txn)
            .await?;
        if bans > 0 {
            // Dropping the transaction rolls the insert back.
            return Err(AddMemberError::Banned);
        }
        let members = group_members::Entity::find()
            .filter(group_members::Column::GroupId.eq(group_id))
            .count(&txn)
            .await?;
        if members > max_members {
            return Err(AddMemberError::Full);
        }
        txn.commit().await?;
        Ok(member)
    }

    pub async fn member(&self, id: Uuid) -> Result<Option<group_members::Model>, DbErr> {
        group_members::Entity::find_by_id(id).one(&self.db).await
    }

    /// The member an account became when it joined the group signed in.
    pub async fn member_of_user(
        &self,
        group_id: Uuid,
        user_id: Uuid,
    ) -> Result<Option<group_members::Model>, DbErr> {
        group_members::Entity::find()
            .filter(group_members::Column::GroupId.eq(group_id))
            .filter(group_members::Column::UserId.eq(user_id))
            .one(&self.db)
            .await
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

    /// Removes a member of the group (and with `ban`, bans its name and account) in one
    /// transaction; `None` if it is not a member of that group.
    pub async fn remove_member(
        &self,
        group_id: Uuid,
        member_id: Uuid,
        ban: bool,
    ) -> Result<Option<RemovedMember>, DbErr> {
        let txn = self.db.begin().await?;
        if !self.lock_group(&txn, group_id).await? {
            return Ok(None);
        }
        // A write first (SQLite: it takes the write lock, so the transaction never has to
        // upgrade from a read); the member's tokens are void from here on either way.
        let touched = group_members::Entity::update_many()
            .col_expr(
                group_members::Column::TokenVersion,
                Expr::col(group_members::Column::TokenVersion).add(1),
            )
            .filter(group_members::Column::Id.eq(member_id))
            .filter(group_members::Column::GroupId.eq(group_id))
            .exec(&txn)
            .await?
            .rows_affected;
        if touched == 0 {
            return Ok(None);
        }
        let Some(member) = group_members::Entity::find_by_id(member_id)
            .one(&txn)
            .await?
        else {
            return Ok(None);
        };
        group_members::Entity::delete_by_id(member_id)
            .exec(&txn)
            .await?;
        let ban = if ban {
            let key = member
                .name_key
                .clone()
                .unwrap_or_else(|| crate::domain::name_key(&member.name));
            // A ban of the same name already there (it cannot be: a banned name cannot
            // join) is replaced rather than doubled.
            group_bans::Entity::delete_many()
                .filter(group_bans::Column::GroupId.eq(group_id))
                .filter(group_bans::Column::NameKey.eq(key.clone()))
                .exec(&txn)
                .await?;
            Some(
                group_bans::ActiveModel {
                    id: Set(Uuid::new_v4()),
                    group_id: Set(group_id),
                    name: Set(member.name.clone()),
                    name_key: Set(key),
                    user_id: Set(member.user_id),
                    created_at: Set(now()),
                }
                .insert(&txn)
                .await?,
            )
        } else {
            None
        };
        txn.commit().await?;
        Ok(Some(RemovedMember { member, ban }))
    }

    /// The group's bans, newest first.
    pub async fn list_bans(&self, group_id: Uuid) -> Result<Vec<group_bans::Model>, DbErr> {
        group_bans::Entity::find()
            .filter(group_bans::Column::GroupId.eq(group_id))
            .order_by_desc(group_bans::Column::CreatedAt)
            .order_by_desc(group_bans::Column::Id)
            .all(&self.db)
            .await
    }

    /// Lifts a ban of the group; `false` if there is no such ban.
    pub async fn unban(&self, group_id: Uuid, ban_id: Uuid) -> Result<bool, DbErr> {
        Ok(group_bans::Entity::delete_many()
            .filter(group_bans::Column::Id.eq(ban_id))
            .filter(group_bans::Column::GroupId.eq(group_id))
            .exec(&self.db)
            .await?
            .rows_affected
            == 1)
    }
}
