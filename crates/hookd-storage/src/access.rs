//! Access control records: each tenant's custom roles and its API tokens (by hash).
//!
//! Permissions are stored as their names and read back as [`Permission`]s; a name this
//! version does not know makes the row corrupt rather than silently granting less.

use chrono::{DateTime, Utc};
use hookd_core::access::Permission;
use sea_orm::{
    ActiveValue::Set, ColumnTrait, EntityTrait, PaginatorTrait, QueryFilter, QueryOrder,
};

use crate::entity::{api_token, role};
use crate::{StorageError, Store, db_time, is_unique_violation};

/// A custom role of a tenant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoleRecord {
    pub name: String,
    pub permissions: Vec<Permission>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// An API token as stored: never its value, only the SHA-256 (hex) and the last four
/// characters for display.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiTokenRecord {
    /// `tok_` followed by a UUID v7.
    pub id: String,
    pub tenant: String,
    pub name: String,
    pub role: String,
    pub hash: String,
    pub last_four: String,
    pub created_at: DateTime<Utc>,
}

/// What [`Store::delete_role`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RoleDeletion {
    Deleted,
    NotFound,
    /// Refused: this many tokens still have the role.
    InUse(u64),
}

fn encode_permissions(permissions: &[Permission]) -> Result<String, StorageError> {
    let names: Vec<&str> = permissions.iter().map(|p| p.as_str()).collect();
    serde_json::to_string(&names)
        .map_err(|e| StorageError::OutOfRange { field: "permissions", reason: e.to_string() })
}

fn to_role(row: role::Model) -> Result<RoleRecord, StorageError> {
    let corrupt = |reason: String| StorageError::Corrupt { table: "roles", reason };
    let names: Vec<String> = serde_json::from_str(&row.permissions)
        .map_err(|e| corrupt(format!("permissions of {}: {e}", row.name)))?;
    let permissions = names
        .iter()
        .map(|n| Permission::parse(n).ok_or_else(|| corrupt(format!("unknown permission {n:?}"))))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(RoleRecord {
        name: row.name,
        permissions,
        created_at: row.created_at,
        updated_at: row.updated_at,
    })
}

fn to_token(row: api_token::Model) -> ApiTokenRecord {
    ApiTokenRecord {
        id: row.id,
        tenant: row.tenant,
        name: row.name,
        role: row.role,
        hash: row.hash,
        last_four: row.last_four,
        created_at: row.created_at,
    }
}

impl Store {
    /// Stores a new custom role; one of that name in `tenant` is
    /// [`StorageError::AlreadyExists`].
    pub async fn create_role(&self, tenant: &str, r: &RoleRecord) -> Result<(), StorageError> {
        let row = role::ActiveModel {
            tenant: Set(tenant.to_owned()),
            name: Set(r.name.clone()),
            permissions: Set(encode_permissions(&r.permissions)?),
            created_at: Set(db_time(r.created_at)),
            updated_at: Set(db_time(r.updated_at)),
        };
        role::Entity::insert(row).exec_without_returning(&self.db).await.map_err(|e| {
            if is_unique_violation(&e) {
                StorageError::AlreadyExists { what: "role", name: r.name.clone() }
            } else {
                StorageError::Database(e)
            }
        })?;
        Ok(())
    }

    pub async fn get_role(
        &self,
        tenant: &str,
        name: &str,
    ) -> Result<Option<RoleRecord>, StorageError> {
        role::Entity::find_by_id((tenant.to_owned(), name.to_owned()))
            .one(&self.db)
            .await?
            .map(to_role)
            .transpose()
    }

    /// The tenant's custom roles by name.
    pub async fn list_roles(&self, tenant: &str) -> Result<Vec<RoleRecord>, StorageError> {
        role::Entity::find()
            .filter(role::Column::Tenant.eq(tenant))
            .order_by_asc(role::Column::Name)
            .all(&self.db)
            .await?
            .into_iter()
            .map(to_role)
            .collect()
    }

    /// Every custom role of every tenant as (tenant, role), for the token table.
    pub async fn all_roles(&self) -> Result<Vec<(String, RoleRecord)>, StorageError> {
        role::Entity::find()
            .all(&self.db)
            .await?
            .into_iter()
            .map(|row| Ok((row.tenant.clone(), to_role(row)?)))
            .collect()
    }

    /// Replaces a custom role's permissions. False when the tenant has no such role.
    pub async fn update_role(
        &self,
        tenant: &str,
        name: &str,
        permissions: &[Permission],
        now: DateTime<Utc>,
    ) -> Result<bool, StorageError> {
        let result = role::Entity::update_many()
            .col_expr(
                role::Column::Permissions,
                sea_orm::sea_query::Expr::value(encode_permissions(permissions)?),
            )
            .col_expr(role::Column::UpdatedAt, sea_orm::sea_query::Expr::value(db_time(now)))
            .filter(role::Column::Tenant.eq(tenant))
            .filter(role::Column::Name.eq(name))
            .exec(&self.db)
            .await?;
        Ok(result.rows_affected > 0)
    }

    /// Deletes a custom role unless a token still has it. The check and the delete share a
    /// write transaction, so a token created meanwhile cannot be left with a missing role.
    pub async fn delete_role(
        &self,
        tenant: &str,
        name: &str,
    ) -> Result<RoleDeletion, StorageError> {
        let txn = self.begin_write().await?;
        let users = api_token::Entity::find()
            .filter(api_token::Column::Tenant.eq(tenant))
            .filter(api_token::Column::Role.eq(name))
            .count(&txn)
            .await?;
        if users > 0 {
            txn.rollback().await?;
            return Ok(RoleDeletion::InUse(users));
        }
        let result = role::Entity::delete_many()
            .filter(role::Column::Tenant.eq(tenant))
            .filter(role::Column::Name.eq(name))
            .exec(&txn)
            .await?;
        txn.commit().await?;
        Ok(if result.rows_affected > 0 { RoleDeletion::Deleted } else { RoleDeletion::NotFound })
    }

    /// Stores a new token. Its hash must be new ([`StorageError::AlreadyExists`] otherwise).
    pub async fn create_api_token(&self, t: &ApiTokenRecord) -> Result<(), StorageError> {
        let row = api_token::ActiveModel {
            id: Set(t.id.clone()),
            tenant: Set(t.tenant.clone()),
            name: Set(t.name.clone()),
            role: Set(t.role.clone()),
            hash: Set(t.hash.clone()),
            last_four: Set(t.last_four.clone()),
            created_at: Set(db_time(t.created_at)),
        };
        api_token::Entity::insert(row).exec_without_returning(&self.db).await.map_err(|e| {
            if is_unique_violation(&e) {
                // Never name the token itself: the hash identifies it.
                StorageError::AlreadyExists { what: "token", name: t.id.clone() }
            } else {
                StorageError::Database(e)
            }
        })?;
        Ok(())
    }

    pub async fn find_api_token_by_hash(
        &self,
        hash: &str,
    ) -> Result<Option<ApiTokenRecord>, StorageError> {
        Ok(api_token::Entity::find()
            .filter(api_token::Column::Hash.eq(hash))
            .one(&self.db)
            .await?
            .map(to_token))
    }

    /// The tenant's tokens, oldest first.
    pub async fn list_api_tokens(&self, tenant: &str) -> Result<Vec<ApiTokenRecord>, StorageError> {
        Ok(api_token::Entity::find()
            .filter(api_token::Column::Tenant.eq(tenant))
            .order_by_asc(api_token::Column::CreatedAt)
            .order_by_asc(api_token::Column::Id)
            .all(&self.db)
            .await?
            .into_iter()
            .map(to_token)
            .collect())
    }

    /// Every token of every tenant, for the control plane's in-memory token table.
    pub async fn all_api_tokens(&self) -> Result<Vec<ApiTokenRecord>, StorageError> {
        Ok(api_token::Entity::find().all(&self.db).await?.into_iter().map(to_token).collect())
    }

    /// Revokes a token. False when `tenant` has no token `id`.
    pub async fn delete_api_token(&self, tenant: &str, id: &str) -> Result<bool, StorageError> {
        let result = api_token::Entity::delete_many()
            .filter(api_token::Column::Tenant.eq(tenant))
            .filter(api_token::Column::Id.eq(id))
            .exec(&self.db)
            .await?;
        Ok(result.rows_affected > 0)
    }
}
