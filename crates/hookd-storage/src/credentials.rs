//! OAuth2 credentials: their definitions and the token state cached for each.
//!
//! Secrets (the spec with its client secret and code, the tokens) are sealed with the store's
//! cipher before they are written and opened when read (see `crypto.rs`).

use chrono::{DateTime, Utc};
use hookd_core::CredentialId;
use hookd_core::credential::{Credential, CredentialSpec};
use hookd_core::endpoint::Secret;
use sea_orm::{
    ActiveValue::Set, ColumnTrait, DbErr, EntityTrait, QueryFilter, QueryOrder, QuerySelect,
    sea_query::Expr,
};

use crate::entity::credential;
use crate::{StorageError, Store, db_time, is_unique_violation};

/// What the token fetcher last learned from the token endpoint. A new or changed credential
/// starts with the default: no token, no error.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TokenState {
    pub access_token: Option<Secret>,
    pub expires_at: Option<DateTime<Utc>>,
    pub refresh_token: Option<Secret>,
    /// Why the last token request failed; empty when it succeeded.
    pub last_error: String,
}

impl Store {
    /// Stores a new credential with an empty token state. A credential with the same name
    /// in `tenant` is [`StorageError::NameTaken`].
    pub async fn create_credential(
        &self,
        tenant: &str,
        credential: &Credential,
    ) -> Result<(), StorageError> {
        let row = credential::ActiveModel {
            id: Set(credential.id.as_str().to_owned()),
            tenant: Set(tenant.to_owned()),
            name: Set(credential.spec.name.clone()),
            spec: Set(
                self.seal(&aad(credential.id.as_str(), "spec"), encode_spec(&credential.spec)?)
            ),
            access_token: Set(None),
            token_expires_at: Set(None),
            refresh_token: Set(None),
            token_error: Set(String::new()),
            created_at: Set(db_time(credential.created_at)),
            updated_at: Set(db_time(credential.updated_at)),
        };
        credential::Entity::insert(row)
            .exec_without_returning(&self.db)
            .await
            .map_err(|e| name_clash(e, &credential.spec.name))?;
        Ok(())
    }

    pub async fn get_credential(
        &self,
        tenant: &str,
        id: &CredentialId,
    ) -> Result<Option<(Credential, TokenState)>, StorageError> {
        credential::Entity::find_by_id(id.as_str())
            .filter(credential::Column::Tenant.eq(tenant))
            .one(&self.db)
            .await?
            .map(|row| self.decode_credential(row))
            .transpose()
    }

    /// Ordered by id ascending (ids are time-ordered), ids strictly greater than `after`.
    pub async fn list_credentials(
        &self,
        tenant: &str,
        after: Option<&CredentialId>,
        limit: u64,
    ) -> Result<Vec<(Credential, TokenState)>, StorageError> {
        let mut query = credential::Entity::find().filter(credential::Column::Tenant.eq(tenant));
        if let Some(after) = after {
            query = query.filter(credential::Column::Id.gt(after.as_str()));
        }
        query
            .order_by_asc(credential::Column::Id)
            .limit(limit)
            .all(&self.db)
            .await?
            .into_iter()
            .map(|row| self.decode_credential(row))
            .collect()
    }

    /// Replaces spec + updated_at and clears the token state, since a token fetched with the
    /// old settings may not be valid for the new ones. `Ok(false)` if there is no such
    /// credential; [`StorageError::NameTaken`] on a name clash.
    pub async fn update_credential(
        &self,
        tenant: &str,
        credential: &Credential,
    ) -> Result<bool, StorageError> {
        let result = credential::Entity::update_many()
            .col_expr(credential::Column::Name, credential.spec.name.clone().into())
            .col_expr(
                credential::Column::Spec,
                self.seal(&aad(credential.id.as_str(), "spec"), encode_spec(&credential.spec)?)
                    .into(),
            )
            .col_expr(credential::Column::AccessToken, Expr::val(None::<String>))
            .col_expr(credential::Column::TokenExpiresAt, Expr::val(None::<DateTime<Utc>>))
            .col_expr(credential::Column::RefreshToken, Expr::val(None::<String>))
            .col_expr(credential::Column::TokenError, "".into())
            .col_expr(credential::Column::UpdatedAt, db_time(credential.updated_at).into())
            .filter(credential::Column::Tenant.eq(tenant))
            .filter(credential::Column::Id.eq(credential.id.as_str()))
            .exec(&self.db)
            .await
            .map_err(|e| name_clash(e, &credential.spec.name))?;
        Ok(result.rows_affected > 0)
    }

    /// `Ok(false)` if it did not exist. Callers check [`Store::webhooks_using_credential`]
    /// first; the database keeps no foreign key.
    pub async fn delete_credential(
        &self,
        tenant: &str,
        id: &CredentialId,
    ) -> Result<bool, StorageError> {
        let result = credential::Entity::delete_many()
            .filter(credential::Column::Tenant.eq(tenant))
            .filter(credential::Column::Id.eq(id.as_str()))
            .exec(&self.db)
            .await?;
        Ok(result.rows_affected > 0)
    }

    /// Replaces the cached token state; `Ok(false)` if there is no such credential.
    pub async fn save_token_state(
        &self,
        tenant: &str,
        id: &CredentialId,
        state: &TokenState,
    ) -> Result<bool, StorageError> {
        let secret = |s: &Option<Secret>, column: &str| {
            s.as_ref().map(|s| self.seal(&aad(id.as_str(), column), s.expose().to_owned()))
        };
        let result = credential::Entity::update_many()
            .col_expr(
                credential::Column::AccessToken,
                Expr::val(secret(&state.access_token, "access_token")),
            )
            .col_expr(credential::Column::TokenExpiresAt, Expr::val(state.expires_at.map(db_time)))
            .col_expr(
                credential::Column::RefreshToken,
                Expr::val(secret(&state.refresh_token, "refresh_token")),
            )
            .col_expr(credential::Column::TokenError, state.last_error.clone().into())
            .filter(credential::Column::Tenant.eq(tenant))
            .filter(credential::Column::Id.eq(id.as_str()))
            .exec(&self.db)
            .await?;
        Ok(result.rows_affected > 0)
    }
}

fn name_clash(err: DbErr, name: &str) -> StorageError {
    if is_unique_violation(&err) {
        StorageError::NameTaken { name: name.to_owned() }
    } else {
        StorageError::Database(err)
    }
}

fn encode_spec(spec: &CredentialSpec) -> Result<String, StorageError> {
    serde_json::to_string(spec).map_err(|e| StorageError::OutOfRange {
        field: "credential spec",
        reason: format!("cannot be encoded as JSON: {e}"),
    })
}

/// Associated data of a credential's sealed column: its identity and the column.
fn aad(id: &str, column: &str) -> String {
    format!("credentials/{id}/{column}")
}

impl Store {
    /// A row as a credential, its sealed columns opened first.
    fn decode_credential(
        &self,
        mut row: credential::Model,
    ) -> Result<(Credential, TokenState), StorageError> {
        row.spec = self.open(&aad(&row.id, "spec"), &row.spec)?;
        if let Some(token) = &row.access_token {
            row.access_token = Some(self.open(&aad(&row.id, "access_token"), token)?);
        }
        if let Some(token) = &row.refresh_token {
            row.refresh_token = Some(self.open(&aad(&row.id, "refresh_token"), token)?);
        }
        to_credential(row)
    }

    /// Rewrites every credential column not sealed under the current key. Returns how many
    /// rows changed.
    pub(crate) async fn reseal_credentials(&self) -> Result<u64, StorageError> {
        let mut changed = 0;
        for row in credential::Entity::find().all(&self.db).await? {
            let stale = self.needs_reseal(&row.spec)
                || row.access_token.as_deref().is_some_and(|t| self.needs_reseal(t))
                || row.refresh_token.as_deref().is_some_and(|t| self.needs_reseal(t));
            if !stale {
                continue;
            }
            let reseal = |column: &str, value: &str| -> Result<String, StorageError> {
                let aad = aad(&row.id, column);
                Ok(self.seal(&aad, self.open(&aad, value)?))
            };
            let spec = reseal("spec", &row.spec)?;
            let access =
                row.access_token.as_deref().map(|t| reseal("access_token", t)).transpose()?;
            let refresh =
                row.refresh_token.as_deref().map(|t| reseal("refresh_token", t)).transpose()?;
            credential::Entity::update_many()
                .col_expr(credential::Column::Spec, spec.into())
                .col_expr(credential::Column::AccessToken, Expr::val(access))
                .col_expr(credential::Column::RefreshToken, Expr::val(refresh))
                .filter(credential::Column::Id.eq(row.id.as_str()))
                .exec(&self.db)
                .await?;
            changed += 1;
        }
        Ok(changed)
    }
}

fn to_credential(row: credential::Model) -> Result<(Credential, TokenState), StorageError> {
    let spec: CredentialSpec =
        serde_json::from_str(&row.spec).map_err(|e| StorageError::Corrupt {
            table: "credentials",
            reason: format!("spec of {} is not a credential spec: {e}", row.id),
        })?;
    let state = TokenState {
        access_token: row.access_token.map(Secret::new),
        expires_at: row.token_expires_at,
        refresh_token: row.refresh_token.map(Secret::new),
        last_error: row.token_error,
    };
    let credential = Credential {
        id: CredentialId::from(row.id),
        spec,
        created_at: row.created_at,
        updated_at: row.updated_at,
    };
    Ok((credential, state))
}
